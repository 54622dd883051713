import Foundation

/// How the node writes what must be durable before it may go on (the consensus journal
/// before any vote is sent, a block before the ledger moves): a failure that may pass
/// (out of file descriptors, a full disk being cleaned) is retried with a bounded
/// back-off; past that the caller stops the process with exit status 1 and a clear
/// message (`Node.stopOnDurableWriteFailure`). Never a trap: the stores are crash-safe,
/// so stopping is as safe as a crash, and nothing that depends on the failed write has
/// been sent.
struct DurableWrite {
    /// Waits before the 2nd, 3rd… attempt (about 3.4 s in all, on the node's actor).
    static let backoffMs: [UInt32] = [10, 40, 160, 640, 2_560]

    struct GaveUp: Error, CustomStringConvertible {
        let description: String
    }

    let sleepMs: (UInt32) -> Void
    let onRetry: (_ message: String, _ delayMs: UInt32) -> Void

    func run<T>(_ what: String, _ write: () throws -> T) throws(GaveUp) -> T {
        var attempt = 0
        while true {
            do { return try write() } catch {
                guard attempt < Self.backoffMs.count else {
                    throw GaveUp(description: "cannot \(what) after \(attempt + 1) attempts (\(error)); stopping before anything that depends on it is sent")
                }
                let delay = Self.backoffMs[attempt]
                onRetry("cannot \(what) (\(error))", delay)
                sleepMs(delay)
                attempt += 1
            }
        }
    }
}
