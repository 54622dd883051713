/// When the node snapshots its ledger: at checkpoint heights, every
/// `snapshotIntervalBlocks` or `snapshotIntervalTransactions`, whichever comes first,
/// so a restart replays (and re-verifies) a bounded number of blocks and transactions.
struct SnapshotSchedule {
    /// A snapshot at most every this many heights (rounded to checkpoints).
    static let snapshotIntervalBlocks: UInt64 = 1_024
    /// … or once this many transactions were executed since the last one: a restart
    /// replays (and re-verifies) what came after it, and 1,024 full blocks would be
    /// four million transactions.
    static let snapshotIntervalTransactions = 65_536

    let checkpointIntervalBlocks: UInt64
    private(set) var lastSnapshotHeight: UInt64
    /// Transactions executed since the last snapshot (or since start).
    private(set) var transactionsSinceSnapshot = 0

    init(checkpointIntervalBlocks: UInt64, lastSnapshotHeight: UInt64) {
        self.checkpointIntervalBlocks = checkpointIntervalBlocks
        self.lastSnapshotHeight = lastSnapshotHeight
    }

    /// Whether a snapshot is due after executing `height`.
    static func isSnapshotDue(
        height: UInt64, lastSnapshotHeight: UInt64, transactionsSinceSnapshot: Int, checkpointIntervalBlocks: UInt64
    ) -> Bool {
        let interval = max(checkpointIntervalBlocks, snapshotIntervalBlocks)
        return height % checkpointIntervalBlocks == 0
            && (height >= lastSnapshotHeight + interval || transactionsSinceSnapshot >= snapshotIntervalTransactions)
    }

    /// Counts a block just executed; whether a snapshot is due after it.
    mutating func executed(height: UInt64, transactionCount: Int) -> Bool {
        transactionsSinceSnapshot += transactionCount
        return Self.isSnapshotDue(
            height: height, lastSnapshotHeight: lastSnapshotHeight, transactionsSinceSnapshot: transactionsSinceSnapshot,
            checkpointIntervalBlocks: checkpointIntervalBlocks)
    }

    /// A snapshot of `height` is on disk. (One that failed is not: the count goes on,
    /// and the next checkpoint tries again.)
    mutating func snapshotWritten(at height: UInt64) {
        lastSnapshotHeight = height
        transactionsSinceSnapshot = 0
    }
}
