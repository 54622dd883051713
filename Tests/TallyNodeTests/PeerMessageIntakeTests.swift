import Logging
import TallyConsensus
import TallyLogTesting
import XCTest

@testable import TallyNode

/// Peer-message intake: a well-formed consensus message becomes the replica's event
/// from its validator; every rejected message is counted in
/// `tally_messages_dropped_total`, but a flood of malformed ones is logged only for
/// the first `malformedMessagesLoggedInFull` and then every `malformedMessagesLogInterval`th
/// (a Byzantine peer must not fill the disk with our log).
final class PeerMessageIntakeTests: XCTestCase {
    static let malformedLine = "dropping a malformed peer message"
    static let malformedSample = "tally_messages_dropped_total{reason=\"malformed_message\"}"
    static let notAValidatorSample = "tally_messages_dropped_total{reason=\"not_a_validator\"}"

    struct Garbled: Error {}

    func testAWellFormedMessageBecomesAnEventFromItsValidator() throws {
        let capture = LogCapture()
        var intake = PeerMessageIntake(logger: capture.logger(), metrics: NodeMetrics())
        let message = ConsensusMessage.syncRequest(fromHeight: 1, toHeight: 3)
        let event = try XCTUnwrap(intake.consensusEvent(bytes: PeerMessage.consensus(message).bytes, from: 2))
        guard case .message(let decoded, let from) = event else { return XCTFail("not a message event: \(event)") }
        XCTAssertEqual(decoded, message)
        XCTAssertEqual(from, 2)
        XCTAssertEqual(intake.malformedMessages, 0)
        XCTAssertEqual(capture.lines.count, 0)
    }

    func testAFloodOfMalformedMessagesIsCountedInFullAndLoggedSparsely() {
        let capture = LogCapture()
        var intake = PeerMessageIntake(logger: capture.logger(), metrics: NodeMetrics())
        let before = StageMetricsTests.samples(Telemetry.prometheusText())
        let flood = 2 * PeerMessageIntake.malformedMessagesLogInterval + 7
        // Kind 1 (consensus) with a truncated body, then a kind this lane never takes.
        for index in 0..<flood {
            XCTAssertNil(intake.consensusEvent(bytes: index.isMultiple(of: 2) ? [1, 0xFF] : [9], from: 3))
        }
        let after = StageMetricsTests.samples(Telemetry.prometheusText())

        XCTAssertEqual(intake.malformedMessages, flood)
        XCTAssertEqual(after[Self.malformedSample, default: 0] - before[Self.malformedSample, default: 0], Double(flood))
        let logged = capture.lines.filter { $0.message == Self.malformedLine }
        let totals = Array(1...PeerMessageIntake.malformedMessagesLoggedInFull)
            + [PeerMessageIntake.malformedMessagesLogInterval, 2 * PeerMessageIntake.malformedMessagesLogInterval]
        XCTAssertEqual(logged.map { $0.metadata["total"]?.description }, totals.map { "\($0)" })
        XCTAssertEqual(capture.lines.count, logged.count, "nothing else logged")
        XCTAssertTrue(logged.allSatisfy { $0.level == .warning && $0.metadata["peer"]?.description == "3" })
        XCTAssertTrue(logged.allSatisfy { $0.metadata["error"] != nil }, "each line names the decoding error")
    }

    func testAMessageFromAPeerThatIsNotAValidatorIsCountedNotLogged() {
        let capture = LogCapture()
        var intake = PeerMessageIntake(logger: capture.logger(), metrics: NodeMetrics())
        let before = StageMetricsTests.samples(Telemetry.prometheusText())
        let message = ConsensusMessage.syncRequest(fromHeight: 1, toHeight: 3)
        XCTAssertNil(intake.consensusEvent(bytes: PeerMessage.consensus(message).bytes, from: nil))
        XCTAssertNil(intake.consensusEvent(bytes: [1, 0xFF], from: nil), "not decoded: not a malformed message either")
        let after = StageMetricsTests.samples(Telemetry.prometheusText())
        XCTAssertEqual(after[Self.notAValidatorSample, default: 0] - before[Self.notAValidatorSample, default: 0], 2)
        XCTAssertEqual(after[Self.malformedSample, default: 0] - before[Self.malformedSample, default: 0], 0)
        XCTAssertEqual(intake.malformedMessages, 0)
        XCTAssertEqual(capture.lines.count, 0)
    }

    /// The gossip lane's rejects go through the same count, so a flood split across
    /// the two lanes is logged as sparsely as one on a single lane.
    func testGossipRejectsShareTheConsensusLanesCountAndLog() {
        let capture = LogCapture()
        var intake = PeerMessageIntake(logger: capture.logger(), metrics: NodeMetrics())
        let before = StageMetricsTests.samples(Telemetry.prometheusText())
        let inFull = PeerMessageIntake.malformedMessagesLoggedInFull
        for _ in 0..<(inFull - 1) { XCTAssertNil(intake.consensusEvent(bytes: [1, 0xFF], from: 1)) }
        intake.dropRejectedGossip(malformed: [(peer: 2, error: Garbled()), (peer: 2, error: Garbled())], notFromValidators: 5)
        let after = StageMetricsTests.samples(Telemetry.prometheusText())

        XCTAssertEqual(intake.malformedMessages, inFull + 1)
        XCTAssertEqual(after[Self.malformedSample, default: 0] - before[Self.malformedSample, default: 0], Double(inFull + 1))
        XCTAssertEqual(after[Self.notAValidatorSample, default: 0] - before[Self.notAValidatorSample, default: 0], 5)
        let logged = capture.lines.filter { $0.message == Self.malformedLine }
        XCTAssertEqual(logged.count, inFull, "the second gossip reject is past the lines logged in full")
        XCTAssertEqual(logged.last?.metadata["peer"]?.description, "2")
    }
}
