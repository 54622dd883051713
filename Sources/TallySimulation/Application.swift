import TallyApplication
import TallyApplicationTesting
import TallyConsensus
import TallyCrypto
import TallyLedger
import TallyTypes

/// The simulator runs the node's own consensus application (`LedgerApplication`,
/// its `Mempool` and admission); only the signature checker (`PresignedSignatures`)
/// and the clock are the simulator's.
extension Simulation {
    /// Small enough that a run reaches the bounds: a transaction waits at most 2,000
    /// ticks (the nonce window is the node's default).
    public static let mempoolLimits = MempoolLimits(
        maxTransactions: 4_096, maxBytes: 4_096 * 512, maxNonceGap: MempoolLimits.defaultMaxNonceGap, maxPerSender: 64,
        pendingLifetimeMs: 2_000 * SimulationOptions.parameters.tickMs)

    /// A replica's application on the committed state `ledger` (tip `tipHash`), with
    /// an empty mempool: at start, or after a restart (the executed ledger survives,
    /// rebuilt from the block store; the mempool and blocks in flight do not).
    package static func makeApplication(
        genesis: Genesis, ledger: Ledger, tipHash: Hash, tipTimestampMs: UInt64,
        mempoolDefences: SwitchableMempoolDefences = .all, nowMs: @escaping () -> UInt64
    ) -> LedgerApplication {
        // The full-block load needs the node's mempool size to fill its blocks.
        var mempool = Mempool(genesis: genesis, limits: FullBlockLoad.applies(to: genesis.consensus) ? .default : mempoolLimits)
        mempool.defences = mempoolDefences
        return LedgerApplication(
            genesis: genesis, ledger: ledger, tipHash: tipHash, tipTimestampMs: tipTimestampMs, mempool: mempool,
            signatures: PresignedSignatures(pool: TransactionPool.shared(for: genesis)), nowMs: nowMs)
    }

    /// The same application restarted: committed state kept, mempool emptied.
    package static func restarted(
        _ application: LedgerApplication, mempoolDefences: SwitchableMempoolDefences = .all
    ) -> LedgerApplication {
        makeApplication(
            genesis: application.genesis, ledger: application.ledger, tipHash: application.tipHash,
            tipTimestampMs: application.tipTimestampMs, mempoolDefences: mempoolDefences, nowMs: application.nowMs)
    }
}
