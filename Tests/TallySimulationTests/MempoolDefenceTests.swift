import TallyApplication
import TallyTypes
import XCTest

@testable import TallySimulation

/// Issue 14's stuck transaction, in the simulator through the node's own mempool:
/// hostile clients send T0' (spending a funded sender's whole balance) to the
/// primary and T0, T1 (nonce + 1) to the backups at once, on an idle chain without
/// empty blocks (a node's default). After T0' commits the backups hold T1, which can
/// never apply. Two defences answer it: the mempool's re-check of touched queues
/// after each commit (T1 is evicted as unaffordable), and "proposable" decided by
/// the rule execution applies (T1 does not count). With both off the backups expect
/// progress for T1 and change views again and again; either one alone holds.
final class MempoolDefenceTests: XCTestCase {
    static let seed: UInt64 = 1

    func idleChain() -> SimulationOptions {
        var options = SimulationOptions(validatorCount: 4, mix: .none)
        options.emptyBlockIntervalTicks = nil
        options.clientRatePercent = 0
        // No faults in this mix: a long quiet stretch before the probe at "healing".
        options.faultTicks = 600
        // Idle: after healing only the probe transfer commits.
        options.heightsAfterHeal = 1
        return options
    }

    func run(disabling defences: [String]) -> SimulationResult {
        var options = idleChain()
        for name in defences { XCTAssertTrue(options.disableDefence(name), name) }
        return Simulation(seed: Self.seed, options: options).run()
    }

    func testStuckTransactionMakesViewsClimbOnlyWithoutTheMempoolDefences() {
        let defended = run(disabling: [])
        XCTAssertNil(defended.failure)
        XCTAssertGreaterThan(defended.faults["hostile_stuck_senders"] ?? 0, 0, "the seed must send stuck transactions")
        XCTAssertGreaterThan(defended.evictions[.unaffordable] ?? 0, 0, "the re-check evicts T1")
        XCTAssertEqual(defended.viewChanges, 0, "an idle chain with honest replicas changes no views")

        for defence in ["mempool-recheck", "mempool-proposable"] {
            let one = run(disabling: [defence])
            XCTAssertNil(one.failure, defence)
            XCTAssertEqual(one.viewChanges, 0, "the other defence alone holds without \(defence)")
        }
        XCTAssertEqual(run(disabling: ["mempool-recheck"]).evictions[.unaffordable] ?? 0, 0, "T1 stays without the re-check")

        let undefended = run(disabling: ["mempool-recheck", "mempool-proposable"])
        XCTAssertGreaterThanOrEqual(undefended.viewChanges, 5, "without both defences the stuck T1 makes views climb")
    }

    /// The simulator's checker answers from libsodium's verdicts on the pre-signed
    /// transactions and checks anything else (an altered signature) for real.
    func testPresignedSignaturesKnowThePoolAndCheckTheRest() {
        let genesis = Simulation.makeGenesis(validatorCount: 4)
        let pool = TransactionPool.shared(for: genesis)
        let checker = PresignedSignatures(pool: pool)
        XCTAssertTrue(checker.isValid(pool.transactions[0][0], genesisHash: genesis.hash))
        XCTAssertTrue(checker.isValid(pool.hostile.stuck[0].second, genesisHash: genesis.hash))
        var forged = pool.transactions[0][1]
        forged.amount += 1
        XCTAssertFalse(checker.isValid(forged, genesisHash: genesis.hash))
        // Another chain's genesis: the pool's verdicts do not apply, the real check refuses.
        let other = Simulation.makeGenesis(validatorCount: 7)
        XCTAssertFalse(checker.isValid(pool.transactions[0][0], genesisHash: other.hash))
    }
}
