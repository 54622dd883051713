import TallyApplication
import TallyConsensus
import TallyCrypto
import TallyTypes

/// Full-size blocks (issue 13 item 2): the node's block size and checkpoint interval
/// (`ConsensusParameters.default`) and a client load that fills every block, so a
/// primary crash happens with many full blocks prepared above the stable checkpoint.
/// With whole blocks in VIEW-CHANGEs and NEW-VIEWs such a NEW-VIEW outgrew the frame
/// bound and the chain halted; they carry block hashes now, and the simulated
/// transport enforces the node's frame bound, so a run shows which holds.
public enum FullBlockLoad {
    /// Funded senders, each with a run of consecutive nonces (pre-signed once per
    /// process and genesis, like the small pool): one nonce of every sender fills a
    /// block, and no sender's last nonce is past the mempool's nonce window, so
    /// every submitted transaction is admitted.
    static let senderCount = Int(ConsensusParameters.default.maxBlockTransactions)
    static let noncesPerSender = Int(MempoolLimits.defaultMaxNonceGap) * 3 / 4
    /// Submitted to every replica each tick while the load lasts: two blocks, more
    /// than commit in the ticks the protocol takes, so every block is full.
    static let transactionsPerTick = 2 * Int(ConsensusParameters.default.maxBlockTransactions)

    /// Ticks of load before the first crash: about this many full blocks commit or
    /// are prepared above the stable checkpoint when it hits.
    static let ticksBeforeFirstCrash = 16

    static let keys = (0..<senderCount).map { index in
        SigningKey(seed: [0xB0, UInt8(index >> 8), UInt8(index & 0xFF)] + [UInt8](repeating: 0x5A, count: 29))!
    }

    static var genesisAccounts: [GenesisAccount] {
        keys.map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: TransactionPool.clientBalance) }
    }

    /// Whether a genesis has the full-block parameters (and so the load's accounts).
    static func applies(to parameters: ConsensusParameters) -> Bool { parameters == SimulationOptions.fullBlockParameters }

    /// Every sender's nonce 0, then every sender's nonce 1, …: each prefix is
    /// proposable in submission order.
    static func transactions(chainID: String, genesisHash: Hash) -> [Transaction] {
        var transactions: [Transaction] = []
        transactions.reserveCapacity(senderCount * noncesPerSender)
        for nonce in 0..<UInt64(noncesPerSender) {
            for (index, key) in keys.enumerated() {
                let recipient = Address(publicKey: keys[(index + 1) % keys.count].publicKey)
                transactions.append(Transaction.signed(
                    by: key, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 1, fee: 1, nonce: nonce))
            }
        }
        return transactions
    }
}

extension Simulation {
    /// Two blocks' worth of the full-block load to every replica, as one batch
    /// each (a node's gossip and HTTP batches), until the load is spent.
    func submitFullBlockLoad() {
        guard options.fullBlocks, !isQuiet, tick >= fullBlockLoadStartTick,
              fullBlockLoadSubmitted < pool.fullBlockLoad.count
        else { return }
        let end = min(fullBlockLoadSubmitted + FullBlockLoad.transactionsPerTick, pool.fullBlockLoad.count)
        let batch = Array(pool.fullBlockLoad[fullBlockLoadSubmitted..<end])
        fullBlockLoadSubmitted = end
        for transaction in batch { transactionLog.submitted(transaction, atTick: tick) }
        for node in nodes { pendingBatches[tick + 1, default: []].append((node.slot, batch)) }
    }

    /// The load starts a few ticks before the plan's first crash (at once when none),
    /// so that crash hits with full blocks prepared and not yet checkpointed.
    var fullBlockLoadStartTick: Int {
        max(0, (plan.crashes.map(\.tick).min() ?? 0) - FullBlockLoad.ticksBeforeFirstCrash)
    }

    func deliverBatches() {
        guard let arrivals = pendingBatches.removeValue(forKey: tick) else { return }
        for (slot, batch) in arrivals where nodes[slot].up {
            let admitted = nodes[slot].app.submit(batch.filter { !censors(nodes[slot], $0) })
            if admitted.contains(where: { if case .success = $0 { true } else { false } }) {
                step(nodes[slot], .transactionsAvailable)
            }
        }
    }
}
