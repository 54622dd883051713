import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Plain IPv4 socket calls for sockets made by `NetworkLab.socket(validator:type:)`
/// (tests and the switch measurement). Each throws with errno's text.
public enum LabSockets {
    public static let stream = Int32(SOCK_STREAM.rawValue)
    public static let datagram = Int32(SOCK_DGRAM.rawValue)

    static func address(_ dotted: String, _ port: UInt16) throws -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, dotted, &address.sin_addr) == 1 else { throw TestbedError("bad IPv4 address \(dotted)") }
        return address
    }

    static func check(_ result: Int32, _ what: String) throws {
        if result < 0 { throw TestbedError("\(what): \(String(cString: strerror(errno)))") }
    }

    public static func bind(_ descriptor: Int32, _ dotted: String, _ port: UInt16) throws {
        var address = try address(dotted, port)
        var yes: Int32 = 1
        setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try check(result, "bind \(dotted):\(port)")
    }

    public static func listen(_ descriptor: Int32) throws { try check(Glibc.listen(descriptor, 16), "listen") }

    public static func accept(_ descriptor: Int32) throws -> Int32 {
        let accepted = Glibc.accept(descriptor, nil, nil)
        try check(accepted, "accept")
        return accepted
    }

    /// Connects (a stream socket) or sets the default peer (a datagram socket); with a
    /// send timeout set, a connect that gets no answer fails after it.
    public static func connect(_ descriptor: Int32, _ dotted: String, _ port: UInt16) throws {
        var address = try address(dotted, port)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try check(result, "connect \(dotted):\(port)")
    }

    /// Send and receive timeouts (0: none).
    public static func setTimeouts(_ descriptor: Int32, seconds: Double) {
        var time = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1e6))
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    public static func noDelay(_ descriptor: Int32) {
        var yes: Int32 = 1
        setsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &yes, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Sends all of `bytes`.
    public static func send(_ descriptor: Int32, _ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { try check(-1, "send") }
            sent += count
        }
    }

    /// Receives exactly `count` bytes (throws on timeout or end of stream).
    public static func receive(_ descriptor: Int32, count: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var received = 0
        while received < count {
            let got = bytes.withUnsafeMutableBytes { Glibc.recv(descriptor, $0.baseAddress! + received, count - received, 0) }
            if got == 0 { throw TestbedError("receive: connection closed") }
            if got < 0 { try check(-1, "receive") }
            received += got
        }
        return bytes
    }
}
