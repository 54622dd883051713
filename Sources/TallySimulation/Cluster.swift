import Logging
import TallyApplication
import TallyApplicationTesting
import TallyConsensus
import TallyConsensusTesting
import TallyCrypto
import TallyDriver
import TallyLedger
import TallyLogTesting
import TallyStore
import TallyStoreTesting
import TallyTypes
import TallyVerify

public enum InvariantChecking: String, Sendable {
    case everyStep = "every-step", everyTick = "every-tick"
}

func isTick(_ event: ConsensusEvent) -> Bool {
    if case .tick = event { return true }
    return false
}

/// How one simulated run is set up.
public struct SimulationOptions: Sendable {
    public var validatorCount = 4
    public var mix: FaultMix = .all
    public var byzantineModes: [ByzantineMode] = ByzantineMode.allCases
    /// Every run gets at least one Byzantine replica (with a mode from `byzantineModes`).
    public var forceByzantine = false
    /// Faults (loss, partitions, crashes) happen before this tick, then heal.
    public var faultTicks = 120
    /// After healing, every honest replica must reach the target within this many ticks.
    public var livenessBoundTicks = 3000
    /// The target: the highest honest height at healing plus this.
    public var heightsAfterHeal: UInt64 = 6
    /// After healing, every transaction a client submitted must have committed on every
    /// honest replica within this many ticks of its submission (or of healing, if later).
    public var transactionLivenessBoundTicks = 1500
    /// A run may end (after the height target) only once every transaction submitted
    /// up to this many ticks after healing committed on every honest replica.
    public var transactionWatchTicks = 60
    /// When set, the transactions submitted after healing (up to the watch) must
    /// commit everywhere within this many ticks on average (slow-primary tests).
    public var maxMeanTransactionLatencyTicks: Int?
    /// Percent chance per tick that a client submits a transaction.
    public var clientRatePercent = 15
    /// Clients, honest and hostile, submit nothing from this tick on (the transfer
    /// at healing still goes out), and `quietRestartDelayTicks` later every validator
    /// restarts (an operator restarting the network: slots, retransmissions and
    /// queues are gone). With no empty blocks the chain is quiet, and a validator that
    /// crashed and missed blocks must catch up with no traffic to learn from (issue 13
    /// item 5). Use with `heightsAfterHeal` 1 (the probe's block).
    public var quietAfterTick: Int?
    public static let quietRestartDelayTicks = 20
    /// Hostile clients submit through the same mempools (`HostileTransactions`):
    /// never-funded senders, a future-nonce flood, transactions that become
    /// unaffordable after a commit. Percent chance per tick of one hostile submission.
    public var hostileRatePercent = 4
    /// An idle primary proposes an empty block after this many ticks; nil: only when
    /// transactions wait (a node's default), where a transaction that makes backups
    /// expect progress with nothing to propose shows as view change after view change.
    public var emptyBlockIntervalTicks: UInt64? = 10
    /// When to run `Replica.invariants()`: after every step (tests), or after each
    /// replica's tick step (long sweeps, where it would be a tenth of the time).
    public var checkReplicaInvariants: InvariantChecking = .everyStep
    /// Replaces the drawn plan (scenario tests).
    public var plan: FaultPlan?
    package var defences: SwitchableDefences = .all
    package var mempoolDefences: SwitchableMempoolDefences = .all

    /// Switches off one named defence (`Simulation.defenceNames`), to show a scenario
    /// goes red without it. False for an unknown name.
    package mutating func disableDefence(_ name: String) -> Bool {
        switch name {
        case "signatures": defences.verifySignatures = false
        case "equivocation": defences.rejectEquivocation = false; defences.signerGuard = false
        case "stale-views": defences.dropStaleViews = false
        case "view-change-certificates": defences.checkViewChangeCertificates = false
        case "new-view-recompute": defences.recomputeNewView = false
        case "view-change-timer": defences.viewChangeTimer = false
        case "join-needs-f-plus-one": defences.joinViewChangeNeedsFPlusOne = false
        case "invalid-new-view": defences.invalidNewViewBlamesOnlyItsView = false
        case "censorship-timer": defences.censorshipTimer = false
        case "slow-primary": defences.slowPrimaryCheck = false
        case "quiet-chain-catch-up": defences.announceCommittedTip = false
        case "quorum": defences.quorumOverride = 2 * ((validatorCount - 1) / 3)
        case "chain-id": bindsChainID = false
        case "mempool-recheck": mempoolDefences.recheckAfterCommit = false
        case "mempool-proposable": mempoolDefences.proposableByExecutionRule = false
        default: return false
        }
        return true
    }
    /// Start-up safety as a node runs it: each replica keeps a signing mark outside its
    /// journal (raised after every journal write, surviving crashes) and a restarted
    /// one starts in the quarantine (`Replica(signingMark:quarantined:)`). On by
    /// default, as in every node; off only to compare with runs without it.
    public var startupSafety = true
    /// Switched off only to show that binding the chain id in signatures is load-bearing.
    public var bindsChainID = true
    /// Prints each replica's view, state and height every `traceEveryTicks` ticks (debugging a seed).
    public var traceEveryTicks: Int?

    public init(validatorCount: Int = 4, mix: FaultMix = .all) {
        self.validatorCount = validatorCount
        self.mix = mix
    }

    public static let parameters = ConsensusParameters(
        checkpointIntervalBlocks: 4, maxBlockTransactions: 16, maxBlocksInFlight: 3, tickMs: 10,
        viewChangeTimeoutTicks: 16, maxViewChangeTimeoutTicks: 128)

    /// `parameters` with the node's block size and checkpoint interval (`FullBlockLoad`).
    public static let fullBlockParameters: ConsensusParameters = {
        var parameters = SimulationOptions.parameters
        parameters.checkpointIntervalBlocks = ConsensusParameters.default.checkpointIntervalBlocks
        parameters.maxBlockTransactions = ConsensusParameters.default.maxBlockTransactions
        return parameters
    }()

    /// Full-size blocks: the node's block size and checkpoint interval, and a client
    /// load that fills them (`FullBlockLoad`).
    public var fullBlocks = false

    public var consensusParameters: ConsensusParameters {
        fullBlocks ? SimulationOptions.fullBlockParameters : SimulationOptions.parameters
    }
}

/// The outcome of one run.
public struct SimulationResult: Sendable {
    public let seed: UInt64
    public let validatorCount: Int
    public let mix: FaultMix
    public let plan: FaultPlan
    /// Nil when every invariant held.
    public let failure: String?
    public let ticks: Int
    /// Highest height an honest replica committed.
    public let blocksCommitted: UInt64
    public let viewChanges: Int
    public let faults: [String: Int]
    public let dropped: [DropReason: Int]
    /// View changes honest backups started suspecting the primary, by reason.
    public let suspicions: [BackupSuspicion: Int]
    public let transactionsCommitted: Int
    /// The hashes of the longest chain an honest replica committed, in height order
    /// (a replay must reproduce the chain itself, not only its length).
    public let committedBlockHashes: [Hash]
    /// Transactions honest mempools evicted after admitting them, by reason.
    public let evictions: [EvictionReason: Int]
    /// What the simulated transport dropped (over the frame bound, queue full, reset)
    /// or held for a peer that was down.
    public let transport: [TransportEvent: Int]
    /// The largest VIEW-CHANGE and NEW-VIEW sent, and their size had they carried whole blocks.
    public let viewChangeSizes: ViewChangeSizes
    /// Every message the validators sent, by kind, with its bytes (Transport.swift).
    public let traffic: MessageTraffic

    /// SHA-256 over everything the run produced (chain, counters, outcome), keys in
    /// sorted order. Two runs of one seed must agree on it, also in different
    /// processes: Swift seeds its hashing per process, so iterating a dictionary or a
    /// set where order reaches consensus shows up here as a different fingerprint.
    public var fingerprint: Hash {
        var lines = ["seed \(seed) n \(validatorCount) ticks \(ticks) height \(blocksCommitted)",
                     "views \(viewChanges) transactions \(transactionsCommitted) failure \(failure ?? "none")"]
        lines += faults.sorted { $0.key < $1.key }.map { "fault \($0.key) \($0.value)" }
        lines += dropped.map { "dropped \($0.key.rawValue) \($0.value)" }.sorted()
        lines += suspicions.map { "suspicion \($0.key.rawValue) \($0.value)" }.sorted()
        lines += evictions.map { "eviction \($0.key.rawValue) \($0.value)" }.sorted()
        lines += transport.map { "transport \($0.key.rawValue) \($0.value)" }.sorted()
        let sizes = viewChangeSizes
        lines.append("view-change bytes \(sizes.viewChangeBytes) \(sizes.viewChangeWholeBlockBytes) \(sizes.newViewBytes) \(sizes.newViewWholeBlockBytes)")
        lines += traffic.fingerprintLines
        return SHA256.hash(parts: lines.map { Array($0.utf8) + [10] } + committedBlockHashes.map(\.bytes))
    }
}

/// A deterministic in-process cluster: n replicas, one seed for message delay, loss,
/// duplication, reordering, partitions, crashes with torn writes, Byzantine
/// replicas and client load (honest and hostile) through each replica's own
/// `LedgerApplication` and `Mempool`, the node's. Every run checks agreement,
/// certificate validity, monotonic heights and views, that no honest replica signs
/// conflicting votes, that no transaction commits twice, that nothing from a
/// never-funded sender or behind a nonce gap commits, and liveness after healing:
/// heights move on and a transfer submitted at healing commits everywhere.
public final class Simulation {
    public static let chainID = "tally-sim"
    static let otherChainID = "tally-sim-other"

    final class Node {
        let slot: Int
        let validator: ValidatorIndex
        let mode: ByzantineMode?
        /// For a twin: which half of the honest replicas it can reach during faults.
        let twinGroup: Int?
        /// Runs the replica (nil while the node is down).
        var driver: ReplicaDriver?
        var replica: Replica? { driver?.replica }
        /// `driver != nil`, kept apart so checking it never touches the driver.
        var up = false
        /// The consensus application; at a restart rebuilt from the blocks in `store`.
        var app: LedgerApplication
        /// The node's disk, where its consensus journal and block store live: crashes tear their writes.
        let fileSystem = SimulatedFileSystem()
        /// The real block store over `fileSystem`, where the node's committed chain is
        /// (nil while the node is down; reopened, and so recovered, at every restart).
        var store: BlockStore?
        /// The store's tip after the last append that returned: a restart must find
        /// exactly this on the disk (or `tornAppend` too, when its record made it whole).
        var durableHeight: UInt64 = 0
        /// The block whose append a crash tore.
        var tornAppend: CertifiedBlock?
        /// The real consensus journal over `fileSystem` (reopened at every restart).
        var journal: ConsensusStateStore?
        /// The state of the last journal write that completed: a restart must read it
        /// back (or `tornDurable`).
        var durable: DurableState?
        /// The state of a write torn by a crash: its record may have reached the disk whole.
        var tornDurable: DurableState?
        /// The node's signing-mark file (outside the data directory: a crash keeps it).
        var signingMarkFile: SigningMark?
        var persistedView: UInt64 = 0
        var restartTick: Int?
        var crashDuringNextStep: Crash?
        var lastView: UInt64 = 0
        var transactionHashes = Set<Hash>()
        var recorded: [ConsensusMessage] = []
        /// Blocks a forged certificate named (pushed to peers, who fetch by hash).
        var forgedBlocks: [Block] = []
        /// What a slow primary sent but holds back until its next release.
        var heldMessages: [(message: ConsensusMessage, targets: [ValidatorIndex])] = []

        init(slot: Int, validator: ValidatorIndex, mode: ByzantineMode?, twinGroup: Int?, app: LedgerApplication) {
            self.slot = slot
            self.validator = validator
            self.mode = mode
            self.twinGroup = twinGroup
            self.app = app
        }

        var isHonest: Bool { mode == nil }

        /// The committed height: the store's tip (while down, what the disk held at the crash).
        var height: UInt64 { store?.tipHeight ?? durableHeight }
    }

    struct Delivery {
        let fromSlot: Int
        let toSlot: Int
        let message: ConsensusMessage
        /// Unique in the run (the transport's queues and resets name deliveries by it).
        let id: Int
        /// The message's size on the wire.
        let bytes: Int
    }

    struct VoteKey: Hashable {
        let validator: ValidatorIndex
        let view: UInt64
        let height: UInt64
        let phase: UInt8
    }

    public let seed: UInt64
    let options: SimulationOptions
    let checkReplicaInvariants: InvariantChecking
    let validatorCount: Int
    var partitions: [Partition] = []
    var lossPercent = 0
    var duplicatePercent = 0
    var maxDelayTicks = 1
    var healTick = 0
    var crashes: [Crash] = []
    var clientRatePercent = 0
    /// others[v]: every validator index but v.
    var others: [[ValidatorIndex]] = []
    public private(set) var plan: FaultPlan
    var random: SimRandom
    let scheme: SimSignatureScheme
    let checkScheme: SimSignatureScheme
    let genesis: Genesis
    let genesisHash: Hash
    let genesisLedger: Ledger
    let pool: TransactionPool
    var nodes: [Node] = []
    var slotsByValidator: [[Int]] = []
    var honestGroups: [Set<Int>] = [[], []]
    var network: [Int: [Delivery]] = [:]
    /// links[linkIndex(fromSlot:toSlot:)]: the simulated connections (Transport.swift).
    var links: [Link] = []
    /// Deliveries scheduled in `network` that a full queue or a reset dropped.
    var cancelledDeliveries = Set<Int>()
    var nextDeliveryID = 0
    var transport: [TransportEvent: Int] = [:]
    var viewChangeSizes = ViewChangeSizes()
    var traffic = TrafficRecorder()
    var pendingTransactions: [Int: [(slot: Int, transaction: Transaction)]] = [:]
    /// Batches of the full-block load by arrival tick.
    var pendingBatches: [Int: [(slot: Int, transactions: [Transaction])]] = [:]
    var fullBlockLoadSubmitted = 0
    var clientNextNonce: [Int]
    /// Hostile submissions draw from their own stream, so they leave the fault
    /// schedule and the honest load of a seed as they were.
    var hostileRandom: SimRandom
    var stuckSendersUsed = 0
    var tick = 0
    var failure: String?
    var committedByHeight: [UInt64: Hash] = [:]
    var honestVotes: [VoteKey: Hash] = [:]
    var faults: [String: Int] = [:]
    var target: UInt64?
    var transactionLog = TransactionLog()
    /// Called as a node goes down, and as it comes back up before its first step
    /// (tests look at what it kept and what it restarted from).
    var crashObserver: ((Node) -> Void)?
    var restartObserver: ((Node) -> Void)?

    public init(seed: UInt64, options: SimulationOptions) {
        self.seed = seed
        self.options = options
        random = SimRandom(seed: seed)
        hostileRandom = SimRandom(seed: seed ^ 0x4057_11E5)
        let count = options.validatorCount
        precondition(count >= 4 && count <= 64)
        scheme = SimSignatureScheme(validatorCount: count, seed: seed, bindsChainID: options.bindsChainID)
        checkScheme = SimSignatureScheme(validatorCount: count, seed: seed, bindsChainID: true)
        plan = options.plan ?? FaultPlan.draw(
            mix: options.mix, validatorCount: count, random: &random, faultTicks: options.faultTicks,
            byzantineModes: options.byzantineModes, forceByzantine: options.forceByzantine)
        if options.plan == nil, let quiet = options.quietAfterTick {
            let restart = quiet + SimulationOptions.quietRestartDelayTicks
            if restart + 5 < plan.healTick {
                plan.crashes += (0..<count).map { Crash(validator: $0, tick: restart, restartTick: restart + 5, tornWrite: false) }
            }
        }
        checkReplicaInvariants = options.checkReplicaInvariants
        validatorCount = count
        genesis = Simulation.makeGenesis(validatorCount: count, parameters: options.consensusParameters)
        genesisHash = genesis.hash
        pool = TransactionPool.shared(for: genesis)
        genesisLedger = Ledger(genesis: genesis)
        clientNextNonce = Array(repeating: 0, count: TransactionPool.clientCount)
        partitions = plan.partitions
        lossPercent = plan.lossPercent
        duplicatePercent = plan.duplicatePercent
        maxDelayTicks = plan.maxDelayTicks
        healTick = plan.healTick
        crashes = plan.crashes
        clientRatePercent = options.clientRatePercent
        others = (0..<count).map { me in (0..<ValidatorIndex(count)).filter { $0 != me } }
        buildNodes()
        links = Array(repeating: Link(), count: nodes.count * nodes.count)
    }

    static func makeGenesis(validatorCount: Int, parameters: ConsensusParameters = SimulationOptions.parameters) -> Genesis {
        let validators = (0..<validatorCount).map { index in
            Validator(
                name: "v\(index)", publicKey: SigningKey(seed: [UInt8](repeating: UInt8(200 + index), count: 32))!.publicKey,
                networkAddress: "127.0.0.1:\(26000 + index)")
        }
        let load = FullBlockLoad.applies(to: parameters) ? FullBlockLoad.genesisAccounts : []
        return try! Genesis(
            chainID: chainID, genesisTimeMs: 1_700_000_000_000, validators: validators,
            accounts: TransactionPool.genesisAccounts + load, consensus: parameters)
    }

    func buildNodes() {
        let count = options.validatorCount
        var honest = (0..<count).filter { plan.byzantine[$0] == nil }
        random.shuffle(&honest)
        honestGroups = [Set(honest.prefix(honest.count / 2)), Set(honest.dropFirst(honest.count / 2))]
        slotsByValidator = Array(repeating: [], count: count)
        for validator in 0..<count {
            let mode = plan.byzantine[validator]
            let copies = mode == .twins ? 2 : 1
            for copy in 0..<copies {
                let node = Node(
                    slot: nodes.count, validator: ValidatorIndex(validator), mode: mode,
                    twinGroup: mode == .twins ? copy : nil, app: makeApplication())
                slotsByValidator[validator].append(node.slot)
                nodes.append(node)
                precondition(try! openJournal(node) == nil, "a new node's journal is empty")
                precondition(try! openStore(node).tipHeight == 0, "a new node's block store is empty")
                node.driver = makeDriver(for: node, durable: nil)
                node.up = true
            }
        }
    }

    /// A node's application on `ledger` (genesis by default) with an empty mempool.
    func makeApplication(
        ledger: Ledger? = nil, tipHash: Hash? = nil, tipTimestampMs: UInt64? = nil
    ) -> LedgerApplication {
        Simulation.makeApplication(
            genesis: genesis, ledger: ledger ?? genesisLedger, tipHash: tipHash ?? genesisHash,
            tipTimestampMs: tipTimestampMs ?? genesis.genesisTimeMs, mempoolDefences: options.mempoolDefences,
            nowMs: { [unowned self] in self.genesis.genesisTimeMs + UInt64(self.tick) * SimulationOptions.parameters.tickMs })
    }

    /// The replica resumed from its journal and its store, as the node's start-up does
    /// (`NodeStartup.replica`): committed height, block hashes and tip certificate
    /// from the stored chain. Nil (and the run failed) when a stored block cannot be read.
    func makeReplica(for node: Node, durable: DurableState?) -> Replica? {
        let configuration = ReplicaConfiguration(
            chainID: Simulation.chainID, validators: genesis.validators, selfIndex: node.validator,
            parameters: genesis.consensus, genesisHash: genesisHash, genesisStateRoot: genesisLedger.stateRoot,
            emptyBlockIntervalTicks: options.emptyBlockIntervalTicks, retransmitIntervalTicks: 6, syncRetryTicks: 10)
        let signer: any ConsensusSigner = node.mode == .wrongChain
            ? ChainSwappingSigner(inner: scheme.signer(for: node.validator))
            : scheme.signer(for: node.validator)
        let store = node.store!
        var replica: Replica
        do {
            replica = try Replica(
                configuration: configuration, durableState: durable, committedHeight: store.tipHeight,
                blockHash: { [genesisHash] height in
                    if height == 0 { return genesisHash }
                    guard let block = try store.block(at: height) else { throw StoreError.failed("block \(height) is missing below the tip") }
                    return block.block.hash
                },
                tipCertificate: store.tipHeight == 0 ? nil : try store.block(at: store.tipHeight)?.certificate,
                application: node.app, verifier: scheme.verifier, signer: signer,
                signingMark: options.startupSafety ? node.signingMarkFile : nil,
                // As the node: quarantined whenever it starts on anything it wrote before.
                quarantined: options.startupSafety && (durable != nil || store.tipHeight > 0 || node.signingMarkFile != nil))
        } catch {
            fail("validator \(node.validator)'s stored chain cannot be read at start: \(error)")
            return nil
        }
        replica.defences = options.defences
        return replica
    }

    /// The production driver over the simulator's I/O (`NodeIO`): every step's
    /// invariants and the view's monotonicity are checked as it runs.
    func makeDriver(for node: Node, durable: DurableState?) -> ReplicaDriver? {
        guard let replica = makeReplica(for: node, durable: durable) else { return nil }
        let io = NodeIO(simulation: self, node: node)
        let checks: ReplicaDriver.InvariantChecks = checkReplicaInvariants == .everyStep ? .everyStep : .everyTick
        let driver = ReplicaDriver(replica: replica, journal: io, blocks: io, transport: io, invariantChecks: checks)
        driver.stepObserver = { [unowned self, unowned node] replica, _, _ in
            // A step that crashes loses what it did not write: its view is not kept.
            guard node.crashDuringNextStep == nil else { return }
            if node.isHonest && replica.view < node.lastView {
                self.fail("validator \(node.validator)'s view went back from \(node.lastView) to \(replica.view)")
            }
            node.lastView = replica.view
        }
        return driver
    }

    // MARK: Running

    public func run() -> SimulationResult {
        let lastTick = plan.healTick + options.livenessBoundTicks
        while failure == nil && tick <= lastTick {
            runTick()
            if let every = options.traceEveryTicks, tick % every == 0 { printTrace() }
            if tick == plan.healTick {
                target = maxHonestHeight + options.heightsAfterHeal
                resubmitUncommittedTransactions()
            }
            if tick >= plan.healTick { checkTransactionLiveness() }
            if let target, minHonestHeight >= target, probeCommitted, transactionsSettled { break }
            tick += 1
        }
        if failure == nil && tick > lastTick {
            if let target, minHonestHeight >= target, probeCommitted {
                fail("liveness: client transactions submitted by \(options.transactionWatchTicks) ticks after healing were not all committed by every honest validator within \(options.livenessBoundTicks) ticks")
            } else if let target, minHonestHeight >= target {
                fail("liveness: the transfer submitted at healing was not committed by every honest validator within \(options.livenessBoundTicks) ticks")
            } else {
                fail("liveness: honest heights \(honestHeights) did not all reach \(target ?? 0) within \(options.livenessBoundTicks) ticks of healing")
            }
        }
        if failure == nil { checkMeanTransactionLatency() }
        var dropped: [DropReason: Int] = [:]
        var suspicions: [BackupSuspicion: Int] = [:]
        var viewChanges = 0
        var evictions: [EvictionReason: Int] = [:]
        for node in nodes where node.isHonest {
            evictions.merge(node.app.mempool.evictions, uniquingKeysWith: +)
            if let replica = node.replica {
                dropped.merge(replica.dropped, uniquingKeysWith: +)
                suspicions.merge(replica.suspicions, uniquingKeysWith: +)
                viewChanges = max(viewChanges, replica.viewChangesStarted)
            }
        }
        return SimulationResult(
            seed: seed, validatorCount: options.validatorCount, mix: options.mix, plan: plan, failure: failure,
            ticks: tick, blocksCommitted: maxHonestHeight, viewChanges: viewChanges, faults: faults, dropped: dropped, suspicions: suspicions,
            transactionsCommitted: nodes.first(where: \.isHonest)?.transactionHashes.count ?? 0,
            committedBlockHashes: honestNodes.max { $0.height < $1.height }.map(storedBlockHashes) ?? [],
            evictions: evictions, transport: transport, viewChangeSizes: viewChangeSizes, traffic: traffic.traffic)
    }

    /// The probe transfer (submitted to every replica at healing, when all are up)
    /// committed at every honest replica: transactions flow through the mempools,
    /// proposals and commits again, not only (empty) blocks.
    var probeCommitted: Bool {
        let hash = pool.probe.hash
        return honestNodes.allSatisfy { $0.transactionHashes.contains(hash) }
    }

    func printTrace() {
        let states = nodes.map { node -> String in
            guard let replica = node.replica else { return "v\(node.validator):down" }
            let drops = replica.dropped.filter { $0.value > 0 }.sorted { $0.key < $1.key }.map { "\($0.key.rawValue)=\($0.value)" }
            return "v\(node.validator)\(node.mode.map { "[\($0.rawValue)]" } ?? ""): view \(replica.view)\(replica.inViewChange ? "*" : "") h \(replica.committedHeight) stable \(replica.stableCheckpoint.height) \(replica.debugSummary) \(drops.joined(separator: ","))"
        }
        print("tick \(tick): " + states.joined(separator: " | "))
    }

    var honestNodes: [Node] { nodes.filter(\.isHonest) }
    var honestHeights: [UInt64] { honestNodes.map(\.height) }
    var maxHonestHeight: UInt64 { honestHeights.max() ?? 0 }
    var minHonestHeight: UInt64 { honestHeights.min() ?? 0 }

    func fail(_ reason: String) {
        if failure == nil { failure = "tick \(tick): \(reason)" }
    }

    func count(_ fault: String, _ amount: Int = 1) { faults[fault, default: 0] += amount }

    func runTick() {
        startPartitions()
        crashAndRestart()
        if let deliveries = network.removeValue(forKey: tick) {
            for delivery in deliveries where failure == nil { deliver(delivery) }
        }
        deliverBatches()
        if let arrivals = pendingTransactions.removeValue(forKey: tick) {
            for (slot, transaction) in arrivals where nodes[slot].up && !censors(nodes[slot], transaction) {
                // As a node does: through admission, and a proposal only when something was admitted.
                if case .success = nodes[slot].app.submit([transaction])[0] { step(nodes[slot], .transactionsAvailable) }
            }
        }
        for node in nodes where failure == nil && node.up {
            // The mempool's clock is the consensus clock, as in a node.
            node.app.mempool.expire(nowMs: UInt64(tick) * SimulationOptions.parameters.tickMs)
            step(node, .tick)
            if node.mode != nil, node.up { byzantineTick(node) }
        }
        submitClientTransactions()
        submitFullBlockLoad()
        if tick == plan.healTick { submitToEveryReplica(pool.probe, delayTicks: 1) }
        submitHostileTransactions()
    }

    func startPartitions() {
        var started = false
        for index in partitions.indices where partitions[index].startTick == tick {
            started = true
            if partitions[index].kind == .isolatePrimary {
                let view = honestNodes.compactMap { $0.replica?.view }.max() ?? 0
                partitions[index].groupA = [Int(view % UInt64(validatorCount))]
                plan.partitions[index].groupA = partitions[index].groupA
            }
        }
        if started { resetCutConnections() }
    }

    func crashAndRestart() {
        for crash in crashes where crash.tick == tick {
            for slot in slotsByValidator[crash.validator] where nodes[slot].up {
                nodes[slot].crashDuringNextStep = crash
                nodes[slot].restartTick = crash.restartTick
            }
        }
        for node in nodes where !node.up && node.restartTick == tick {
            node.restartTick = nil
            let durable: DurableState?
            do { durable = try openJournal(node) } catch {
                return fail("validator \(node.validator)'s journal does not reopen: \(error)")
            }
            if durable != node.durable {
                guard let torn = node.tornDurable, durable == torn else {
                    return fail("validator \(node.validator)'s journal read back another state than its last completed write")
                }
                // Safe: nothing the torn write covered was sent.
                count("journal_torn_writes_read_back")
                node.durable = torn
                node.persistedView = torn.view
            }
            node.tornDurable = nil
            guard restoreChain(node) else { return }
            guard let driver = makeDriver(for: node, durable: durable) else { return }
            node.driver = driver
            node.up = true
            restartObserver?(node)
            sendHeldMessages(to: node.slot)
            count("restarts")
        }
    }

    func deliver(_ delivery: Delivery) {
        guard arrives(delivery) else { return }
        let node = nodes[delivery.toSlot]
        guard node.up else { return count("lost_to_crashed") }
        if node.mode == .replayOldView, node.recorded.count < 400 { node.recorded.append(delivery.message) }
        step(node, .message(delivery.message, from: nodes[delivery.fromSlot].validator))
    }

    var isQuiet: Bool { options.quietAfterTick.map { tick >= $0 } ?? false }

    func submitClientTransactions() {
        guard !isQuiet, random.chance(clientRatePercent) else { return }
        let client = random.below(TransactionPool.clientCount)
        guard clientNextNonce[client] < TransactionPool.noncesPerClient else { return }
        let transaction = pool.transactions[client][clientNextNonce[client]]
        clientNextNonce[client] += 1
        transactionLog.submitted(transaction, atTick: tick)
        for node in nodes {
            pendingTransactions[tick + random.inRange(1...3), default: []].append((node.slot, transaction))
        }
    }

    func submitToEveryReplica(_ transaction: Transaction, delayTicks: Int) {
        for node in nodes { pendingTransactions[tick + delayTicks, default: []].append((node.slot, transaction)) }
    }

    /// One hostile submission now and then (`HostileTransactions`), until the run's
    /// last tick; stuck senders are used once each.
    func submitHostileTransactions() {
        guard !isQuiet, options.hostileRatePercent > 0, hostileRandom.chance(options.hostileRatePercent) else { return }
        let hostile = pool.hostile
        switch hostileRandom.below(3) {
        case 0:
            let key = hostileRandom.below(HostileTransactions.unfundedCount)
            submitToEveryReplica(hostile.unfunded[key][hostileRandom.below(HostileTransactions.unfundedNonces)], delayTicks: 1)
            count("hostile_unfunded")
        case 1:
            for _ in 0..<4 { submitToEveryReplica(hostileRandom.pick(hostile.flood), delayTicks: hostileRandom.inRange(1...3)) }
            count("hostile_future_nonces", 4)
        default:
            guard stuckSendersUsed < hostile.stuck.count else { return }
            let stuck = hostile.stuck[stuckSendersUsed]
            stuckSendersUsed += 1
            // T0' to the primary of the highest honest view, T0 and T1 to the others, at once.
            let view = honestNodes.compactMap { $0.replica?.view }.max() ?? 0
            let primary = ValidatorIndex(view % UInt64(validatorCount))
            for node in nodes {
                let sent = node.validator == primary ? [stuck.spendAll] : [stuck.first, stuck.second]
                pendingTransactions[tick + 1, default: []] += sent.map { (node.slot, $0) }
            }
            count("hostile_stuck_senders")
        }
    }

    // MARK: Steps and the driver's I/O

    /// The run found a violation: the driver stops carrying out actions.
    struct Stopped: Error {}
    /// The node crashed inside its driver's I/O.
    struct Crashed: Error {}

    /// One node's I/O for its driver: a journal that crashes tear, the node's chain
    /// and application, the simulated network.
    final class NodeIO: DurableStateSink, CertifiedBlockSink, ReplicaTransport {
        unowned let simulation: Simulation
        unowned let node: Node

        init(simulation: Simulation, node: Node) {
            self.simulation = simulation
            self.node = node
        }

        func write(_ state: DurableState) throws { try simulation.persist(state, node: node) }
        func commit(_ block: CertifiedBlock) throws -> Hash { try simulation.commit(block, node: node) }
        func send(_ message: ConsensusMessage, to peer: ValidatorIndex) throws {
            try simulation.send(message, from: node, to: [peer])
        }
        func broadcast(_ message: ConsensusMessage) throws {
            try simulation.send(message, from: node, to: simulation.others[Int(node.validator)])
        }
        /// Read back from the store, as the node's `SyncServer` does (through its reader).
        func sendBlocks(heights: ClosedRange<UInt64>, to peer: ValidatorIndex) throws {
            let reader = node.store!.reader
            var blocks: [CertifiedBlock] = []
            for height in heights {
                do {
                    guard let block = try reader.block(at: height) else { throw StoreError.failed("no block at height \(height)") }
                    blocks.append(block)
                } catch {
                    simulation.fail("validator \(node.validator) cannot read back its block \(height) for sync: \(error)")
                    throw Stopped()
                }
            }
            try simulation.send(.syncResponse(blocks), from: node, to: [peer])
        }
    }

    /// Steps `node`'s driver. A crash planned for this step happens at its first I/O
    /// (inside the durable write, torn or not; before a block commit or a send), or
    /// after the step when it did none.
    func step(_ node: Node, _ event: ConsensusEvent) {
        guard failure == nil, node.up, let driver = node.driver else { return }
        traffic.stepIsTick = isTick(event)
        defer { traffic.stepIsTick = false }
        do { try driver.handle(event) } catch { return }
        if let crash = node.crashDuringNextStep { self.crash(node, crash) }
    }

    /// The node stops; its disk keeps what `outcome` says (everything the journal and
    /// the block store fsynced survives either way). Its application (ledger and
    /// mempool) dies with it: the restart rebuilds it from the store.
    func crash(_ node: Node, _ crash: Crash, outcome: SimulatedFileSystem.CrashOutcome = .loseUnsynced) {
        node.fileSystem.restart(outcome)
        node.journal = nil
        node.store = nil
        node.crashDuringNextStep = nil
        node.driver = nil
        node.up = false
        resetConnections(of: node.slot)
        count(crash.tornWrite ? "crashes_torn_write" : "crashes")
        crashObserver?(node)
    }

    /// Segments small enough that runs roll over to new segment files often (a
    /// block of the simulator's load is a few hundred bytes to a few kilobytes).
    static let blockSegmentBytes = 16 << 10

    /// Opens the node's block store on its disk as the node does at start (recovering
    /// from a crash: a torn record at the tail is truncated). What the store logs of
    /// its recovery is counted in the run's faults.
    func openStore(_ node: Node) throws -> BlockStore {
        let log = LogCapture()
        let store = try BlockStore.open(
            dataDirectory: "/data", fileSystem: node.fileSystem, options: .init(maxSegmentBytes: Self.blockSegmentBytes),
            logger: log.logger(level: .info))
        for line in log.lines {
            switch line.message {
            case BlockStore.tornTailTruncatedMessage: count("block_store_torn_tails_truncated")
            case BlockStore.indexRebuiltMessage: count("block_index_rebuilds")
            default: if line.level >= .warning { count("block_store_warnings") }
            }
        }
        node.store = store
        return store
    }

    /// At a restart: reopens the store on the crashed disk, checks it holds exactly the
    /// blocks whose append returned (the torn one whole or gone) and that what it holds
    /// reads clean as `tally verify` reads it, and rebuilds the ledger by replaying the
    /// stored chain over genesis with the node's recovery (`ChainRecovery`). False
    /// (and the run failed) when any of that does not hold.
    func restoreChain(_ node: Node) -> Bool {
        let store: BlockStore
        do { store = try openStore(node) } catch {
            fail("validator \(node.validator)'s block store does not reopen: \(error)")
            return false
        }
        if store.tipHeight != node.durableHeight {
            guard let torn = node.tornAppend, store.tipHeight == torn.block.height,
                  (try? store.block(at: torn.block.height)) == torn
            else {
                fail("validator \(node.validator)'s block store reopened at height \(store.tipHeight), its last completed append was \(node.durableHeight)")
                return false
            }
            // Safe: the block was certified; the restarted node executes it from the disk.
            count("torn_block_appends_read_back")
            stored(torn, node: node)
        } else if node.tornAppend != nil {
            count("torn_block_appends_gone")
        }
        node.tornAppend = nil
        do {
            var reader = try ChainReader(dataDirectory: "/data", fileSystem: node.fileSystem)
            while try reader.next() != nil {}
        } catch {
            fail("validator \(node.validator)'s blocks do not read clean after the store's recovery: \(error)")
            return false
        }
        let recovery: ChainRecovery.Outcome
        do {
            recovery = try ChainRecovery.resume(
                store: store, snapshots: nil, genesis: genesis, logger: Logger(label: "tally.sim.recovery") { _ in SwiftLogNoOpLogHandler() },
                precheck: recoveryPrecheck(for: node))
        } catch {
            fail("validator \(node.validator)'s stored chain does not replay: \(error)")
            return false
        }
        if node.isHonest, store.tipHeight > 0, committedByHeight[store.tipHeight] != recovery.verifier.lastBlockHash {
            fail("validator \(node.validator)'s stored tip at height \(store.tipHeight) is not the block it committed there")
            return false
        }
        node.app = makeApplication(
            ledger: recovery.verifier.ledger, tipHash: recovery.verifier.lastBlockHash,
            tipTimestampMs: recovery.verifier.lastTimestampMs)
        return true
    }

    /// The node's recovery checks with the simulator's signatures: certificates with
    /// the replicas' verifier (and the quorum they were told to accept), transactions
    /// with the pool's libsodium verdicts. A Byzantine replica's certificates hold its
    /// own votes as it signs them (for another chain, say): only an honest one's are checked.
    func recoveryPrecheck(for node: Node) -> (CertifiedBlock) -> PrecheckedBlock {
        let verifier = scheme.verifier
        let validators = genesis.validators
        let quorum = options.defences.quorumOverride
        let checksCertificates = node.isHonest
        let signatures = PresignedSignatures(pool: pool)
        let genesisHash = genesisHash
        return { certified in
            var failure: CommitCertificate.Failure?
            if checksCertificates {
                let certificate = certified.certificate
                do throws(CommitCertificate.Failure) {
                    try certificate.checkStructure(
                        height: certified.block.height, blockHash: certified.block.hash, validators: validators, quorum: quorum)
                    let bytes = certificate.voteTarget.signingBytes(chainID: Simulation.chainID)
                    if let bad = certificate.signatures.first(where: { !verifier.isValid($0.signature, by: $0.validatorIndex, for: bytes) }) {
                        failure = .badSignature(validatorIndex: bad.validatorIndex)
                    }
                } catch { failure = error }
            }
            return BlockPrecheck.committed(
                certified, genesisHash: genesisHash, certificateFailure: failure,
                isValidSignature: { signatures.isValid($0, genesisHash: genesisHash) })
        }
    }

    /// The hashes of the node's stored chain in height order (reopening its disk when it is down).
    func storedBlockHashes(_ node: Node) -> [Hash] {
        do {
            let store = try node.store ?? openStore(node)
            var hashes: [Hash] = []
            try store.forEachBlock { hashes.append($0.block.hash) }
            return hashes
        } catch {
            fail("validator \(node.validator)'s stored chain cannot be read: \(error)")
            return []
        }
    }

    /// The node's committed tip block from its store (nil at genesis, or when it cannot be read: the run fails).
    func storedTip(_ node: Node) -> CertifiedBlock? {
        guard let store = node.store, store.tipHeight > 0 else { return nil }
        do { return try store.block(at: store.tipHeight) } catch {
            fail("validator \(node.validator)'s tip block cannot be read: \(error)")
            return nil
        }
    }

    /// Journal sizes small enough that sweeps compact it often.
    static let journalCompactionBytes = 64 << 10
    static let journalPreallocationBytes = 16 << 10

    /// Opens the node's journal on its disk as the node does at start; returns the
    /// state it holds (with its prepared blocks), nil when never written.
    func openJournal(_ node: Node) throws -> DurableState? {
        let journal = try DataLayout.consensusStateStore(
            "/data", fileSystem: node.fileSystem, compactionBytes: Self.journalCompactionBytes,
            preallocationBytes: Self.journalPreallocationBytes)
        node.journal = journal
        return try journal.readDurableState()
    }

    /// One real journal write (the node's call), durable when it returns.
    func writeJournal(_ state: DurableState, node: Node) throws {
        let blocks = state.referencedBlocks
        try node.journal!.write(state: state.compactBytes, referenced: Set(blocks.keys)) { blocks[$0]!.canonicalBytes }
        // The node raises its mark file after the journal write, before any send.
        if options.startupSafety, state.signingMark > (node.signingMarkFile ?? .zero) { node.signingMarkFile = state.signingMark }
    }

    /// The driver's durable write, to the real journal. A torn write crashes at the
    /// write's second file operation (the fsync of an appended record; the data write
    /// of a compaction's temporary file), and the disk keeps half of what was written
    /// since the last fsync: the journal must read back the state before it, or the
    /// new one when its whole record made it (a record shorter than the preallocated
    /// zeros written with it).
    func persist(_ state: DurableState, node: Node) throws {
        guard failure == nil else { throw Stopped() }
        if let crash = node.crashDuringNextStep {
            if crash.tornWrite {
                node.fileSystem.crash(afterOperations: 2)
                do {
                    try writeJournal(state, node: node)
                    node.fileSystem.cancelCrash()
                    node.durable = state
                } catch {
                    count("journal_writes_torn")
                    node.tornDurable = state
                }
                self.crash(node, crash, outcome: .tearUnsynced)
            } else {
                do { try writeJournal(state, node: node) } catch {
                    fail("validator \(node.validator)'s journal write failed: \(error)")
                    throw Stopped()
                }
                node.durable = state
                self.crash(node, crash)
            }
            throw Crashed()
        }
        if node.isHonest && state.view < node.persistedView {
            fail("validator \(node.validator) persisted view \(state.view) after \(node.persistedView)")
        }
        do { try writeJournal(state, node: node) } catch {
            fail("validator \(node.validator)'s journal write failed: \(error)")
            throw Stopped()
        }
        node.persistedView = state.view
        node.durable = state
    }

    /// The driver's commit, in the node's order (`BlockCommitter`): the block appended
    /// to the real store (fsynced when it returns), then the ledger. A crash planned
    /// for this step happens here: a torn one at the append's second file operation
    /// (the record's fsync; on a segment rollover, the new segment's directory fsync),
    /// the disk keeping half of what was written since the last fsync, so the store's
    /// recovery must drop the torn record; otherwise after the append returned, before
    /// the ledger moved, so the restart must execute the block from the disk.
    func commit(_ certified: CertifiedBlock, node: Node) throws -> Hash {
        guard failure == nil else { throw Stopped() }
        // The replica decided to commit it: checked whether or not it reaches the disk.
        if node.isHonest { checkCommit(certified, node: node) }
        guard failure == nil else { throw Stopped() }
        if let crash = node.crashDuringNextStep {
            if crash.tornWrite {
                node.fileSystem.crash(afterOperations: 2)
                do {
                    try node.store!.append(certified)
                    node.fileSystem.cancelCrash()
                    stored(certified, node: node)
                } catch {
                    count("block_appends_torn")
                    node.tornAppend = certified
                }
                self.crash(node, crash, outcome: .tearUnsynced)
            } else {
                try append(certified, node: node)
                count("crashes_after_block_append")
                self.crash(node, crash)
            }
            throw Crashed()
        }
        try append(certified, node: node)
        return node.app.commit(certified.block).stateRoot
    }

    func append(_ certified: CertifiedBlock, node: Node) throws {
        do { try node.store!.append(certified) } catch {
            fail("validator \(node.validator)'s block append failed: \(error)")
            throw Stopped()
        }
        stored(certified, node: node)
    }

    /// A block is on the node's disk: what the run's checks count as its committed chain.
    func stored(_ certified: CertifiedBlock, node: Node) {
        node.durableHeight = certified.block.height
        guard node.isHonest else { return }
        for transaction in certified.block.transactions { node.transactionHashes.insert(transaction.hash) }
        transactionLog.committed(certified.block.transactions, honestCount: honestNodes.count, atTick: tick)
    }

    func send(_ message: ConsensusMessage, from node: Node, to targets: [ValidatorIndex]) throws {
        guard failure == nil else { throw Stopped() }
        if let crash = node.crashDuringNextStep {
            self.crash(node, crash)
            throw Crashed()
        }
        if node.isHonest { checkDurable(message, node: node) }
        outgoing(message, from: node, to: targets)
    }

    func outgoing(_ message: ConsensusMessage, from node: Node, to targets: [ValidatorIndex]) {
        if node.isHonest {
            recordHonestSignature(message, by: node.validator)
            return transmit(message, from: node, to: targets)
        }
        byzantineSend(message, from: node, to: targets)
    }

    /// Through the simulated transport (Transport.swift): measured once, as the node
    /// encodes it; over the frame bound it goes to nobody, as on a socket.
    func transmit(_ message: ConsensusMessage, from node: Node, to targets: [ValidatorIndex]) {
        let encoded = ConsensusWire.bytes(message)
        let bytes = encoded.count
        if case .viewChange = message { recordViewChangeSize(message, bytes: bytes) }
        if case .newView = message { recordViewChangeSize(message, bytes: bytes) }
        if bytes > TransportBounds.node.maxMessageBytes {
            return countTransport(.messageTooLarge, targets.count)
        }
        traffic.record(
            message, encoded: encoded, fromSlot: node.slot, toSlots: targets.flatMap { slotsByValidator[Int($0)] }, tick: tick)
        for target in targets {
            for slot in slotsByValidator[Int(target)] { enqueue(message, bytes: bytes, fromSlot: node.slot, toSlot: slot) }
        }
    }

    func enqueue(_ message: ConsensusMessage, bytes: Int, fromSlot: Int, toSlot: Int) {
        let faulty = tick < healTick
        if faulty {
            if isCut(fromSlot: fromSlot, toSlot: toSlot) { return count("messages_partitioned") }
            if lossPercent > 0 && random.chance(lossPercent) { return count("messages_lost") }
        }
        let copies = faulty && duplicatePercent > 0 && random.chance(duplicatePercent) ? 2 : 1
        if copies == 2 { count("messages_duplicated") }
        for _ in 0..<copies {
            let delivery = Delivery(fromSlot: fromSlot, toSlot: toSlot, message: message, id: nextDeliveryID, bytes: bytes)
            nextDeliveryID += 1
            let delayTicks = random.below(maxDelayTicks)
            admit(delivery)
            if nodes[toSlot].up {
                network[tick + 1 + delayTicks, default: []].append(delivery)
            } else {
                links[linkIndex(fromSlot: fromSlot, toSlot: toSlot)].held.append((delivery, delayTicks))
                countTransport(.heldForReconnect)
            }
        }
    }

    func isCut(fromSlot: Int, toSlot: Int) -> Bool {
        let from = Int(nodes[fromSlot].validator)
        let to = Int(nodes[toSlot].validator)
        for partition in partitions where partition.startTick <= tick && tick < partition.endTick {
            let fromA = partition.groupA.contains(from)
            let toA = partition.groupA.contains(to)
            switch partition.kind {
            case .halves, .isolatePrimary: if fromA != toA { return true }
            case .oneWay: if fromA && !toA { return true }
            }
        }
        if let group = nodes[fromSlot].twinGroup, nodes[slotsByValidator[to][0]].isHonest, !honestGroups[group].contains(to) { return true }
        if let group = nodes[toSlot].twinGroup, nodes[slotsByValidator[from][0]].isHonest, !honestGroups[group].contains(from) { return true }
        return false
    }

    // MARK: Invariants

    func checkCommit(_ certified: CertifiedBlock, node: Node) {
        let block = certified.block
        let height = block.height
        let hash = block.hash
        guard height == node.height + 1 else {
            return fail("validator \(node.validator) committed height \(height) after \(node.height)")
        }
        if let existing = committedByHeight[height], existing != hash {
            return fail("agreement: validator \(node.validator) committed \(hash.hex.prefix(12)) at height \(height), another honest validator committed \(existing.hex.prefix(12))")
        }
        committedByHeight[height] = hash
        do { try certified.certificate.checkStructure(height: height, blockHash: hash, validators: genesis.validators) } catch {
            // With the quorum defence off, a smaller certificate is what the replicas
            // were told to accept: look for the harm it does (forks) instead.
            let smallQuorum = options.defences.quorumOverride.map { certified.certificate.signatures.count >= $0 } ?? false
            if case .belowQuorum = error, smallQuorum {} else {
                return fail("validator \(node.validator) committed height \(height) with a bad certificate: \(error)")
            }
        }
        let bytes = certified.certificate.voteTarget.signingBytes(chainID: Simulation.chainID)
        let verifier = checkScheme.verifier
        for entry in certified.certificate.signatures where !verifier.isValid(entry.signature, by: entry.validatorIndex, for: bytes) {
            return fail("validator \(node.validator) committed height \(height) with an invalid signature of \(entry.validatorIndex)")
        }
        // Recorded once the block is stored (`stored`): a torn append's block is gone.
        var inBlock = Set<Hash>()
        for transaction in block.transactions
        where node.transactionHashes.contains(transaction.hash) || !inBlock.insert(transaction.hash).inserted {
            return fail("transaction \(transaction.hash.hex.prefix(12)) committed twice by validator \(node.validator)")
        }
        for transaction in block.transactions {
            let sender = transaction.senderAddress
            if pool.hostile.unfundedSenders.contains(sender) {
                return fail("validator \(node.validator) committed a transfer from a never-funded sender at height \(height)")
            }
            if sender == pool.hostile.floodSender {
                return fail("validator \(node.validator) committed a transaction behind a nonce gap at height \(height)")
            }
        }
    }

    /// Persist before send, on what the driver actually did: a message an honest
    /// replica signs is in its journal's signer guard when it goes out (or that state
    /// already rules its key out: an older view, or at or below the stable checkpoint).
    func checkDurable(_ message: ConsensusMessage, node: Node) {
        let validator = node.validator
        let key: SignerGuard.Key
        let content: Hash
        switch message {
        case .prePrepare(let prePrepare) where genesis.validators.primary(view: prePrepare.view) == Int(validator):
            key = SignerGuard.Key(view: prePrepare.view, height: prePrepare.height, phase: .prePrepare)
            content = prePrepare.blockHash
        case .prepare(let vote) where vote.validator == validator:
            key = SignerGuard.Key(view: vote.target.view, height: vote.target.height, phase: .prepare)
            content = vote.target.blockHash
        case .commit(let vote) where vote.validator == validator:
            key = SignerGuard.Key(view: vote.target.view, height: vote.target.height, phase: .commit)
            content = vote.target.blockHash
        case .checkpoint(let checkpoint) where checkpoint.validator == validator:
            key = SignerGuard.Key(view: 0, height: checkpoint.height, phase: .checkpoint)
            content = SHA256.hash(Checkpoint.signingBytes(
                chainID: Simulation.chainID, height: checkpoint.height, blockHash: checkpoint.blockHash,
                stateRoot: checkpoint.stateRoot))
        case .viewChange(let viewChange) where viewChange.validator == validator:
            key = SignerGuard.Key(view: viewChange.newView, height: 0, phase: .viewChange)
            content = ViewChange.bodyHash(checkpoint: viewChange.checkpoint, prepared: viewChange.prepared)
        default: return
        }
        let durable = node.durable
        if durable?.signerGuard.signed[key] == content { return }
        let view = durable?.view ?? 0
        let stable = durable?.stableCheckpoint.height ?? 0
        let ruledOut = switch key.phase {
        case .checkpoint: key.height <= stable
        case .viewChange, .newView: key.view < view
        case .prePrepare, .prepare, .commit: key.view < view || key.height <= stable
        }
        if !ruledOut {
            fail("persist before send: validator \(validator) sent \(message.kind) (view \(key.view) height \(key.height)) not in its journal")
        }
    }

    func recordHonestSignature(_ message: ConsensusMessage, by validator: ValidatorIndex) {
        func record(_ key: VoteKey, _ content: Hash, _ what: String) {
            if let existing = honestVotes[key], existing != content {
                return fail("honest validator \(validator) signed conflicting \(what) for view \(key.view) height \(key.height)")
            }
            honestVotes[key] = content
        }
        switch message {
        case .prePrepare(let prePrepare):
            record(VoteKey(validator: validator, view: prePrepare.view, height: prePrepare.height, phase: 0), prePrepare.blockHash, "pre-prepares")
        case .prepare(let vote) where vote.validator == validator:
            record(VoteKey(validator: validator, view: vote.target.view, height: vote.target.height, phase: 1), vote.target.blockHash, "prepares")
        case .commit(let vote) where vote.validator == validator:
            record(VoteKey(validator: validator, view: vote.target.view, height: vote.target.height, phase: 2), vote.target.blockHash, "commits")
        case .checkpoint(let checkpoint) where checkpoint.validator == validator:
            record(VoteKey(validator: validator, view: 0, height: checkpoint.height, phase: 3), checkpoint.blockHash, "checkpoints")
        default: break
        }
    }
}

/// The wrong-chain Byzantine replica: correct code whose signatures are made for
/// another chain id (a validator key shared with another network).
struct ChainSwappingSigner: ConsensusSigner {
    let inner: SimSigner
    func sign(_ message: [UInt8]) -> Signature {
        inner.sign(ChainSwappingSigner.swapChainID(message, to: Simulation.otherChainID))
    }

    /// Rewrites the `chain_id` field of a `tag | chain_id | …` signing layout.
    static func swapChainID(_ bytes: [UInt8], to chainID: String) -> [UInt8] {
        func length(at offset: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[offset + $1]) << (8 * $1) } }
        let tagEnd = 4 + length(at: 0)
        let chainEnd = tagEnd + 4 + length(at: tagEnd)
        var encoder = CanonicalEncoder()
        encoder.string(chainID)
        return Array(bytes[0..<tagEnd]) + encoder.bytes + Array(bytes[chainEnd...])
    }
}
