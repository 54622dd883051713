import Foundation
import NIOCore
import TallyNetwork

/// Peer messages between the network reader and the node's actor.
final class Inbox: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [InboundMessage] = []

    /// Adds a message; returns how many are waiting now.
    func push(_ message: InboundMessage) -> Int {
        lock.withLock {
            messages.append(message)
            return messages.count
        }
    }

    /// Adds a message unless `max` are waiting; returns whether it was added.
    func push(_ message: InboundMessage, max: Int) -> Bool {
        lock.withLock {
            guard messages.count < max else { return false }
            messages.append(message)
            return true
        }
    }

    func takeAll() -> [InboundMessage] {
        lock.withLock {
            defer { messages = [] }
            return messages
        }
    }
}

/// Runs a task's jobs on an event loop: the node's inbound reader shares the actor's
/// thread, so handing a message to the actor is not a thread switch.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
