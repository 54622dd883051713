import Dispatch
import Metrics
import MetricsTestKit
import Synchronization
import XCTest

@testable import TallyNode

/// Issue 14: a node answers peers' block-sync requests off the consensus actor, at
/// most `SyncServer.maxConcurrentSyncReads` at once (`ConcurrencySlots.startDetached`); a
/// request beyond that is refused (counted as `sync_reads_busy` by the node), never
/// queued, so a peer asking faster than the disk reads cannot grow a backlog.
final class SyncReadSlotsTests: XCTestCase {
    /// Synchronous on purpose: the blocked reads hold threads of the cooperative pool,
    /// which the test itself must not need.
    func testAReadBeyondTheCapIsRefusedAndNeverRuns() {
        let slots = ConcurrencySlots(SyncServer.maxConcurrentSyncReads)
        let unblock = DispatchSemaphore(value: 0)
        let finished = DispatchGroup()
        let ran = Mutex(0)
        for _ in 0..<SyncServer.maxConcurrentSyncReads {
            finished.enter()
            XCTAssertTrue(slots.startDetached {
                unblock.wait()
                ran.withLock { $0 += 1 }
                finished.leave()
            })
        }
        let refused = (0..<100).filter { _ in !slots.startDetached { ran.withLock { $0 += 1_000 } } }.count
        XCTAssertEqual(refused, 100, "every read beyond the \(SyncServer.maxConcurrentSyncReads) in progress is refused")
        for _ in 0..<SyncServer.maxConcurrentSyncReads { unblock.signal() }
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
        // A slot freed (just after its read ends) is a slot taken again.
        let again = DispatchSemaphore(value: 0)
        let deadline = Date().addingTimeInterval(10)
        var restarted = false
        while !restarted && Date() < deadline {
            restarted = slots.startDetached { again.signal() }
            if !restarted { usleep(1_000) }
        }
        XCTAssertTrue(restarted)
        XCTAssertEqual(again.wait(timeout: .now() + 10), .success)
        // The refused reads never ran, not even later.
        XCTAssertEqual(ran.withLock { $0 }, SyncServer.maxConcurrentSyncReads)
    }

    /// The node's refusal is counted: `tally_messages_dropped_total{reason="sync_reads_busy"}`
    /// moves once per refused read, and not for a read that started.
    func testARefusedSyncReadIsCountedAsSyncReadsBusy() throws {
        let slots = ConcurrencySlots(1)
        let unblock = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let testMetrics = TestMetrics()
        let refused = withMetricsFactory(testMetrics) { () -> Int in
            let metrics = NodeMetrics()
            XCTAssertTrue(SyncServer.startSyncRead(in: slots, metrics: metrics) {
                unblock.wait()
                finished.signal()
            })
            return (0..<3).filter { _ in !SyncServer.startSyncRead(in: slots, metrics: metrics) {} }.count
        }
        unblock.signal()
        XCTAssertEqual(finished.wait(timeout: .now() + 10), .success)
        XCTAssertEqual(refused, 3)
        let busy = try testMetrics.expectCounter("tally_messages_dropped_total", [("reason", "sync_reads_busy")])
        XCTAssertEqual(busy.totalValue, 3)
    }
}
