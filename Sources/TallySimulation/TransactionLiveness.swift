import TallyCrypto
import TallyTypes

/// Liveness judged by transactions: when each client transaction was submitted and
/// when it had committed on every honest replica. Heights alone cannot see a
/// censoring primary (it commits other transactions, or empty blocks).
struct TransactionLog {
    /// Submission order; every pool transaction is valid, so each must commit.
    var submissions: [(transaction: Transaction, tick: Int)] = []
    /// Submissions before this index committed everywhere.
    var settledCount = 0
    var honestCommits: [Hash: Int] = [:]
    var committedEverywhereAtTick: [Hash: Int] = [:]

    mutating func submitted(_ transaction: Transaction, atTick tick: Int) { submissions.append((transaction, tick)) }

    mutating func committed(_ transactions: [Transaction], honestCount: Int, atTick tick: Int) {
        for transaction in transactions {
            let hash = transaction.hash
            let count = honestCommits[hash, default: 0] + 1
            honestCommits[hash] = count
            if count == honestCount { committedEverywhereAtTick[hash] = tick }
        }
    }
}

extension Simulation {
    /// The first transaction not yet committed everywhere must still be inside its
    /// bound: submitted (or, if earlier, healed) less than the bound ago.
    func checkTransactionLiveness() {
        while transactionLog.settledCount < transactionLog.submissions.count {
            let (transaction, submittedAt) = transactionLog.submissions[transactionLog.settledCount]
            let hash = transaction.hash
            if transactionLog.committedEverywhereAtTick[hash] != nil {
                transactionLog.settledCount += 1
                continue
            }
            let deadline = max(submittedAt, plan.healTick) + options.transactionLivenessBoundTicks
            if tick > deadline {
                let missing = honestNodes.filter { !$0.transactionHashes.contains(hash) }.map(\.validator)
                fail("transaction liveness: transaction \(hash.hex.prefix(12)) submitted at tick \(submittedAt) not committed on validators \(missing) within \(options.transactionLivenessBoundTicks) ticks of healing")
            }
            return
        }
    }

    /// Clients send again, once, when the faults heal, every transaction not yet
    /// committed everywhere (a wallet retries; mempools do not survive a crash, so
    /// every honest replica that held one may have lost it).
    func resubmitUncommittedTransactions() {
        let log = transactionLog
        for (transaction, _) in log.submissions[log.settledCount...]
        where log.committedEverywhereAtTick[transaction.hash] == nil {
            for node in nodes { pendingTransactions[tick + 1, default: []].append((node.slot, transaction)) }
        }
    }

    /// Every transaction submitted up to the watch's end committed everywhere.
    var transactionsSettled: Bool {
        let watchEnd = plan.healTick + options.transactionWatchTicks
        guard tick > watchEnd else { return false }
        let log = transactionLog
        return log.settledCount == log.submissions.count || log.submissions[log.settledCount].tick > watchEnd
    }

    func checkMeanTransactionLatency() {
        guard let bound = options.maxMeanTransactionLatencyTicks else { return }
        let watchEnd = plan.healTick + options.transactionWatchTicks
        let watched = transactionLog.submissions.filter { $0.tick >= plan.healTick && $0.tick <= watchEnd }
        let latencies = watched.compactMap { entry in
            transactionLog.committedEverywhereAtTick[entry.transaction.hash].map { $0 - entry.tick }
        }
        guard !latencies.isEmpty else { return }
        let mean = latencies.reduce(0, +) / latencies.count
        if mean > bound {
            fail("transaction latency: mean \(mean) ticks over the \(latencies.count) transactions submitted after healing, above \(bound)")
        }
    }
}
