import TallyConsensus
import TallyCrypto
import TallyDriver
import TallyTypes

/// The node's I/O for its replica driver: the consensus journal, the block store
/// and ledger (`BlockCommitter`), the peer network (`PeerSendPath`). The driver runs
/// on the node's actor, so each call is on its executor already.
final class NodeReplicaIO: DurableStateSink, CertifiedBlockSink, ReplicaTransport {
    /// Set once the node is built (it owns this object and its driver).
    weak var node: Node?

    private var isolatedNode: Node {
        guard let node else { preconditionFailure("the node's driver outlived its node") }
        return node
    }

    func write(_ state: DurableState) throws { try isolatedNode.assumeIsolated { try $0.journal.persist(state) } }

    func commit(_ block: CertifiedBlock) throws -> Hash {
        try isolatedNode.assumeIsolated { try $0.commit(block) }
    }

    func send(_ message: ConsensusMessage, to peer: ValidatorIndex) {
        isolatedNode.assumeIsolated { $0.sendPath.send(message, to: peer) }
    }

    func broadcast(_ message: ConsensusMessage) { isolatedNode.assumeIsolated { $0.sendPath.broadcast(message) } }

    func sendBlocks(heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
        isolatedNode.assumeIsolated { $0.sendPath.sendBlocks(heights, to: peer) }
    }
}
