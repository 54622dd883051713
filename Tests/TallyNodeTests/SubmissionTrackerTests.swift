import TallyCrypto
import XCTest

@testable import TallyNode

/// The commit-latency tracker stays bounded: when full it forgets submissions no longer
/// pending (evicted ones never commit), at most once per sweep interval.
final class SubmissionTrackerTests: XCTestCase {
    let now = ContinuousClock.now

    func hash(_ byte: UInt8) -> Hash { Hash(bytes: [UInt8](repeating: byte, count: 32))! }

    func testACommittedSubmissionIsForgotten() {
        var tracker = SubmissionTracker()
        tracker.track(hash(1), at: now, tick: 0) { _ in true }
        XCTAssertEqual(tracker.committed(hash(1)), now)
        XCTAssertNil(tracker.committed(hash(1)), "each submission is observed once")
        XCTAssertNil(tracker.committed(hash(2)), "never tracked")
    }

    func testAtTheBoundSweepsOnlyOncePerInterval() {
        var tracker = SubmissionTracker(maxTracked: 2)
        tracker.track(hash(1), at: now, tick: 0) { _ in true }
        tracker.track(hash(2), at: now, tick: 0) { _ in true }
        var asked = 0
        tracker.track(hash(3), at: now, tick: SubmissionTracker.submissionSweepIntervalTicks - 1) { _ in asked += 1; return false }
        XCTAssertEqual(asked, 0, "no sweep before the interval has passed")
        XCTAssertEqual(tracker.count, 2)
        XCTAssertNil(tracker.committed(hash(3)), "full: untracked")

        let sweepTick = SubmissionTracker.submissionSweepIntervalTicks
        tracker.track(hash(3), at: now, tick: sweepTick) { $0 == self.hash(1) }
        XCTAssertEqual(tracker.count, 2, "hash 2 (no longer pending) swept, hash 3 tracked")
        XCTAssertNil(tracker.committed(hash(2)))
        XCTAssertEqual(tracker.committed(hash(3)), now)

        tracker.track(hash(4), at: now, tick: sweepTick) { _ in true }
        tracker.track(hash(5), at: now, tick: 2 * sweepTick - 1) { _ in asked += 1; return false }
        XCTAssertEqual(asked, 0, "the next sweep waits a whole interval after the last")
        XCTAssertNil(tracker.committed(hash(5)))
    }
}
