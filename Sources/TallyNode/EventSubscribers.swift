import Metrics

/// The node's `/events` subscribers. Each has a bounded buffer; one that falls so
/// far behind that the buffer overflows is dropped (its stream ends, counted), so a
/// slow client costs a bounded buffer and then nothing, and knows it missed events.
///
/// The total is capped. When it is reached, a newcomer from an address holding fewer
/// streams than the address holding the most takes the oldest stream of that one
/// (which ends): many attacker addresses at the per-address cap can fill the table,
/// but cannot keep out a client that holds fewer streams than each of them.
struct EventSubscribers {
    private struct Subscriber {
        let address: String
        let continuation: AsyncStream<[NodeEvent]>.Continuation
    }

    private var subscribers: [UInt64: Subscriber] = [:]
    private var nextID: UInt64 = 0
    /// Set by `close` (shutdown): `subscribe` refuses new streams.
    private(set) var isClosed = false

    var count: Int { subscribers.count }
    var isEmpty: Bool { subscribers.isEmpty }

    /// Why `add` refused or what it ended to make room.
    enum Admission: Equatable {
        case added
        /// Added after ending the oldest stream of the address holding the most.
        case addedByEvicting(address: String)
        case full
    }

    /// A new subscriber from `address` buffering up to `bufferBlocks` blocks' events,
    /// at most `maxSubscribers` in all; `onEnd` runs with its id when its stream ends
    /// for any reason.
    mutating func add(
        from address: String, maxSubscribers: Int, bufferBlocks: Int, onEnd: @escaping @Sendable (UInt64) -> Void
    ) -> (stream: AsyncStream<[NodeEvent]>?, admission: Admission) {
        var admission = Admission.added
        if subscribers.count >= maxSubscribers {
            guard let evicted = evictFromHeaviestAddress(below: address) else { return (nil, .full) }
            admission = .addedByEvicting(address: evicted)
        }
        let id = nextID
        nextID += 1
        let (stream, continuation) = AsyncStream<[NodeEvent]>.makeStream(bufferingPolicy: .bufferingNewest(bufferBlocks))
        continuation.onTermination = { _ in onEnd(id) }
        subscribers[id] = Subscriber(address: address, continuation: continuation)
        return (stream, admission)
    }

    /// Ends the oldest stream of the address holding the most, if `newcomer` would
    /// still hold fewer than it afterwards; returns that address.
    private mutating func evictFromHeaviestAddress(below newcomer: String) -> String? {
        var held: [String: Int] = [:]
        for subscriber in subscribers.values { held[subscriber.address, default: 0] += 1 }
        guard let heaviest = held.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }),
              held[newcomer, default: 0] + 1 < heaviest.value,
              let oldest = subscribers.filter({ $0.value.address == heaviest.key }).keys.min()
        else { return nil }
        subscribers.removeValue(forKey: oldest)?.continuation.finish()
        return heaviest.key
    }

    mutating func remove(_ id: UInt64) { subscribers[id] = nil }

    /// Gives `events` to every subscriber; returns how many were dropped for being
    /// slow (their buffer was full).
    mutating func publish(_ events: [NodeEvent]) -> Int {
        var slow: [UInt64] = []
        for (id, subscriber) in subscribers {
            if case .dropped = subscriber.continuation.yield(events) { slow.append(id) }
        }
        for id in slow { subscribers.removeValue(forKey: id)?.continuation.finish() }
        return slow.count
    }

    mutating func finishAll() {
        for subscriber in subscribers.values { subscriber.continuation.finish() }
        subscribers = [:]
    }

    /// Ends every stream and refuses new ones: the HTTP server drains open responses
    /// before it stops, and an event stream never ends by itself.
    mutating func close() {
        isClosed = true
        finishAll()
    }
}

extension EventSubscribers {
    /// Blocks a subscriber may fall behind by before it is dropped (its stream ends):
    /// a few seconds of full 4,000-transaction blocks, ≤ ~16 MiB.
    static let maxBufferedEventBlocks = 64

    /// A node's `/events` stream from `address`, buffering `maxBufferedEventBlocks`
    /// blocks (`add`); nil when closed or full. A stream ended to make room is counted
    /// (`tally_event_subscribers_dropped_total{reason="displaced"}`).
    mutating func subscribe(
        from address: String, maxSubscribers: Int, onEnd: @escaping @Sendable (UInt64) -> Void
    ) -> AsyncStream<[NodeEvent]>? {
        guard !isClosed else { return nil }
        let added = add(from: address, maxSubscribers: maxSubscribers, bufferBlocks: Self.maxBufferedEventBlocks, onEnd: onEnd)
        if case .addedByEvicting = added.admission {
            Counter(label: "tally_event_subscribers_dropped_total", dimensions: [("reason", "displaced")]).increment()
        }
        return added.stream
    }
}
