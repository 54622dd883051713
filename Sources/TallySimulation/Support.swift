import Foundation
import TallyApplication
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
/// Each honest client has a run of consecutive nonces; the hostile senders'
/// transactions are in `hostile`. `verdicts` holds libsodium's answer for every one
/// of them, which the simulator's `PresignedSignatures` hands the application
/// instead of checking again. Signatures commit to the genesis hash, which differs
/// with the validator count: one pool per genesis, signed on first use (the keys,
/// and so the genesis accounts, are fixed).
public struct TransactionPool: Sendable {
    public static let clientCount = 8
    public static let noncesPerClient = 160
    public static let clientBalance: UInt64 = 1_000_000_000
    /// The clients' keys, funded by every simulation genesis.
    public static let clientKeys = (0..<clientCount).map { index in
        SigningKey(seed: [UInt8](repeating: UInt8(index + 1), count: 32))!
    }
    /// A funded key used once per run: its one transfer, submitted at healing, must
    /// commit at every honest replica before the run counts as live.
    public static let probeKey = SigningKey(seed: [UInt8](repeating: 0x70, count: 32))!

    public let chainID: String
    public let genesisHash: Hash
    public let clients: [SigningKey]
    /// transactions[client][nonce]
    public let transactions: [[Transaction]]
    public let hostile: HostileTransactions
    public let probe: Transaction
    /// The full-block load (`FullBlockLoad`), for a genesis with its parameters; else empty.
    public let fullBlockLoad: [Transaction]
    public var probeKey: SigningKey { Self.probeKey }
    public let verdicts: [Hash: Bool]

    public static func shared(for genesis: Genesis) -> TransactionPool {
        let genesisHash = genesis.hash
        return cache.withLock { cache in
            if let pool = cache[genesisHash] { return pool }
            let pool = TransactionPool(
                chainID: genesis.chainID, genesisHash: genesisHash, fullBlockLoad: FullBlockLoad.applies(to: genesis.consensus))
            cache[genesisHash] = pool
            return pool
        }
    }

    private static let cache = NIOLikeLock<[Hash: TransactionPool]>([:])

    init(chainID: String, genesisHash: Hash, fullBlockLoad: Bool = false) {
        self.chainID = chainID
        self.genesisHash = genesisHash
        clients = Self.clientKeys
        var transactions: [[Transaction]] = []
        for (index, client) in clients.enumerated() {
            let recipient = Address(publicKey: clients[(index + 1) % clients.count].publicKey)
            transactions.append((0..<UInt64(TransactionPool.noncesPerClient)).map { nonce in
                Transaction.signed(
                    by: client, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 1 + nonce, fee: 1,
                    nonce: nonce)
            })
        }
        self.transactions = transactions
        let recipient = Address(publicKey: clients[0].publicKey)
        hostile = HostileTransactions(chainID: chainID, genesisHash: genesisHash, recipient: recipient)
        probe = Transaction.signed(
            by: Self.probeKey, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 1, fee: 1, nonce: 0)
        var verdicts: [Hash: Bool] = [:]
        for transaction in transactions.joined() + hostile.all + [probe] {
            precondition(transaction.hasValidSignature(genesisHash: genesisHash))
            verdicts[transaction.hash] = true
        }
        // The load's signatures were just made by libsodium with the senders' keys;
        // checking each again would double the pool's start-up time.
        self.fullBlockLoad = fullBlockLoad ? FullBlockLoad.transactions(chainID: chainID, genesisHash: genesisHash) : []
        for transaction in self.fullBlockLoad { verdicts[transaction.hash] = true }
        self.verdicts = verdicts
    }

    /// Genesis accounts: honest clients, the probe, the hostile senders that are funded.
    static var genesisAccounts: [GenesisAccount] {
        clientKeys.map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: TransactionPool.clientBalance) }
            + [GenesisAccount(address: Address(publicKey: probeKey.publicKey), balance: TransactionPool.clientBalance)]
            + HostileTransactions.fundedAccounts
    }
}

/// A value behind a lock (the pool cache is shared by parallel sweep jobs).
final class NIOLikeLock<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<Result>(_ body: (inout Value) -> Result) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// What hostile clients send (issue 14), pre-signed:
/// - never-funded senders: zero-value, fee-paying transfers from keys that hold
///   nothing (admission refuses them: `insufficient_balance`; none may commit);
/// - a future-nonce flood from a funded key whose nonce 0 never comes: nonces inside
///   the window wait behind the gap (never proposable), those past it are refused;
/// - stuck senders: each funded with `stuckBalance` and used once per run: T0'
///   spending it all goes to the primary, T0 and T1 (nonce + 1) to the backups, so
///   after T0' commits the backups hold T1, which can never apply.
public struct HostileTransactions: Sendable {
    public static let unfundedCount = 4
    public static let unfundedNonces = 4
    public static let stuckSenderCount = 4
    public static let stuckBalance: UInt64 = 1_000
    /// The flooder's nonces: 1… (nonce 0, which would close the gap, is never signed).
    public static let floodNonces: ClosedRange<UInt64> = 1...40

    static func key(_ tag: UInt8, _ index: Int) -> SigningKey {
        SigningKey(seed: [tag] + [UInt8](repeating: UInt8(index), count: 31))!
    }
    static let flooder = key(0xF1, 0)
    static let stuckKeys = (0..<stuckSenderCount).map { key(0xF2, $0) }

    /// unfunded[key][nonce]
    public let unfunded: [[Transaction]]
    public let flood: [Transaction]
    public var floodSender: Address { Address(publicKey: Self.flooder.publicKey) }
    /// One per stuck sender: T0' (spends the whole balance), T0 and T1 (small).
    public let stuck: [(spendAll: Transaction, first: Transaction, second: Transaction)]
    public let unfundedSenders: Set<Address>

    init(chainID: String, genesisHash: Hash, recipient: Address) {
        func signed(_ signer: SigningKey, amount: UInt64, nonce: UInt64) -> Transaction {
            Transaction.signed(
                by: signer, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: amount, fee: 1, nonce: nonce)
        }
        let unfundedKeys = (0..<Self.unfundedCount).map { Self.key(0xF0, $0) }
        unfunded = unfundedKeys.map { signer in
            (0..<UInt64(Self.unfundedNonces)).map { nonce in signed(signer, amount: 0, nonce: nonce) }
        }
        unfundedSenders = Set(unfundedKeys.map { Address(publicKey: $0.publicKey) })
        flood = Self.floodNonces.map { nonce in signed(Self.flooder, amount: 1, nonce: nonce) }
        stuck = Self.stuckKeys.map { signer in
            (signed(signer, amount: Self.stuckBalance - 1, nonce: 0), signed(signer, amount: 1, nonce: 0),
             signed(signer, amount: 1, nonce: 1))
        }
    }

    var all: [Transaction] {
        Array(unfunded.joined()) + flood + stuck.flatMap { [$0.spendAll, $0.first, $0.second] }
    }

    static var fundedAccounts: [GenesisAccount] {
        [GenesisAccount(address: Address(publicKey: flooder.publicKey), balance: TransactionPool.clientBalance)]
            + stuckKeys.map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: stuckBalance) }
    }
}

/// The simulator's transaction-signature checker: libsodium's verdicts on the
/// pre-signed transactions of one genesis (the hash covers the signature, so an
/// altered one is unknown), and a real Ed25519 check for anything else (forgeries,
/// or transactions signed for another genesis).
public struct PresignedSignatures: TransactionSignatureChecker {
    let verdicts: [Hash: Bool]
    let genesisHash: Hash
    public init(pool: TransactionPool) {
        verdicts = pool.verdicts
        genesisHash = pool.genesisHash
    }
    public func isValid(_ transaction: Transaction, genesisHash: Hash) -> Bool {
        if genesisHash == self.genesisHash, let verdict = verdicts[transaction.hash] { return verdict }
        return transaction.hasValidSignature(genesisHash: genesisHash)
    }
}
