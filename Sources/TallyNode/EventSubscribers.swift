/// The node's `/events` subscribers. Each has a bounded buffer; one that falls so
/// far behind that the buffer overflows is dropped (its stream ends, counted), so a
/// slow client costs a bounded buffer and then nothing, and knows it missed events.
struct EventSubscribers {
    private var continuations: [UInt64: AsyncStream<[NodeEvent]>.Continuation] = [:]
    private var nextID: UInt64 = 0

    var count: Int { continuations.count }
    var isEmpty: Bool { continuations.isEmpty }

    /// A new subscriber buffering up to `bufferBlocks` blocks' events; `onEnd` runs
    /// with its id when its stream ends for any reason.
    mutating func add(bufferBlocks: Int, onEnd: @escaping @Sendable (UInt64) -> Void) -> AsyncStream<[NodeEvent]> {
        let id = nextID
        nextID += 1
        let (stream, continuation) = AsyncStream<[NodeEvent]>.makeStream(bufferingPolicy: .bufferingNewest(bufferBlocks))
        continuation.onTermination = { _ in onEnd(id) }
        continuations[id] = continuation
        return stream
    }

    mutating func remove(_ id: UInt64) { continuations[id] = nil }

    /// Gives `events` to every subscriber; returns how many were dropped for being
    /// slow (their buffer was full).
    mutating func publish(_ events: [NodeEvent]) -> Int {
        var slow: [UInt64] = []
        for (id, continuation) in continuations {
            if case .dropped = continuation.yield(events) { slow.append(id) }
        }
        for id in slow { continuations.removeValue(forKey: id)?.finish() }
        return slow.count
    }

    mutating func finishAll() {
        for continuation in continuations.values { continuation.finish() }
        continuations = [:]
    }
}
