import Foundation
import Logging
import Metrics
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
/// `BlockCommitter`, `TransactionAdmission`, `TransactionGossip`, `SubmissionTracker`,
/// `SyncServer`, `ReplicaMetricsExport`), owned by the actor, which routes events between them.
public actor Node: NodeService {
    nonisolated public let genesis: Genesis
    nonisolated public let genesisJSON: Data
    /// What transaction signatures commit to (`Transaction.signingBytes(genesisHash:)`).
    nonisolated let genesisHash: Hash
    nonisolated let selfIndex: ValidatorIndex
    let config: NodeConfig
    let logger: Logger
    let metrics = NodeMetrics()
    /// Retries, then stops the process cleanly, when the journal or the block store cannot be written.
    let durableWrite: DurableWrite

    private let store: BlockStore
    /// The consensus journal and the signing mark, written before every send.
    private let journal: ConsensusJournal
    private let snapshots: SnapshotStore
    private let application: LedgerApplication
    /// Owns the replica; its I/O is `io`, which calls back into this actor.
    private let driver: ReplicaDriver
    /// The commit path's milestones (the driver's and ours) → `tally_stage_seconds`.
    nonisolated let timeline: CommitTimeline
    private let io: NodeReplicaIO
    private let network: PeerNetwork
    /// The builder's wrapper of the outbound traffic (`PeerOutbound`); nil: straight to the network.
    private let outbound: (any PeerOutbound)?

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
    private let syncServer: SyncServer
    private let admission: TransactionAdmission
    private var subscribers = EventSubscribers()
    private var eventStreamsEnded = false
    private var gossip = TransactionGossip()
    private var submissions = SubmissionTracker()
    /// The commit of a certified block into the store, the indexes, the ledger and snapshots.
    private let committer: BlockCommitter
    private var replicaMetrics: ReplicaMetricsExport
    /// Signature batches of submissions verified at once (each uses every core).
    nonisolated let signatureGate = SignatureGate(permits: Node.maxConcurrentSignatureBatches)
    /// Transaction signatures: the application's checker, used by the gate too.
    nonisolated let transactionSignatures: any TransactionSignatureChecker = Ed25519TransactionChecker()
    private var stopped = false
    /// Malformed peer messages so far (for sparse logging).
    private var malformedMessages = 0
    /// Peer messages not handled yet (filled outside the actor, drained as a batch).
    nonisolated let inbox = Inbox()
    /// Transaction gossip not handled yet: a lane of its own, so consensus messages
    /// never wait behind signature checks of bulk gossip.
    nonisolated let gossipInbox = Inbox()
    private var ticks: UInt64 = 0

    /// Malformed peer messages logged one by one; after that, every 1,000th.
    static let malformedMessagesLoggedInFull = 20
    /// Submission batches whose signatures are verified at once; the others wait.
    static let maxConcurrentSignatureBatches = 2
    /// Inbox size at which the reader waits for the actor to drain it (back-pressure
    /// onto the network's per-peer inbound bounds).
    static let maxInboxMessages = 4_096

    /// Opens the home's data (recovering it), builds the replica from its durable
    /// state, and starts the peer network. `outbound`: what the node's outbound
    /// traffic goes through (`PeerOutbound`); nil sends it to the network as it is.
    public init(
        home: NodeHome, config: NodeConfig, genesis: Genesis, genesisJSON: Data, key: SigningKey, logger: Logger,
        outbound: (any PeerOutbound)? = nil
    ) async throws {
        self.outbound = outbound
        guard let index = genesis.validators.index(of: key.publicKey) else {
            throw NodeConfig.Error.invalid("this key (\(key.publicKey.hex)) is not a validator in genesis")
        }
        try NodeStartup.checkFrameBound(genesis: genesis, maxMessageBytes: config.p2p.maxMessageBytes)
        executorLoop = Self.executorGroup.next()
        self.genesis = genesis
        self.genesisJSON = genesisJSON
        self.genesisHash = genesis.hash
        self.config = config
        self.logger = logger
        durableWrite = DurableWrite(
            sleepMs: { usleep($0 * 1000) },
            onRetry: { [logger] message, delayMs in logger.error("\(message); retrying in \(delayMs) ms") })
        selfIndex = ValidatorIndex(index)
        let dataDirectory = home.file(config.storage.dataDir)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)

        let restored = try NodeStartup.restore(dataDirectory: dataDirectory, genesis: genesis, logger: logger)
        store = restored.store
        blockReader = store.reader
        snapshots = restored.snapshots
        let recovery = restored.recovery, durable = restored.durable
        let signingMarkFile = try SigningMarkFile(path: home.file(SigningMarkFile.fileName))
        journal = ConsensusJournal(
            consensusState: restored.consensusState, signingMarkFile: signingMarkFile, durableWrite: durableWrite, metrics: metrics)

        application = LedgerApplication(
            genesis: genesis, ledger: recovery.verifier.ledger, tipHash: recovery.verifier.lastBlockHash,
            tipTimestampMs: recovery.verifier.lastTimestampMs, mempool: Mempool(genesis: genesis, limits: config.mempool.limits),
            signatures: transactionSignatures, nowMs: { UInt64(Date().timeIntervalSince1970 * 1000) })
        let replica = try NodeStartup.replica(
            genesis: genesis, selfIndex: selfIndex, durable: durable, store: store, application: application, key: key,
            signingMark: signingMarkFile.mark)
        EquivocationReporter.logStartupSafety(
            journalMark: durable?.signingMark ?? .zero, fileMark: signingMarkFile.mark, replica: replica, logger: logger)
        replicaMetrics = ReplicaMetricsExport(validators: genesis.validators, view: replica.view, metrics: metrics, logger: logger)
        io = NodeReplicaIO()
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
            store: store, snapshots: snapshots, application: application, committedTransactions: committedTransactions,
            accountTransactions: accountTransactions, durableWrite: durableWrite, timeline: timeline, metrics: metrics,
            logger: logger,
            schedule: SnapshotSchedule(
                checkpointIntervalBlocks: genesis.consensus.checkpointIntervalBlocks, lastSnapshotHeight: restored.lastSnapshotHeight))
        syncServer = SyncServer(reader: blockReader, network: network, metrics: metrics)
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
                // Peer messages go through the inbox: the actor takes all that arrived
                // while it was busy in one turn, with one persist and one round of sends.
                // The reader runs on the actor's own thread, where the peer connections
                // live too: a message reaches the replica without a thread switch (on
                // a busy machine each switch can wait a whole scheduler slice).
                let inbox = self.inbox
                let gossipInbox = self.gossipInbox
                let loop = executorLoop
                let (gossipWakeups, gossipWake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
                group.addTask(executorPreference: EventLoopTaskExecutor(loop)) {
                    for await message in network.inbound {
                        if PeerMessage.isGossip(message.bytes) {
                            if gossipInbox.push(message, max: TransactionGossip.maxGossipInboxMessages) {
                                gossipWake.yield()
                            } else {
                                await self.countDroppedGossip()
                            }
                            continue
                        }
                        let waiting = inbox.push(message)
                        if waiting >= Self.maxInboxMessages {
                            await self.drainInbox()
                        } else if waiting == 1 {
                            // The first message of a batch schedules one drain; those that
                            // arrive before it runs join the batch.
                            loop.execute { self.assumeIsolated { $0.drainInbox() } }
                        }
                    }
                    gossipWake.finish()
                }
                group.addTask {
                    // Everything that arrived while the last round ran is one round: two
                    // turns of the actor for any number of messages, so gossip keeps up
                    // with a busy actor instead of queueing behind it message by message.
                    for await _ in gossipWakeups { await self.receiveGossip(gossipInbox.takeAll()) }
                }
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
        if ticks.isMultiple(of: TransactionGossip.regossipIntervalTicks) { regossipStuckHeads() }
        flushGossip()
        handle(.tick)
        if let outbound { outbound.tick(link: outboundLink()) }
        metrics.peersConnected.record(Int64(network.connectedValidators.count))
    }

    /// Handles every message in the inbox as one batch: the driver coalesces the
    /// replica's persists into one write before the batch's sends.
    private func drainInbox() {
        let messages = inbox.takeAll()
        guard !messages.isEmpty, !stopped else { return }
        let events = messages.compactMap(consensusEvent)
        guard !events.isEmpty else { return }
        handle(events)
    }

    /// The event of a peer message; nil (dropped, counted) when it is malformed or not from a validator.
    private func consensusEvent(_ message: InboundMessage) -> ConsensusEvent? {
        guard let from = message.validatorIndex else {
            metrics.messageDropped("not_a_validator")
            return nil
        }
        do { return .message(try PeerMessage.consensus(bytes: message.bytes), from: ValidatorIndex(from)) } catch {
            dropMalformed(from: from, error)
            return nil
        }
    }

    private func dropMalformed(from peer: Int, _ error: any Error) {
        // Logged sparsely: a Byzantine peer must not be able to fill the disk with
        // our log (the metric counts every one).
        malformedMessages += 1
        if malformedMessages <= Self.malformedMessagesLoggedInFull || malformedMessages.isMultiple(of: 1_000) {
            logger.warning("dropping a malformed peer message", metadata: [
                "peer": "\(peer)", "error": "\(error)", "total": "\(malformedMessages)",
            ])
        }
        metrics.messageDropped("malformed_message")
    }

    private func countDroppedGossip() { metrics.messageDropped("gossip_queue_full") }

    /// A round of gossip messages, outside the actor: decoded, filtered to
    /// transactions this node does not have, their signatures checked on all cores,
    /// then admitted.
    private nonisolated func receiveGossip(_ messages: [InboundMessage]) async {
        let (transactions, malformed, notFromValidators) = TransactionGossip.decode(messages)
        // Gossip is verified like any submission (once, through the same bounded gate),
        // and not gossiped again.
        let admissible = await GossipScreen.verifyScreened(
            transactions, screen: { await unknownTransactions($0, malformed: malformed, notFromValidators: notFromValidators) },
            verify: { await signatureGate.verify($0, genesisHash: genesisHash, using: transactionSignatures) })
        guard !admissible.isEmpty else { return }
        await admitGossip(admissible.map(\.transaction), admissible.map(\.verified))
    }

    /// Counts the rejected messages, then screens the transactions (`GossipScreen`:
    /// every check but the signature, before the costly signature checks): those
    /// whose signatures still need a check and those checked already.
    private func unknownTransactions(
        _ transactions: [Transaction], malformed: [(peer: Int, error: any Error)], notFromValidators: Int
    ) -> GossipScreen {
        for (peer, error) in malformed { dropMalformed(from: peer, error) }
        if notFromValidators > 0 { metrics.messageDropped("not_a_validator", count: notFromValidators) }
        return admission.screenGossip(transactions)
    }

    private func admitGossip(_ transactions: [Transaction], _ verified: [VerifiedTransaction?]) {
        guard !stopped else { return }
        let admitted = admission.admitGossip(transactions, verified)
        if admitted > 0 { handle(.transactionsAvailable) }
    }

    /// Gossips again the mempool heads that were heads a round ago too (bounded).
    private func regossipStuckHeads() {
        let heads = application.mempool.heads(maxCount: TransactionGossip.maxRegossipTransactions) {
            self.application.ledger.account($0)?.nonce ?? 0
        }
        let stuck = gossip.regossipStuck(heads)
        guard !stuck.isEmpty else { return }
        metrics.transactionsRegossiped.increment(by: Int64(stuck.count))
        flushGossip()
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

    /// The driver's durable write (`ConsensusJournal`).
    func persist(_ state: DurableState) throws { try journal.persist(state) }

    func send(_ message: ConsensusMessage, to peer: ValidatorIndex) {
        if let outbound { return outbound.send(message, to: [peer], link: outboundLink()) }
        network.send(to: Int(peer), PeerMessage.consensus(message).bytes)
    }

    func broadcast(_ message: ConsensusMessage) {
        if let outbound {
            let link = outboundLink()
            return outbound.send(message, to: link.others, link: link)
        }
        network.broadcast(PeerMessage.consensus(message).bytes)
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

    /// A peer's sync request; through a `PeerOutbound` as decoded blocks.
    func sendBlocks(_ heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
        guard let outbound else { return syncServer.serve(heights, to: peer) }
        let blocks = syncServer.blocks(heights)
        guard !blocks.isEmpty else { return }
        outbound.send(.syncResponse(blocks), to: [peer], link: outboundLink())
    }

    private func flushGossip() {
        let batches = gossip.takeBatches()
        guard !batches.isEmpty else { return }
        let link = outbound.map { _ in outboundLink() }
        for batch in batches {
            if let outbound, let link {
                outbound.gossip(batch, link: link)
            } else {
                network.broadcast(PeerMessage.transactions(batch).bytes)
            }
        }
    }

    /// What the `PeerOutbound` sees; built only when there is one.
    private func outboundLink() -> OutboundLink {
        let tipHeight = store.tipHeight
        let tipTimestampMs = tipHeight == 0 ? genesis.genesisTimeMs : (try? store.block(at: tipHeight))?.block.header.timestampMs
        return OutboundLink(
            selfIndex: selfIndex, genesis: genesis, view: driver.replica.view, isPrimary: driver.replica.isPrimary,
            inViewChange: driver.replica.inViewChange, stableCheckpoint: driver.replica.stableCheckpoint,
            tipHeight: tipHeight, tipHash: application.tipHash, tipTimestampMs: tipTimestampMs ?? genesis.genesisTimeMs,
            tipStateRoot: application.ledger.stateRoot, network: network)
    }

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
            await self.signatureGate.verify($0, genesisHash: self.genesisHash, using: self.transactionSignatures)
        }
        return await admit(transactions, screened)
    }

    /// Every admission check but the signature, against the committed state now.
    private func precheck(_ transactions: [Transaction]) -> [AdmissionError?] { application.precheck(transactions) }

    private func admit(
        _ transactions: [Transaction], _ screened: [Result<VerifiedTransaction, AdmissionError>]
    ) -> [Result<Hash, SubmissionError>] {
        guard !stopped else { return transactions.map { _ in .failure(.malformed("node is shutting down")) } }
        let now = ContinuousClock.now
        let (results, admitted) = admission.admitSubmissions(transactions, screened, gossip: { gossip.append($0) }) { hash in
            submissions.track(hash, at: now, tick: ticks) { application.mempool.contains($0) || application.isInFlight($0) }
        }
        replicaMetrics.exportEvictions(application.mempool)
        if admitted > 0 {
            metrics.transactionsAdmitted.increment(by: Int64(admitted))
            // Gossip at once, not on the next tick: a transaction sent to a backup
            // reaches the primary up to a tick sooner (one message per request).
            flushGossip()
            handle(.transactionsAvailable)
        }
        return results
    }

    /// Off the actor for committed transactions (the block read and the proof are the
    /// expensive part); only the mempool question goes to the actor.
    public nonisolated func transactionStatus(_ hash: Hash) async -> TransactionStatus {
        if let committed = committedTransactions.status(of: hash) { return committed }
        if await isPending(hash) { return .pending }
        // Committed between the two questions: the index has it now (or, in the
        // first moments after a start, once the rebuild of the index is done).
        return await committedTransactions.status(of: hash, waitingForRebuild: true) ?? .unknown
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

    /// Ends every event stream and refuses new ones. Called when shutdown begins:
    /// the HTTP server drains open responses before it stops, and an event stream
    /// never ends by itself.
    public func endEventStreams() {
        eventStreamsEnded = true
        subscribers.finishAll()
    }

    /// Blocks a subscriber may fall behind by before it is dropped (its stream ends):
    /// a few seconds of full 4,000-transaction blocks, ≤ ~16 MiB.
    static let maxBufferedEventBlocks = 64

    public func subscribe(from address: String) -> AsyncStream<[NodeEvent]>? {
        guard !stopped, !eventStreamsEnded else { return nil }
        let added = subscribers.add(
            from: address, maxSubscribers: config.api.maxEventSubscribers, bufferBlocks: Self.maxBufferedEventBlocks
        ) { id in Task { await self.unsubscribe(id) } }
        if case .addedByEvicting = added.admission {
            Counter(label: "tally_event_subscribers_dropped_total", dimensions: [("reason", "displaced")]).increment()
        }
        return added.stream
    }

    private func unsubscribe(_ id: UInt64) { subscribers.remove(id) }
}
