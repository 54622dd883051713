import XCTest

@testable import TallyNode

/// Issue 14: a failed write on the node's durable path (out of descriptors, say) ended
/// in `fatalError`. Now: bounded retries with back-off, then a clean stop with a message.
final class DurableWriteTests: XCTestCase {
    struct Failure: Error {}

    final class Recorder: @unchecked Sendable {
        var sleeps: [UInt32] = []
        var retries: [String] = []
    }

    func policy(_ recorder: Recorder) -> DurableWrite {
        DurableWrite(sleepMs: { recorder.sleeps.append($0) }, onRetry: { message, _ in recorder.retries.append(message) })
    }

    func testTransientFailuresAreRetriedWithBackoff() throws {
        let recorder = Recorder()
        var attempts = 0
        let value = try policy(recorder).run("store block 7") { () throws -> Int in
            attempts += 1
            if attempts < 3 { throw Failure() }
            return 42
        }
        XCTAssertEqual(value, 42)
        XCTAssertEqual(attempts, 3)
        XCTAssertEqual(recorder.sleeps, [10, 40])
        XCTAssertEqual(recorder.retries.count, 2)
        XCTAssertTrue(recorder.retries[0].contains("store block 7"))
    }

    func testPersistentFailureGivesUpAfterBoundedAttemptsWithAMessage() {
        let recorder = Recorder()
        var attempts = 0
        XCTAssertThrowsError(try policy(recorder).run("persist consensus state") { () throws -> Int in
            attempts += 1
            throw Failure()
        }) { error in
            XCTAssertTrue("\(error)".hasPrefix("cannot persist consensus state after 6 attempts"), "\(error)")
        }
        XCTAssertEqual(attempts, DurableWrite.backoffMs.count + 1)
        XCTAssertEqual(recorder.sleeps, DurableWrite.backoffMs)
        XCTAssertLessThan(DurableWrite.backoffMs.reduce(0, +), 5_000, "the actor waits a bounded time")
    }
}
