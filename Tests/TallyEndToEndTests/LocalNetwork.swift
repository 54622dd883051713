import Foundation
import TallyCrypto
import TallyTestbed
import TallyTypes
import XCTest

/// Real validator processes on 127.0.0.1 (`tally-node start`), run by the shared
/// `Testbed`; what the end-to-end tests add to it is below.
typealias LocalNetwork = Testbed

extension Testbed {
    /// The build products directory: where the test bundle and the executables are.
    static let productsDirectory: URL = {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("tally-node").path) {
            return candidate
        }
        return candidates[0]
    }()

    static func binary(_ name: String) -> URL { productsDirectory.appendingPathComponent(name) }

    /// A new network of `validators` in a fresh temporary directory, on random ports.
    /// `fundedDevnetAccounts`: genesis also funds `DevnetKeys.accountKey(0..<N)`.
    convenience init(validators: Int = 4, fundedDevnetAccounts: Int = 0) throws {
        try self.init(
            directory: FileManager.default.temporaryDirectory.appendingPathComponent("tally-e2e-\(UUID().uuidString.prefix(8))"),
            validators: validators, basePort: Testbed.randomBasePort(validators: validators), binaries: Self.productsDirectory, chainID: "tally-testnet",
            fundedDevnetAccounts: fundedDevnetAccounts, requestTimeoutSeconds: 10)
    }

    func peerPort(_ index: Int) -> Int { basePort + 100 + index }

    /// Kills every validator (SIGKILL).
    func stop() { killAll() }

    /// Starts validator `index` with `executable start --home HOME` plus `extraArguments`
    /// (e.g. the test-only `tally-byzantine` with its `--misbehaviour`).
    func start(_ index: Int, executable: String, extraArguments: [String] = []) throws {
        setLaunch(ValidatorLaunch(executable: binary(executable), extraArguments: extraArguments), for: index)
        try start(index)
    }

    /// Opens `GET /events` on node `index` over a plain socket and returns once the
    /// response headers arrived; the connection stays open until `close` is called.
    func openEventStream(_ index: Int) throws -> Int32 {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw TestError("socket: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(basePort + index).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(socket); throw TestError("connect: errno \(errno)") }
        let request = Array("GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".utf8)
        guard write(socket, request, request.count) == request.count else { close(socket); throw TestError("write failed") }
        var received = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n") {
            let count = read(socket, &buffer, buffer.count)
            guard count > 0 else { close(socket); throw TestError("event stream closed before its headers") }
            received += buffer[0..<count]
        }
        guard String(decoding: received, as: UTF8.self).hasPrefix("HTTP/1.1 200") else {
            close(socket)
            throw TestError("event stream refused: \(String(decoding: received, as: UTF8.self))")
        }
        return socket
    }

    static func run(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try runProcess(executable, arguments)
    }

    func submitBatch(_ index: Int, _ transactions: [Transaction]) async throws -> [String: Any] {
        let body = try JSONSerialization.data(withJSONObject: ["txs": transactions.map { Hex.encode($0.canonicalBytes) }])
        let (_, data) = try await request(index, "txs", method: "POST", body: body)
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }

    func submitOne(_ index: Int, _ transaction: Transaction) async throws -> (status: Int, body: [String: Any]) {
        let body = try JSONSerialization.data(withJSONObject: ["tx": Hex.encode(transaction.canonicalBytes)])
        let (status, data) = try await request(index, "txs", method: "POST", body: body)
        return (status, (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
    }

    func block(_ index: Int, _ height: UInt64) async throws -> CertifiedBlock? {
        let (status, data) = try await request(index, "blocks/\(height)", accept: "application/octet-stream")
        guard status == 200 else { return nil }
        return try CertifiedBlock(canonicalBytes: Array(data))
    }

    /// Starts every validator and waits until each one is connected to all the others.
    func startAllConnected(seconds: Double = 60) async throws {
        try startAll()
        try await waitUntil("validators connected", seconds: seconds) {
            for node in 0..<self.validators {
                guard let status = try? await self.json(node, "status"),
                      (status["peers_connected"] as? Int ?? 0) >= self.validators - 1
                else { return false }
            }
            return true
        }
    }

    /// Polls until `condition` holds or `seconds` pass.
    func waitUntil(_ what: String, seconds: Double = 30, _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestError("timed out after \(seconds) s waiting for \(what)\n" + (0..<validators).map { "--- node\($0)\n" + String(log($0).suffix(3000)) }.joined(separator: "\n"))
    }

    /// Waits until the faucet's committed nonce is `nonce` on every one of `nodes`
    /// (all its transfers so far committed there).
    func waitForFaucetNonce(_ nonce: UInt64, on nodes: [Int], seconds: Double = 60) async throws {
        let faucet = Address(publicKey: self.faucet.publicKey).bech32m
        try await waitUntil("faucet nonce \(nonce) on \(nodes)", seconds: seconds) {
            for index in nodes {
                guard let account = try? await self.json(index, "accounts/\(faucet)"), account["nonce"] as? String == String(nonce)
                else { return false }
            }
            return true
        }
    }

    func waitForHeight(_ height: UInt64, on nodes: [Int], seconds: Double = 30) async throws {
        try await waitUntil("height \(height) on nodes \(nodes)", seconds: seconds) {
            for node in nodes { guard let current = await self.height(node), current >= height else { return false } }
            return true
        }
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
