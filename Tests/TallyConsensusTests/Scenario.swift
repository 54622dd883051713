import TallyApplication
import TallyCrypto
import TallyDriver
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyConsensus
@testable import TallySimulation

/// A tiny scenario DSL: n replicas with real Ed25519 keys and the node's ledger
/// application (as the simulator builds it), each run by the production
/// `ReplicaDriver`, messages queued in a FIFO that the test delivers, drops or
/// forges. Every step checks the replica's invariants and that persist comes first.
final class Scenario {
    let validatorCount: Int
    let keys: [SigningKey]
    let genesis: Genesis
    let genesisHash: Hash
    let genesisLedger: Ledger
    /// Client transfers signed for `genesis`.
    let pool: TransactionPool
    var drivers: [ReplicaDriver] = []
    /// The drivers' replicas; a test may change one (written back to its driver).
    var replicas: [Replica] {
        get { drivers.map(\.replica) }
        set { for (driver, replica) in zip(drivers, newValue) { driver.replica = replica } }
    }
    var apps: [LedgerApplication] = []
    var executed: [[CertifiedBlock]]
    var persisted: [DurableState?]
    var queue: [(from: ValidatorIndex, to: ValidatorIndex, message: ConsensusMessage)] = []
    /// Validators that neither send nor receive.
    var down: Set<ValidatorIndex> = []
    /// Every message each validator sent, in order.
    var sent: [[ConsensusMessage]]
    var tickCount = 0
    var nextClientNonce = 0

    static let chainID = Simulation.chainID
    var parameters: ConsensusParameters { SimulationOptions.parameters }

    init(validators: Int = 4) {
        validatorCount = validators
        keys = (0..<validators).map { SigningKey(seed: [UInt8](repeating: UInt8(200 + $0), count: 32))! }
        genesis = Simulation.makeGenesis(validatorCount: validators)
        genesisHash = genesis.hash
        pool = TransactionPool.shared(for: genesis)
        genesisLedger = Ledger(genesis: genesis)
        executed = Array(repeating: [], count: validators)
        persisted = Array(repeating: nil, count: validators)
        sent = Array(repeating: [], count: validators)
        for index in 0..<validators {
            apps.append(makeApplication())
            drivers.append(makeDriver(ValidatorIndex(index), durable: nil))
        }
    }

    func makeApplication() -> LedgerApplication {
        Simulation.makeApplication(
            genesis: genesis, ledger: genesisLedger, tipHash: genesisHash, tipTimestampMs: genesis.genesisTimeMs,
            nowMs: { [unowned self] in self.genesis.genesisTimeMs + UInt64(self.tickCount) * 10 })
    }

    func configuration(_ index: ValidatorIndex) -> ReplicaConfiguration {
        ReplicaConfiguration(
            chainID: Scenario.chainID, validators: genesis.validators, selfIndex: index, parameters: parameters,
            genesisHash: genesisHash, genesisStateRoot: genesisLedger.stateRoot, retransmitIntervalTicks: 6,
            syncRetryTicks: 10)
    }

    /// Validator `index`'s replica over its `executed` chain and its application, from
    /// `durable` (and the signing-mark file's `signingMark`, quarantined if asked).
    func makeReplica(
        _ index: ValidatorIndex, durable: DurableState?, signingMark: SigningMark? = nil, quarantined: Bool = false
    ) -> Replica {
        let chain = executed[Int(index)]
        return Replica(
            configuration: configuration(index), durableState: durable, committedHeight: UInt64(chain.count),
            blockHash: { [genesisHash] height in height == 0 ? genesisHash : chain[Int(height) - 1].block.hash },
            tipCertificate: chain.last?.certificate,
            application: apps[Int(index)], verifier: Ed25519Verifier(validators: genesis.validators),
            signer: Ed25519Signer(key: keys[Int(index)]), signingMark: signingMark, quarantined: quarantined)
    }

    func makeDriver(_ index: ValidatorIndex, durable: DurableState?) -> ReplicaDriver {
        let io = IO(scenario: self, index: index)
        return ReplicaDriver(
            replica: makeReplica(index, durable: durable), journal: io, blocks: io, transport: io, invariantChecks: .everyStep)
    }

    /// Restarts a replica from its last persisted state (through its canonical bytes).
    func restart(_ index: ValidatorIndex) throws {
        let durable = try persisted[Int(index)].map { try DurableState(canonicalBytes: $0.canonicalBytes) }
        apps[Int(index)] = Simulation.restarted(apps[Int(index)])
        drivers[Int(index)] = makeDriver(index, durable: durable)
    }

    /// One validator's I/O: `persisted`, `executed` and the application, the queue.
    final class IO: DurableStateSink, CertifiedBlockSink, ReplicaTransport {
        unowned let scenario: Scenario
        let index: ValidatorIndex

        init(scenario: Scenario, index: ValidatorIndex) {
            self.scenario = scenario
            self.index = index
        }

        func write(_ state: DurableState) { scenario.persisted[Int(index)] = state }

        func commit(_ certified: CertifiedBlock) -> Hash {
            let root = scenario.apps[Int(index)].commit(certified.block).stateRoot
            scenario.executed[Int(index)].append(certified)
            return root
        }

        func send(_ message: ConsensusMessage, to peer: ValidatorIndex) { scenario.post(message, from: index, to: [peer]) }

        func broadcast(_ message: ConsensusMessage) {
            scenario.post(message, from: index, to: (0..<ValidatorIndex(scenario.validatorCount)).filter { $0 != index })
        }

        func sendBlocks(heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
            scenario.post(.syncResponse(heights.map { scenario.executed[Int(index)][Int($0) - 1] }), from: index, to: [peer])
        }
    }

    // MARK: Driving

    /// Steps validator `index`'s driver; returns the actions of this event's own step
    /// (not of the `.blockExecuted` steps it led to).
    @discardableResult
    func step(_ index: ValidatorIndex, _ event: ConsensusEvent, file: StaticString = #filePath, line: UInt = #line)
        -> [ConsensusAction]
    {
        var first: [ConsensusAction]?
        let driver = drivers[Int(index)]
        driver.stepObserver = { _, _, actions in
            var sawOther = false
            for action in actions {
                if case .persist = action {
                    XCTAssertFalse(sawOther, "persist after another action", file: file, line: line)
                } else {
                    sawOther = true
                }
            }
            if first == nil { first = actions }
        }
        XCTAssertNoThrow(try driver.handle(event), file: file, line: line)
        driver.stepObserver = nil
        return first ?? []
    }

    func post(_ message: ConsensusMessage, from: ValidatorIndex, to targets: [ValidatorIndex]) {
        guard !down.contains(from) else { return }
        sent[Int(from)].append(message)
        for target in targets where !down.contains(target) { queue.append((from, target, message)) }
    }

    /// Delivers queued messages (and what they cause) until none are left, or only
    /// those `filter` rejects (dropped).
    func deliverAll(filter: ((ValidatorIndex, ValidatorIndex, ConsensusMessage) -> Bool)? = nil) {
        var rounds = 0
        while !queue.isEmpty {
            rounds += 1
            precondition(rounds < 100_000, "scenario does not quiesce")
            let (from, to, message) = queue.removeFirst()
            if down.contains(to) { continue }
            if let filter, !filter(from, to, message) { continue }
            step(to, .message(message, from: from))
        }
    }

    /// Gives every running replica `count` ticks, delivering messages after each.
    func tick(_ count: Int = 1, filter: ((ValidatorIndex, ValidatorIndex, ConsensusMessage) -> Bool)? = nil) {
        for _ in 0..<count {
            tickCount += 1
            for index in 0..<ValidatorIndex(validatorCount) where !down.contains(index) { step(index, .tick) }
            deliverAll(filter: filter)
        }
    }

    /// Client transactions reach every running replica's mempool.
    func submit(_ count: Int) {
        for _ in 0..<count {
            let client = nextClientNonce % TransactionPool.clientCount
            let nonce = nextClientNonce / TransactionPool.clientCount
            nextClientNonce += 1
            for index in 0..<validatorCount where !down.contains(ValidatorIndex(index)) {
                _ = apps[index].submit([pool.transactions[client][nonce]])
            }
        }
        for index in 0..<ValidatorIndex(validatorCount) where !down.contains(index) { step(index, .transactionsAvailable) }
    }

    // MARK: Forging (what a Byzantine validator holding key `by` can make)

    func prePrepare(view: UInt64, block: Block, by signer: ValidatorIndex, chainID: String = Scenario.chainID) -> PrePrepare {
        PrePrepare(view: view, block: block, signature: keys[Int(signer)].sign(
            PrePrepare.signingBytes(chainID: chainID, view: view, height: block.height, blockHash: block.hash)))
    }

    func vote(_ phase: VotePhase, view: UInt64, height: UInt64, hash: Hash, by validator: ValidatorIndex,
              chainID: String = Scenario.chainID) -> Vote {
        let target = VoteTarget(phase: phase, view: view, height: height, blockHash: hash)
        return Vote(target: target, validator: validator, signature: keys[Int(validator)].sign(target.signingBytes(chainID: chainID)))
    }

    /// A block at height 1 built by `proposer`'s application from its mempool.
    /// Built on a fresh application at genesis, or on validator `on`'s executed state.
    func proposal(view: UInt64 = 0, height: UInt64 = 1, parent: Hash? = nil, proposer: ValidatorIndex = 0,
                  timestampOffset: UInt64 = 0, on validator: Int? = nil) -> Block {
        let app = validator.map { apps[$0] } ?? makeApplication()
        for client in 0..<2 { _ = app.submit([pool.transactions[client][Int(height) - 1]]) }
        var block = app.propose(height: height, view: view, proposer: proposer, parentHash: parent ?? genesisHash,
                                maxTransactions: 16, allowEmpty: true)!
        if timestampOffset > 0 {
            var header = block.header
            header.timestampMs += timestampOffset
            block = Block(header: header, transactions: block.transactions)
        }
        return block
    }

    func messages(from validator: ValidatorIndex, _ kind: String) -> [ConsensusMessage] {
        sent[Int(validator)].filter { $0.kind == kind }
    }

    var heights: [UInt64] { replicas.map(\.committedHeight) }
}
