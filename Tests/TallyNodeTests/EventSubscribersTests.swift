import TallyCrypto
import XCTest

@testable import TallyNode

final class EventSubscribersTests: XCTestCase {
    func testSlowSubscriberIsDroppedWhenItsBufferOverflowsOthersKeepUp() async {
        var subscribers = EventSubscribers()
        let slow = subscribers.add(bufferBlocks: 4) { _ in }
        let fast = subscribers.add(bufferBlocks: 4) { _ in }
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
}
