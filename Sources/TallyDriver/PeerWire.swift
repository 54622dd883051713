import TallyConsensus
import TallyTypes

/// The consensus lane of the peer wire, shared by the node (which frames these bytes)
/// and the simulator (which measures them against the transport's frame bound, so
/// a message too large for a socket is too large there too):
/// `kind: u8 = 1 | ConsensusMessage canonical bytes`.
public enum ConsensusWire {
    /// The peer-message kind of a consensus message (transaction gossip is 2).
    public static let kind: UInt8 = 1

    /// What the node hands its transport for `message`.
    public static func bytes(_ message: ConsensusMessage) -> [UInt8] {
        var encoder = CanonicalEncoder()
        encoder.u8(kind)
        message.encode(to: &encoder)
        return encoder.bytes
    }
}
