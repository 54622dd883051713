import TallyApplication
import TallyCrypto
import TallyLedger
import TallyNetwork
import TallyTypes

/// Transaction signatures checked off the node's actor, on all cores, a bounded
/// number of batches at once: one gate for submissions and gossip alike, so neither
/// can take every core from the other (and from the HTTP API and the network reader).
struct TransactionSignatureChecks: Sendable {
    /// Submission or gossip batches whose signatures are verified at once; the others wait.
    static let maxConcurrentSignatureBatches = 2

    let genesisHash: Hash
    /// The application's checker too, so admission and block checks agree with these.
    let checker: any TransactionSignatureChecker
    private let gate = SignatureGate(permits: TransactionSignatureChecks.maxConcurrentSignatureBatches)

    init(genesisHash: Hash, checker: any TransactionSignatureChecker) {
        self.genesisHash = genesisHash
        self.checker = checker
    }

    /// Each transaction verified (nil: a bad signature), in order, once the gate lets the batch in.
    func verify(_ transactions: [Transaction]) async -> [VerifiedTransaction?] {
        await gate.verify(transactions, genesisHash: genesisHash, using: checker)
    }
}

/// The intake of a round of transaction gossip (every gossip message that arrived
/// while the last round ran): decoded off the actor; screened on the actor, after
/// counting the messages it drops, to the transactions this node does not have and
/// that pass every check but the signature (`GossipScreen`), before the costly
/// signature checks; their signatures checked off the actor like any submission
/// (once, through the same bounded gate); then admitted on the actor against the state
/// as it is then. Gossip is not gossiped again.
enum GossipIntake {
    /// `screen` and `admit` are the node's steps on its actor; `admit` is not called
    /// when nothing is left to admit.
    static func receive(
        _ messages: [InboundMessage], signatures: TransactionSignatureChecks,
        screen: (TransactionGossip.Round) async -> GossipScreen,
        admit: (_ transactions: [Transaction], _ verified: [VerifiedTransaction?]) async -> Void
    ) async {
        let round = TransactionGossip.decode(messages)
        let admissible = await GossipScreen.verifyScreened(
            round.transactions, screen: { _ in await screen(round) }, verify: { await signatures.verify($0) })
        guard !admissible.isEmpty else { return }
        await admit(admissible.map(\.transaction), admissible.map(\.verified))
    }
}
