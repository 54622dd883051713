import Foundation
import TallyConsensus
import TallyCrypto
import TallyTypes

/// One seed drives every random choice of a run (SplitMix64 on a scrambled seed, so
/// nearby seeds give unrelated runs; pinned seeds depend on this exact stream).
public struct SimRandom: Sendable {
    private var generator: SplitMix64

    public init(seed: UInt64) { generator = SplitMix64(seed: seed &* 0x9E37_79B9_7F4A_7C15 ^ 0xD1B5_4A32_D192_ED03) }

    public mutating func next() -> UInt64 { generator.next() }

    /// Uniform in 0..<bound.
    public mutating func below(_ bound: Int) -> Int {
        precondition(bound > 0)
        return Int(next() % UInt64(bound))
    }

    public mutating func inRange(_ range: ClosedRange<Int>) -> Int { range.lowerBound + below(range.count) }

    /// True with probability `percent`/100.
    public mutating func chance(_ percent: Int) -> Bool { below(100) < percent }

    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    public mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for index in stride(from: items.count - 1, to: 0, by: -1) { items.swapAt(index, below(index + 1)) }
    }
}

/// A fast deterministic stand-in for Ed25519 in big sweeps: a signature is a keyed
/// FNV-1a digest of the signed bytes under the validator's secret. Only the
/// simulator's verifier knows the secrets; Byzantine code gets a signer for its own
/// key only.
///
/// `bindsChainID: false` hashes the bytes with the chain-id field removed (every
/// consensus signing layout is `tag | chain_id | …`): the simulator switches it off
/// only to show that binding the chain id is what stops cross-chain replays.
public struct SimSignatureScheme: Sendable {
    public let secrets: [UInt64]
    public let bindsChainID: Bool

    public init(validatorCount: Int, seed: UInt64, bindsChainID: Bool = true) {
        var random = SimRandom(seed: seed ^ 0x5EC2_E75E_C2E7)
        secrets = (0..<validatorCount).map { _ in random.next() }
        self.bindsChainID = bindsChainID
    }

    func digest(_ secret: UInt64, _ bytes: [UInt8]) -> Signature {
        let message = bindsChainID ? bytes[...] : SimSignatureScheme.withoutChainID(bytes)
        var first: UInt64 = 0xCBF2_9CE4_8422_2325 ^ secret
        var second: UInt64 = 0x8422_2325_CBF2_9CE4 ^ (secret &* 31)
        for byte in message {
            first = (first ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
            second = (second ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        var signature = [UInt8](repeating: 0, count: Signature.byteCount)
        for index in 0..<8 {
            signature[index] = UInt8(truncatingIfNeeded: first >> (8 * index))
            signature[8 + index] = UInt8(truncatingIfNeeded: second >> (8 * index))
        }
        return Signature(bytes: signature)!
    }

    static func withoutChainID(_ bytes: [UInt8]) -> ArraySlice<UInt8> {
        func length(at offset: Int) -> Int? {
            guard offset + 4 <= bytes.count else { return nil }
            return (0..<4).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) }
        }
        guard let tagLength = length(at: 0), let chainLength = length(at: 4 + tagLength),
              4 + tagLength + 4 + chainLength <= bytes.count
        else { return bytes[...] }
        return (Array(bytes[0..<(4 + tagLength)]) + bytes[(8 + tagLength + chainLength)...])[...]
    }

    public func signer(for validator: ValidatorIndex) -> SimSigner { SimSigner(scheme: self, validator: validator) }
    public var verifier: SimVerifier { SimVerifier(scheme: self) }
}

public struct SimSigner: ConsensusSigner, Sendable {
    let scheme: SimSignatureScheme
    public let validator: ValidatorIndex
    public func sign(_ message: [UInt8]) -> Signature { scheme.digest(scheme.secrets[Int(validator)], message) }
}

public struct SimVerifier: ConsensusVerifier, Sendable {
    let scheme: SimSignatureScheme
    public func isValid(_ signature: Signature, by validator: ValidatorIndex, for message: [UInt8]) -> Bool {
        guard Int(validator) < scheme.secrets.count else { return false }
        return scheme.digest(scheme.secrets[Int(validator)], message) == signature
    }
}

/// Pre-signed client transfers (real Ed25519), built once per process and genesis:
/// signing and verifying every transaction in every run would dominate a sweep.
/// Each client has a run of consecutive nonces; `validHashes` holds the ones
/// libsodium accepted.
public struct TransactionPool: Sendable {
    public static let clientCount = 8
    public static let noncesPerClient = 160
    public static let clientBalance: UInt64 = 1_000_000_000
    /// The clients' keys, funded by every simulation genesis.
    public static let clientKeys = (0..<clientCount).map { index in
        SigningKey(seed: [UInt8](repeating: UInt8(index + 1), count: 32))!
    }

    public let chainID: String
    public let clients: [SigningKey]
    /// transactions[client][nonce]
    public let transactions: [[Transaction]]
    public let validHashes: Set<Hash>

    /// Signatures commit to the genesis hash, which differs with the validator
    /// count: one pool per genesis, signed on first use.
    public static func shared(for genesis: Genesis) -> TransactionPool {
        let genesisHash = genesis.hash
        cacheLock.lock()
        defer { cacheLock.unlock() }
        if let pool = cache[genesisHash] { return pool }
        let pool = TransactionPool(chainID: genesis.chainID, genesisHash: genesisHash)
        cache[genesisHash] = pool
        return pool
    }

    private static let cacheLock = NSLock()
    nonisolated(unsafe) private static var cache: [Hash: TransactionPool] = [:]

    init(chainID: String, genesisHash: Hash) {
        self.chainID = chainID
        clients = Self.clientKeys
        var transactions: [[Transaction]] = []
        var hashes = Set<Hash>()
        for (index, client) in clients.enumerated() {
            let recipient = Address(publicKey: clients[(index + 1) % clients.count].publicKey)
            var list: [Transaction] = []
            for nonce in 0..<UInt64(TransactionPool.noncesPerClient) {
                let transaction = Transaction.signed(
                    by: client, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 1 + nonce, fee: 1,
                    nonce: nonce)
                precondition(transaction.hasValidSignature(genesisHash: genesisHash))
                hashes.insert(transaction.hash)
                list.append(transaction)
            }
            transactions.append(list)
        }
        self.transactions = transactions
        validHashes = hashes
    }
}
