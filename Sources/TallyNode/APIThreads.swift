#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The HTTP API's threads: event loops of its own (not the peer network's), at a lower OS
/// priority than the consensus actor and the peer network, and a task executor that keeps
/// the API's request handlers on them.
///
/// Why: on a validator short of cores, an outsider's connections (accepting, parsing,
/// answering, closing) take CPU from the replica's votes and fsyncs. Measured on 2 cores
/// (BENCHMARKS.md, "Hostile load"): with the API on the shared threads a closed-loop
/// hammer of new connections doubled honest commit latency. With the API's threads niced,
/// the kernel serves consensus first when both are runnable and gives the API every cycle
/// consensus leaves idle, so the API is as fast as before on an idle machine.
///
/// Linux keeps a nice value per thread (`setpriority(PRIO_PROCESS, 0, …)` changes only the
/// calling thread), so the lower priority stays on these threads.
public final class APIThreads: Sendable {
    /// The default increment: a thread at nice +10 gets about a tenth of the CPU a nice-0
    /// thread gets when both want it (the kernel's weights 110 and 1,024).
    public static let defaultNiceIncrement = 10
    /// Nice values end at 19.
    public static let maxNiceIncrement = 19

    public let group: MultiThreadedEventLoopGroup
    /// Runs jobs on `group`'s loops: under `run(_:)` every task of the API (one per
    /// connection, the handlers' child tasks) runs on those threads.
    public let executor: EventLoopGroupTaskExecutor
    /// The nice value each of the threads has (what the OS reported after the change).
    public let threadNiceValues: [Int]

    private init(group: MultiThreadedEventLoopGroup, threadNiceValues: [Int]) {
        self.group = group
        self.executor = EventLoopGroupTaskExecutor(group)
        self.threadNiceValues = threadNiceValues
    }

    /// `threadCount` threads (default: one per core), each `niceIncrement` (0…19) lower in
    /// priority than the thread that creates them.
    public static func start(threadCount: Int = System.coreCount, niceIncrement: Int) async throws -> APIThreads {
        precondition(threadCount >= 1 && (0...maxNiceIncrement).contains(niceIncrement))
        let base = currentThreadNice()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threadCount)
        var values: [Int] = []
        for loop in group.makeIterator() {
            values.append(try await loop.submit { setCurrentThreadNice(min(base + niceIncrement, 19)) }.get())
        }
        return APIThreads(group: group, threadNiceValues: values)
    }

    /// Runs `service` with these threads preferred for its tasks and their child tasks.
    public func run(_ service: some Service) async throws {
        try await withTaskExecutorPreference(executor) { try await service.run() }
    }

    public func shutdown() async throws { try await group.shutdownGracefully() }

    /// The calling thread's nice value.
    static func currentThreadNice() -> Int {
        Int(getpriority(priorityWhich, 0))
    }

    /// Sets the calling thread's nice value (raising it needs no privilege); returns the
    /// value the OS reports afterwards (unchanged when it refused).
    private static func setCurrentThreadNice(_ value: Int) -> Int {
        _ = setpriority(priorityWhich, 0, Int32(value))
        return currentThreadNice()
    }

    #if canImport(Glibc)
    private static let priorityWhich = __priority_which_t(PRIO_PROCESS.rawValue)
    #else
    private static let priorityWhich = PRIO_PROCESS
    #endif
}

/// A task executor over an event loop group: each job runs on the group's next loop.
public final class EventLoopGroupTaskExecutor: TaskExecutor {
    let group: any EventLoopGroup

    init(_ group: any EventLoopGroup) { self.group = group }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        group.next().execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// The service under `APIThreads.run`, for a `ServiceGroup`.
public struct OnAPIThreads<Wrapped: Service>: Service {
    let threads: APIThreads
    let service: Wrapped

    public init(_ service: Wrapped, threads: APIThreads) {
        self.threads = threads
        self.service = service
    }

    public func run() async throws { try await threads.run(service) }
}
