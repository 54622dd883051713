import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import NIOHTTPTypes
import TallyNetwork

/// Bounds on the HTTP API's connections and requests (`[api]` in config.toml;
/// docs/API.md says what a client sees at each).
public struct HTTPLimits: Sendable, Equatable {
    /// Connections served at once. When all are taken, a newcomer from an address that
    /// would still hold fewer than the address holding the most closes that address's
    /// oldest connection and is served; any other is answered 503 `server_busy` (with
    /// `Retry-After`) and closed at once, never left waiting unanswered.
    public var maxConnections = 512
    /// Connections at once from one remote address; the next is answered 503 and closed.
    public var maxConnectionsPerAddress = 64
    /// A connection with no request in progress is closed after this long.
    public var idleTimeoutSeconds = 30
    /// From a request's first byte to the end of its head (slowloris): else 408 and close.
    public var headerTimeoutSeconds = 10
    /// From the end of a request's head until its response starts (the body is read
    /// in between): else the connection is closed.
    public var bodyTimeoutSeconds = 30
    /// How long a response may wait for the client to take any of it (a socket that
    /// stays unwritable): then the connection is closed.
    public var writeTimeoutSeconds = 30
    /// `/events` streams at once from one remote address.
    public var maxEventSubscribersPerAddress = 4
    /// POST /txs per remote address: sustained requests per second and burst.
    public var submitRequestsPerSecond = 200
    public var submitBurst = 400
    /// GET /txs/{hash} and /blocks/* (block reads, proofs) per remote address.
    public var queryRequestsPerSecond = 200
    public var queryBurst = 400
    /// `GET /accounts/{address}/txs` pages read at once, from all addresses together
    /// (each reads up to 100 blocks off the actor): one more is refused with 503, not
    /// queued, so many addresses each within their rate cannot pile up block reads.
    public var maxConcurrentHistoryReads = 8

    /// Lines refused connections may log per interval (per reason, `RateLimitedLogger`):
    /// a flood from one address costs a few lines, not one per connection.
    static let refusalLogLinesPerInterval = 5
    static let refusalLogIntervalMs: Int64 = 10_000
    /// Connections being refused (answered 503 and closed) at once, above
    /// `maxConnections`: the descriptors a flood past the cap may hold for the moment
    /// each refusal takes. Past this the listener stops accepting until one closes, so
    /// a flood cannot spend every descriptor on refusals.
    static let maxRefusingConnections = 64
    /// What a refused client is told to wait before it tries again.
    static let refusalRetryAfterSeconds = 1

    public init() {}
}

/// What the API's limits did, for tests and metrics (`tally_http_*`).
public final class HTTPStatistics: @unchecked Sendable {
    public enum Event: String, CaseIterable, Sendable {
        case refusedPerAddress = "too_many_connections"
        case refusedServerBusy = "server_busy"
        /// Closed to make room for a newcomer from an address holding fewer connections.
        case displaced = "connection_displaced"
        case headerTimeout = "header_timeout"
        case bodyTimeout = "body_timeout"
        case writeTimeout = "write_timeout"
        case rateLimited = "rate_limited"
        case subscriberRefused = "too_many_subscribers"
        case historyReadRefused = "too_many_reads"
        /// An account-history page that hit damage in the node's index (503, not a short page).
        case historyUnavailable = "history_unavailable"
        case acceptError = "accept_error"
    }

    private let lock = NSLock()
    private var counts: [Event: Int] = [:]
    /// Where the counters go; nil: the process's (`MetricsSystem`, bootstrapped by
    /// `Telemetry`). Tests pass a `TestMetrics` (counting runs on NIO's threads, out of
    /// reach of a task-local factory).
    private let metricsFactory: (any MetricsFactory)?

    public init(metricsFactory: (any MetricsFactory)? = nil) {
        self.metricsFactory = metricsFactory
    }

    /// Counts one; returns the new total.
    @discardableResult
    func count(_ event: Event) -> Int {
        let dimensions = [("reason", event.rawValue)]
        if let metricsFactory {
            Metrics.Counter(label: "tally_http_limited_total", dimensions: dimensions, factory: metricsFactory).increment()
        } else {
            Metrics.Counter(label: "tally_http_limited_total", dimensions: dimensions).increment()
        }
        return lock.withLock {
            counts[event, default: 0] += 1
            return counts[event]!
        }
    }

    public subscript(_ event: Event) -> Int { lock.withLock { counts[event, default: 0] } }
}

/// Open connections (or `/events` streams) per remote address, shared by all of a
/// server's connections.
final class SlotsPerAddress: @unchecked Sendable {
    private let lock = NSLock()
    private var open: [String: Int] = [:]
    let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Takes a slot for `address`; false when it has `limit` already.
    func take(_ address: String) -> Bool {
        lock.withLock {
            guard open[address, default: 0] < limit else { return false }
            open[address, default: 0] += 1
            return true
        }
    }

    func release(_ address: String) {
        lock.withLock {
            let remaining = open[address, default: 1] - 1
            open[address] = remaining > 0 ? remaining : nil
        }
    }
}

/// Every connection the API serves, at most `limit`, shared by all of them. When all
/// are taken, a newcomer from an address that would still hold fewer connections than
/// the address holding the most closes that address's oldest connection and takes its
/// place (as `/events` streams do): many attacker addresses at the per-address cap can
/// fill the table, but cannot keep out a client that holds fewer than each of them.
final class ServedConnections: @unchecked Sendable {
    enum Admission: Equatable {
        case served(id: UInt64)
        /// Served after closing the oldest connection of `address`.
        case servedByDisplacing(id: UInt64, address: String)
        case full
    }

    private let lock = NSLock()
    private var open: [UInt64: (address: String, channel: any Channel)] = [:]
    private var held: [String: Int] = [:]
    private var nextID: UInt64 = 0
    let limit: Int

    init(limit: Int) { self.limit = limit }

    func admit(_ address: String, channel: any Channel) -> Admission {
        let (admission, displaced) = lock.withLock { () -> (Admission, (any Channel)?) in
            var displaced: (address: String, channel: any Channel)?
            if open.count >= limit {
                guard let oldest = oldestOfHeaviestAddress(below: address) else { return (.full, nil) }
                displaced = remove(oldest)
            }
            let id = nextID
            nextID += 1
            open[id] = (address, channel)
            held[address, default: 0] += 1
            return (displaced.map { .servedByDisplacing(id: id, address: $0.address) } ?? .served(id: id), displaced?.channel)
        }
        displaced?.close(promise: nil)
        return admission
    }

    func release(_ id: UInt64) { lock.withLock { _ = remove(id) } }

    /// The oldest connection of the address holding the most, if `newcomer` would
    /// still hold fewer than it afterwards.
    private func oldestOfHeaviestAddress(below newcomer: String) -> UInt64? {
        guard let heaviest = held.max(by: { $0.value < $1.value || ($0.value == $1.value && $0.key > $1.key) }),
              held[newcomer, default: 0] + 1 < heaviest.value
        else { return nil }
        return open.filter { $0.value.address == heaviest.key }.keys.min()
    }

    private func remove(_ id: UInt64) -> (address: String, channel: any Channel)? {
        guard let entry = open.removeValue(forKey: id) else { return nil }
        let remaining = held[entry.address, default: 1] - 1
        held[entry.address] = remaining > 0 ? remaining : nil
        return entry
    }
}

/// Installed through Hummingbird's `additionalChannelHandlers` (which sit after
/// the HTTP decoder); puts an `HTTPConnectionGuard` first in the pipeline, where it
/// sees raw bytes, and otherwise passes everything on.
final class HTTPConnectionGuardInstaller: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = Any
    let limits: HTTPLimits
    let connections: SlotsPerAddress
    let served: ServedConnections
    let statistics: HTTPStatistics
    let refusals: RateLimitedLogger

    init(
        limits: HTTPLimits, connections: SlotsPerAddress, served: ServedConnections, statistics: HTTPStatistics,
        refusals: RateLimitedLogger
    ) {
        self.limits = limits
        self.connections = connections
        self.served = served
        self.statistics = statistics
        self.refusals = refusals
    }

    /// The connection's guard, told here (after HTTP decoding, where a request's end is
    /// known) when a request has arrived whole.
    private var guardHandler: HTTPConnectionGuard?

    func handlerAdded(context: ChannelHandlerContext) {
        let guardHandler = HTTPConnectionGuard(
            limits: limits, connections: connections, served: served, statistics: statistics, refusals: refusals)
        self.guardHandler = guardHandler
        do { try context.pipeline.syncOperations.addHandler(guardHandler, position: .first) } catch { context.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if let part = unwrapInboundIn(data) as? HTTPRequestPart, case .end = part { guardHandler?.requestArrived() }
        context.fireChannelRead(data)
    }
}

/// One connection's deadlines and its slots, on raw bytes:
/// - the per-address cap: over it, a 503 `too_many_connections` and close;
/// - the total cap (`maxConnections`, `ServedConnections`): over it, the oldest
///   connection of the heaviest address is closed for a newcomer holding fewer, else a
///   503 `server_busy` with `Retry-After` and close;
/// - header deadline: from a request's first byte to its head's end (`CRLF CRLF`);
///   past it, 408 `request_timeout` and close;
/// - body deadline: from the head's end until the request's end (or the response's
///   first byte, if the server answers early); past it, close. The time the node takes
///   to answer a whole request is not the client's: a busy node must not cut a
///   request it has read (and may have acted on) before it answers;
/// - write deadline: the socket may stay unwritable (client not reading) this long.
/// The idle timeout between requests is Hummingbird's (`idleTimeout`).
final class HTTPConnectionGuard: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    enum Phase {
        case idle
        case readingHead
        /// The head has arrived, the body has not (the body deadline runs).
        case awaitingResponse
        /// The whole request has arrived; the node is working on the answer.
        case processing
    }

    let limits: HTTPLimits
    let connections: SlotsPerAddress
    /// Every connection served (`maxConnections`).
    let served: ServedConnections
    let statistics: HTTPStatistics
    /// Refusals are logged at a bounded rate (an outsider triggers them at will).
    let refusals: RateLimitedLogger
    private var address: String?
    /// This connection's entry in `served`.
    private var servedID: UInt64?
    private var refused = false
    private var phase = Phase.idle
    /// Last bytes seen of a head, to find a `CRLF CRLF` split across reads.
    private var tail: [UInt8] = []
    private var deadline: Scheduled<Void>?
    private var writeDeadline: Scheduled<Void>?

    init(
        limits: HTTPLimits, connections: SlotsPerAddress, served: ServedConnections, statistics: HTTPStatistics,
        refusals: RateLimitedLogger
    ) {
        self.limits = limits
        self.connections = connections
        self.served = served
        self.statistics = statistics
        self.refusals = refusals
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard address == nil, !refused else { return }
        let key = addressKey(context.channel.remoteAddress)
        guard connections.take(key) else {
            refused = true
            statistics.count(.refusedPerAddress)
            refusals.log(.warning, "refusing an API connection: over the per-address cap",
                         reason: HTTPStatistics.Event.refusedPerAddress.rawValue, metadata: ["address": "\(key)", "limit": "\(connections.limit)"])
            respondAndClose(context, status: "503 Service Unavailable", code: "too_many_connections",
                            message: "over \(connections.limit) connections from this address; close some and retry")
            return
        }
        switch served.admit(key, channel: context.channel) {
        case .served(let id):
            servedID = id
        case .servedByDisplacing(let id, let displacedAddress):
            servedID = id
            statistics.count(.displaced)
            refusals.log(.notice, "closing an API connection to make room for an address holding fewer",
                         reason: HTTPStatistics.Event.displaced.rawValue, metadata: ["address": "\(displacedAddress)", "for": "\(key)"])
        case .full:
            connections.release(key)
            refused = true
            statistics.count(.refusedServerBusy)
            refusals.log(.warning, "refusing an API connection: every connection slot is taken",
                         reason: HTTPStatistics.Event.refusedServerBusy.rawValue, metadata: ["address": "\(key)", "limit": "\(served.limit)"])
            respondAndClose(context, status: "503 Service Unavailable", code: "server_busy",
                            message: "the node serves \(served.limit) connections at once; retry later",
                            retryAfterSeconds: HTTPLimits.refusalRetryAfterSeconds)
            return
        }
        address = key
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        if let address { connections.release(address) }
        if let servedID { served.release(servedID) }
        address = nil
        servedID = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) { cancelTimers() }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let buffer = unwrapInboundIn(data)
        if phase == .idle && buffer.readableBytes > 0 {
            phase = .readingHead
            tail = []
            schedule(context, seconds: limits.headerTimeoutSeconds) { $0.headerTimedOut($1) }
        }
        if phase == .readingHead && headEnds(in: buffer) {
            phase = .awaitingResponse
            schedule(context, seconds: limits.bodyTimeoutSeconds) { guardHandler, context in
                guardHandler.statistics.count(.bodyTimeout)
                context.close(promise: nil)
            }
        }
        context.fireChannelRead(data)
    }

    /// The HTTP decoder saw the request's end: the body arrived in time.
    func requestArrived() {
        guard phase == .awaitingResponse else { return }
        phase = .processing
        deadline?.cancel()
        deadline = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if phase == .awaitingResponse || phase == .processing {
            // The response has started: the request was read in time.
            phase = .idle
            deadline?.cancel()
            deadline = nil
        }
        context.write(data, promise: promise)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            writeDeadline?.cancel()
            writeDeadline = nil
        } else if writeDeadline == nil {
            let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            writeDeadline = context.eventLoop.scheduleTask(in: .seconds(Int64(limits.writeTimeoutSeconds))) {
                handler.value.writeDeadline = nil
                handler.value.statistics.count(.writeTimeout)
                bound.value.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    private func headerTimedOut(_ context: ChannelHandlerContext) {
        statistics.count(.headerTimeout)
        respondAndClose(context, status: "408 Request Timeout", code: "request_timeout",
                        message: "request head not received within \(limits.headerTimeoutSeconds) s")
    }

    /// Whether `CRLF CRLF` ends in `buffer` (or across the previous read and it).
    private func headEnds(in buffer: ByteBuffer) -> Bool {
        let bytes = tail + buffer.readableBytesView
        let terminator: [UInt8] = [13, 10, 13, 10]
        if bytes.count >= 4 {
            for start in 0...(bytes.count - 4) where bytes[start] == 13 && Array(bytes[start..<start + 4]) == terminator {
                return true
            }
        }
        tail = Array(bytes.suffix(3))
        return false
    }

    private func schedule(_ context: ChannelHandlerContext, seconds: Int, _ action: @escaping (HTTPConnectionGuard, ChannelHandlerContext) -> Void) {
        deadline?.cancel()
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let loopAction = NIOLoopBound(action, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: .seconds(Int64(seconds))) {
            handler.value.deadline = nil
            loopAction.value(handler.value, bound.value)
        }
    }

    private func cancelTimers() {
        deadline?.cancel()
        deadline = nil
        writeDeadline?.cancel()
        writeDeadline = nil
    }

    /// A complete HTTP/1.1 error response in the API's error shape, written below
    /// the HTTP encoder, then close.
    private func respondAndClose(
        _ context: ChannelHandlerContext, status: String, code: String, message: String, retryAfterSeconds: Int? = nil
    ) {
        let body = "{\"error\":{\"code\":\"\(code)\",\"message\":\"\(message)\"}}"
        let retryAfter = retryAfterSeconds.map { "Retry-After: \($0)\r\n" } ?? ""
        let text = "HTTP/1.1 \(status)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + retryAfter + "Connection: close\r\n\r\n\(body)"
        let buffer = context.channel.allocator.buffer(string: text)
        context.writeAndFlush(wrapOutboundOut(.byteBuffer(buffer))).whenComplete { _ in context.close(promise: nil) }
    }
}

/// Token buckets per remote address and route class, bounded in how many
/// addresses it remembers.
final class RequestRateLimiter: @unchecked Sendable {
    enum RouteClass: String, Sendable {
        case submit
        case query
    }

    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    /// Addresses remembered per class; beyond this, full (idle) buckets are forgotten.
    static let maxTrackedAddresses = 16_384

    private let lock = NSLock()
    private var buckets: [RouteClass: [String: Bucket]] = [:]
    let rates: [RouteClass: (perSecond: Double, burst: Double)]

    init(limits: HTTPLimits) {
        rates = [
            .submit: (Double(limits.submitRequestsPerSecond), Double(limits.submitBurst)),
            .query: (Double(limits.queryRequestsPerSecond), Double(limits.queryBurst)),
        ]
    }

    /// Takes one token for `address`; false when its bucket is empty.
    func allow(_ routeClass: RouteClass, _ address: String, now: ContinuousClock.Instant = .now) -> Bool {
        let (perSecond, burst) = rates[routeClass]!
        return lock.withLock {
            var table = buckets[routeClass, default: [:]]
            defer { buckets[routeClass] = table }
            if table.count >= Self.maxTrackedAddresses && table[address] == nil { forgetIdle(&table, perSecond: perSecond, burst: burst, now: now) }
            var bucket = table[address] ?? Bucket(tokens: burst, updated: now)
            let elapsed = Double((now - bucket.updated).components.seconds) + Double((now - bucket.updated).components.attoseconds) * 1e-18
            bucket.tokens = min(burst, bucket.tokens + elapsed * perSecond)
            bucket.updated = now
            let allowed = bucket.tokens >= 1
            if allowed { bucket.tokens -= 1 }
            table[address] = bucket
            return allowed
        }
    }

    private func forgetIdle(_ table: inout [String: Bucket], perSecond: Double, burst: Double, now: ContinuousClock.Instant) {
        let refillSeconds = burst / max(perSecond, 1)
        table = table.filter { now - $0.value.updated < .seconds(refillSeconds) }
        // Still full of active addresses: forget half rather than grow.
        if table.count >= Self.maxTrackedAddresses { table = Dictionary(uniqueKeysWithValues: table.prefix(table.count / 2).map { ($0.key, $0.value) }) }
    }
}


/// The API's request context: Hummingbird's basic one plus the client's address,
/// which the rate and subscriber limits are kept by.
public struct APIRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}
