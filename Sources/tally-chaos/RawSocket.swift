import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Attacker addresses: the whole of 127.0.0.0/8 is this host's loopback on Linux,
/// so each attacker can come from its own source address (the node's per-address
/// limits see many clients) while the honest load comes from 127.0.0.1.
enum AttackerAddress {
    /// `127.66.a.b`, distinct for every index below 50,000.
    static func of(_ index: Int) -> String {
        precondition(index >= 0 && index < 50_000, "attacker address index out of range")
        return "127.66.\(index / 200).\(index % 200 + 1)"
    }
}

/// One TCP socket from a chosen source address, non-blocking: connects start at once
/// and complete in the background, so thousands can be opened into a full backlog
/// without waiting (what a flood does).
final class RawSocket {
    let descriptor: Int32
    private(set) var isClosed = false

    private init(descriptor: Int32) { self.descriptor = descriptor }

    /// A socket bound to `source` connecting to `host:port`; nil when the kernel refuses
    /// (out of descriptors, no such address).
    static func connect(from source: String, to host: String, port: Int) -> RawSocket? {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        let socket = RawSocket(descriptor: descriptor)
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
        guard var local = Self.address(source, port: 0), var remote = Self.address(host, port: port) else {
            socket.close()
            return nil
        }
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            socket.close()
            return nil
        }
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 || errno == EINPROGRESS else {
            socket.close()
            return nil
        }
        return socket
    }

    private static func address(_ host: String, port: Int) -> sockaddr_in? {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { return nil }
        return address
    }

    /// Waits until the connect completed (writable) or failed; false on failure or timeout.
    func waitConnected(timeoutSeconds: Double) -> Bool {
        var entry = pollfd(fd: descriptor, events: Int16(POLLOUT), revents: 0)
        guard poll(&entry, 1, Int32(timeoutSeconds * 1000)) == 1, entry.revents & Int16(POLLOUT) != 0 else { return false }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(descriptor, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0
    }

    enum SendResult { case sent(Int), wouldBlock, failed }

    /// Sends what the socket takes now (never blocks, never raises SIGPIPE).
    func send(_ bytes: ArraySlice<UInt8>) -> SendResult {
        guard !isClosed, !bytes.isEmpty else { return .failed }
        let count = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
        if count >= 0 { return .sent(count) }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN ? .wouldBlock : .failed
    }

    enum ReceiveResult { case data([UInt8]), wouldBlock, closed }

    /// Reads what has arrived (never blocks); `closed` at end of stream or on an error.
    func receive(maxBytes: Int = 65_536) -> ReceiveResult {
        guard !isClosed else { return .closed }
        var buffer = [UInt8](repeating: 0, count: maxBytes)
        let count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, maxBytes, Int32(MSG_DONTWAIT)) }
        if count > 0 { return .data(Array(buffer.prefix(count))) }
        if count == 0 { return .closed }
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTCONN ? .wouldBlock : .closed
    }

    /// Sends all of `bytes` within the deadline; false when the peer closed or time ran out.
    func sendAll(_ bytes: [UInt8], deadline: Double) -> Bool {
        var offset = 0
        while offset < bytes.count {
            switch send(bytes[offset...]) {
            case .sent(let count): offset += count
            case .failed: return false
            case .wouldBlock:
                guard monotonicNow() < deadline, waitFor(Int16(POLLOUT), until: deadline) else { return false }
            }
        }
        return true
    }

    /// Waits for `events` until the deadline.
    func waitFor(_ events: Int16, until deadline: Double) -> Bool {
        var entry = pollfd(fd: descriptor, events: events, revents: 0)
        let milliseconds = max(0, Int32((deadline - monotonicNow()) * 1000))
        return poll(&entry, 1, milliseconds) == 1
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        Glibc.close(descriptor)
    }

    deinit { close() }
}

/// Seconds on the monotonic clock.
func monotonicNow() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Raises this process's soft open-file limit to its hard limit (a flood holds
/// more sockets than the usual 1,024); returns the limit now in force.
@discardableResult
func raiseOpenFileLimit() -> UInt64 {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 0 }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    return UInt64(limit.rlim_cur)
}

/// One HTTP/1.1 request over a fresh connection from an attacker address, the way a
/// hostile client sends it; the answer's status and body, or nil when the node did
/// not answer within `timeoutSeconds` (refused, reset, backlog full, too slow).
enum RawHTTP {
    static let maxResponseBytes = 16 << 20

    struct Response {
        let status: Int
        let body: [UInt8]
        var json: [String: Any]? { try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] }
        var errorCode: String? { (json?["error"] as? [String: Any])?["code"] as? String }
    }

    static func request(
        from source: String, host: String, port: Int, method: String, path: String, body: [UInt8] = [],
        contentType: String = "application/json", timeoutSeconds: Double
    ) -> Response? {
        let deadline = monotonicNow() + timeoutSeconds
        guard let socket = RawSocket.connect(from: source, to: host, port: port) else { return nil }
        defer { socket.close() }
        guard socket.waitConnected(timeoutSeconds: timeoutSeconds) else { return nil }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
        if !body.isEmpty || method == "POST" { head += "Content-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        guard socket.sendAll(Array(head.utf8) + body, deadline: deadline) else { return nil }
        var received: [UInt8] = []
        while received.count < maxResponseBytes {
            switch socket.receive() {
            case .data(let bytes): received += bytes
            case .closed: return parse(received)
            case .wouldBlock:
                guard monotonicNow() < deadline, socket.waitFor(Int16(POLLIN), until: deadline) else { return parse(received) }
            }
        }
        return parse(received)
    }

    /// Status line and body of a `Connection: close` answer (Content-Length or to the end).
    static func parse(_ bytes: [UInt8]) -> Response? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard bytes.count >= 12, let end = bytes.firstRange(of: separator) else { return nil }
        let head = String(decoding: bytes[..<end.lowerBound], as: UTF8.self)
        let parts = head.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return Response(status: status, body: Array(bytes[end.upperBound...]))
    }
}
