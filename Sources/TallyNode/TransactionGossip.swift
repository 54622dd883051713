import TallyApplication
import TallyCrypto
import TallyNetwork
import TallyTypes

/// Transaction gossip to the other validators, best effort: admitted transactions wait
/// in a buffer until the next flush (on admission and on every tick), and every
/// `regossipIntervalTicks` the mempool heads (a sender's next transaction) that were
/// heads a round ago too go out again, since a lost transaction behind which a
/// sender's later ones wait would otherwise stall them for good.
struct TransactionGossip {
    /// Gossip messages waiting for their signature checks; beyond this, new ones are
    /// dropped (counted) and re-gossip heals the gap.
    static let maxGossipInboxMessages = 256
    /// Ticks between re-gossip rounds.
    static let regossipIntervalTicks: UInt64 = 30
    /// Most transactions re-gossiped per round.
    static let maxRegossipTransactions = 2_048

    private var buffer: [Transaction] = []
    /// Mempool heads seen at the last re-gossip round.
    private var lastRoundHeads: Set<Hash> = []

    mutating func append(_ transaction: Transaction) { buffer.append(transaction) }

    /// The buffered transactions in messages of at most `PeerMessage.maxGossipTransactions`; empties the buffer.
    mutating func takeBatches() -> [[Transaction]] {
        var batches: [[Transaction]] = []
        var start = 0
        while start < buffer.count {
            let end = min(start + PeerMessage.maxGossipTransactions, buffer.count)
            batches.append(Array(buffer[start..<end]))
            start = end
        }
        buffer.removeAll(keepingCapacity: true)
        return batches
    }

    /// A re-gossip round over this round's mempool `heads`: buffers (and returns) those
    /// that were heads at the last round too, and remembers these for the next.
    mutating func regossipStuck(_ heads: [Transaction]) -> [Transaction] {
        let stuck = heads.filter { lastRoundHeads.contains($0.hash) }
        lastRoundHeads = Set(heads.map(\.hash))
        buffer.append(contentsOf: stuck)
        return stuck
    }

    /// A re-gossip round over `application`'s mempool heads (at most
    /// `maxRegossipTransactions`): the stuck ones are buffered for the next flush and
    /// counted in `tally_transactions_regossiped_total`.
    mutating func regossipStuckHeads(of application: LedgerApplication, metrics: NodeMetrics) {
        let heads = application.mempool.heads(maxCount: Self.maxRegossipTransactions) {
            application.ledger.account($0)?.nonce ?? 0
        }
        let stuck = regossipStuck(heads)
        if !stuck.isEmpty { metrics.transactionsRegossiped.increment(by: Int64(stuck.count)) }
    }

    /// A round of gossip messages decoded: their transactions, the malformed ones and
    /// how many came from a peer that is not a validator (both dropped and counted).
    typealias Round = (transactions: [Transaction], malformed: [(peer: Int, error: any Error)], notFromValidators: Int)

    static func decode(_ messages: [InboundMessage]) -> Round {
        var transactions: [Transaction] = []
        var malformed: [(peer: Int, error: any Error)] = []
        var notFromValidators = 0
        for message in messages {
            guard let from = message.validatorIndex else {
                notFromValidators += 1
                continue
            }
            do { transactions += try PeerMessage.gossip(bytes: message.bytes) } catch { malformed.append((from, error)) }
        }
        return (transactions, malformed, notFromValidators)
    }
}
