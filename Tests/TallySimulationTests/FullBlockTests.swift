import XCTest

@testable import TallySimulation

/// Full-size blocks (the node's block size and checkpoint interval, a load that fills
/// them) with the node's frame bound enforced by the simulated transport.
final class FullBlockTests: XCTestCase {
    /// Issue 13 item 2 in the simulator: the view-0 primary crashes while a dozen
    /// blocks of thousands of transactions are prepared above the stable checkpoint.
    /// Their NEW-VIEW would be over the frame bound with whole blocks in it (it was
    /// dropped on every socket and nothing committed again); with blocks by hash it
    /// goes out, the next primary takes over, and every transaction commits on every
    /// replica (the run's transaction-liveness check).
    func testPrimaryCrashUnderFullBlocksRecovers() {
        var plan = FaultPlan()
        plan.healTick = 100
        plan.maxDelayTicks = 2
        plan.crashes = [Crash(validator: 0, tick: 30, restartTick: 100, tornWrite: false)]
        var options = SimulationOptions(validatorCount: 4, mix: .crash)
        options.fullBlocks = true
        options.plan = plan
        let result = Simulation(seed: 1, options: options).run()
        XCTAssertNil(result.failure)
        XCTAssertEqual(result.faults["crashes"], 1)
        XCTAssertGreaterThan(result.viewChanges, 0, "the primary's crash must force a view change")
        XCTAssertEqual(result.transport[.messageTooLarge, default: 0], 0)
        let sizes = result.viewChangeSizes
        XCTAssertGreaterThan(sizes.newViewWholeBlockBytes, Simulation.maxMessageBytes, "\(sizes)")
        XCTAssertLessThan(sizes.newViewBytes, Simulation.maxMessageBytes, "\(sizes)")
        XCTAssertGreaterThanOrEqual(
            result.transactionsCommitted, FullBlockLoad.senderCount * FullBlockLoad.noncesPerSender)
    }
}
