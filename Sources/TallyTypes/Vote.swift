import TallyCrypto

/// PBFT's PREPARE and COMMIT votes for a block.
public enum VotePhase: UInt8, Sendable, Hashable, CaseIterable {
    case prepare = 1
    case commit = 2

    var tag: DomainTag { self == .prepare ? .prepareVote : .commitVote }
}

/// What a validator signs when it votes. Signing bytes:
/// ```
/// tag ("tally/prepare/v1" | "tally/commit/v1") | chain_id: string
/// | view: u64 | height: u64 | block_hash: 32
/// ```
/// The phase is in the tag, so a PREPARE signature can never count as a COMMIT.
/// A commit certificate is a quorum (⌈(n+f+1)/2⌉, 2f+1 when n = 3f+1) of COMMIT
/// signatures over exactly these bytes.
public struct VoteTarget: Hashable, Sendable {
    public var phase: VotePhase
    public var view: UInt64
    public var height: UInt64
    public var blockHash: Hash

    public init(phase: VotePhase, view: UInt64, height: UInt64, blockHash: Hash) {
        self.phase = phase
        self.view = view
        self.height = height
        self.blockHash = blockHash
    }

    public func signingBytes(chainID: String) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: 128)
        encoder.tag(phase.tag)
        encoder.string(chainID)
        encoder.u64(view)
        encoder.u64(height)
        encoder.fixed(blockHash.bytes)
        return encoder.bytes
    }
}
