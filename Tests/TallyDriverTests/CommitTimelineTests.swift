import Foundation
import TallyConsensus
import TallyDriver
import XCTest

/// The commit path's stages as the driver stamps them (with a test clock): each
/// validator observes PRE-PREPARE accepted → prepared → committed for a block that
/// commits, with the durations between the rounds that carried them.
final class CommitTimelineTests: XCTestCase {
    func testEachValidatorObservesTheStagesOfACommittedBlock() throws {
        let clock = TestClock()
        let observed = StageLog()
        let cluster = Cluster { index in
            CommitTimeline(now: { clock.now() }, observe: { observed.add(index, $0, $1) })
        }
        cluster.apps[0].proposalsLeft = 1
        try cluster.handle(0, [.transactionsAvailable])  // t = 0: the primary's PRE-PREPARE goes out
        // Round 1 (t = 1 ms): the backups' PREPAREs; round 2 (2 ms): everyone's COMMITs; round 3 (3 ms): executed.
        try cluster.deliverAll { clock.advance(milliseconds: 1) }
        XCTAssertEqual(cluster.drivers.map(\.replica.committedHeight), [1, 1, 1, 1])

        XCTAssertEqual(observed.stages(of: 0), [.prepared: [.milliseconds(2)], .committed: [.milliseconds(1)]])
        for backup in ValidatorIndex(1)...3 {
            XCTAssertEqual(observed.stages(of: backup), [.prepared: [.milliseconds(1)], .committed: [.milliseconds(1)]], "validator \(backup)")
        }
        // The node stamps the rest: executed, then the events written.
        let timeline = try XCTUnwrap(cluster.drivers[1].timeline)
        clock.advance(milliseconds: 4)
        timeline.mark(.executed, height: 1)
        clock.advance(milliseconds: 5)
        timeline.mark(.eventSent, height: 1)
        XCTAssertEqual(observed.stages(of: 1)[.executed], [.milliseconds(4)])
        XCTAssertEqual(observed.stages(of: 1)[.event], [.milliseconds(5)])
        XCTAssertEqual(timeline.trackedBlocks, 0, "a block whose events went out is forgotten")
    }

    func testMilestonesCountOnceAndStagesNeedTheirStart() {
        let clock = TestClock()
        let observed = StageLog()
        let timeline = CommitTimeline(now: { clock.now() }, observe: { observed.add(0, $0, $1) })
        timeline.mark(.committed, height: 7)  // learned by catch-up: no PRE-PREPARE, no prepared
        clock.advance(milliseconds: 3)
        timeline.mark(.executed, height: 7)
        clock.advance(milliseconds: 3)
        timeline.mark(.executed, height: 7)  // a repeat is not a second observation
        XCTAssertEqual(observed.stages(of: 0), [.executed: [.milliseconds(3)]])
    }

    func testAdmissionsAreObservedAgainstTheAcceptanceUpToTheSampleBound() {
        let clock = TestClock()
        let observed = StageLog()
        let timeline = CommitTimeline(now: { clock.now() }, observe: { observed.add(0, $0, $1) })
        let admitted = clock.now()
        timeline.observeAdmissions([admitted], height: 2)  // not accepted yet: nothing
        clock.advance(milliseconds: 6)
        timeline.mark(.accepted, height: 2)
        timeline.observeAdmissions(Array(repeating: admitted, count: 100), height: 2)
        XCTAssertEqual(observed.stages(of: 0)[.prePrepare], Array(repeating: .milliseconds(6), count: CommitTimeline.maxAdmissionSamplesPerBlock))
    }

    func testTheTimelineHoldsAtMostItsBoundOfBlocks() {
        let clock = TestClock()
        let observed = StageLog()
        let timeline = CommitTimeline(maxTrackedBlocks: 4, now: { clock.now() }, observe: { observed.add(0, $0, $1) })
        for height in UInt64(1)...10 { timeline.mark(.accepted, height: height) }
        XCTAssertEqual(timeline.trackedBlocks, 4)
        clock.advance(milliseconds: 1)
        timeline.mark(.prepared, height: 1)  // forgotten: the lowest heights go first
        timeline.mark(.prepared, height: 10)
        XCTAssertEqual(observed.stages(of: 0), [.prepared: [.milliseconds(1)]])
    }
}

/// A clock the test moves by hand.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private let start = ContinuousClock.now
    private var offset = Duration.zero

    func now() -> ContinuousClock.Instant { lock.withLock { start + offset } }
    func advance(milliseconds: Int64) { lock.withLock { offset += .milliseconds(milliseconds) } }
}

/// Every observation, by validator and stage, in order.
final class StageLog: @unchecked Sendable {
    private let lock = NSLock()
    private var observations: [(ValidatorIndex, CommitTimeline.Stage, Duration)] = []

    func add(_ validator: ValidatorIndex, _ stage: CommitTimeline.Stage, _ duration: Duration) {
        lock.withLock { observations.append((validator, stage, duration)) }
    }

    func stages(of validator: ValidatorIndex) -> [CommitTimeline.Stage: [Duration]] {
        lock.withLock {
            var result: [CommitTimeline.Stage: [Duration]] = [:]
            for (index, stage, duration) in observations where index == validator { result[stage, default: []].append(duration) }
            return result
        }
    }
}
