import NIOPosix
import Synchronization

/// A fixed number of slots for work started off the actor without waiting for it:
/// a caller that finds none free drops the work instead of queueing it.
final class ConcurrencySlots: Sendable {
    private let free: Mutex<Int>

    init(_ count: Int) {
        precondition(count >= 1)
        free = Mutex(count)
    }

    func tryAcquire() -> Bool {
        free.withLock { free in
            guard free > 0 else { return false }
            free -= 1
            return true
        }
    }

    func release() { free.withLock { $0 += 1 } }

    /// Runs `work` on NIO's blocking-I/O thread pool when a slot is free, and frees the
    /// slot when it ends; false when every slot is taken: then nothing runs and nothing
    /// is queued (a flood of requests costs the refusals, not a growing backlog). Not on
    /// Swift's cooperative pool: its few threads (as many as cores) serve the HTTP API,
    /// the network reader and signature checks, and a file read must not hold one.
    func startDetached(on threadPool: NIOThreadPool = .singleton, _ work: @escaping @Sendable () -> Void) -> Bool {
        guard tryAcquire() else { return false }
        threadPool.submit { [self] state in
            defer { release() }
            if case .active = state { work() }
        }
        return true
    }
}
