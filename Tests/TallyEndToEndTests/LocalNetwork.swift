import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TallyCrypto
import TallyTypes
import XCTest

/// Real validator processes on 127.0.0.1, made by `tally-node testnet` and run by
/// `tally-node start`, for end-to-end tests. Every process is killed on `stop()`.
final class LocalNetwork: @unchecked Sendable {
    let directory: URL
    let validators: Int
    let basePort: Int
    private(set) var processes: [Int: Process] = [:]
    let genesis: Genesis
    let faucet: SigningKey

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

    init(validators: Int = 4) throws {
        self.validators = validators
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-e2e-\(UUID().uuidString.prefix(8))")
        basePort = Int.random(in: 20_000...40_000)
        let generate = try Self.run(Self.binary("tally-node"), [
            "testnet", "--validators", "\(validators)", "--output", directory.path, "--base-port", "\(basePort)",
        ])
        guard generate.status == 0 else { throw TestError("tally-node testnet failed: \(generate.output)") }
        genesis = try Genesis.load(path: directory.appendingPathComponent("genesis.json").path)
        let passphrase = try String(contentsOf: directory.appendingPathComponent("faucet.password"), encoding: .utf8)
            .trimmingCharacters(in: .newlines)
        faucet = try KeyFile.load(path: directory.appendingPathComponent("faucet.key").path).open(passphrase: passphrase)
    }

    func home(_ index: Int) -> String { directory.appendingPathComponent("node\(index)").path }
    func api(_ index: Int) -> URL { URL(string: "http://127.0.0.1:\(basePort + index)")! }
    func peerPort(_ index: Int) -> Int { basePort + 100 + index }

    /// Starts validator `index` with `executable start --home HOME` plus `extraArguments`
    /// (e.g. the test-only `tally-byzantine` with its `--misbehaviour`).
    func start(_ index: Int, executable: String = "tally-node", extraArguments: [String] = []) throws {
        let process = Process()
        process.executableURL = Self.binary(executable)
        process.arguments = ["start", "--home", home(index)] + extraArguments
        let log = directory.appendingPathComponent("node\(index).log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        processes[index] = process
    }

    func startAll() throws { for index in 0..<validators { try start(index) } }

    /// SIGKILL: no chance to flush or close anything.
    func kill(_ index: Int) {
        guard let process = processes.removeValue(forKey: index) else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM and wait: the clean shutdown path.
    func terminate(_ index: Int) {
        guard let process = processes.removeValue(forKey: index) else { return }
        process.terminate()
        process.waitUntilExit()
    }

    /// SIGTERM, then SIGKILL if the process is still running after `seconds`.
    /// Returns the exit status, or nil when it had to be killed.
    func terminate(_ index: Int, within seconds: Double) -> Int32? {
        guard let process = processes.removeValue(forKey: index) else { return nil }
        process.terminate()
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        guard !process.isRunning else {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        return process.terminationStatus
    }

    func stop() { for index in Array(processes.keys) { kill(index) } }

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

    func log(_ index: Int) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("node\(index).log"), encoding: .utf8)) ?? ""
    }

    // MARK: HTTP

    func request(_ index: Int, _ path: String, method: String = "GET", body: Data? = nil, contentType: String = "application/json",
                 accept: String? = nil) async throws -> (status: Int, body: Data) {
        var request = URLRequest(url: api(index).appendingPathComponent(path))
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 10
        if body != nil { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if let accept { request.setValue(accept, forHTTPHeaderField: "Accept") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as! HTTPURLResponse).statusCode, data)
    }

    func json(_ index: Int, _ path: String) async throws -> [String: Any] {
        let (_, body) = try await request(index, path)
        return (try JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
    }

    func height(_ index: Int) async -> UInt64? {
        guard let status = try? await json(index, "status"), let text = status["height"] as? String else { return nil }
        return UInt64(text)
    }

    func submit(_ index: Int, _ transactions: [Transaction]) async throws -> [String: Any] {
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

    /// Polls until `condition` holds or `seconds` pass.
    func waitUntil(_ what: String, seconds: Double = 30, _ condition: () async -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestError("timed out after \(seconds) s waiting for \(what)\n" + (0..<validators).map { "--- node\($0)\n" + String(log($0).suffix(3000)) }.joined(separator: "\n"))
    }

    func waitForHeight(_ height: UInt64, on nodes: [Int], seconds: Double = 30) async throws {
        try await waitUntil("height \(height) on nodes \(nodes)", seconds: seconds) {
            for node in nodes { guard let current = await self.height(node), current >= height else { return false } }
            return true
        }
    }

    static func run(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
