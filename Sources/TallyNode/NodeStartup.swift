import Foundation
import Logging
import TallyApplication
import TallyConsensus
import TallyCrypto
import TallyDriver
import TallyLedger
import TallyNetwork
import TallyStore
import TallyTypes
import TallyVerify

/// What a start does before the node runs: checks the configuration against genesis,
/// opens and recovers the home's stores, and builds the replica and the network
/// configuration from them.
enum NodeStartup {
    /// A start-up that replays at least this many blocks snapshots the tip after it.
    static let startupSnapshotReplayedBlocks: UInt64 = 64
    /// … or replays for at least this long (a few full blocks).
    static let startupSnapshotReplayDuration = Duration.milliseconds(500)

    /// Blocks read back at start-up for `/txs/{hash}`; older ones are not in its index
    /// (`/accounts/{address}/txs` has a persisted index of its own).
    static let startupIndexBlocks: UInt64 = 2_000

    /// The data directory's stores, opened and recovered.
    struct Restored {
        let store: BlockStore
        let snapshots: SnapshotStore
        let consensusState: ConsensusStateStore
        let recovery: ChainRecovery.Outcome
        /// The latest snapshot's height, after the one a long replay writes.
        let lastSnapshotHeight: UInt64
        /// The replica's journal (nil: a fresh start).
        let durable: DurableState?
    }

    /// Opens the block store, the snapshots and the consensus journal; recovers the
    /// ledger (latest snapshot, then replay); snapshots the tip after a long replay.
    static func restore(dataDirectory: String, genesis: Genesis, logger: Logger) throws -> Restored {
        let openStart = ContinuousClock.now
        let store = try BlockStore.open(dataDirectory: dataDirectory, logger: logger)
        let openDuration = ContinuousClock.now - openStart
        let snapshots = try SnapshotStore(dataDirectory: dataDirectory, logger: logger)
        let consensusState = try DataLayout.consensusStateStore(dataDirectory)
        let replayStart = ContinuousClock.now
        let recovery = try ChainRecovery.resume(store: store, snapshots: snapshots, genesis: genesis, logger: logger)
        let replayDuration = ContinuousClock.now - replayStart
        logger.info("chain recovered", metadata: [
            "height": "\(store.tipHeight)", "snapshot": "\(recovery.snapshotHeight)", "replayed": "\(recovery.replayedBlocks)",
            // Where a start's time goes (issue 16: restart flat in the ledger's size).
            "store_open_ms": "\(CommittedTransactions.milliseconds(openDuration))",
            "recovery_ms": "\(CommittedTransactions.milliseconds(replayDuration))",
        ])
        var lastSnapshotHeight = recovery.snapshotHeight
        if recovery.replayedBlocks >= startupSnapshotReplayedBlocks
            || (recovery.replayedBlocks > 0 && replayDuration >= startupSnapshotReplayDuration)
        {
            // The next start loads this instead of replaying the same blocks again.
            do {
                try snapshots.write(Snapshot(ledger: recovery.verifier.ledger, blockHash: recovery.verifier.lastBlockHash))
                lastSnapshotHeight = store.tipHeight
            } catch {
                logger.error("snapshot after start-up replay failed", metadata: ["error": "\(error)"])
            }
        }
        let durable = try consensusState.readDurableState()
        return Restored(
            store: store, snapshots: snapshots, consensusState: consensusState, recovery: recovery,
            lastSnapshotHeight: lastSnapshotHeight, durable: durable)
    }

    /// The committed-transaction indexes the HTTP API reads off the actor.
    static func openIndexes(
        dataDirectory: String, store: BlockStore, logger: Logger
    ) throws -> (CommittedTransactions, AccountTransactions) {
        let first = store.tipHeight > startupIndexBlocks ? store.tipHeight - startupIndexBlocks + 1 : 1
        // The hash index is rebuilt from the last blocks only, so start-up does not grow
        // with the chain (older transactions stay in their blocks, unindexed), and on a
        // thread of its own (lookups wait for it), not here.
        let committedTransactions = CommittedTransactions(
            reader: store.reader, rebuildingFrom: first, through: store.tipHeight, logger: logger)
        // Persisted: it reads only the blocks committed after its last checkpoint.
        let accountIndexStart = ContinuousClock.now
        let accountTransactions = try AccountTransactions.open(dataDirectory: dataDirectory, store: store, logger: logger).index
        logger.info("account index opened", metadata: [
            "ms": "\(CommittedTransactions.milliseconds(ContinuousClock.now - accountIndexStart))",
        ])
        return (committedTransactions, accountTransactions)
    }

    /// The replica, resumed from its journal and the stored chain.
    static func replica(
        genesis: Genesis, selfIndex: ValidatorIndex, durable: DurableState?, store: BlockStore,
        application: LedgerApplication, key: SigningKey, signingMark: SigningMark?
    ) throws -> Replica {
        let configuration = ReplicaConfiguration(
            chainID: genesis.chainID, validators: genesis.validators, selfIndex: selfIndex, parameters: genesis.consensus,
            genesisHash: genesis.hash, genesisStateRoot: Ledger(genesis: genesis).stateRoot)
        let genesisHash = genesis.hash
        // A stored block that cannot be read (damage, or out of descriptors) stops the
        // start with an error naming it, never a trap.
        return try Replica(
            configuration: configuration, durableState: durable, committedHeight: store.tipHeight,
            blockHash: { height in
                if height == 0 { return genesisHash }
                guard let block = try store.block(at: height) else { throw StoreError.failed("block \(height) is missing below the tip") }
                return block.block.hash
            },
            tipCertificate: store.tipHeight == 0 ? nil : try store.block(at: store.tipHeight)?.certificate,
            application: application, verifier: Ed25519Verifier(validators: genesis.validators),
            signer: Ed25519Signer(key: key), signingMark: signingMark,
            quarantined: durable != nil || store.tipHeight > 0 || signingMark != nil)
    }

    /// The peer network's configuration from the node's `[p2p]` section.
    static func networkConfiguration(_ p2p: NodeConfig.P2P, genesis: Genesis, key: SigningKey) throws -> NetworkConfiguration {
        let listen = try HostPort(p2p.listen, field: "p2p.listen")
        var limits = NetworkLimits.default
        limits.maxMessageBytes = p2p.maxMessageBytes
        limits.maxOutboundQueueMessages = p2p.outboundQueueFrames
        limits.reconnectMaxDelayMs = Int64(p2p.maxDialBackoffMs)
        limits.maxPendingHandshakesPerAddress = p2p.maxPendingHandshakesPerAddress
        limits.handshakeFirstMessageTimeoutMs = Int64(p2p.handshakeFirstMessageTimeoutMs)
        return try NetworkConfiguration(
            genesis: genesis, identity: key, listenHost: listen.host, listenPort: listen.port,
            acceptOnlyValidatorAddresses: p2p.acceptOnlyValidatorAddresses, limits: limits)
    }

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
}
