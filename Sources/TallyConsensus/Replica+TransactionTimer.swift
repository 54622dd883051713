import TallyTypes

/// Why a backup gave up on a primary that was still committing blocks.
public enum BackupSuspicion: String, CaseIterable, Sendable, Comparable {
    /// A proposable transaction waited longer than the transaction timeout (PBFT's
    /// per-request timer): the primary leaves it out, or proposes empty blocks.
    case censorship
    /// Transactions wait far longer than the view's blocks take to commit once
    /// proposed: the primary proposes late (Aardvark's slow primary).
    case slowPrimary = "slow_primary"

    public static func < (lhs: BackupSuspicion, rhs: BackupSuspicion) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// The backup's clock for transactions (docs/CONSENSUS.md, "Censorship and slow
/// primaries"). Volatile, like PBFT's timers: a restart starts it afresh.
struct TransactionTimer {
    /// (application `proposableSequence`, tick) whenever the sequence moved, oldest
    /// first; the first entry is the newest one older than the window, so any
    /// transaction older than the window still reads as older than every timeout.
    var sequenceTicks: [(sequence: UInt64, tick: UInt64)] = []
    /// Waits count from this tick at the earliest: the start of the view, the last
    /// full block committed (the primary was at capacity), the last tick the replica
    /// was syncing or executing.
    var countFromTick: UInt64 = 0
    /// The oldest proposable transaction at the last look, to time its wait when a
    /// commit takes it.
    var watchedSequence: UInt64?
    /// In the current view, the latest proposal delays (from a transaction becoming
    /// proposable to the acceptance of the block that committed it), and the latest
    /// ticks from accepting a proposal to committing it.
    var proposalDelays: [UInt64] = []
    var commitTimes: [UInt64] = []
}

extension Replica {
    /// A proposable transaction may wait this long (twice the view-change timeout: a
    /// transaction reaches the primary by gossip, which the node repeats every
    /// `regossipIntervalTicks`, 30 against a default timeout of 40, and then needs a
    /// commit).
    var transactionTimeoutTicks: UInt64 { ConsensusLimits.transactionTimeoutFactor * timeoutTicks }

    /// Ticks of sequence samples kept: the longest transaction timeout.
    var sequenceWindowTicks: UInt64 {
        ConsensusLimits.transactionTimeoutFactor * configuration.parameters.maxViewChangeTimeoutTicks
    }

    /// Records where the application's sequence stands at this tick. A replica that is
    /// not current (it syncs, or has blocks to execute) counts no wait: the
    /// transactions it holds may be committed in blocks it has not seen.
    mutating func sampleProposableSequence() {
        if sync != nil || executedHeight < committedHeight { transactionTimer.countFromTick = tickCount }
        let sequence = application.proposableSequence
        if transactionTimer.sequenceTicks.last?.sequence != sequence {
            transactionTimer.sequenceTicks.append((sequence, tickCount))
        }
        var drop = 0
        let samples = transactionTimer.sequenceTicks
        while samples.count - drop >= 2, samples[drop + 1].tick + sequenceWindowTicks <= tickCount { drop += 1 }
        if drop > 0 { transactionTimer.sequenceTicks.removeFirst(drop) }
    }

    /// The first tick at which the application's sequence had reached `sequence` (the
    /// transaction became proposable then or a little before; now if not sampled yet).
    func tickReached(_ sequence: UInt64) -> UInt64 {
        let samples = transactionTimer.sequenceTicks
        var low = 0
        var high = samples.count
        while low < high {
            let middle = (low + high) / 2
            if samples[middle].sequence >= sequence { high = middle } else { low = middle + 1 }
        }
        return low < samples.count ? samples[low].tick : tickCount
    }

    /// How long the transaction that became proposable at `sequence` has waited, in
    /// ticks that count (from `countFromTick`).
    func waitTicks(since sequence: UInt64) -> UInt64 {
        tickCount - min(tickCount, max(tickReached(sequence), transactionTimer.countFromTick))
    }

    /// A new view: its primary gets a fresh timeout and is judged on its own samples.
    mutating func restartTransactionTimer() {
        transactionTimer.countFromTick = tickCount
        transactionTimer.proposalDelays = []
        transactionTimer.commitTimes = []
    }

    /// A committed block: a full one shows the primary at capacity (transactions
    /// waiting behind it are not held back, so waits count afresh); one this replica
    /// accepted in this view times the network's commit.
    mutating func noteCommitForTransactionTimer(_ block: Block, acceptedAtTick: UInt64?) {
        if block.transactions.count >= Int(configuration.parameters.maxBlockTransactions) {
            transactionTimer.countFromTick = tickCount
        }
        if let acceptedAtTick, !isPrimary, !inViewChange {
            Replica.keepLatest(&transactionTimer.commitTimes, tickCount - min(tickCount, acceptedAtTick))
        }
    }

    /// After the block at `height` executed (the application's mempool moved): when
    /// the oldest proposable transaction is no longer the one watched, that block took
    /// it, and the ticks from its becoming proposable to the block's acceptance are
    /// the primary's proposal delay.
    mutating func sampleProposalDelay(height: UInt64) {
        let oldest = application.oldestProposableSequence
        defer { transactionTimer.watchedSequence = oldest }
        guard let watched = transactionTimer.watchedSequence, oldest != watched, !isPrimary, !inViewChange,
              let acceptedAtTick = slots[height]?.acceptedAtTick
        else { return }
        let since = max(tickReached(watched), transactionTimer.countFromTick)
        Replica.keepLatest(&transactionTimer.proposalDelays, acceptedAtTick - min(acceptedAtTick, since))
    }

    static func keepLatest(_ samples: inout [UInt64], _ sample: UInt64) {
        samples.append(sample)
        if samples.count > ConsensusLimits.slowPrimarySamples { samples.removeFirst(samples.count - ConsensusLimits.slowPrimarySamples) }
    }

    /// Checked by a backup each tick of an active view: whether the primary holds
    /// transactions back (censorship) or proposes late (slow primary). Only while the
    /// replica's own view of the chain is current: not while it syncs or executes.
    mutating func suspectPrimary() -> BackupSuspicion? {
        let oldest = application.oldestProposableSequence
        transactionTimer.watchedSequence = oldest
        // Both are view-change timers: switching those off switches these off too.
        guard defences.viewChangeTimer, !isPrimary, sync == nil, executedHeight == committedHeight else { return nil }
        if defences.censorshipTimer, let oldest, waitTicks(since: oldest) >= transactionTimeoutTicks { return .censorship }
        if defences.slowPrimaryCheck, primaryIsSlow { return .slowPrimary }
        return nil
    }

    /// Aardvark's test, made relative to this view's own network: the median proposal
    /// delay of the latest transactions against the median time the latest blocks took
    /// from acceptance to commit (the backups' votes, which the primary cannot hold
    /// back when the other backups form a quorum). An honest primary proposes a
    /// transaction within a message delay of its arrival, or after the next commit
    /// when its pipeline is full, so its delay stays within a commit time plus a
    /// message delay; a primary that holds its proposals adds its pause to each.
    /// The transaction's trip to the primary is gossip, which no commit time measures
    /// (it is batched and waits behind the node's fsyncs: on a CPU-starved machine it
    /// took several times a commit), so the bound allows it a share of the view-change
    /// timeout on top.
    var primaryIsSlow: Bool {
        let delays = transactionTimer.proposalDelays
        let commitTimes = transactionTimer.commitTimes
        guard delays.count >= ConsensusLimits.slowPrimarySamples, commitTimes.count >= ConsensusLimits.slowPrimarySamples else {
            return false
        }
        let delay = Replica.median(delays)
        let commitTime = max(Replica.median(commitTimes), 1)
        return delay > slowPrimaryBoundTicks(commitTime: commitTime)
    }

    /// The longest median proposal delay an honest primary is allowed: twice the
    /// view's commit time plus the gossip allowance. Also what a slow primary can add
    /// to each transaction before it is replaced.
    func slowPrimaryBoundTicks(commitTime: UInt64) -> UInt64 {
        ConsensusLimits.slowPrimaryFactor * commitTime + timeoutTicks / ConsensusLimits.gossipAllowanceDivisor
    }

    static func median(_ samples: [UInt64]) -> UInt64 { samples.sorted()[samples.count / 2] }
}

extension ConsensusLimits {
    /// The transaction timeout is this many view-change timeouts.
    public static let transactionTimeoutFactor: UInt64 = 2
    /// Latest samples of proposal delays and of commit times the slow-primary check
    /// takes the median of; a view is judged only once it has this many of each, so
    /// a wrong suspicion costs at most one view change per this many commits.
    public static let slowPrimarySamples = 5
    /// A primary is slow when its median proposal delay exceeds this many times the
    /// view's median commit time.
    public static let slowPrimaryFactor: UInt64 = 2
    /// The slow-primary bound adds the view-change timeout divided by this (250 ms at
    /// the default 2 s) for the transaction's gossip to the primary.
    public static let gossipAllowanceDivisor: UInt64 = 8
}
