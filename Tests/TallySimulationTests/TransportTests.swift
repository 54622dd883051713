import TallyConsensus
import TallyDriver
import TallyNetwork
import TallyTypes
import XCTest

@testable import TallySimulation

/// The simulated transport keeps the real one's bounds (`NetworkLimits.default`):
/// the frame bound on the bytes the node frames, the per-peer queue bound (oldest
/// dropped), and connection resets at crashes.
final class TransportTests: XCTestCase {
    func quietSimulation() -> Simulation {
        var options = SimulationOptions(validatorCount: 4, mix: .none)
        options.plan = FaultPlan()
        return Simulation(seed: 1, options: options)
    }

    /// A block request for many blocks: small, and its size is known from the wire.
    let small = ConsensusMessage.syncRequest(fromHeight: 1, toHeight: 2)

    func testMessageOverTheFrameBoundGoesToNobodyAndIsCounted() {
        let simulation = quietSimulation()
        let transaction = simulation.pool.transactions[0][0]
        let perTransaction = transaction.canonicalBytes.count
        let count = NetworkLimits.default.maxMessageBytes / perTransaction + 1
        let header = BlockHeader(
            height: 1, view: 0, timestampMs: 0, previousHash: .zero, transactionsRoot: .zero, stateRoot: .zero, proposer: 0,
            transactionCount: UInt32(count))
        let oversize = ConsensusMessage.block(Block(header: header, transactions: Array(repeating: transaction, count: count)))
        XCTAssertGreaterThan(ConsensusWire.bytes(oversize).count, NetworkLimits.default.maxMessageBytes)
        simulation.transmit(oversize, from: simulation.nodes[0], to: [1, 2, 3])
        XCTAssertEqual(simulation.transport[.messageTooLarge], 3)
        XCTAssertTrue(simulation.network.isEmpty)
        // One transaction less than the bound allows goes out.
        let fitting = ConsensusMessage.block(Block(header: header, transactions: Array(repeating: transaction, count: count - 2)))
        XCTAssertLessThanOrEqual(ConsensusWire.bytes(fitting).count, NetworkLimits.default.maxMessageBytes)
        simulation.transmit(fitting, from: simulation.nodes[0], to: [1])
        XCTAssertEqual(simulation.transport[.messageTooLarge], 3)
        XCTAssertEqual(simulation.network.values.joined().count, 1)
    }

    /// Messages for a peer that is down wait in the sender's bounded queue, the oldest
    /// dropped when it is full, and go out when the peer is back.
    func testQueueForADownPeerIsBoundedAndSentAtRestart() throws {
        let simulation = quietSimulation()
        let peer = simulation.nodes[1]
        simulation.crash(peer, Crash(validator: 1, tick: 0, restartTick: 5, tornWrite: false))
        peer.restartTick = 5
        let bound = NetworkLimits.default.maxOutboundQueueMessages
        for _ in 0..<(bound + 7) { simulation.transmit(small, from: simulation.nodes[0], to: [1]) }
        XCTAssertEqual(simulation.transport[.outboundQueueFull], 7)
        XCTAssertEqual(simulation.transport[.heldForReconnect], bound + 7)
        XCTAssertTrue(simulation.network.isEmpty)
        simulation.tick = 5
        simulation.crashAndRestart()
        XCTAssertTrue(peer.up)
        XCTAssertEqual(simulation.network.values.joined().count, bound)
    }

    /// A crash loses what the crashed node sent and what was on its way to it.
    func testCrashResetsTheConnectionsBothWays() {
        let simulation = quietSimulation()
        simulation.transmit(small, from: simulation.nodes[0], to: [1, 2])
        simulation.transmit(small, from: simulation.nodes[2], to: [0, 3])
        simulation.crash(simulation.nodes[0], Crash(validator: 0, tick: 0, restartTick: 50, tornWrite: false))
        XCTAssertEqual(simulation.transport[.connectionReset], 3)
        let arriving = simulation.network.values.joined().filter { simulation.arrives($0) }
        XCTAssertEqual(arriving.map(\.toSlot), [3])
    }
}
