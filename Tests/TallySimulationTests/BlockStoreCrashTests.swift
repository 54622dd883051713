import TallyApplication
import TallyConsensus
import TallyCrypto
import TallyStore
import XCTest

@testable import TallySimulation

/// Each simulated node commits its blocks into a real `BlockStore` on its
/// `SimulatedFileSystem`, and a crash during a commit step hits the block append: a
/// torn crash tears the append (the disk keeps half of the record), any other crash
/// comes after the append returned and before the ledger moved. A restart reopens the
/// store on the crashed disk and rebuilds the ledger from what it holds.
///
/// Goes red when the store's torn-tail recovery is switched off (the torn half stays
/// in the segment, and the blocks no longer read clean after the restart), and when a
/// restarted node keeps its application (and so its ledger) from before the crash
/// instead of replaying the stored chain (after a crash that followed an append, the
/// disk holds one block more than that ledger executed).
final class BlockStoreCrashTests: XCTestCase {
    /// What a node held as it went down.
    struct Down {
        let application: LedgerApplication
        let executedHeight: UInt64
        let storedHeight: UInt64
        let tornHeight: UInt64?
    }

    /// Seed 5: three torn appends, each a half record the store truncates at the restart.
    func testATornBlockAppendIsTruncatedAndTheRestartedNodeRunsOnTheStoredChain() {
        let result = crashRun(seed: 5)
        XCTAssertNil(result.failure, "\(result.plan)")
        XCTAssertEqual(result.faults["block_appends_torn"], 3, "\(result.faults)")
        XCTAssertEqual(result.faults["block_store_torn_tails_truncated"], 3, "\(result.faults)")
    }

    /// Seed 29: its one torn append is the first of a new segment, so the crash comes at
    /// the new file's directory fsync, before the record is written: the store reopens
    /// on an empty last segment, and nothing is truncated.
    func testATornAppendThatStartedASegmentLeavesItEmpty() {
        let result = crashRun(seed: 29)
        XCTAssertNil(result.failure, "\(result.plan)")
        XCTAssertEqual(result.faults["block_appends_torn"], 1, "\(result.faults)")
        XCTAssertNil(result.faults["block_store_torn_tails_truncated"], "\(result.faults)")
    }

    /// Sixteen crashes of validators 1-3 at busy ticks (client load, blocks committing),
    /// every other one torn; checks every restart against what the node held as it
    /// went down, and that crashing steps hit block appends both ways.
    func crashRun(seed: UInt64, file: StaticString = #filePath, line: UInt = #line) -> SimulationResult {
        var plan = FaultPlan()
        plan.healTick = 400
        plan.maxDelayTicks = 2
        plan.crashes = (0..<16).map { index in
            Crash(validator: 1 + index % 3, tick: 20 + 20 * index, restartTick: 30 + 20 * index, tornWrite: index % 2 == 0)
        }
        var options = SimulationOptions(validatorCount: 4, mix: .crash)
        options.plan = plan
        options.clientRatePercent = 60
        let simulation = Simulation(seed: seed, options: options)
        var down: [Int: Down] = [:]
        var tornRestarts = 0
        var storedAheadRestarts = 0
        simulation.crashObserver = { node in
            down[node.slot] = Down(
                application: node.app, executedHeight: node.app.ledger.height, storedHeight: node.durableHeight,
                tornHeight: node.tornAppend?.block.height)
        }
        simulation.restartObserver = { node in
            guard let before = down.removeValue(forKey: node.slot) else { return XCTFail("a restart without a crash", file: file, line: line) }
            let store = node.store!
            // The store's recovery: every completed append, the torn one gone.
            XCTAssertEqual(store.tipHeight, before.storedHeight, file: file, line: line)
            if let torn = before.tornHeight {
                XCTAssertEqual(torn, before.storedHeight + 1, "the torn append was the next block", file: file, line: line)
                tornRestarts += 1
            }
            if before.storedHeight > before.executedHeight {
                XCTAssertEqual(before.storedHeight, before.executedHeight + 1, "one block stored, not executed", file: file, line: line)
                storedAheadRestarts += 1
            }
            // The restarted node runs on what the disk holds, not on what it kept.
            XCTAssertFalse(node.app === before.application, "the restarted node kept its application", file: file, line: line)
            XCTAssertEqual(node.app.ledger.height, store.tipHeight, file: file, line: line)
            XCTAssertEqual(node.replica?.committedHeight, store.tipHeight, file: file, line: line)
            let tip = store.tipHeight == 0 ? nil : try! store.block(at: store.tipHeight)!.block
            XCTAssertEqual(node.app.tipHash, tip?.hash ?? simulation.genesisHash, file: file, line: line)
            XCTAssertEqual(
                node.app.ledger.stateRoot, tip?.header.stateRoot ?? simulation.genesisLedger.stateRoot, file: file, line: line)
        }
        let result = simulation.run()
        XCTAssertEqual(result.faults["restarts"], 16, file: file, line: line)
        XCTAssertGreaterThanOrEqual(tornRestarts, 1, "\(result.faults)", file: file, line: line)
        XCTAssertGreaterThanOrEqual(storedAheadRestarts, 1, "\(result.faults)", file: file, line: line)
        XCTAssertEqual(result.faults["block_appends_torn"], tornRestarts, file: file, line: line)
        XCTAssertEqual(result.faults["torn_block_appends_gone"], tornRestarts, file: file, line: line)
        XCTAssertEqual(result.faults["crashes_after_block_append"], storedAheadRestarts, file: file, line: line)
        XCTAssertGreaterThan(result.blocksCommitted, 200, file: file, line: line)
        // The chain spans several segment files (appends rolled over to new ones).
        let segments = try! simulation.nodes[0].fileSystem.listDirectory("/data/blocks").filter { $0.hasPrefix("segment-") }
        XCTAssertGreaterThan(segments.count, 2, file: file, line: line)
        return result
    }
}
