import XCTest

@testable import TallyNode

/// When a validator snapshots its ledger: at checkpoint heights, every 1,024 blocks or
/// every 65,536 transactions, whichever comes first. (With blocks alone, a restart after
/// 1,023 full blocks would replay and re-verify four million transactions: the full
/// bench's restart took 6.9 s replaying 26 full blocks.)
final class SnapshotScheduleTests: XCTestCase {
    func due(_ height: UInt64, last: UInt64 = 0, transactions: Int = 0, checkpoint: UInt64 = 16) -> Bool {
        SnapshotSchedule.isSnapshotDue(
            height: height, lastSnapshotHeight: last, transactionsSinceSnapshot: transactions, checkpointIntervalBlocks: checkpoint)
    }

    func testEveryBlockIntervalAtCheckpoints() {
        XCTAssertFalse(due(1_008))
        XCTAssertTrue(due(1_024))
        XCTAssertFalse(due(1_025), "not a checkpoint height")
        XCTAssertFalse(due(2_032, last: 1_024))
        XCTAssertTrue(due(2_048, last: 1_024))
    }

    func testManyTransactionsBringItForward() {
        let enough = SnapshotSchedule.snapshotIntervalTransactions
        XCTAssertTrue(due(32, transactions: enough), "full blocks: due at the first checkpoint past 65,536 transactions")
        XCTAssertFalse(due(32, transactions: enough - 1))
        XCTAssertFalse(due(33, transactions: enough), "only at checkpoint heights")
        XCTAssertTrue(due(1_040, last: 1_024, transactions: enough))
    }

    func testACheckpointIntervalAboveTheBlockIntervalIsRespected() {
        XCTAssertFalse(due(1_024, checkpoint: 2_000))
        XCTAssertTrue(due(2_000, checkpoint: 2_000))
        XCTAssertTrue(due(2_000, transactions: SnapshotSchedule.snapshotIntervalTransactions, checkpoint: 2_000))
    }

    /// The transaction count runs across blocks until a snapshot is written; a failed
    /// snapshot (not written) keeps it, so the next checkpoint tries again.
    func testTransactionsCountUntilASnapshotIsWritten() {
        var schedule = SnapshotSchedule(checkpointIntervalBlocks: 16, lastSnapshotHeight: 0)
        let half = SnapshotSchedule.snapshotIntervalTransactions / 2
        XCTAssertFalse(schedule.executed(height: 15, transactionCount: half))
        XCTAssertFalse(schedule.executed(height: 16, transactionCount: half - 1), "one short of the interval")
        XCTAssertTrue(schedule.executed(height: 32, transactionCount: 1), "the count spans blocks")
        XCTAssertTrue(schedule.executed(height: 48, transactionCount: 0), "not written at 32: still due")
        schedule.snapshotWritten(at: 48)
        XCTAssertEqual(schedule.transactionsSinceSnapshot, 0)
        XCTAssertEqual(schedule.lastSnapshotHeight, 48)
        XCTAssertFalse(schedule.executed(height: 64, transactionCount: half), "counted from the snapshot on")
        XCTAssertTrue(schedule.executed(height: 48 + SnapshotSchedule.snapshotIntervalBlocks, transactionCount: 0))
    }
}
