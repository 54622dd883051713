import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TallyCrypto
import TallyTypes

struct ChaosError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Validators as real `tally-node start` processes on 127.0.0.1, made by
/// `tally-node testnet`. Knows which nodes are faulty so clients go elsewhere,
/// as a real client retries another validator.
final class Cluster: @unchecked Sendable {
    static let requestTimeoutSeconds = 3.0

    let directory: URL
    let validators: Int
    let basePort: Int
    let genesis: Genesis
    let faucet: SigningKey
    let binaries: URL
    private let lock = NSLock()
    private var processes: [Int: Process] = [:]
    private var faulty: Set<Int> = []
    private let session: URLSession

    init(directory: URL, validators: Int, basePort: Int, binaries: URL) throws {
        self.directory = directory
        self.validators = validators
        self.basePort = basePort
        self.binaries = binaries
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = Self.requestTimeoutSeconds
        configuration.timeoutIntervalForResource = Self.requestTimeoutSeconds * 2
        session = URLSession(configuration: configuration)
        let generate = try Self.run(binaries.appendingPathComponent("tally-node"), [
            "testnet", "--validators", "\(validators)", "--output", directory.path, "--base-port", "\(basePort)",
        ])
        guard generate.status == 0 else { throw ChaosError("tally-node testnet failed: \(generate.output)") }
        genesis = try Genesis.load(path: directory.appendingPathComponent("genesis.json").path)
        let passphrase = try String(contentsOf: directory.appendingPathComponent("faucet.password"), encoding: .utf8)
            .trimmingCharacters(in: .newlines)
        faucet = try KeyFile.load(path: directory.appendingPathComponent("faucet.key").path).open(passphrase: passphrase)
    }

    var faultTolerance: Int { (validators - 1) / 3 }
    func home(_ index: Int) -> String { directory.appendingPathComponent("node\(index)").path }
    func dataDirectory(_ index: Int) -> String { home(index) + "/data" }
    func api(_ index: Int) -> URL { URL(string: "http://127.0.0.1:\(basePort + index)")! }

    // MARK: processes

    func start(_ index: Int) throws {
        let process = Process()
        process.executableURL = binaries.appendingPathComponent("tally-node")
        process.arguments = ["start", "--home", home(index)]
        let log = directory.appendingPathComponent("node\(index).log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.withLock { processes[index] = process }
    }

    func startAll() throws { for index in 0..<validators { try start(index) } }

    private func process(_ index: Int) -> Process? { lock.withLock { processes[index] } }

    /// SIGKILL: nothing flushed, nothing closed.
    func kill(_ index: Int) {
        guard let process = lock.withLock({ processes.removeValue(forKey: index) }) else { return }
        Foundation.kill(process.processIdentifier, SIGCONT)
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func signal(_ index: Int, _ signal: Int32) {
        if let process = process(index) { Foundation.kill(process.processIdentifier, signal) }
    }

    /// SIGTERM and wait: the clean stop. A node that does not stop in time is killed.
    func terminate(_ index: Int, graceSeconds: Double = 20) {
        guard let process = lock.withLock({ processes.removeValue(forKey: index) }) else { return }
        Foundation.kill(process.processIdentifier, SIGCONT)
        process.terminate()
        let deadline = Date().addingTimeInterval(graceSeconds)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning {
            print("warning: node\(index) ignored SIGTERM for \(Int(graceSeconds)) s; killing it")
            Foundation.kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
    }

    func stopAll() { for index in 0..<validators { kill(index) } }

    func setFaulty(_ index: Int, _ isFaulty: Bool) {
        lock.withLock { if isFaulty { faulty.insert(index) } else { faulty.remove(index) } }
    }

    var healthyNodes: [Int] { lock.withLock { (0..<validators).filter { !faulty.contains($0) } } }

    /// Cuts `bytes` off the newest segment file of a stopped node: a torn last append.
    func tearNewestSegment(_ index: Int, bytes: Int) throws -> String {
        let blocks = dataDirectory(index) + "/blocks"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: blocks)) ?? []
        guard let newest = names.filter({ $0.hasPrefix("segment-") }).sorted().last else { return "no segment yet" }
        let path = blocks + "/" + newest
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard size > bytes else { return "\(newest) has only \(size) B" }
        guard truncate(path, off_t(size - bytes)) == 0 else { throw ChaosError("truncate \(path): errno \(errno)") }
        return "\(newest) \(size) → \(size - bytes) B"
    }

    func log(_ index: Int) -> String {
        (try? String(contentsOf: directory.appendingPathComponent("node\(index).log"), encoding: .utf8)) ?? ""
    }

    // MARK: HTTP

    func request(_ index: Int, _ path: String, method: String = "GET", body: Data? = nil) async throws -> (status: Int, body: Data) {
        var request = URLRequest(url: api(index).appendingPathComponent(path))
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = Self.requestTimeoutSeconds
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        let (data, response) = try await session.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    func json(_ index: Int, _ path: String) async throws -> [String: Any] {
        let (_, body) = try await request(index, path)
        return (try JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
    }

    func status(_ index: Int) async -> (height: UInt64, view: UInt64)? {
        guard let status = try? await json(index, "status"),
            let height = (status["height"] as? String).flatMap(UInt64.init),
            let view = (status["view"] as? String).flatMap(UInt64.init)
        else { return nil }
        return (height, view)
    }

    /// `/status` as one line, for failure reports.
    func statusLine(_ index: Int) async -> String {
        guard let status = try? await json(index, "status") else { return "node\(index) down" }
        let fields = ["height", "view", "primary", "catching_up", "peers_connected", "mempool_size"]
        return "node\(index) " + fields.map { "\($0)=\(status[$0].map { "\($0)" } ?? "?")" }.joined(separator: " ")
    }

    func account(_ index: Int, _ address: Address) async -> (balance: UInt64, nonce: UInt64)? {
        guard let account = try? await json(index, "accounts/\(address.bech32m)"),
            let balance = (account["balance"] as? String).flatMap(UInt64.init),
            let nonce = (account["nonce"] as? String).flatMap(UInt64.init)
        else { return nil }
        return (balance, nonce)
    }

    /// Submits a batch; returns how many the node admitted (duplicates count as admitted).
    func submit(_ index: Int, _ transactions: [Transaction]) async -> Int {
        guard let body = try? JSONSerialization.data(withJSONObject: ["txs": transactions.map { Hex.encode($0.canonicalBytes) }]),
            let (_, data) = try? await request(index, "txs", method: "POST", body: body),
            let response = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let results = response["results"] as? [[String: Any]]
        else { return 0 }
        return results.filter { result in
            guard let error = result["error"] as? [String: Any] else { return true }
            return error["code"] as? String == "duplicate"
        }.count
    }

    /// The height the node says `hash` is committed at, or nil.
    func committedHeight(_ index: Int, _ hash: Hash) async -> UInt64? {
        guard let answer = try? await json(index, "txs/\(hash.hex)"), answer["status"] as? String == "committed" else { return nil }
        return (answer["height"] as? String).flatMap(UInt64.init)
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
