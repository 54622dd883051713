import NIOCore
import NIOPosix
import TallyCrypto
import TallyLogTesting
import XCTest

@testable import TallyNetwork

/// One validator key in two processes (issue 14), and the restart it must not be confused with.
final class DuplicateKeyTests: XCTestCase {
    /// Two networks with validator 1's key both dial node 0 and keep redialing. The first
    /// conflict may replace the established connection (it looks like a restart); from
    /// then on the established one stays, every further attempt is refused as a twin
    /// (counted, logged as an error at a bounded rate with both endpoints), and the
    /// refused twin backs off instead of redialing at the initial delay.
    func testTwoProcessesWithOneKeyAreReportedAndTheEstablishedConnectionStays() async throws {
        var limits = testLimits()
        limits.logLinesPerInterval = 3
        let keys = (0..<2).map(validatorKey)
        let capture = LogCapture()
        let logger = capture.logger(level: .info)
        let node = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [], logger: logger)
        let toNode = [0: PeerAddress(host: "127.0.0.1", port: node.listenPort)]
        let first = try await Cluster.start(index: 1, keys: keys, port: 0, addresses: toNode, limits: limits, extra: [])
        let firstInbox = Inbox(first)
        await eventually("the first process connects") { node.connectedValidators == [1] && first.connectedValidators == [0] }
        let second = try await Cluster.start(index: 1, keys: keys, port: 0, addresses: toNode, limits: limits, extra: [])
        let secondInbox = Inbox(second)
        await eventually("the twin is detected") { node.statistics.closed(.keyInUseTwice) >= 1 }

        let holder = node.activeRemoteAddress(validator: 1)
        XCTAssertNotNil(holder)
        let before = node.statistics
        try await Task.sleep(for: .milliseconds(1_500))
        let after = node.statistics
        XCTAssertEqual(node.activeRemoteAddress(validator: 1), holder, "the established connection stays up")
        XCTAssertEqual(after.connectionsEstablished, before.connectionsEstablished, "no more swaps")
        XCTAssertLessThanOrEqual(after.connectionsEstablished, 2, "at most the first connection and one replacement")
        let refused = after.closed(.keyInUseTwice) - before.closed(.keyInUseTwice)
        XCTAssertGreaterThan(refused, 0, "the other process keeps trying")
        XCTAssertLessThan(refused, 30, "and backs off (\(refused) attempts in 1.5 s)")

        let twinLines = capture.lines.filter { $0.message.hasPrefix("validator key in use twice") }
        XCTAssertGreaterThan(after.closed(.keyInUseTwice), limits.logLinesPerInterval)
        XCTAssertEqual(twinLines.count, limits.logLinesPerInterval, "bounded")
        XCTAssertEqual(twinLines.first?.level, .error)
        let established = try XCTUnwrap(twinLines.first?.metadata["established"]).description
        let other = try XCTUnwrap(twinLines.first?.metadata["refused"]).description
        XCTAssertNotEqual(established, other, "both endpoints are named")
        XCTAssertEqual(twinLines.first?.metadata["validator"], "1")

        // Node 0 talks to exactly one of them, over the connection it kept.
        node.send(to: 1, [7])
        await eventually("delivered to the holder") { firstInbox.all.count + secondInbox.all.count == 1 }
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertEqual(firstInbox.all.count + secondInbox.all.count, 1)
        await first.shutdown()
        await second.shutdown()
        await node.shutdown()
    }

    /// Validator 1 restarts while node 0 still holds its old connection (half-open: node 0
    /// has not noticed it is dead). The restarted validator's connection replaces it at
    /// once, and no twin is reported.
    func testRestartedPeerReplacesItsHalfOpenOldConnection() async throws {
        let limits = testLimits()
        let keys = (0..<2).map(validatorKey)
        let node = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [])
        try await RawPeer.connect(port: node.listenPort).run { session in
            // The old incarnation: authenticated, then silent, its TCP connection left open.
            _ = try await session.handshake(identity: keys[1], expected: keys[0].publicKey)
            await eventually("old incarnation connected") { node.connectedValidators == [1] }
            let old = try XCTUnwrap(node.activeRemoteAddress(validator: 1))

            let restarted = try await Cluster.start(
                index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: node.listenPort)],
                limits: limits, extra: [])
            let inbox = Inbox(restarted)
            await eventually("the restarted validator connects", within: 3) {
                restarted.connectedValidators == [0] && node.activeRemoteAddress(validator: 1).map { $0 != old } == true
            }
            node.send(to: 1, [5])
            await eventually("and is served") { inbox.payloads(from: 0) == [[5]] }
            XCTAssertEqual(node.statistics.closed(.keyInUseTwice), 0)
            await session.expectClosed()  // the half-open connection is retired
            await restarted.shutdown()
        }
        await node.shutdown()
    }
}
