import TallyApplication
import TallyCrypto
import TallyLedger
import TallyTypes

/// The on-actor last step of admitting transactions whose signatures were checked off
/// the actor, against the state as it is now (it may have moved during the checks):
/// submissions (each rejection counted and answered with its reason) and gossip
/// (dropped and counted). A `PeerOutbound` may keep a transaction out of this node's
/// mempool; a submission it keeps out is still gossiped.
struct TransactionAdmission {
    let application: LedgerApplication
    let outbound: (any PeerOutbound)?
    let metrics: NodeMetrics

    /// Admits screened submissions: each to gossip goes into `gossip`; each the mempool
    /// took is tracked in `submissions` (submitted now, at `tick`) and counted
    /// (`tally_transactions_admitted_total`). Returns each one's answer and how many
    /// the mempool took.
    func admitSubmissions(
        _ transactions: [Transaction], _ screened: [Result<VerifiedTransaction, AdmissionError>],
        gossip: inout TransactionGossip, submissions: inout SubmissionTracker, tick: UInt64
    ) -> (results: [Result<Hash, SubmissionError>], admittedCount: Int) {
        let now = ContinuousClock.now
        var admittedCount = 0
        let results: [Result<Hash, SubmissionError>] = zip(transactions, screened).map { transaction, screen in
            let checked: VerifiedTransaction
            switch screen {
            case .failure(let reason):
                metrics.transactionRejected(reason.code)
                return .failure(.rejected(reason))
            case .success(let verified): checked = verified
            }
            if let outbound, !outbound.admits(transaction) {
                gossip.append(transaction)
                return .success(checked.transaction.hash)
            }
            // Checked again: the state may have moved while signatures were verified.
            switch application.admit(checked) {
            case .success(let hash):
                admittedCount += 1
                gossip.append(transaction)
                submissions.track(hash, at: now, tick: tick) { application.mempool.contains($0) || application.isInFlight($0) }
                return .success(hash)
            case .failure(let reason):
                metrics.transactionRejected(reason.code)
                return .failure(.rejected(reason))
            }
        }
        if admittedCount > 0 { metrics.transactionsAdmitted.increment(by: Int64(admittedCount)) }
        return (results, admittedCount)
    }

    /// Screens a round of gossip (`GossipScreen`: every check but the signature, before
    /// the costly signature checks), counting what it rejects.
    func screenGossip(_ transactions: [Transaction]) -> GossipScreen {
        let screen = GossipScreen(
            transactions, mempool: application.mempool,
            account: { application.ledger.account($0) ?? .empty }, isInFlight: { application.isInFlight($0) })
        for (code, count) in screen.rejected { metrics.messageDropped("gossip_\(code)", count: count) }
        return screen
    }

    /// Admits gossiped transactions whose signatures were checked (nil: a bad one);
    /// returns how many the mempool took. Gossip is not gossiped again.
    func admitGossip(_ transactions: [Transaction], _ verified: [VerifiedTransaction?]) -> Int {
        var admitted = 0
        for (transaction, checked) in zip(transactions, verified) {
            guard let checked else {
                metrics.messageDropped("gossip_bad_signature")
                continue
            }
            if let outbound, !outbound.admits(transaction) { continue }
            let account = application.ledger.account(transaction.senderAddress) ?? .empty
            if case .success = application.mempool.admit(checked, account: account) { admitted += 1 }
        }
        return admitted
    }
}
