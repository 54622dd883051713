@_spi(Testing) import TallyNetwork
import TallyConsensus
import TallyCrypto
import TallyTypes

/// Testing SPI: lets a test executable (`tally-byzantine`) rewrite what a validator
/// sends, to run a Byzantine validator over the real network. A `Node` made without
/// one (every release product) never builds an `OutboundLink` and sends as before.
///
/// Called on the node's actor, one call at a time, after the replica's state for the
/// step is durable (so a Byzantine node still persists before it sends).
@_spi(Testing) public protocol OutboundInterceptor: AnyObject, Sendable {
    /// Replaces sending the consensus `message` to `targets` (every other validator
    /// for a broadcast): the interceptor sends whatever it wants through `link`, and
    /// nothing at all if it sends nothing.
    func intercept(_ message: ConsensusMessage, to targets: [ValidatorIndex], link: OutboundLink)
    /// After every tick: a chance to inject messages of its own.
    func tick(link: OutboundLink)
    /// False: this node gossips no transactions.
    var gossips: Bool { get }
    /// False: the node keeps `transaction` out of its own mempool (a censor), though it
    /// still gossips a client's submission on.
    func admits(_ transaction: Transaction) -> Bool
}

@_spi(Testing) extension OutboundInterceptor {
    public func admits(_ transaction: Transaction) -> Bool { true }
}

/// What an interceptor sees of its node and how it sends (testing SPI).
@_spi(Testing) public struct OutboundLink {
    public let selfIndex: ValidatorIndex
    public let genesis: Genesis
    public let view: UInt64
    public let isPrimary: Bool
    public let inViewChange: Bool
    public let stableCheckpoint: CheckpointProof
    /// The executed tip (height, hash, timestamp, state root).
    package let tip: Forgery.Tip
    let network: PeerNetwork

    /// Every other validator.
    public var others: [ValidatorIndex] {
        (0..<ValidatorIndex(genesis.validators.count)).filter { $0 != selfIndex }
    }

    public func send(_ message: ConsensusMessage, to targets: [ValidatorIndex]) {
        let bytes = PeerMessage.consensus(message).bytes
        for target in targets { network.send(to: Int(target), bytes) }
    }

    /// Transaction gossip, as the node sends it (whatever the transactions' validity).
    public func sendGossip(_ transactions: [Transaction], to target: ValidatorIndex) {
        network.send(to: Int(target), PeerMessage.transactions(transactions).bytes)
    }

    /// Raw bytes as the payload of an authenticated frame (no peer-message encoding).
    @discardableResult
    public func sendBytes(_ bytes: [UInt8], to target: ValidatorIndex) -> SendOutcome {
        network.send(to: Int(target), bytes)
    }

    /// Raw bytes without the outbound size check: the peer must refuse the frame.
    @discardableResult
    public func sendOversizeBytes(_ bytes: [UInt8], to target: ValidatorIndex) -> SendOutcome {
        network.sendIgnoringSizeLimit(to: Int(target), bytes)
    }

    /// A consensus message in the peer-message envelope, as `send` puts it on the wire.
    public static func peerMessageBytes(_ message: ConsensusMessage) -> [UInt8] {
        PeerMessage.consensus(message).bytes
    }
}
