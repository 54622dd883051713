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
}
