import Foundation
import TallyCrypto
import TallyLedger
import TallyStore
import TallyTypes
import TallyVerify

/// Generates a valid chain as a running devnet would store it: transfers between
/// many devnet accounts, each signed by its sender's key with the right nonce,
/// packed into blocks built by `BlockBuilder` and certified by a quorum of the devnet
/// validators (sometimes all of them), with occasional view changes rotating the
/// proposer. Deterministic for a given `Parameters` (seed included). Test and
/// benchmark support (`tally-bench generate-chain`): no shipped product links it.
public struct ChainGenerator {
    public struct Parameters: Sendable {
        public var blocks: Int
        public var transactionsPerBlock: Int
        /// Funded genesis accounts (devnet accounts 0..<fundedAccounts); transfers
        /// also reach as many unfunded ones, which the chain creates.
        public var fundedAccounts: Int
        public var seed: UInt64
        public var genesisTimeMs: UInt64 = 1_767_225_600_000  // 2026-01-01T00:00:00Z
        public var initialBalance: UInt64 = 1_000_000_000_000

        public init(blocks: Int, transactionsPerBlock: Int, fundedAccounts: Int = 1024, seed: UInt64 = 1) {
            precondition(blocks >= 0 && transactionsPerBlock >= 0 && fundedAccounts >= 1)
            precondition(transactionsPerBlock <= Limits.maxBlockTransactions, "more transactions than a block may hold")
            self.blocks = blocks
            self.transactionsPerBlock = transactionsPerBlock
            self.fundedAccounts = fundedAccounts
            self.seed = seed
        }
    }

    public let parameters: Parameters
    public let genesis: Genesis
    public private(set) var ledger: Ledger
    public private(set) var lastBlockHash: Hash
    private var random: SplitMix64
    private var view: UInt64 = 0
    private let senderKeys: [SigningKey]
    private let recipients: [Address]
    private let validatorKeys: [SigningKey]

    public init(_ parameters: Parameters) {
        self.parameters = parameters
        senderKeys = (0..<parameters.fundedAccounts).map(DevnetKeys.accountKey)
        recipients = (0..<parameters.fundedAccounts * 2).map { Address(publicKey: DevnetKeys.accountKey($0).publicKey) }
        validatorKeys = (0..<DevnetKeys.validatorCount).map(DevnetKeys.validatorKey)
        genesis = ChainGenerator.genesis(parameters)
        ledger = Ledger(genesis: genesis)
        lastBlockHash = genesis.hash
        random = SplitMix64(seed: parameters.seed)
    }

    /// The devnet validators and `fundedAccounts` devnet accounts with
    /// `initialBalance` each, chain id `tally-devnet`.
    public static func genesis(_ parameters: Parameters) -> Genesis {
        var consensus = ConsensusParameters.default
        consensus.maxBlockTransactions = UInt32(max(Int(consensus.maxBlockTransactions), parameters.transactionsPerBlock))
        return try! Genesis(
            chainID: DevnetKeys.chainID, genesisTimeMs: parameters.genesisTimeMs, validators: DevnetKeys.validators(),
            accounts: (0..<parameters.fundedAccounts).map {
                GenesisAccount(address: Address(publicKey: DevnetKeys.accountKey($0).publicKey), balance: parameters.initialBalance)
            },
            consensus: consensus)
    }

    /// The next block, certified, and applied to the generator's ledger.
    public mutating func nextBlock() -> CertifiedBlock {
        // About one block in forty follows a view change (a new primary proposes).
        if random.next(below: 40) == 0 { view += 1 }
        let proposer = Int(view % UInt64(genesis.validators.count))
        let transactions = signTransfers(planTransfers())
        let height = ledger.height + 1
        let built: (block: Block, execution: BlockExecution)
        do {
            built = try BlockBuilder.build(
                on: ledger, view: view, proposer: proposer, timestampMs: parameters.genesisTimeMs + height * 1000,
                previousHash: lastBlockHash, transactions: transactions)
        } catch { preconditionFailure("generated transfer does not apply: \(error)") }
        // A quorum signs; a quarter of the time the fourth validator's vote made it too.
        var signers = Array(0..<validatorKeys.count)
        if random.next(below: 4) != 0 { signers.remove(at: Int(random.next(below: UInt64(signers.count)))) }
        let certified = BlockBuilder.certify(
            built.block, view: view, chainID: genesis.chainID,
            signers: signers.map { (UInt32($0), validatorKeys[$0]) })
        ledger.commit(built.execution)
        lastBlockHash = built.block.hash
        return certified
    }

    struct Transfer {
        let sender: Int
        let recipient: Int
        let amount: UInt64
        let fee: UInt64
        let nonce: UInt64
    }

    private mutating func planTransfers() -> [Transfer] {
        var nonces: [Int: UInt64] = [:]
        var plans: [Transfer] = []
        plans.reserveCapacity(parameters.transactionsPerBlock)
        for _ in 0..<parameters.transactionsPerBlock {
            let sender = Int(random.next(below: UInt64(senderKeys.count)))
            let nonce = nonces[sender] ?? ledger.account(Address(publicKey: senderKeys[sender].publicKey))!.nonce
            nonces[sender] = nonce + 1
            plans.append(Transfer(
                sender: sender, recipient: Int(random.next(below: UInt64(recipients.count))),
                amount: 1 + random.next(below: 1000), fee: 1 + random.next(below: 10), nonce: nonce))
        }
        return plans
    }

    /// Signs on all cores (signing dominates generation time).
    private func signTransfers(_ plans: [Transfer]) -> [VerifiedTransaction] {
        let signed = SharedBuffer<Transaction?>(repeating: nil, count: max(plans.count, 1))
        let keys = senderKeys
        let addresses = recipients
        let chainID = genesis.chainID
        let genesisHash = ledger.genesisHash
        let chunk = 256
        Parallel.forEach((plans.count + chunk - 1) / chunk) { task in
            for index in task * chunk..<min(plans.count, (task + 1) * chunk) {
                let plan = plans[index]
                signed[index] = Transaction.signed(
                    by: keys[plan.sender], chainID: chainID, genesisHash: genesisHash, to: addresses[plan.recipient],
                    amount: plan.amount, fee: plan.fee, nonce: plan.nonce)
            }
        }
        return (0..<plans.count).map { VerifiedTransaction(signatureAlreadyVerified: signed[$0]!) }
    }

    /// Generates the whole chain into `directory`: `genesis.json` and the data
    /// directory `data/` (a node home's layout) with a ledger snapshot at the tip.
    /// Returns the genesis.
    @discardableResult
    public static func write(_ parameters: Parameters, to directory: String, progress: ((Int) -> Void)? = nil) throws -> Genesis {
        var generator = ChainGenerator(parameters)
        let fileSystem = PosixFileSystem()
        try fileSystem.createDirectory(directory)
        let store = try BlockStore.open(dataDirectory: directory + "/data", fileSystem: fileSystem)
        defer { store.close() }
        for _ in 0..<parameters.blocks {
            try store.append(generator.nextBlock())
            progress?(Int(generator.ledger.height))
        }
        // A snapshot at the tip, as a running node keeps: a node started on this chain
        // loads it instead of replaying every block.
        if parameters.blocks > 0 {
            try SnapshotStore(dataDirectory: directory + "/data", fileSystem: fileSystem)
                .write(Snapshot(ledger: generator.ledger, blockHash: generator.lastBlockHash))
        }
        try AtomicFile.write(generator.genesis.jsonData(), to: directory + "/genesis.json")
        return generator.genesis
    }
}
