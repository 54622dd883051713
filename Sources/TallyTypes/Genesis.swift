import Foundation
import TallyCrypto

/// Consensus parameters fixed by genesis (every validator must agree on them).
public struct ConsensusParameters: Hashable, Sendable, Codable {
    /// A checkpoint (state root, then garbage collection) every this many heights.
    public var checkpointIntervalBlocks: UInt64
    /// Most transactions the primary puts in one block.
    public var maxBlockTransactions: UInt32
    /// Heights that may be in flight above the last executed one (PBFT's window).
    public var maxBlocksInFlight: UInt64
    /// Wall-clock length of one consensus tick.
    public var tickMs: UInt64
    /// Ticks a backup waits for progress before asking for a view change; doubled
    /// on each consecutive view change up to the maximum.
    public var viewChangeTimeoutTicks: UInt64
    public var maxViewChangeTimeoutTicks: UInt64
    /// Smallest fee, in base units, of a transaction that applies: every transfer
    /// (and every account it creates) costs its sender something, so spam is paid for.
    public var minFee: UInt64

    /// The minimum fee of a genesis that does not name one.
    public static let defaultMinFee: UInt64 = 1
    /// How far past its own clock a validator accepts a proposal's timestamp (and
    /// so how far validators' clocks may disagree); a faulty primary cannot push
    /// the chain's time further ahead than this.
    public var maxClockDriftMs: UInt64

    public static let defaultMaxClockDriftMs: UInt64 = 10_000
    /// Upper end of `max_clock_drift_ms`'s range: one hour.
    public static let maxClockDriftLimitMs: UInt64 = 3_600_000

    public static let `default` = ConsensusParameters(
        checkpointIntervalBlocks: 16, maxBlockTransactions: 4000, maxBlocksInFlight: 4, tickMs: 50,
        viewChangeTimeoutTicks: 40, maxViewChangeTimeoutTicks: 640, minFee: defaultMinFee)

    public init(
        checkpointIntervalBlocks: UInt64, maxBlockTransactions: UInt32, maxBlocksInFlight: UInt64, tickMs: UInt64,
        viewChangeTimeoutTicks: UInt64, maxViewChangeTimeoutTicks: UInt64, minFee: UInt64 = defaultMinFee,
        maxClockDriftMs: UInt64 = ConsensusParameters.defaultMaxClockDriftMs
    ) {
        self.checkpointIntervalBlocks = checkpointIntervalBlocks
        self.maxBlockTransactions = maxBlockTransactions
        self.maxBlocksInFlight = maxBlocksInFlight
        self.tickMs = tickMs
        self.viewChangeTimeoutTicks = viewChangeTimeoutTicks
        self.maxViewChangeTimeoutTicks = maxViewChangeTimeoutTicks
        self.minFee = minFee
        self.maxClockDriftMs = maxClockDriftMs
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case checkpointIntervalBlocks = "checkpoint_interval_blocks"
        case maxBlockTransactions = "max_block_transactions"
        case maxBlocksInFlight = "max_blocks_in_flight"
        case tickMs = "tick_ms"
        case viewChangeTimeoutTicks = "view_change_timeout_ticks"
        case maxViewChangeTimeoutTicks = "max_view_change_timeout_ticks"
        case minFee = "min_fee"
        case maxClockDriftMs = "max_clock_drift_ms"
    }

    /// Every key but `min_fee` and `max_clock_drift_ms` is required (as before they
    /// existed); a file without them gets their defaults, which are hashed like any other value.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        checkpointIntervalBlocks = try container.decode(UInt64.self, forKey: .checkpointIntervalBlocks)
        maxBlockTransactions = try container.decode(UInt32.self, forKey: .maxBlockTransactions)
        maxBlocksInFlight = try container.decode(UInt64.self, forKey: .maxBlocksInFlight)
        tickMs = try container.decode(UInt64.self, forKey: .tickMs)
        viewChangeTimeoutTicks = try container.decode(UInt64.self, forKey: .viewChangeTimeoutTicks)
        maxViewChangeTimeoutTicks = try container.decode(UInt64.self, forKey: .maxViewChangeTimeoutTicks)
        minFee = try container.decodeIfPresent(UInt64.self, forKey: .minFee) ?? Self.defaultMinFee
        maxClockDriftMs = try container.decodeIfPresent(UInt64.self, forKey: .maxClockDriftMs)
            ?? ConsensusParameters.defaultMaxClockDriftMs
    }

    func check() throws(Genesis.Error) {
        guard checkpointIntervalBlocks >= 1 && checkpointIntervalBlocks <= Limits.maxCheckpointIntervalBlocks else {
            throw .invalid("consensus.checkpoint_interval_blocks", "must be 1…\(Limits.maxCheckpointIntervalBlocks)")
        }
        guard maxBlockTransactions >= 1 && Int(maxBlockTransactions) <= Limits.maxBlockTransactions else {
            throw .invalid("consensus.max_block_transactions", "must be 1…\(Limits.maxBlockTransactions)")
        }
        guard maxBlocksInFlight >= 1 && maxBlocksInFlight <= checkpointIntervalBlocks * 2 else {
            throw .invalid("consensus.max_blocks_in_flight", "must be 1…2×checkpoint_interval_blocks")
        }
        guard tickMs >= 1 && tickMs <= 60_000 else { throw .invalid("consensus.tick_ms", "must be 1…60000") }
        guard viewChangeTimeoutTicks >= 2 else { throw .invalid("consensus.view_change_timeout_ticks", "must be at least 2") }
        guard maxViewChangeTimeoutTicks >= viewChangeTimeoutTicks else {
            throw .invalid("consensus.max_view_change_timeout_ticks", "must be at least view_change_timeout_ticks")
        }
        // Zero would make transfers, and the accounts they create, free again.
        guard minFee >= 1 else { throw .invalid("consensus.min_fee", "must be at least 1 base unit") }
        guard maxClockDriftMs >= 1 && maxClockDriftMs <= Self.maxClockDriftLimitMs else {
            throw .invalid("consensus.max_clock_drift_ms", "must be 1…\(Self.maxClockDriftLimitMs)")
        }
    }

    func encode(to encoder: inout CanonicalEncoder) {
        encoder.u64(checkpointIntervalBlocks)
        encoder.u32(maxBlockTransactions)
        encoder.u64(maxBlocksInFlight)
        encoder.u64(tickMs)
        encoder.u64(viewChangeTimeoutTicks)
        encoder.u64(maxViewChangeTimeoutTicks)
        encoder.u64(minFee)
        encoder.u64(maxClockDriftMs)
    }
}

/// A funded account at genesis.
public struct GenesisAccount: Hashable, Sendable {
    public var address: Address
    public var balance: UInt64

    public init(address: Address, balance: UInt64) {
        self.address = address
        self.balance = balance
    }
}

/// The genesis file: the chain id, the validator set, the initial balances and the
/// consensus parameters. Loaded from JSON (format in `genesis/README.md`); its hash
/// (SHA-256 of the canonical bytes below) is block 1's `previous_hash`.
/// ```
/// tag "tally/genesis/v1" | chain_id: string | genesis_time_ms: u64
/// | count: u32 | (name: string | public_key: 32 | network_address: string)…
/// | count: u32 | (address: 20 | balance: u64)…
/// | checkpoint_interval_blocks: u64 | max_block_transactions: u32 | max_blocks_in_flight: u64
/// | tick_ms: u64 | view_change_timeout_ticks: u64 | max_view_change_timeout_ticks: u64
/// | min_fee: u64
/// | max_clock_drift_ms: u64
/// ```
public struct Genesis: Hashable, Sendable {
    public var chainID: String
    public var genesisTimeMs: UInt64
    public var validators: ValidatorSet
    public var accounts: [GenesisAccount]
    public var consensus: ConsensusParameters
    /// Free text for people (e.g. "INSECURE: well-known dev keys"); not hashed.
    public var comment: String?

    /// 9999-12-31T23:59:59.999Z, the last time `genesis_time`'s format can write.
    public static let maxGenesisTimeMs: UInt64 = 253_402_300_799_999

    public init(
        chainID: String, genesisTimeMs: UInt64, validators: [Validator], accounts: [GenesisAccount],
        consensus: ConsensusParameters = .default
    ) throws(Error) {
        self.chainID = chainID
        self.genesisTimeMs = genesisTimeMs
        try Genesis.checkValidators(validators)
        self.validators = ValidatorSet(validators)
        self.accounts = accounts
        self.consensus = consensus
        try check()
    }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case unreadable(String)
        case malformed(field: String, reason: String)
        case invalid(String, String)

        public var description: String {
            switch self {
            case .unreadable(let reason): return "genesis unreadable: \(reason)"
            case .malformed(let field, let reason): return "genesis field '\(field)': \(reason)"
            case .invalid(let field, let reason): return "genesis field '\(field)': \(reason)"
            }
        }
    }

    public var hash: Hash { SHA256.hash(canonicalBytes) }

    /// The bytes `hash` is taken over (layout above).
    public var canonicalBytes: [UInt8] {
        var encoder = CanonicalEncoder()
        encoder.tag(.genesis)
        encoder.string(chainID)
        encoder.u64(genesisTimeMs)
        encoder.count(validators.count)
        for validator in validators.validators {
            encoder.string(validator.name)
            encoder.fixed(validator.publicKey.bytes)
            encoder.string(validator.networkAddress)
        }
        encoder.count(accounts.count)
        for account in accounts {
            encoder.fixed(account.address.bytes)
            encoder.u64(account.balance)
        }
        consensus.encode(to: &encoder)
        return encoder.bytes
    }

    /// Sum of all genesis balances; the ledger conserves it.
    public var totalSupply: UInt64 {
        accounts.reduce(0) { $0 + $1.balance }
    }

    private func check() throws(Error) {
        let chainBytes = chainID.utf8.count
        // Visible ASCII only (0x21-0x7E): no space, so an id is one word in logs,
        // commands and file names, and no byte has two spellings.
        guard chainBytes >= 1 && chainBytes <= Limits.maxChainIDBytes,
              chainID.utf8.allSatisfy({ $0 > 32 && $0 < 127 })
        else {
            throw .invalid("chain_id", "must be 1…\(Limits.maxChainIDBytes) visible ASCII characters (0x21-0x7E, no space)")
        }
        // So that `jsonData()` always writes a time `parseTime` reads back.
        guard genesisTimeMs <= Genesis.maxGenesisTimeMs else { throw .invalid("genesis_time", "must be before the year 10000") }
        guard accounts.count <= Limits.maxGenesisAccounts else { throw .invalid("accounts", "too many accounts") }
        var seen = Set<Address>()
        var supply: UInt64 = 0
        for (index, account) in accounts.enumerated() {
            guard seen.insert(account.address).inserted else { throw .invalid("accounts[\(index)].address", "duplicate address") }
            let (sum, overflow) = supply.addingReportingOverflow(account.balance)
            guard !overflow else { throw .invalid("accounts[\(index)].balance", "total supply overflows 64 bits") }
            supply = sum
        }
        try consensus.check()
    }

    private static func checkValidators(_ validators: [Validator]) throws(Error) {
        guard !validators.isEmpty && validators.count <= Limits.maxValidators else {
            throw .invalid("validators", "must list 1…\(Limits.maxValidators) validators")
        }
        var keys = Set<PublicKey>()
        for (index, validator) in validators.enumerated() {
            guard keys.insert(validator.publicKey).inserted else {
                throw .invalid("validators[\(index)].public_key", "duplicate validator key")
            }
            guard !validator.name.isEmpty && validator.name.utf8.count <= Limits.maxValidatorNameBytes else {
                throw .invalid("validators[\(index)].name", "must be 1…\(Limits.maxValidatorNameBytes) bytes")
            }
            guard !validator.networkAddress.isEmpty && validator.networkAddress.utf8.count <= Limits.maxNetworkAddressBytes
            else { throw .invalid("validators[\(index)].address", "must be host:port") }
        }
    }
}

// MARK: JSON

extension Genesis {
    struct File: Codable {
        struct ValidatorEntry: Codable {
            var name: String
            var publicKey: String
            var address: String
            enum CodingKeys: String, CodingKey { case name, address; case publicKey = "public_key" }
        }
        struct AccountEntry: Codable {
            var address: String
            var balance: String
        }
        var chainID: String
        var genesisTime: String
        var validators: [ValidatorEntry]
        var accounts: [AccountEntry]
        var consensus: ConsensusParameters?
        var comment: String?
        enum CodingKeys: String, CodingKey {
            case validators, accounts, consensus, comment
            case chainID = "chain_id"
            case genesisTime = "genesis_time"
        }
    }

    /// Parses genesis JSON strictly (`GenesisJSON`: no duplicate or unknown keys, whole
    /// numbers only, no null); each malformed field gets an error naming it.
    public init(json data: Data) throws(Error) {
        try GenesisJSON.check(data)
        let file: File
        do { file = try JSONDecoder().decode(File.self, from: data) } catch let error as Swift.DecodingError {
            throw Genesis.describe(error)
        } catch { throw .unreadable("\(error)") }
        guard let time = Genesis.parseTime(file.genesisTime) else {
            throw .malformed(
                field: "genesis_time",
                reason: "expected an RFC 3339 UTC time from 1970 on, like 2026-01-01T00:00:00Z or 2026-01-01T00:00:00.250Z "
                    + "(at most 3 fraction digits, Z only)")
        }
        var validators: [Validator] = []
        for (index, entry) in file.validators.enumerated() {
            guard let key = PublicKey(hex: entry.publicKey) else {
                throw .malformed(field: "validators[\(index)].public_key", reason: "expected 64 hex characters (Ed25519 key)")
            }
            validators.append(Validator(name: entry.name, publicKey: key, networkAddress: entry.address))
        }
        var accounts: [GenesisAccount] = []
        accounts.reserveCapacity(file.accounts.count)
        for (index, entry) in file.accounts.enumerated() {
            let address: Address
            do { address = try Address(bech32m: entry.address) } catch {
                throw .malformed(field: "accounts[\(index)].address", reason: error.description)
            }
            guard let balance = Genesis.parseDecimal(entry.balance) else {
                throw .malformed(
                    field: "accounts[\(index)].balance",
                    reason: "expected a decimal string of a 64-bit unsigned integer (digits only, no sign or leading zero)")
            }
            accounts.append(GenesisAccount(address: address, balance: balance))
        }
        try self.init(
            chainID: file.chainID, genesisTimeMs: time, validators: validators, accounts: accounts,
            consensus: file.consensus ?? .default)
        comment = file.comment
    }

    public static func load(path: String) throws(Error) -> Genesis {
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable("cannot read \(path)") }
        return try Genesis(json: data)
    }

    public func jsonData() -> Data {
        let file = File(
            chainID: chainID, genesisTime: Genesis.formatTime(genesisTimeMs),
            validators: validators.validators.map {
                File.ValidatorEntry(name: $0.name, publicKey: $0.publicKey.hex, address: $0.networkAddress)
            },
            accounts: accounts.map { File.AccountEntry(address: $0.address.bech32m, balance: String($0.balance)) },
            consensus: consensus, comment: comment)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try! encoder.encode(file)
    }

    private static func describe(_ error: Swift.DecodingError) -> Error {
        func path(_ context: Swift.DecodingError.Context, _ extra: CodingKey? = nil) -> String {
            let keys = context.codingPath + (extra.map { [$0] } ?? [])
            return keys.reduce("") { text, key in
                if let index = key.intValue { return text + "[\(index)]" }
                return text.isEmpty ? key.stringValue : text + "." + key.stringValue
            }
        }
        switch error {
        case .keyNotFound(let key, let context): return .malformed(field: path(context, key), reason: "missing")
        case .typeMismatch(let type, let context):
            return .malformed(field: path(context), reason: "expected \(type == String.self ? "a string" : "\(type)")")
        case .valueNotFound(_, let context): return .malformed(field: path(context), reason: "is null")
        case .dataCorrupted(let context):
            return context.codingPath.isEmpty
                ? .unreadable("not valid JSON") : .malformed(field: path(context), reason: context.debugDescription)
        @unknown default: return .unreadable("\(error)")
        }
    }
}
