import Logging
import TallyCrypto
import TallyLedger
import TallyStore
import TallyTypes

/// What a node runs at start-up: load the newest usable snapshot, check it against
/// the stored block at its height (hash and state root), and replay only the blocks
/// above it through the verifier, ending at the store's tip.
///
/// The deterministic simulator runs it too, at every restart of a simulated node
/// (its certificates carry the simulator's stand-in signatures: it passes `precheck`).
public enum ChainRecovery {
    public enum Failure: Error, CustomStringConvertible {
        case store(StoreError)
        /// A stored block fails verification: the store holds a bad chain.
        case invalidStoredBlock(VerificationFailure)

        public var description: String {
            switch self {
            case .store(let error): return "\(error)"
            case .invalidStoredBlock(let failure): return "stored chain is invalid at \(failure)"
            }
        }
    }

    public struct Outcome: Sendable {
        public let verifier: ChainVerifier
        /// Height of the snapshot used (0: replayed from genesis).
        public let snapshotHeight: UInt64
        public let replayedBlocks: UInt64
    }

    /// `snapshots` nil: replay from genesis. `precheck` replaces `BlockPrecheck.run`
    /// (Ed25519 on all cores) for a caller whose signatures are not Ed25519.
    public static func resume(
        store: BlockStore, snapshots: SnapshotStore?, genesis: Genesis, logger: Logger = Logger(label: "tally.store"),
        precheck: ((CertifiedBlock) -> PrecheckedBlock)? = nil
    ) throws(Failure) -> Outcome {
        var verifier = ChainVerifier(genesis: genesis)
        var snapshotHeight: UInt64 = 0
        do {
            if let snapshots, let (snapshot, ledger) = try snapshots.loadLatest(genesis: genesis) {
                if let timestampMs = try matchingTimestampMs(snapshot, store: store, genesis: genesis) {
                    verifier = ChainVerifier(
                        genesis: genesis, resumingFrom: ledger, lastBlockHash: snapshot.blockHash, lastTimestampMs: timestampMs)
                    snapshotHeight = snapshot.height
                } else {
                    logger.warning(
                        "ignoring a snapshot that does not match the stored chain; replaying from genesis",
                        metadata: ["height": "\(snapshot.height)", "tip": "\(store.tipHeight)"])
                }
            }
            var height = snapshotHeight + 1
            while height <= store.tipHeight {
                let block = try store.block(at: height)!
                if let precheck { try verifier.verifyNext(precheck(block)) } else { try verifier.verifyNext(block) }
                height += 1
            }
        } catch let error as StoreError {
            throw .store(error)
        } catch let error as VerificationFailure {
            throw .invalidStoredBlock(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
        return Outcome(verifier: verifier, snapshotHeight: snapshotHeight, replayedBlocks: store.tipHeight - snapshotHeight)
    }

    /// The timestamp of the block at the snapshot's height (the genesis time at 0)
    /// when the snapshot is of this chain: that block has its hash and state root.
    static func matchingTimestampMs(_ snapshot: Snapshot, store: BlockStore, genesis: Genesis) throws(StoreError) -> UInt64? {
        if snapshot.height == 0 {
            let matches = snapshot.blockHash == genesis.hash && snapshot.stateRoot == Ledger(genesis: genesis).stateRoot
            return matches ? genesis.genesisTimeMs : nil
        }
        guard let stored = try store.block(at: snapshot.height),
              stored.block.hash == snapshot.blockHash && stored.block.header.stateRoot == snapshot.stateRoot
        else { return nil }
        return stored.block.header.timestampMs
    }
}
