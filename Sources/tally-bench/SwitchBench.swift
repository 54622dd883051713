import ArgumentParser
import Foundation
import TallyTestbed

#if canImport(Glibc)
import Glibc
#endif

/// The network lab's userspace packet switch with every link clear: what it adds to a
/// round trip, and how many packets per second it forwards (root only).
struct SwitchBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switch", abstract: "Latency and packet rate of the network lab's packet switch (root only).")

    @Option(name: .long, help: "TCP round trips of 64 bytes to time.") var roundTrips = 5_000
    @Option(name: .long, help: "Seconds of the UDP packet-rate phase and of the TCP bulk phase.") var seconds = 2.0
    @Option(name: .long, help: ArgumentHelp("Write the JSON result here (else stdout).", valueName: "FILE")) var json: String?

    func run() throws {
        if let reason = NetworkLab.unavailableReason() { throw BenchError("switch: \(reason)") }
        let lab = try NetworkLab(validators: 2, seed: 1)
        defer { lab.stop() }
        var result: [String: Any] = ["mtu": lab.mtu]
        // Baseline: both ends in one namespace, through its own kernel (no switch).
        let direct = try roundTripMicroseconds(lab, client: 0, server: 0, port: 7_101)
        let switched = try roundTripMicroseconds(lab, client: 1, server: 0, port: 7_102)
        let directP50: Double = quantile(direct, 0.5), switchedP50: Double = quantile(switched, 0.5)
        result["rtt_direct_p50_us"] = directP50
        result["rtt_direct_p99_us"] = quantile(direct, 0.99) as Double
        result["rtt_switch_p50_us"] = switchedP50
        result["rtt_switch_p99_us"] = quantile(switched, 0.99) as Double
        result["added_one_way_p50_us"] = (switchedP50 - directP50) / 2
        let before = lab.statistics
        let (sent, received) = try udpFlood(lab, port: 7_103)
        let after = lab.statistics
        result["udp_sent_per_s"] = Double(sent) / seconds
        result["udp_forwarded_per_s"] = Double(after.delivered - before.delivered) / seconds
        result["udp_received_per_s"] = Double(received) / seconds
        result["bulk_tcp_mib_per_s"] = try bulkMiBPerSecond(lab, port: 7_104)
        result["switch"] = "\(lab.statistics)"
        benchLog(String(format: "switch: RTT p50 direct %.0f µs, through the switch %.0f µs; ", directP50, switchedP50)
            + "UDP \(Int(Double(received) / seconds)) packets/s received of \(Int(Double(sent) / seconds)) sent")
        try writeJSON(result, to: json)
    }

    /// Sorted round-trip times (µs) of 64-byte TCP ping-pongs from `client`'s namespace to `server`'s.
    func roundTripMicroseconds(_ lab: NetworkLab, client: Int, server: Int, port: UInt16) throws -> [Double] {
        let listener = try lab.socket(validator: server, type: LabSockets.stream)
        defer { close(listener) }
        try LabSockets.bind(listener, lab.address(validator: server), port)
        try LabSockets.listen(listener)
        let echo = Thread {
            guard let connection = try? LabSockets.accept(listener) else { return }
            defer { close(connection) }
            LabSockets.noDelay(connection)
            while let bytes = try? LabSockets.receive(connection, count: 64) { if (try? LabSockets.send(connection, bytes)) == nil { return } }
        }
        echo.start()
        let socket = try lab.socket(validator: client, type: LabSockets.stream)
        defer { close(socket) }
        LabSockets.setTimeouts(socket, seconds: 5)
        try LabSockets.connect(socket, lab.address(validator: server), port)
        LabSockets.noDelay(socket)
        let payload = [UInt8](repeating: 7, count: 64)
        var times: [Double] = []
        for trip in 0..<(roundTrips + 100) {
            let start = monotonicSeconds()
            try LabSockets.send(socket, payload)
            _ = try LabSockets.receive(socket, count: 64)
            if trip >= 100 { times.append((monotonicSeconds() - start) * 1e6) }  // the first 100 warm up
        }
        return times.sorted()
    }

    /// 64-byte UDP datagrams from validator 1 to validator 0 as fast as one thread sends them.
    func udpFlood(_ lab: NetworkLab, port: UInt16) throws -> (sent: Int, received: Int) {
        let receiver = try lab.socket(validator: 0, type: LabSockets.datagram)
        defer { close(receiver) }
        try LabSockets.bind(receiver, lab.address(validator: 0), port)
        LabSockets.setTimeouts(receiver, seconds: 0.5)
        var bufferBytes: Int32 = 8 << 20
        setsockopt(receiver, SOL_SOCKET, SO_RCVBUF, &bufferBytes, socklen_t(MemoryLayout<Int32>.size))
        let counter = RunningTotal()
        let reader = Thread {
            var buffer = [UInt8](repeating: 0, count: 2048)
            while true {
                let got = buffer.withUnsafeMutableBytes { recv(receiver, $0.baseAddress, 2048, 0) }
                if got < 0 { return }
                counter.add()
            }
        }
        reader.start()
        let sender = try lab.socket(validator: 1, type: LabSockets.datagram)
        defer { close(sender) }
        try LabSockets.connect(sender, lab.address(validator: 0), port)
        let payload = [UInt8](repeating: 1, count: 64)
        var sent = 0
        let end = monotonicSeconds() + seconds
        while monotonicSeconds() < end {
            for _ in 0..<64 where payload.withUnsafeBytes({ send(sender, $0.baseAddress, 64, 0) }) == 64 { sent += 1 }
        }
        Thread.sleep(forTimeInterval: 1)  // the reader times out 0.5 s after the last datagram
        return (sent, counter.value)
    }

    /// One TCP stream from validator 1 to validator 0 for `seconds`.
    func bulkMiBPerSecond(_ lab: NetworkLab, port: UInt16) throws -> Double {
        let listener = try lab.socket(validator: 0, type: LabSockets.stream)
        defer { close(listener) }
        try LabSockets.bind(listener, lab.address(validator: 0), port)
        try LabSockets.listen(listener)
        let counter = RunningTotal()
        let sink = Thread {
            guard let connection = try? LabSockets.accept(listener) else { return }
            defer { close(connection) }
            var buffer = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let got = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, 1 << 16, 0) }
                if got <= 0 { return }
                counter.add(got)
            }
        }
        sink.start()
        let socket = try lab.socket(validator: 1, type: LabSockets.stream)
        defer { close(socket) }
        LabSockets.setTimeouts(socket, seconds: 5)
        try LabSockets.connect(socket, lab.address(validator: 0), port)
        let chunk = [UInt8](repeating: 3, count: 1 << 16)
        let start = monotonicSeconds()
        let startBytes = counter.value
        while monotonicSeconds() - start < seconds { try LabSockets.send(socket, chunk) }
        let elapsed = monotonicSeconds() - start
        return Double(counter.value - startBytes) / elapsed / 1_048_576
    }
}

/// A thread-safe running total.
final class RunningTotal: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add(_ amount: Int = 1) { lock.withLock { count += amount } }
    var value: Int { lock.withLock { count } }
}
