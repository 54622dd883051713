import TallyCrypto
import TallyLedger
import TallyTypes

/// Which gossiped transactions are worth a signature check. Every admission check
/// that needs no signature (chain, fee, nonce window, balance, duplicate, room) runs
/// first, against the committed state: a peer (possibly Byzantine) relaying spam
/// must not buy signature work with it. Repeats within the round are dropped too
/// (every peer gossips the same transactions, and re-gossip repeats them).
public struct GossipScreen: Sendable {
    /// Need a signature check before admission.
    public private(set) var unchecked: [Transaction] = []
    /// Signature checked already, with a block in flight (gossip often arrives after
    /// the PRE-PREPARE that carries it).
    public private(set) var checked: [Transaction] = []
    /// Dropped before any signature check, by admission error code.
    public private(set) var rejected: [String: Int] = [:]

    public init(
        _ transactions: [Transaction], mempool: Mempool, account: (Address) -> Account, isInFlight: (Hash) -> Bool
    ) {
        var seen = Set<Hash>()
        for transaction in transactions {
            let hash = transaction.hash
            guard !mempool.contains(hash), seen.insert(hash).inserted else { continue }
            if isInFlight(hash) {
                checked.append(transaction)
            } else if let reason = mempool.check(transaction, account: account(transaction.senderAddress)) {
                rejected[reason.code, default: 0] += 1
            } else {
                unchecked.append(transaction)
            }
        }
    }
}

extension GossipScreen {
    /// The gossip path's order of work: `screen` first (every check but the
    /// signature), then `verify` for only the transactions it let through (not called
    /// when none). Returns what to admit, each with its signature verdict (nil = bad);
    /// those already checked (in flight) come last, as verified.
    public static func verifyScreened(
        _ transactions: [Transaction], screen: ([Transaction]) async -> GossipScreen,
        verify: ([Transaction]) async -> [VerifiedTransaction?]
    ) async -> [(transaction: Transaction, verified: VerifiedTransaction?)] {
        let screened = await screen(transactions)
        let verdicts = screened.unchecked.isEmpty ? [] : await verify(screened.unchecked)
        precondition(verdicts.count == screened.unchecked.count, "one verdict per screened transaction")
        return zip(screened.unchecked, verdicts).map { ($0, $1) }
            + screened.checked.map { ($0, VerifiedTransaction(signatureAlreadyVerified: $0)) }
    }
}
