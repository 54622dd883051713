import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Many hostile TCP connections held open on one thread (one `poll` over all of them):
/// idle ones that never send a byte, slowloris heads (a byte a second, never ending),
/// slow bodies (a whole head announcing a large body, then a byte a second), idle
/// handshakes on a peer port. Records when the node closed each one, and what it
/// answered first (`HTTP/1.1 503`, `408` …). With `reopen`, a connection the node
/// closed is opened again at once (a flood that keeps its pressure).
final class ConnectionFlood: @unchecked Sendable {
    enum Style: String, Sendable {
        case idle
        case slowHeader = "slow-header"
        case slowBody = "slow-body"
        /// `GET /events`, then reads what the stream sends (a subscriber holding a slot).
        case events
    }

    struct Target: Sendable {
        let host: String
        let port: Int
    }

    final class Connection {
        let source: String
        var socket: RawSocket?
        let openedAt: Double
        var closedAt: Double?
        var firstAnswer: [UInt8] = []
        var sentBytes = 0
        init(source: String, socket: RawSocket?, openedAt: Double) {
            self.source = source
            self.socket = socket
            self.openedAt = openedAt
            if socket == nil { closedAt = openedAt }
        }
        var statusCode: Int? {
            guard firstAnswer.count >= 12, firstAnswer.starts(with: Array("HTTP/1.1 ".utf8)) else { return nil }
            return Int(String(decoding: firstAnswer[9..<12], as: UTF8.self))
        }
    }

    static let tickSeconds = 1.0
    static let slowBodyAnnouncedBytes = 1_000_000

    let style: Style
    let target: Target
    let reopen: Bool
    private let lock = NSLock()
    private var connections: [Connection] = []
    private var stopped = false
    private var finished = false
    private(set) var reopened = 0
    private var toReopen: [String] = []
    private var thread: Thread?
    /// When the first connections were opened, and when `stop` closed what was left.
    let startedAt = monotonicNow()
    private(set) var stoppedAt: Double?

    /// `perAddress[i]` connections from attacker address `firstAddress + i`.
    init(style: Style, target: Target, firstAddress: Int, perAddress: [Int], reopen: Bool = false) {
        self.style = style
        self.target = target
        self.reopen = reopen
        let now = monotonicNow()
        for (offset, count) in perAddress.enumerated() {
            let source = AttackerAddress.of(firstAddress + offset)
            for _ in 0..<count { connections.append(Connection(source: source, socket: RawSocket.connect(from: source, to: target.host, port: target.port), openedAt: now)) }
        }
    }

    func start() {
        let thread = Thread { [self] in loop() }
        thread.name = "flood-\(style.rawValue)"
        self.thread = thread
        thread.start()
    }

    /// Stops the loop and closes every connection.
    func stop() {
        lock.withLock { stopped = true }
        while !lock.withLock({ finished }) { usleep(10_000) }
        for connection in connections { connection.socket?.close() }
        stoppedAt = monotonicNow()
    }

    /// A snapshot of the connections (after `stop`, the final state).
    var snapshot: [Connection] { lock.withLock { connections } }

    private var head: [UInt8] {
        let path = style == .slowBody ? "POST /txs" : style == .events ? "GET /events" : "GET /status"
        var text = "\(path) HTTP/1.1\r\nHost: \(target.host)\r\n"
        if style == .slowBody { text += "Content-Type: application/json\r\nContent-Length: \(Self.slowBodyAnnouncedBytes)\r\n\r\n" }
        if style == .events { text += "Accept: text/event-stream\r\n\r\n" }
        return Array(text.utf8)
    }

    private func loop() {
        var nextTick = monotonicNow()
        while !lock.withLock({ stopped }) {
            let now = monotonicNow()
            if now >= nextTick {
                nextTick = now + Self.tickSeconds
                trickle()
                reopenClosed()
            }
            pollOnce(timeoutMilliseconds: 100)
        }
        lock.withLock { finished = true }
    }

    /// The slow styles send one more byte on each open connection (the head first,
    /// for a slow body, all at once).
    private func trickle() {
        guard style != .idle else { return }
        let head = self.head
        for connection in lock.withLock({ connections }) where connection.closedAt == nil {
            guard let socket = connection.socket else { continue }
            if style == .events {
                if connection.sentBytes == 0, case .sent(let count) = socket.send(head[...]), count == head.count { connection.sentBytes = count }
            } else if style == .slowBody && connection.sentBytes == 0 {
                if case .sent(let count) = socket.send(head[...]), count == head.count { connection.sentBytes = count }
            } else if style == .slowHeader && connection.sentBytes == 0 {
                if case .sent(let count) = socket.send(head[...]), count > 0 { connection.sentBytes = count }
            } else {
                // A header line that never ends, or one more byte of the body.
                if case .sent(let count) = socket.send([UInt8(ascii: "x")][...]) { connection.sentBytes += count }
            }
        }
    }

    private func pollOnce(timeoutMilliseconds: Int32) {
        let open = lock.withLock { connections.filter { $0.closedAt == nil && $0.socket != nil } }
        guard !open.isEmpty else {
            usleep(UInt32(timeoutMilliseconds) * 1000)
            return
        }
        var entries = open.map { pollfd(fd: $0.socket!.descriptor, events: Int16(POLLIN), revents: 0) }
        guard poll(&entries, nfds_t(entries.count), timeoutMilliseconds) > 0 else { return }
        for (index, entry) in entries.enumerated() where entry.revents != 0 {
            let connection = open[index]
            var closed = entry.revents & Int16(POLLERR | POLLHUP) != 0
            readLoop: while !closed {
                switch connection.socket!.receive() {
                case .data(let bytes): if connection.firstAnswer.count < 64 { connection.firstAnswer += bytes.prefix(64 - connection.firstAnswer.count) }
                case .wouldBlock: break readLoop
                case .closed: closed = true
                }
            }
            guard closed else { continue }
            connection.socket?.close()
            connection.closedAt = monotonicNow()
            if reopen { lock.withLock { toReopen.append(connection.source) } }
        }
    }

    /// Opens again, once a tick, what the node closed: the pressure stays at the
    /// flood's size without turning into a connect storm (that would measure only
    /// how the attacker and the validators share this machine's cores).
    private func reopenClosed() {
        let sources = lock.withLock { () -> [String] in
            defer { toReopen = [] }
            return toReopen
        }
        guard !sources.isEmpty else { return }
        let now = monotonicNow()
        let replacements = sources.map { Connection(source: $0, socket: RawSocket.connect(from: $0, to: target.host, port: target.port), openedAt: now) }
        lock.withLock {
            connections += replacements
            reopened += replacements.count
        }
    }
}
