import Foundation
import Logging
import TallyCrypto
import TallyNetwork
import TallyTypes
import XCTest

/// Hostile or broken input gets its clear rejection, is counted, and the network
/// keeps committing.
final class BadInputTests: XCTestCase, @unchecked Sendable {
    func testRejectionsAndTheNetworkKeepsCommitting() async throws {
        let network = try LocalNetwork()
        defer { network.stop() }
        try await network.startAllConnected()
        let chainID = network.genesis.chainID
        let genesisHash = network.genesis.hash
        let recipient = Address(publicKey: SigningKey(seed: SHA256.hash([9]).bytes)!.publicKey)
        let first = Transaction.signed(
            by: network.faucet, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 5, fee: 1, nonce: 0)
        let accepted = try await network.submitOne(0, first)
        XCTAssertEqual(accepted.status, 202)
        try await network.waitForHeight(1, on: [0, 1, 2, 3])

        func expectError(_ status: Int, _ code: String, _ result: (status: Int, body: [String: Any]), line: UInt = #line) {
            XCTAssertEqual(result.status, status, "\(result.body)", line: line)
            XCTAssertEqual((result.body["error"] as? [String: Any])?["code"] as? String, code, "\(result.body)", line: line)
            XCTAssertFalse(((result.body["error"] as? [String: Any])?["message"] as? String ?? "").isEmpty, line: line)
        }

        // Malformed JSON.
        let (malformedStatus, malformedBody) = try await network.request(0, "txs", method: "POST", body: Data("{\"tx\": 12".utf8))
        expectError(400, "malformed", (malformedStatus, (try? JSONSerialization.jsonObject(with: malformedBody) as? [String: Any]) ?? [:]))
        // A bad signature.
        var forged = Transaction.signed(
            by: network.faucet, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 5, fee: 1, nonce: 1)
        forged.amount = 5_000
        expectError(422, "bad_signature", try await network.submitOne(1, forged))
        // A wrong chain id.
        expectError(422, "wrong_chain_id", try await network.submitOne(2, Transaction.signed(
            by: network.faucet, chainID: "another-chain", genesisHash: genesisHash, to: recipient, amount: 5, fee: 1, nonce: 1)))
        // Issue 14: signed for another chain with the same chain id (another genesis).
        var otherGenesis = network.genesis
        otherGenesis.genesisTimeMs += 1
        expectError(422, "bad_signature", try await network.submitOne(2, Transaction.signed(
            by: network.faucet, chainID: chainID, genesisHash: otherGenesis.hash, to: recipient, amount: 5, fee: 1, nonce: 1)))
        // A replayed (committed) transaction.
        expectError(409, "stale_nonce", try await network.submitOne(3, first))
        // A 100 MB body is refused without being read.
        let huge = try rawHTTP(port: network.api(0).port!, request:
            "POST /txs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(100 << 20)\r\n\r\n", body: 64 << 10)
        XCTAssertTrue(huge.hasPrefix("HTTP/1.1 413"), huge)
        XCTAssertTrue(huge.contains("too_large"), huge)
        // Random bytes to a peer port: that connection is closed.
        var random = SystemRandomNumberGenerator()
        let garbage = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &random) }
        XCTAssertTrue(try sendAndExpectClose(port: network.peerPort(1), bytes: garbage), "the peer port must close a garbage connection")
        // A peer with an unknown key is refused in the handshake.
        let stranger = SigningKey.generate()
        let strangerNetwork = try await PeerNetwork.start(
            configuration: NetworkConfiguration(genesis: network.genesis, identity: stranger, listenHost: "127.0.0.1", listenPort: 0),
            logger: Logger(label: "stranger"))
        try await network.waitUntil("stranger refused", seconds: 15) {
            strangerNetwork.statistics.connectionsClosed.values.reduce(0, +) > 0
        }
        XCTAssertTrue(strangerNetwork.connectedValidators.isEmpty)
        await strangerNetwork.shutdown()

        // The network still commits, and every node counted what it rejected.
        let next = Transaction.signed(
            by: network.faucet, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 5, fee: 1, nonce: 1)
        let nextStatus = try await network.submitOne(2, next).status
        XCTAssertEqual(nextStatus, 202)
        try await network.waitUntil("the transfer after the bad input to commit") {
            for node in 0..<4 {
                guard let account = try? await network.json(node, "accounts/\(recipient.bech32m)"), account["balance"] as? String == "10"
                else { return false }
            }
            return true
        }
        let (_, metrics) = try await network.request(1, "metrics")
        let text = String(decoding: metrics, as: UTF8.self)
        XCTAssertTrue(text.contains("tally_transactions_rejected_total{reason=\"bad_signature\"} 1"), text)
        for name in ["tally_height", "tally_view", "tally_peers_connected", "tally_mempool_transactions",
                     "tally_transactions_admitted_total", "tally_commit_latency_seconds", "tally_network_connections_closed_total"] {
            XCTAssertTrue(text.contains(name), "/metrics lacks \(name)")
        }
        // The blocks it committed went through the stages of its commit path (a backup's).
        for stage in ["prepared", "committed", "executed"] {
            let count = text.split(separator: "\n").first { $0.hasPrefix("tally_stage_seconds_count{stage=\"\(stage)\"} ") }
            XCTAssertGreaterThan(count.flatMap { Double($0.split(separator: " ").last ?? "") } ?? 0, 0, "stage \(stage): \(count ?? "absent")")
        }
    }

    /// Sends raw bytes over HTTP/1.1 and returns what the server answered.
    func rawHTTP(port: Int, request: String, body: Int) throws -> String {
        let socket = try connect(port: port)
        defer { close(socket) }
        _ = Array(request.utf8).withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) }
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: body)
        _ = chunk.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var response = [UInt8](repeating: 0, count: 4096)
        let count = recv(socket, &response, response.count, 0)
        return count > 0 ? String(decoding: response[..<count], as: UTF8.self) : ""
    }

    /// True when the server closes the connection after `bytes`.
    func sendAndExpectClose(port: Int, bytes: [UInt8]) throws -> Bool {
        let socket = try connect(port: port)
        defer { close(socket) }
        _ = bytes.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = recv(socket, &buffer, buffer.count, 0)
            if count == 0 { return true }  // orderly close
            if count < 0 { return errno == ECONNRESET }
        }
    }

    func connect(port: Int) throws -> Int32 {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard result == 0 else { throw TestError("cannot connect to 127.0.0.1:\(port)") }
        return socket
    }
}
