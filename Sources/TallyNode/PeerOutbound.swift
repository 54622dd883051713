import TallyConsensus
import TallyCrypto
import TallyNetwork
import TallyTypes

/// The node's outbound traffic, as its builder wires it (`Node.init(outbound:)`): the
/// node hands every consensus message and block-sync response it sends to its
/// `PeerOutbound`, only after its state for the step is durable (persist before send
/// holds whatever the wrapper does), every transaction-gossip batch, and one call
/// after every tick. A node built without one (what `tally-node` builds) puts each on
/// the peer network as it is. Whatever a wrapper sends goes through the same network
/// and its bounds. No shipped product has a wrapper: the test-only `tally-byzantine`
/// is built with one, and its misbehaviours live in that executable.
///
/// Called on the node's actor, one call at a time.
public protocol PeerOutbound: AnyObject, Sendable {
    /// Sends (or not) the consensus `message` meant for `targets` (every other
    /// validator for a broadcast).
    func send(_ message: ConsensusMessage, to targets: [ValidatorIndex], link: OutboundLink)
    /// Sends (or not) a batch of transaction gossip meant for every other validator.
    func gossip(_ transactions: [Transaction], link: OutboundLink)
    /// After every tick.
    func tick(link: OutboundLink)
    /// The node's own admission policy: false keeps `transaction` out of this node's
    /// mempool; a client's submission is still gossiped on.
    func admits(_ transaction: Transaction) -> Bool
}

extension PeerOutbound {
    public func gossip(_ transactions: [Transaction], link: OutboundLink) {
        link.network.broadcast(PeerMessage.transactions(transactions).bytes)
    }

    public func tick(link: OutboundLink) {}

    public func admits(_ transaction: Transaction) -> Bool { true }
}

/// What a `PeerOutbound` sees of its node, and the network it sends on.
public struct OutboundLink {
    public let selfIndex: ValidatorIndex
    public let genesis: Genesis
    public let view: UInt64
    public let isPrimary: Bool
    public let inViewChange: Bool
    public let stableCheckpoint: CheckpointProof
    /// The executed tip: height, block hash (the genesis hash at 0), timestamp (the
    /// genesis time at 0) and the state root after it.
    public let tipHeight: UInt64
    public let tipHash: Hash
    public let tipTimestampMs: UInt64
    public let tipStateRoot: Hash
    /// The node's peer network; raw `send(to:_:)` puts bytes in an authenticated frame.
    public let network: PeerNetwork

    /// Every other validator.
    public var others: [ValidatorIndex] {
        (0..<ValidatorIndex(genesis.validators.count)).filter { $0 != selfIndex }
    }

    /// A consensus message in the peer-message envelope, as the node sends it.
    public func send(_ message: ConsensusMessage, to targets: [ValidatorIndex]) {
        let bytes = PeerMessage.consensus(message).bytes
        for target in targets { network.send(to: Int(target), bytes) }
    }

    /// Transaction gossip, as the node sends it (whatever the transactions' validity).
    public func sendGossip(_ transactions: [Transaction], to target: ValidatorIndex) {
        network.send(to: Int(target), PeerMessage.transactions(transactions).bytes)
    }

    /// A consensus message in the peer-message envelope, as `send` puts it on the wire.
    public static func peerMessageBytes(_ message: ConsensusMessage) -> [UInt8] {
        PeerMessage.consensus(message).bytes
    }
}
