import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import TallyApplication
import TallyConsensus
import TallyCrypto
import TallyDriver
import TallyLedger
import TallyNetwork
import TallyStore
import TallyTypes
import TallyVerify

/// A validator: runs the pure PBFT replica through a `ReplicaDriver` (which carries
/// out its actions in order: persist, then store and execute, then send) over the
/// node's journal, block store, ledger and network, feeds it verified messages and
/// ticks, admits transactions to the mempool and gossips them, and answers the HTTP
/// API. Every state change happens on this actor, one event at a time, so a block
/// is never half-applied when the node is asked to stop.
///
/// This is the wiring: each concern is a part of its own (`NodeStartup`, `ConsensusJournal`,
/// `InboundLanes`, `PeerMessageIntake`, `GossipIntake`, `PeerSendPath`, `BlockCommitter`,
/// `TransactionAdmission`, `TransactionGossip`, `SubmissionTracker`, `SyncServer`,
/// `ReplicaMetricsExport`), owned by the actor, which routes events between them.
public actor Node: NodeService {
    nonisolated public let genesis: Genesis
    nonisolated public let genesisJSON: Data
    nonisolated let selfIndex: ValidatorIndex
    let config: NodeConfig
    let logger: Logger
    let metrics = NodeMetrics()

    private let store: BlockStore
    /// The consensus journal and the signing mark, written before every send (the driver's durable write).
    let journal: ConsensusJournal
    private let application: LedgerApplication
    /// Owns the replica; its I/O is a `NodeReplicaIO`, which calls back into this actor.
    private let driver: ReplicaDriver
    /// The commit path's milestones (the driver's and ours) → `tally_stage_seconds`.
    nonisolated let timeline: CommitTimeline
    private let network: PeerNetwork
    /// Consensus messages, sync answers and gossip out, through the builder's `PeerOutbound` if any.
    let sendPath: PeerSendPath

    /// The actor runs on a thread of its own: it fsyncs before every vote, and that
    /// must not hold one of the few threads of the shared cooperative pool (as many
    /// as cores) that the HTTP API, the network reader and signature checks need.
    nonisolated let executorLoop: any EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executorLoop.executor.asUnownedSerialExecutor() }
    /// One thread for every node of the process (normally one node).
    private static let executorGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// Committed transactions and blocks, read by the HTTP API without the actor.
    private nonisolated let committedTransactions: CommittedTransactions
    /// Each account's committed transactions (`/accounts/{address}/txs`), also off the actor.
    private nonisolated let accountTransactions: AccountTransactions
    private nonisolated let blockReader: BlockReader
    private let admission: TransactionAdmission
    private var subscribers = EventSubscribers()
    private var gossip = TransactionGossip()
    private var submissions = SubmissionTracker()
    /// The commit of a certified block into the store, the indexes, the ledger and snapshots.
    private let committer: BlockCommitter
    private var replicaMetrics: ReplicaMetricsExport
    /// Submissions' and gossip's signatures, checked off the actor through one bounded gate.
    nonisolated let signatures: TransactionSignatureChecks
    private var stopped = false
    private var peerIntake: PeerMessageIntake
    /// Peer messages not handled yet (filled outside the actor, drained as a batch).
    nonisolated let lanes = InboundLanes()
    private var ticks: UInt64 = 0

    /// Opens the home's data (recovering it), builds the replica from its durable
    /// state, and starts the peer network. `outbound`: what the node's outbound
    /// traffic goes through (`PeerOutbound`); nil sends it to the network as it is.
    public init(
        home: NodeHome, config: NodeConfig, genesis: Genesis, genesisJSON: Data, key: SigningKey, logger: Logger,
        outbound: (any PeerOutbound)? = nil
    ) async throws {
        guard let index = genesis.validators.index(of: key.publicKey) else {
            throw NodeConfig.Error.invalid("this key (\(key.publicKey.hex)) is not a validator in genesis")
        }
        try NodeStartup.checkFrameBound(genesis: genesis, maxMessageBytes: config.p2p.maxMessageBytes)
        executorLoop = Self.executorGroup.next()
        self.genesis = genesis
        self.genesisJSON = genesisJSON
        self.config = config
        self.logger = logger
        // Retries, then stops the process cleanly, when the journal or the block store cannot be written.
        let durableWrite = DurableWrite(
            sleepMs: { usleep($0 * 1000) },
            onRetry: { [logger] message, delayMs in logger.error("\(message); retrying in \(delayMs) ms") })
        selfIndex = ValidatorIndex(index)
        signatures = TransactionSignatureChecks(genesisHash: genesis.hash, checker: Ed25519TransactionChecker())
        peerIntake = PeerMessageIntake(logger: logger, metrics: metrics)
        let dataDirectory = home.file(config.storage.dataDir)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)

        let restored = try NodeStartup.restore(dataDirectory: dataDirectory, genesis: genesis, logger: logger)
        store = restored.store
        blockReader = store.reader
        let recovery = restored.recovery, durable = restored.durable
        let signingMarkFile = try SigningMarkFile(path: home.file(SigningMarkFile.fileName))
        journal = ConsensusJournal(
            consensusState: restored.consensusState, signingMarkFile: signingMarkFile, durableWrite: durableWrite, metrics: metrics)

        application = LedgerApplication(
            genesis: genesis, ledger: recovery.verifier.ledger, tipHash: recovery.verifier.lastBlockHash,
            tipTimestampMs: recovery.verifier.lastTimestampMs, mempool: Mempool(genesis: genesis, limits: config.mempool.limits),
            signatures: signatures.checker, nowMs: { UInt64(Date().timeIntervalSince1970 * 1000) })
        let replica = try NodeStartup.replica(
            genesis: genesis, selfIndex: selfIndex, durable: durable, store: store, application: application, key: key,
            signingMark: signingMarkFile.mark)
        EquivocationReporter.logStartupSafety(
            journalMark: durable?.signingMark ?? .zero, fileMark: signingMarkFile.mark, replica: replica, logger: logger)
        replicaMetrics = ReplicaMetricsExport(validators: genesis.validators, view: replica.view, metrics: metrics, logger: logger)
        let io = NodeReplicaIO()
        #if DEBUG
        let invariantChecks = ReplicaDriver.InvariantChecks.everyStep
        #else
        let invariantChecks = ReplicaDriver.InvariantChecks.never
        #endif
        let metrics = metrics
        timeline = CommitTimeline(now: { ContinuousClock.now }, observe: { metrics.observe($0, $1) })
        driver = ReplicaDriver(
            replica: replica, journal: io, blocks: io, transport: io, invariantChecks: invariantChecks, timeline: timeline)

        network = try await PeerNetwork.start(
            configuration: NodeStartup.networkConfiguration(config.p2p, genesis: genesis, key: key), group: executorLoop,
            logger: logger)

        (committedTransactions, accountTransactions) = try NodeStartup.openIndexes(
            dataDirectory: dataDirectory, store: store, logger: logger)
        committer = BlockCommitter(
            store: store, snapshots: restored.snapshots, application: application, committedTransactions: committedTransactions,
            accountTransactions: accountTransactions, durableWrite: durableWrite, timeline: timeline, metrics: metrics,
            logger: logger,
            schedule: SnapshotSchedule(
                checkpointIntervalBlocks: genesis.consensus.checkpointIntervalBlocks, lastSnapshotHeight: restored.lastSnapshotHeight))
        sendPath = PeerSendPath(
            network: network, outbound: outbound, syncServer: SyncServer(reader: blockReader, network: network, metrics: metrics),
            genesis: genesis, selfIndex: selfIndex, store: store, application: application, driver: driver, metrics: metrics)
        admission = TransactionAdmission(application: application, outbound: outbound, metrics: metrics)
        metrics.height.record(Int64(store.tipHeight))
        metrics.view.record(Int64(driver.replica.view))
        io.node = self
    }

    // MARK: Running

    /// Runs until cancelled or until a graceful shutdown is requested: the tick
    /// loop and the inbound message loop. Returns after closing the network and
    /// the store; a block being written is finished first (actor isolation).
    public func run() async {
        logger.info("validator started", metadata: [
            "validator": "\(selfIndex)", "chain_id": "\(genesis.chainID)", "height": "\(store.tipHeight)", "view": "\(driver.replica.view)",
        ])
        let tick = Duration.milliseconds(Int64(genesis.consensus.tickMs))
        let network = self.network
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    while !Task.isCancelled {
                        try? await Task.sleep(for: tick)
                        if Task.isCancelled { break }
                        await self.onTick()
                    }
                }
                // Peer messages: the reader on the actor's thread, two lanes (`InboundLanes`).
                let lanes = self.lanes, loop = executorLoop
                group.addTask { await lanes.run(network.inbound, into: self, loop: loop) }
                _ = await group.next()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            Task { await self.stop() }
        }
        await stop()
    }

    /// Stops taking input and closes everything; idempotent.
    public func stop() async {
        guard !stopped else { return }
        stopped = true
        logger.info("validator stopping", metadata: ["height": "\(store.tipHeight)"])
        await network.shutdown()
        endEventStreams()
        accountTransactions.close()
        store.close()
    }

    private func onTick() {
        guard !stopped else { return }
        ticks += 1
        // The mempool's clock is the consensus clock: ticks × tick_ms.
        application.mempool.expire(nowMs: ticks &* genesis.consensus.tickMs)
        if ticks.isMultiple(of: TransactionGossip.regossipIntervalTicks) { gossip.regossipStuckHeads(of: application, metrics: metrics) }
        flushGossip()
        handle(.tick)
        sendPath.tick()
    }

    /// Handles every consensus message in the inbox as one batch: the driver coalesces
    /// the replica's persists into one write before the batch's sends.
    func drainInbox() {
        let messages = lanes.consensus.takeAll()
        guard !messages.isEmpty, !stopped else { return }
        let events = peerIntake.consensusEvents(messages)
        guard !events.isEmpty else { return }
        handle(events)
    }

    func countDroppedGossip() { metrics.messageDropped("gossip_queue_full") }

    /// A gossip round's first step on the actor (`GossipIntake`): counts its rejected
    /// messages, then screens its transactions (`GossipScreen`).
    func screenGossip(_ round: TransactionGossip.Round) -> GossipScreen {
        peerIntake.dropRejectedGossip(malformed: round.malformed, notFromValidators: round.notFromValidators)
        return admission.screenGossip(round.transactions)
    }

    /// A gossip round's last step on the actor: admits what the signature checks passed.
    func admitGossip(_ transactions: [Transaction], _ verified: [VerifiedTransaction?]) {
        guard !stopped else { return }
        let admitted = admission.admitGossip(transactions, verified)
        if admitted > 0 { handle(.transactionsAvailable) }
    }

    // MARK: Consensus actions

    private func handle(_ event: ConsensusEvent) { handle(CollectionOfOne(event)) }

    /// Steps the replica through the driver (one batch: one durable write before
    /// the batch's sends), then exports what changed to the metrics.
    private func handle(_ events: some Sequence<ConsensusEvent>) {
        do { try driver.handle(events) } catch let error as DurableWrite.GaveUp { stopOnDurableWriteFailure(error) } catch {
            preconditionFailure("the node's replica I/O throws only DurableWrite.GaveUp: \(error)")
        }
        replicaMetrics.export(driver.replica, mempool: application.mempool)
    }

    /// The journal or the block store cannot be written: the node cannot go on safely.
    private func stopOnDurableWriteFailure(_ error: DurableWrite.GaveUp) -> Never {
        logger.critical("\(error.description)")
        exit(1)
    }

    /// The driver's block commit: returns the state root after `certified`.
    func commit(_ certified: CertifiedBlock) throws -> Hash {
        try committer.commit(certified, submissions: &submissions, subscribers: &subscribers)
    }

    private func flushGossip() { sendPath.gossip(gossip.takeBatches()) }

    // MARK: NodeService

    public func status() -> NodeStatus {
        NodeStatus(
            chainID: genesis.chainID, height: application.ledger.height, latestBlockHash: application.tipHash,
            view: driver.replica.view, primary: genesis.validators.primary(view: driver.replica.view), validatorIndex: Int(selfIndex),
            validatorName: genesis.validators[Int(selfIndex)].name, catchingUp: driver.replica.isCatchingUp,
            peersConnected: network.connectedValidators.count, mempoolSize: application.mempool.count)
    }

    public nonisolated func submit(_ transactions: [Transaction]) async -> [Result<Hash, SubmissionError>] {
        // Cheap checks on the actor first; then only the survivors' signatures, on
        // all cores, outside the actor and a bounded number of batches at once.
        let prechecked = await precheck(transactions)
        let screened = await AdmissionScreen.verifySurvivors(transactions, prechecked: prechecked) {
            await self.signatures.verify($0)
        }
        return await admit(transactions, screened)
    }

    /// Every admission check but the signature, against the committed state now.
    private func precheck(_ transactions: [Transaction]) -> [AdmissionError?] { application.precheck(transactions) }

    private func admit(
        _ transactions: [Transaction], _ screened: [Result<VerifiedTransaction, AdmissionError>]
    ) -> [Result<Hash, SubmissionError>] {
        guard !stopped else { return transactions.map { _ in .failure(.malformed("node is shutting down")) } }
        let (results, admitted) = admission.admitSubmissions(
            transactions, screened, gossip: &gossip, submissions: &submissions, tick: ticks)
        replicaMetrics.exportEvictions(application.mempool)
        if admitted > 0 {
            // Gossip at once, not on the next tick: a transaction sent to a backup
            // reaches the primary up to a tick sooner (one message per request).
            flushGossip()
            handle(.transactionsAvailable)
        }
        return results
    }

    /// Off the actor but for the mempool question (`CommittedTransactions.status(of:isPending:)`).
    public nonisolated func transactionStatus(_ hash: Hash) async -> TransactionStatus {
        await committedTransactions.status(of: hash) { await self.isPending(hash) }
    }

    private func isPending(_ hash: Hash) -> Bool { application.mempool.contains(hash) }

    public func account(_ address: Address) -> Account { application.ledger.account(address) ?? .empty }

    public func pendingNonce(_ address: Address) -> UInt64 {
        application.mempool.nextNonce(for: address, committed: account(address).nonce)
    }

    /// Off the actor: the index and the block reader.
    public nonisolated func accountTransactions(
        _ address: Address, before: TransactionPosition?, limit: Int
    ) async throws -> AccountTransactionsPage {
        try accountTransactions.page(address, before: before, limit: limit)
    }

    /// Read and decoded off the actor.
    public nonisolated func block(at height: UInt64) async -> CertifiedBlock? { try? blockReader.block(at: height) }

    public nonisolated func latestHeight() async -> UInt64 { blockReader.tipHeight }

    public func equivocationEvidence() -> [EquivocationEvidence] { driver.replica.equivocations }

    public nonisolated func eventsSent(height: UInt64) { timeline.mark(.eventSent, height: height) }

    /// Ends every event stream and refuses new ones (`EventSubscribers.close`). Called when shutdown begins.
    public func endEventStreams() { subscribers.close() }

    public func subscribe(from address: String) -> AsyncStream<[NodeEvent]>? {
        guard !stopped else { return nil }
        return subscribers.subscribe(from: address, maxSubscribers: config.api.maxEventSubscribers) { id in
            Task { await self.unsubscribe(id) }
        }
    }

    private func unsubscribe(_ id: UInt64) { subscribers.remove(id) }
}
