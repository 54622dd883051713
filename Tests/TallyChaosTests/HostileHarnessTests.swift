import Foundation
import XCTest

@testable import tally_chaos

#if canImport(Glibc)
import Glibc
#endif

/// The pieces `--faults hostile` stands on: attackers really come from their own
/// loopback source addresses, answers are parsed, floods see the close, crafted
/// segments hold what they claim, and the options are bounded.
final class HostileHarnessTests: XCTestCase {
    /// A listening socket on 127.0.0.1 with an ephemeral port.
    private func listener() throws -> (descriptor: Int32, port: Int) {
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(descriptor, 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(descriptor, 64), 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        return (descriptor, Int(UInt16(bigEndian: address.sin_port)))
    }

    /// Accepts one connection; the peer's address as text.
    private func acceptPeer(_ descriptor: Int32) -> (Int32, String) {
        var peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let accepted = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(descriptor, $0, &length) }
        }
        var text = [CChar](repeating: 0, count: 32)
        inet_ntop(AF_INET, &peer.sin_addr, &text, 32)
        return (accepted, String(cString: text))
    }

    func testAttackerAddressesAreDistinctLoopbackAddresses() {
        let addresses = (0..<2_000).map(AttackerAddress.of)
        XCTAssertEqual(Set(addresses).count, addresses.count)
        XCTAssertTrue(addresses.allSatisfy { $0.hasPrefix("127.66.") && !$0.hasSuffix(".0") })
        XCTAssertFalse(addresses.contains("127.0.0.1"))
    }

    /// The per-address limits only see many clients if the source address is the
    /// attacker's, not 127.0.0.1.
    func testRawSocketComesFromItsSourceAddress() throws {
        let (server, port) = try listener()
        defer { close(server) }
        let socket = try XCTUnwrap(RawSocket.connect(from: AttackerAddress.of(7), to: "127.0.0.1", port: port))
        XCTAssertTrue(socket.waitConnected(timeoutSeconds: 5))
        let (accepted, peer) = acceptPeer(server)
        defer { close(accepted) }
        XCTAssertEqual(peer, AttackerAddress.of(7))
    }

    func testFloodRecordsTheNodeClosingAndItsAnswer() throws {
        let (server, port) = try listener()
        defer { close(server) }
        let flood = ConnectionFlood(style: .idle, target: .init(host: "127.0.0.1", port: port), firstAddress: 3, perAddress: [2])
        flood.start()
        var peers: [Int32] = []
        for _ in 0..<2 { peers.append(acceptPeer(server).0) }
        let answer = Array("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".utf8)
        _ = answer.withUnsafeBytes { send(peers[0], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        close(peers[0])
        let deadline = monotonicNow() + 5
        while flood.snapshot.filter({ $0.closedAt != nil }).isEmpty && monotonicNow() < deadline { usleep(20_000) }
        flood.stop()
        close(peers[1])
        let closed = flood.snapshot.filter { $0.closedAt != nil }
        XCTAssertEqual(closed.count, 1, "only the connection the server closed is recorded closed")
        XCTAssertEqual(closed.first?.statusCode, 503)
    }

    func testSlowHeaderNeverEndsItsHead() throws {
        let (server, port) = try listener()
        defer { close(server) }
        let flood = ConnectionFlood(style: .slowHeader, target: .init(host: "127.0.0.1", port: port), firstAddress: 9, perAddress: [1])
        flood.start()
        let (peer, _) = acceptPeer(server)
        defer { close(peer) }
        sleep(3)
        flood.stop()
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(peer, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        XCTAssertGreaterThan(count, 20)
        let received = Array(buffer.prefix(max(0, count)))
        XCTAssertTrue(received.starts(with: Array("GET /status HTTP/1.1\r\n".utf8)))
        XCTAssertNil(received.firstRange(of: [13, 10, 13, 10]), "a slowloris head must never end")
        XCTAssertEqual(received.last, UInt8(ascii: "x"), "it keeps trickling")
    }

    func testRawHTTPParsesAnAnswer() {
        let answer = RawHTTP.parse(Array("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n\r\n{\"error\":{\"code\":\"rate_limited\"}}".utf8))
        XCTAssertEqual(answer?.status, 429)
        XCTAssertEqual(answer?.errorCode, "rate_limited")
        XCTAssertNil(RawHTTP.parse(Array("HTTP/1.1 200 OK\r\n".utf8)), "no end of head, no answer")
    }

    func testFakeHeadersSegmentHoldsTheHeadersItClaims() {
        let bytes = 100_000
        let segment = CraftedSegments.fakeHeaders(bytes: bytes, headers: 1_000, seed: 1)
        XCTAssertEqual(segment.count, bytes)
        var found = 0
        var offset = 0
        while offset + 4 <= segment.count {
            if Array(segment[offset..<offset + 4]) == CraftedSegments.recordMagic { found += 1 }
            offset += 1
        }
        XCTAssertGreaterThanOrEqual(found, 1_000)
        XCTAssertEqual(Array(segment.prefix(4)), CraftedSegments.recordMagic, "a fake record at the start")
    }

    func testHostileOptionsAreBoundedAndParsed() throws {
        XCTAssertThrowsError(try TallyChaos.parse(["--faults", "hostile", "--attacks", "spam,nonsense"]))
        XCTAssertThrowsError(try TallyChaos.parse(["--faults", "hostile", "--idle-connections", "1000000"]))
        XCTAssertThrowsError(try TallyChaos.parse(["--faults", "hostile", "--phase-seconds", "1"]))
        XCTAssertThrowsError(try TallyChaos.parse(["--faults", "hostile,process"]))
        let command = try TallyChaos.parse(["--faults", "hostile", "--attacks", "spam,peer-flood", "--spam-transactions", "10"])
        XCTAssertEqual(command.hostileOptions.attacks, [.spam, .peerFlood])
        XCTAssertEqual(command.hostileOptions.spamTransactions, 10)
        XCTAssertEqual(try TallyChaos.parse(["--faults", "hostile"]).hostileOptions.attacks, Set(Attack.allCases))
    }
}
