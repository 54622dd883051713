import TallyCrypto
import XCTest

@testable import TallyNode

final class EventSubscribersTests: XCTestCase {
    func testSlowSubscriberIsDroppedWhenItsBufferOverflowsOthersKeepUp() async {
        var subscribers = EventSubscribers()
        let slow = subscribers.add(from: "a", maxSubscribers: 8, bufferBlocks: 4) { _ in }.stream!
        let fast = subscribers.add(from: "b", maxSubscribers: 8, bufferBlocks: 4) { _ in }.stream!
        var fastIterator = fast.makeAsyncIterator()
        let event = NodeEvent.block(height: 1, hash: Hash(bytes: [UInt8](repeating: 0, count: 32))!, transactionCount: 0)
        var dropped = 0
        for _ in 0..<6 {
            dropped += subscribers.publish([event])
            _ = await fastIterator.next()
        }
        XCTAssertEqual(dropped, 1, "the subscriber that read nothing overflowed once and was dropped")
        XCTAssertEqual(subscribers.count, 1)
        // The dropped stream ends after what it had buffered.
        var buffered = 0
        for await _ in slow { buffered += 1 }
        XCTAssertEqual(buffered, 4)
    }

    /// Many addresses at their per-address cap fill the table; a newcomer holding
    /// fewer streams takes the oldest stream of the address holding the most, and
    /// addresses as heavy as the heaviest cannot evict each other.
    func testAFullTableMakesRoomForAnAddressHoldingFewer() async {
        var subscribers = EventSubscribers()
        var streams: [String: [AsyncStream<[NodeEvent]>]] = [:]
        for attacker in ["x", "y"] {
            for _ in 0..<3 {
                let added = subscribers.add(from: attacker, maxSubscribers: 6, bufferBlocks: 4) { _ in }
                XCTAssertEqual(added.admission, .added)
                streams[attacker, default: []].append(added.stream!)
            }
        }
        XCTAssertEqual(subscribers.count, 6)
        XCTAssertEqual(subscribers.add(from: "x", maxSubscribers: 6, bufferBlocks: 4) { _ in }.admission, .full,
                       "an address as heavy as any other gets no room")
        let honest = subscribers.add(from: "honest", maxSubscribers: 6, bufferBlocks: 4) { _ in }
        XCTAssertNotNil(honest.stream)
        XCTAssertEqual(honest.admission, .addedByEvicting(address: "x"))
        XCTAssertEqual(subscribers.count, 6)
        // The evicted stream was x's oldest: it has ended.
        for await _ in streams["x"]![0] {}
        // Now x 2, y 3, honest 1. x would hold as many as y: no room for it. honest's
        // second stream takes y's oldest (2, 2, 2); a third would not fit (it would hold
        // more than the others).
        XCTAssertEqual(subscribers.add(from: "x", maxSubscribers: 6, bufferBlocks: 4) { _ in }.admission, .full)
        XCTAssertEqual(subscribers.add(from: "honest", maxSubscribers: 6, bufferBlocks: 4) { _ in }.admission,
                       .addedByEvicting(address: "y"))
        XCTAssertEqual(subscribers.add(from: "honest", maxSubscribers: 6, bufferBlocks: 4) { _ in }.admission, .full)
        let event = NodeEvent.block(height: 1, hash: Hash(bytes: [UInt8](repeating: 0, count: 32))!, transactionCount: 0)
        XCTAssertEqual(subscribers.publish([event]), 0)
        var iterator = honest.stream!.makeAsyncIterator()
        let first = await iterator.next()
        XCTAssertEqual(first, [event], "the honest stream is live")
    }

    /// The node's `/events`: a stream ended to make room is counted as displaced, and
    /// once closed (shutdown) every stream has ended and new ones are refused.
    func testSubscribeCountsADisplacedStreamAndCloseEndsAndRefuses() async {
        let displaced = "tally_event_subscribers_dropped_total{reason=\"displaced\"}"
        var subscribers = EventSubscribers()
        let before = StageMetricsTests.samples(Telemetry.prometheusText())
        let heavy = (0..<2).map { _ in subscribers.subscribe(from: "x", maxSubscribers: 3) { _ in } }
        let other = subscribers.subscribe(from: "y", maxSubscribers: 3) { _ in }
        XCTAssertTrue(heavy.allSatisfy { $0 != nil } && other != nil)
        let newcomer = subscribers.subscribe(from: "z", maxSubscribers: 3) { _ in }
        XCTAssertNotNil(newcomer, "x's oldest stream made room")
        let after = StageMetricsTests.samples(Telemetry.prometheusText())
        XCTAssertEqual(after[displaced, default: 0] - before[displaced, default: 0], 1)
        for await _ in heavy[0]! {}

        subscribers.close()
        XCTAssertTrue(subscribers.isClosed)
        XCTAssertEqual(subscribers.count, 0)
        for stream in [heavy[1], other, newcomer] { for await _ in stream! {} }
        XCTAssertNil(subscribers.subscribe(from: "w", maxSubscribers: 3) { _ in }, "closed: refused though there is room")
    }
}
