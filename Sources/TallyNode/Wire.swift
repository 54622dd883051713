import TallyConsensus
import TallyDriver
import TallyTypes

/// What validators send each other inside an authenticated peer frame:
/// ```
/// kind: u8 | payload
///   1: a consensus message (ConsensusMessage canonical bytes)
///   2: transaction gossip: count: u32 | transactions…
/// ```
enum PeerMessage: Equatable {
    case consensus(ConsensusMessage)
    case transactions([Transaction])

    /// Gossip batches stay small next to a block.
    static let maxGossipTransactions = 4096

    /// Whether `bytes` claim to be transaction gossip (kind 2), without decoding.
    static func isGossip(_ bytes: [UInt8]) -> Bool { bytes.first == 2 }

    /// `.consensus(.syncResponse(blocks))` from the blocks' stored canonical bytes,
    /// without decoding them: the same bytes as encoding the decoded blocks.
    static func syncResponse(storedBlocks payloads: [[UInt8]]) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: payloads.reduce(64) { $0 + $1.count })
        encoder.u8(ConsensusWire.kind)
        encoder.tag(.consensusMessage)
        encoder.u8(ConsensusMessage.syncResponseKind)
        encoder.count(payloads.count)
        for payload in payloads { encoder.fixed(payload) }
        return encoder.bytes
    }

    var bytes: [UInt8] {
        var encoder = CanonicalEncoder()
        switch self {
        case .consensus(let message):
            return ConsensusWire.bytes(message)
        case .transactions(let transactions):
            encoder.u8(2)
            encoder.count(transactions.count)
            for transaction in transactions { transaction.encode(to: &encoder) }
        }
        return encoder.bytes
    }

    /// Decodes a consensus message (kind 1). The node's reader routes on the kind
    /// byte (`isGossip`), so each lane decodes only its own kind.
    static func consensus(bytes: [UInt8]) throws(CanonicalDecodingError) -> ConsensusMessage {
        var decoder = CanonicalDecoder(bytes)
        try decoder.expectKind(ConsensusWire.kind)
        let message = try ConsensusMessage.decode(from: &decoder)
        try decoder.finish()
        return message
    }

    /// Decodes transaction gossip (kind 2).
    static func gossip(bytes: [UInt8]) throws(CanonicalDecodingError) -> [Transaction] {
        var decoder = CanonicalDecoder(bytes)
        try decoder.expectKind(2)
        let count = try decoder.count(max: Self.maxGossipTransactions, minItemBytes: 100, "peer_message.transactions")
        var transactions: [Transaction] = []
        transactions.reserveCapacity(count)
        for _ in 0..<count { transactions.append(try Transaction.decode(from: &decoder)) }
        try decoder.finish()
        return transactions
    }
}

extension CanonicalDecoder {
    fileprivate mutating func expectKind(_ expected: UInt8) throws(CanonicalDecodingError) {
        let kind = try u8("peer_message.kind")
        guard kind == expected else { throw .invalid(field: "peer_message.kind", reason: "kind \(kind) where \(expected) was expected") }
    }
}
