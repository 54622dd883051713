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
    private let consensusState: ConsensusStateStore
    private let snapshots: SnapshotStore
    private let application: LedgerApplication
    /// Owns the replica; its I/O is `io`, which calls back into this actor.
    private let driver: ReplicaDriver
    /// The commit path's milestones (the driver's and ours) → `tally_stage_seconds`.
    nonisolated let timeline: CommitTimeline
    private let io: NodeReplicaIO
    /// HOME/signing-mark, outside the data directory (SigningSafety.swift).
    private let signingMarkFile: SigningMarkFile
    private var equivocationReporter = EquivocationReporter()
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
    private var subscribers = EventSubscribers()
    private var eventStreamsEnded = false
    private var gossipBuffer: [Transaction] = []
    private var submittedAt: [Hash: ContinuousClock.Instant] = [:]
    private var lastSubmissionSweepTick: UInt64 = 0
    private var lastSnapshotHeight: UInt64
    /// Transactions executed since the last snapshot (or since start).
    private var transactionsSinceSnapshot = 0
    private var lastView: UInt64
    /// The replica's drop counts already exported to metrics.
    private var exportedDrops: [TallyConsensus.DropReason: Int] = [:]
    private var exportedSuspicions: [BackupSuspicion: Int] = [:]
    /// The mempool's eviction counts already exported to metrics.
    private var exportedEvictions: [EvictionReason: Int] = [:]
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
    /// Mempool heads (a sender's next transaction) seen at the last re-gossip round.
    private var lastRoundHeads: Set<Hash> = []
    private var ticks: UInt64 = 0

    /// Malformed peer messages logged one by one; after that, every 1,000th.
    static let malformedMessagesLoggedInFull = 20
    /// Blocks read back at start-up for `/txs/{hash}`; older ones are not in its index
    /// (`/accounts/{address}/txs` has a persisted index of its own).
    static let startupIndexBlocks: UInt64 = 2_000
    /// Submission batches whose signatures are verified at once; the others wait.
    static let maxConcurrentSignatureBatches = 2
    /// Submissions whose commit latency is tracked at once.
    static let maxTrackedSubmissions = 100_000
    /// Ticks between sweeps of evicted submissions out of a full `submittedAt`.
    static let submissionSweepIntervalTicks: UInt64 = 20
    /// Inbox size at which the reader waits for the actor to drain it (back-pressure
    /// onto the network's per-peer inbound bounds).
    static let maxInboxMessages = 4_096
    /// Gossip messages waiting for their signature checks; beyond this, new ones are
    /// dropped (counted) and re-gossip heals the gap.
    static let maxGossipInboxMessages = 256
    /// Every this many ticks, mempool heads that were already heads a round ago are
    /// gossiped again: gossip is best effort, and a lost transaction behind which a
    /// sender's later ones wait would otherwise stall them for good.
    static let regossipIntervalTicks: UInt64 = 30
    /// Most transactions re-gossiped per round.
    static let maxRegossipTransactions = 2_048
    /// A start-up that replays at least this many blocks snapshots the tip after it.
    static let startupSnapshotReplayedBlocks: UInt64 = 64
    /// … or replays for at least this long (a few full blocks).
    static let startupSnapshotReplayDuration = Duration.milliseconds(500)
    /// A snapshot at most every this many heights (rounded to checkpoints).
    static let snapshotIntervalBlocks: UInt64 = 1_024
    /// … or once this many transactions were executed since the last one: a restart
    /// replays (and re-verifies) what came after it, and 1,024 full blocks would be
    /// four million transactions.
    static let snapshotIntervalTransactions = 65_536

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
        try Self.checkFrameBound(genesis: genesis, maxMessageBytes: config.p2p.maxMessageBytes)
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

        let openStart = ContinuousClock.now
        store = try BlockStore.open(dataDirectory: dataDirectory, logger: logger)
        let openDuration = ContinuousClock.now - openStart
        blockReader = store.reader
        snapshots = try SnapshotStore(dataDirectory: dataDirectory, logger: logger)
        consensusState = try DataLayout.consensusStateStore(dataDirectory)
        let replayStart = ContinuousClock.now
        let recovery = try ChainRecovery.resume(store: store, snapshots: snapshots, genesis: genesis, logger: logger)
        let replayDuration = ContinuousClock.now - replayStart
        logger.info("chain recovered", metadata: [
            "height": "\(store.tipHeight)", "snapshot": "\(recovery.snapshotHeight)", "replayed": "\(recovery.replayedBlocks)",
            // Where a start's time goes (issue 16: restart flat in the ledger's size).
            "store_open_ms": "\(CommittedTransactions.milliseconds(openDuration))",
            "recovery_ms": "\(CommittedTransactions.milliseconds(replayDuration))",
        ])
        lastSnapshotHeight = recovery.snapshotHeight
        if recovery.replayedBlocks >= Self.startupSnapshotReplayedBlocks
            || (recovery.replayedBlocks > 0 && replayDuration >= Self.startupSnapshotReplayDuration)
        {
            // The next start loads this instead of replaying the same blocks again.
            do {
                try snapshots.write(Snapshot(ledger: recovery.verifier.ledger, blockHash: recovery.verifier.lastBlockHash))
                lastSnapshotHeight = store.tipHeight
            } catch {
                logger.error("snapshot after start-up replay failed", metadata: ["error": "\(error)"])
            }
        }
        let durable = try Self.readDurableState(consensusState)
        signingMarkFile = try SigningMarkFile(path: home.file(SigningMarkFile.fileName))

        application = LedgerApplication(
            genesis: genesis, ledger: recovery.verifier.ledger, tipHash: recovery.verifier.lastBlockHash,
            tipTimestampMs: recovery.verifier.lastTimestampMs, mempool: Mempool(genesis: genesis, limits: config.mempool.limits),
            signatures: transactionSignatures, nowMs: { UInt64(Date().timeIntervalSince1970 * 1000) })
        let replicaConfiguration = ReplicaConfiguration(
            chainID: genesis.chainID, validators: genesis.validators, selfIndex: selfIndex, parameters: genesis.consensus,
            genesisHash: genesis.hash, genesisStateRoot: Ledger(genesis: genesis).stateRoot)
        let blocks = store
        let genesisHash = genesis.hash
        // A stored block that cannot be read (damage, or out of descriptors) stops the
        // start with an error naming it, never a trap.
        let replica = try Replica(
            configuration: replicaConfiguration, durableState: durable, committedHeight: store.tipHeight,
            blockHash: { height in
                if height == 0 { return genesisHash }
                guard let block = try blocks.block(at: height) else { throw StoreError.failed("block \(height) is missing below the tip") }
                return block.block.hash
            },
            tipCertificate: store.tipHeight == 0 ? nil : try store.block(at: store.tipHeight)?.certificate,
            application: application, verifier: Ed25519Verifier(validators: genesis.validators),
            signer: Ed25519Signer(key: key), signingMark: signingMarkFile.mark,
            quarantined: durable != nil || store.tipHeight > 0 || signingMarkFile.mark != nil)
        EquivocationReporter.logStartupSafety(
            journalMark: durable?.signingMark ?? .zero, fileMark: signingMarkFile.mark, replica: replica, logger: logger)
        lastView = replica.view
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

        let listen = try HostPort(config.p2p.listen, field: "p2p.listen")
        var limits = NetworkLimits.default
        limits.maxMessageBytes = config.p2p.maxMessageBytes
        limits.maxOutboundQueueMessages = config.p2p.outboundQueueFrames
        limits.reconnectMaxDelayMs = Int64(config.p2p.maxDialBackoffMs)
        limits.maxPendingHandshakesPerAddress = config.p2p.maxPendingHandshakesPerAddress
        limits.handshakeFirstMessageTimeoutMs = Int64(config.p2p.handshakeFirstMessageTimeoutMs)
        network = try await PeerNetwork.start(
            configuration: NetworkConfiguration(
                genesis: genesis, identity: key, listenHost: listen.host, listenPort: listen.port,
                acceptOnlyValidatorAddresses: config.p2p.acceptOnlyValidatorAddresses, limits: limits),
            group: executorLoop, logger: logger)

        let first = store.tipHeight > Self.startupIndexBlocks ? store.tipHeight - Self.startupIndexBlocks + 1 : 1
        // The hash index is rebuilt from the last blocks only, so start-up does not grow
        // with the chain (older transactions stay in their blocks, unindexed), and on a
        // thread of its own (lookups wait for it), not here.
        committedTransactions = CommittedTransactions(
            reader: store.reader, rebuildingFrom: first, through: store.tipHeight, logger: logger)
        // Persisted: it reads only the blocks committed after its last checkpoint.
        let accountIndexStart = ContinuousClock.now
        accountTransactions = try AccountTransactions.open(dataDirectory: dataDirectory, store: store, logger: logger).index
        logger.info("account index opened", metadata: [
            "ms": "\(CommittedTransactions.milliseconds(ContinuousClock.now - accountIndexStart))",
        ])
        syncServer = SyncServer(reader: blockReader, network: network, metrics: metrics)
        metrics.height.record(Int64(store.tipHeight))
        metrics.view.record(Int64(driver.replica.view))
        io.node = self
    }

    /// The replica's last persisted state with its prepared blocks (either stored
    /// form); removes block files it does not refer to. Damage is an error: a replica
    /// that forgot what it signed could sign twice.
    /// Refuses a configuration whose consensus messages could outgrow the transport's
    /// bound: an oversize message is dropped on the way, and the protocol would stall on it.
    static func checkFrameBound(genesis: Genesis, maxMessageBytes: Int) throws {
        let largest = ConsensusLimits.largestMessageBytes(parameters: genesis.consensus, validatorCount: genesis.validators.count)
        guard largest <= maxMessageBytes else {
            throw NodeConfig.Error.invalid(
                "p2p.max_message_bytes = \(maxMessageBytes) is below the largest consensus message this genesis allows "
                    + "(\(largest) bytes: consensus.max_block_transactions = \(genesis.consensus.maxBlockTransactions) of up to "
                    + "\(Limits.maxTransactionBytes) bytes, consensus.checkpoint_interval_blocks = "
                    + "\(genesis.consensus.checkpointIntervalBlocks), \(genesis.validators.count) validators)")
        }
    }

    private static func readDurableState(_ store: ConsensusStateStore) throws -> DurableState? {
        guard let bytes = try store.readState() else {
            try store.retainOnly([])
            return nil
        }
        var failure: (any Error)?
        let state = try DurableState(storedBytes: bytes) { hash in
            do { return try store.readBlock(hash).map { try Block(canonicalBytes: $0) } } catch {
                failure = error
                return nil
            }
        }
        if let failure { throw failure }
        try store.retainOnly(Set(state.referencedBlocks.keys))
        return state
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
                            if gossipInbox.push(message, max: Self.maxGossipInboxMessages) {
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
        if ticks.isMultiple(of: Self.regossipIntervalTicks) { regossipStuckHeads() }
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
        var transactions: [Transaction] = []
        var malformed: [(peer: Int, error: any Error)] = []
        var notFromValidators = 0
        for message in messages {
            guard let from = message.validatorIndex else {
                notFromValidators += 1
                continue
            }
            do { transactions += try PeerMessage.gossip(bytes: message.bytes) } catch { malformed.append((from, error)) }
        }
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
        let screen = GossipScreen(
            transactions, mempool: application.mempool,
            account: { application.ledger.account($0) ?? .empty }, isInFlight: { application.isInFlight($0) })
        for (code, count) in screen.rejected { metrics.messageDropped("gossip_\(code)", count: count) }
        return screen
    }

    private func admitGossip(_ transactions: [Transaction], _ verified: [VerifiedTransaction?]) {
        guard !stopped else { return }
        var admitted = 0
        for (transaction, checked) in zip(transactions, verified) {
            guard let checked else {
                metrics.messageDropped("gossip_bad_signature")
                continue
            }
            if let outbound, !outbound.admits(transaction) { continue }
            let account = application.ledger.account(transaction.senderAddress) ?? .empty
            if case .success = application.mempool.admit(checked, account: account) { admitted += 1 }
        }
        if admitted > 0 { handle(.transactionsAvailable) }
    }

    /// Gossips again the mempool heads that were heads a round ago too (bounded).
    private func regossipStuckHeads() {
        let heads = application.mempool.heads(maxCount: Self.maxRegossipTransactions) { self.application.ledger.account($0)?.nonce ?? 0 }
        let stuck = heads.filter { lastRoundHeads.contains($0.hash) }
        lastRoundHeads = Set(heads.map(\.hash))
        guard !stuck.isEmpty else { return }
        metrics.transactionsRegossiped.increment(by: Int64(stuck.count))
        gossipBuffer.append(contentsOf: stuck)
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
        if driver.replica.view != lastView {
            metrics.viewChanges.increment(by: Int64(driver.replica.view > lastView ? driver.replica.view - lastView : 0))
            logger.notice("view changed", metadata: ["view": "\(driver.replica.view)", "primary": "\(genesis.validators.primary(view: driver.replica.view))"])
            lastView = driver.replica.view
            metrics.view.record(Int64(driver.replica.view))
        }
        metrics.mempoolTransactions.record(Int64(application.mempool.count))
        exportEvictions()
        for (reason, count) in driver.replica.dropped where count > exportedDrops[reason, default: 0] {
            metrics.messageDropped(reason.rawValue, count: count - exportedDrops[reason, default: 0])
            exportedDrops[reason] = count
        }
        exportSuspicions()
        equivocationReporter.export(driver.replica, validators: genesis.validators, logger: logger)
    }

    /// View changes this backup started because the primary kept committing but held
    /// transactions back (censorship) or proposed late (slow primary): an operator's
    /// sign of a faulty primary that the no-commit timer alone would not show.
    private func exportSuspicions() {
        for (reason, count) in driver.replica.suspicions where count > exportedSuspicions[reason, default: 0] {
            metrics.primarySuspected(reason.rawValue, count: count - exportedSuspicions[reason, default: 0])
            exportedSuspicions[reason] = count
            logger.warning("backup suspects the primary", metadata: [
                "reason": "\(reason.rawValue)", "view": "\(driver.replica.view)",
                "primary": "\(genesis.validators.primary(view: driver.replica.view))",
            ])
        }
    }

    /// The driver's durable write. A vote that is not durable must never be sent: if
    /// this write fails (after retries) the node cannot go on safely.
    fileprivate func persist(_ state: DurableState) throws {
        let blocks = state.referencedBlocks
        let start = ContinuousClock.now
        // Nothing signed past the mark on disk is sent before the mark is durable: the
        // driver sends only after this returns. The mark file is written while the
        // journal record is (`raise(to:alongside:)`).
        try signingMarkFile.raise(to: state.signingMark, durableWrite: durableWrite) { () throws(DurableWrite.GaveUp) in
            try durableWrite.run("persist consensus state") {
                try consensusState.write(state: state.compactBytes, referenced: Set(blocks.keys)) { blocks[$0]!.canonicalBytes }
            }
            metrics.consensusPersist.record(duration: ContinuousClock.now - start)
        }
    }

    fileprivate func send(_ message: ConsensusMessage, to peer: ValidatorIndex) {
        if let outbound { return outbound.send(message, to: [peer], link: outboundLink()) }
        network.send(to: Int(peer), PeerMessage.consensus(message).bytes)
    }

    fileprivate func broadcast(_ message: ConsensusMessage) {
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
    fileprivate func commit(_ certified: CertifiedBlock) throws -> Hash {
        let block = certified.block
        // Durable before anything is acknowledged: the block is fsync'd here, before
        // the ledger moves, the API reports it or an event goes out.
        let start = ContinuousClock.now
        try durableWrite.run("store block \(block.height)") { try store.append(certified) }
        metrics.blockAppend.record(duration: ContinuousClock.now - start)
        // Indexed before the mempool lets go of its transactions, so a lookup between
        // the two finds each one pending or committed, never unknown.
        committedTransactions.add(block)
        accountTransactions.add(block)
        let execution = application.commit(block)
        timeline.mark(.executed, height: block.height)
        metrics.height.record(Int64(block.height))
        metrics.blocksCommitted.increment()
        metrics.transactionsCommitted.increment(by: Int64(block.transactions.count))
        let now = ContinuousClock.now
        var admissions: [ContinuousClock.Instant] = []
        for transaction in block.transactions {
            if let submitted = submittedAt.removeValue(forKey: transaction.hash) {
                metrics.commitLatency.record(duration: now - submitted)
                if admissions.count < CommitTimeline.maxAdmissionSamplesPerBlock { admissions.append(submitted) }
            }
        }
        timeline.observeAdmissions(admissions, height: block.height)
        if !subscribers.isEmpty {
            let header = NodeEvent.block(height: block.height, hash: block.hash, transactionCount: block.transactions.count)
            publish([header] + block.transactions.enumerated().map { index, transaction in
                .transaction(hash: transaction.hash, height: block.height, index: index)
            })
        }
        maybeSnapshot(at: block.height, blockHash: block.hash, transactionCount: block.transactions.count)
        return execution.stateRoot
    }

    /// A peer's sync request; through a `PeerOutbound` as decoded blocks.
    fileprivate func sendBlocks(_ heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
        guard let outbound else { return syncServer.serve(heights, to: peer) }
        let blocks = syncServer.blocks(heights)
        guard !blocks.isEmpty else { return }
        outbound.send(.syncResponse(blocks), to: [peer], link: outboundLink())
    }

    /// Whether a snapshot is due after executing `height`: at checkpoint heights, every
    /// `snapshotIntervalBlocks` or `snapshotIntervalTransactions`, whichever comes
    /// first, so a restart replays a bounded number of blocks and transactions.
    static func isSnapshotDue(
        height: UInt64, lastSnapshotHeight: UInt64, transactionsSinceSnapshot: Int, checkpointIntervalBlocks: UInt64
    ) -> Bool {
        let interval = max(checkpointIntervalBlocks, snapshotIntervalBlocks)
        return height % checkpointIntervalBlocks == 0
            && (height >= lastSnapshotHeight + interval || transactionsSinceSnapshot >= snapshotIntervalTransactions)
    }

    /// Snapshots the ledger when `isSnapshotDue`.
    private func maybeSnapshot(at height: UInt64, blockHash: Hash, transactionCount: Int) {
        transactionsSinceSnapshot += transactionCount
        guard Self.isSnapshotDue(
            height: height, lastSnapshotHeight: lastSnapshotHeight, transactionsSinceSnapshot: transactionsSinceSnapshot,
            checkpointIntervalBlocks: genesis.consensus.checkpointIntervalBlocks)
        else { return }
        do {
            try snapshots.write(Snapshot(ledger: application.ledger, blockHash: blockHash))
            lastSnapshotHeight = height
            transactionsSinceSnapshot = 0
        } catch {
            logger.error("snapshot failed; restart will replay more blocks", metadata: ["height": "\(height)", "error": "\(error)"])
        }
    }

    private func flushGossip() {
        guard !gossipBuffer.isEmpty else { return }
        let link = outbound.map { _ in outboundLink() }
        var start = 0
        while start < gossipBuffer.count {
            let end = min(start + PeerMessage.maxGossipTransactions, gossipBuffer.count)
            let batch = Array(gossipBuffer[start..<end])
            if let outbound, let link {
                outbound.gossip(batch, link: link)
            } else {
                network.broadcast(PeerMessage.transactions(batch).bytes)
            }
            start = end
        }
        gossipBuffer.removeAll(keepingCapacity: true)
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

    private func publish(_ events: [NodeEvent]) {
        let dropped = subscribers.publish(events)
        if dropped > 0 { Counter(label: "tally_event_subscribers_dropped_total", dimensions: [("reason", "slow")]).increment(by: dropped) }
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
        var admitted = 0
        let results: [Result<Hash, SubmissionError>] = zip(transactions, screened).map { transaction, screen in
            let checked: VerifiedTransaction
            switch screen {
            case .failure(let reason):
                metrics.transactionRejected(reason.code)
                return .failure(.rejected(reason))
            case .success(let verified): checked = verified
            }
            if let outbound, !outbound.admits(transaction) {
                gossipBuffer.append(transaction)
                return .success(checked.transaction.hash)
            }
            // Checked again: the state may have moved while signatures were verified.
            switch application.admit(checked) {
            case .success(let hash):
                admitted += 1
                gossipBuffer.append(transaction)
                trackSubmission(hash, at: now)
                return .success(hash)
            case .failure(let reason):
                metrics.transactionRejected(reason.code)
                return .failure(.rejected(reason))
            }
        }
        exportEvictions()
        if admitted > 0 {
            metrics.transactionsAdmitted.increment(by: Int64(admitted))
            // Gossip at once, not on the next tick: a transaction sent to a backup
            // reaches the primary up to a tick sooner (one message per request).
            flushGossip()
            handle(.transactionsAvailable)
        }
        return results
    }

    /// Remembers when a transaction was submitted, for the commit latency; at the
    /// bound, forgets those the mempool no longer holds (evicted ones never commit),
    /// at most once per `submissionSweepIntervalTicks`.
    private func trackSubmission(_ hash: Hash, at instant: ContinuousClock.Instant) {
        if submittedAt.count >= Self.maxTrackedSubmissions, ticks >= lastSubmissionSweepTick + Self.submissionSweepIntervalTicks {
            lastSubmissionSweepTick = ticks
            submittedAt = submittedAt.filter { application.mempool.contains($0.key) || application.isInFlight($0.key) }
        }
        if submittedAt.count < Self.maxTrackedSubmissions { submittedAt[hash] = instant }
    }

    /// Adds the mempool's evictions since the last call to the metrics.
    private func exportEvictions() {
        for (reason, count) in application.mempool.evictions where count > exportedEvictions[reason, default: 0] {
            metrics.transactionsEvicted(reason.rawValue, count: count - exportedEvictions[reason, default: 0])
            exportedEvictions[reason] = count
        }
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

/// The node's I/O for its replica driver: the consensus journal, the block store
/// and ledger, the peer network. The driver runs on the node's actor, so each call
/// is on its executor already.
private final class NodeReplicaIO: DurableStateSink, CertifiedBlockSink, ReplicaTransport {
    /// Set once the node is built (it owns this object and its driver).
    weak var node: Node?

    private var isolatedNode: Node {
        guard let node else { preconditionFailure("the node's driver outlived its node") }
        return node
    }

    func write(_ state: DurableState) throws { try isolatedNode.assumeIsolated { try $0.persist(state) } }

    func commit(_ block: CertifiedBlock) throws -> Hash {
        try isolatedNode.assumeIsolated { try $0.commit(block) }
    }

    func send(_ message: ConsensusMessage, to peer: ValidatorIndex) { isolatedNode.assumeIsolated { $0.send(message, to: peer) } }

    func broadcast(_ message: ConsensusMessage) { isolatedNode.assumeIsolated { $0.broadcast(message) } }

    func sendBlocks(heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
        isolatedNode.assumeIsolated { $0.sendBlocks(heights, to: peer) }
    }
}
