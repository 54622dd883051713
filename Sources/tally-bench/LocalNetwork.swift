import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import TallyCrypto
import TallyNode
import TallyTypes

/// A local network of `tally-node start` processes made by `TestnetGenerator`, with
/// devnet accounts funded in genesis.
final class LocalNetwork: @unchecked Sendable {
    let directory: String
    let validators: Int
    let basePort: Int
    let genesis: Genesis
    private let lock = NSLock()
    private var processes: [Int: Process] = [:]

    init(directory: String, validators: Int, basePort: Int, fundedAccounts: Int, maxBlocksInFlight: UInt64?) throws {
        self.directory = directory
        self.validators = validators
        self.basePort = basePort
        let output = try TestnetGenerator.generate(
            validators: validators, output: directory, basePort: basePort, chainID: "tally-bench", keyCost: .light,
            fundedDevnetAccounts: fundedAccounts)
        var genesis = output.genesis
        if let maxBlocksInFlight {
            // Nothing has started yet, so rewriting genesis everywhere is safe.
            genesis.consensus.maxBlocksInFlight = maxBlocksInFlight
            let data = genesis.jsonData()
            try data.write(to: URL(fileURLWithPath: directory + "/genesis.json"))
            for home in output.homes { try data.write(to: URL(fileURLWithPath: home.file("genesis.json"))) }
        }
        self.genesis = genesis
    }

    func home(_ index: Int) -> String { directory + "/node\(index)" }
    func api(_ index: Int) -> String { "http://127.0.0.1:\(basePort + index)" }

    func start(_ index: Int) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: product("tally-node"))
        process.arguments = ["start", "--home", home(index)]
        let logPath = directory + "/node\(index).log"
        if !FileManager.default.fileExists(atPath: logPath) { FileManager.default.createFile(atPath: logPath, contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.withLock { processes[index] = process }
    }

    func startAll() throws { for index in 0..<validators { try start(index) } }

    /// SIGTERM, then SIGKILL after `graceSeconds` (a node may hold an `/events`
    /// stream open during graceful shutdown).
    func stop(_ index: Int, graceSeconds: Double = 5) {
        guard let process = lock.withLock({ processes.removeValue(forKey: index) }) else { return }
        terminate(process, graceSeconds: graceSeconds)
    }

    func stopAll() { for index in 0..<validators { stop(index) } }

    func memory(_ index: Int) -> (peak: Double, current: Double)? {
        guard let process = lock.withLock({ processes[index] }) else { return nil }
        return residentMemoryMiB(pid: process.processIdentifier)
    }

    // MARK: HTTP

    func get(_ client: HTTPClient, _ index: Int, _ path: String) async throws -> Data {
        let response = try await client.execute(HTTPClientRequest(url: api(index) + path), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 16 << 20)
        return Data(buffer: body)
    }

    func status(_ client: HTTPClient, _ index: Int) async throws -> [String: Any] {
        (try JSONSerialization.jsonObject(with: try await get(client, index, "/status")) as? [String: Any]) ?? [:]
    }

    func height(_ client: HTTPClient, _ index: Int) async throws -> UInt64 {
        UInt64(try await status(client, index)["height"] as? String ?? "") ?? 0
    }

    /// A Prometheus counter or gauge without labels.
    func metric(_ client: HTTPClient, _ index: Int, _ name: String) async -> Double? {
        guard let data = try? await get(client, index, "/metrics") else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    func waitUntilConnected(_ client: HTTPClient, seconds: Double = 60) async throws {
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            var ready = true
            for index in 0..<validators {
                let peers = (try? await status(client, index))?["peers_connected"] as? Int
                if peers != validators - 1 { ready = false; break }
            }
            if ready { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw BenchError("validators did not connect within \(Int(seconds)) s (logs in \(directory))")
    }

    /// Posts a batch; returns the rejected hashes with their error codes.
    func submit(_ client: HTTPClient, _ index: Int, _ batch: [Workload.Signed]) async throws -> [String: String] {
        var body = "{\"txs\":["
        body.reserveCapacity(batch.count * 300)
        for (position, tx) in batch.enumerated() {
            if position > 0 { body += "," }
            body += "\""
            body += tx.hex
            body += "\""
        }
        body += "]}"
        var request = HTTPClientRequest(url: api(index) + "/txs")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await client.execute(request, timeout: .seconds(60))
        let data = Data(buffer: try await response.body.collect(upTo: 16 << 20))
        guard response.status == .ok,
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let results = object["results"] as? [[String: Any]]
        else {
            // The whole batch was refused (e.g. 503): every transaction is rejected with that code.
            let code = ((try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["error"] as? [String: Any])?["code"] as? String
            return Dictionary(batch.map { ($0.hash, code ?? "http_\(response.status.code)") }, uniquingKeysWith: { a, _ in a })
        }
        var rejected: [String: String] = [:]
        for entry in results {
            guard let error = entry["error"] as? [String: Any], let hash = entry["hash"] as? String else { continue }
            rejected[hash] = error["code"] as? String ?? "unknown"
        }
        return rejected
    }

    /// Stops validator `index`, starts it again and returns the seconds until its API
    /// answers at `untilHeight` or above (restart loads the snapshot, then catches up).
    func restart(_ index: Int, client: HTTPClient, untilHeight: UInt64) async throws -> Double {
        stop(index)
        let start = monotonicSeconds()
        try self.start(index)
        while monotonicSeconds() - start < 120 {
            if let height = try? await height(client, index), height >= untilHeight { return monotonicSeconds() - start }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        throw BenchError("validator \(index) did not come back within 120 s")
    }
}

/// SIGTERM, wait up to `graceSeconds`, then SIGKILL.
func terminate(_ process: Process, graceSeconds: Double) {
    process.terminate()
    let deadline = monotonicSeconds() + graceSeconds
    while process.isRunning && monotonicSeconds() < deadline { usleep(20_000) }
    if process.isRunning {
        benchLog("pid \(process.processIdentifier) still running \(graceSeconds) s after SIGTERM; killing it")
        kill(process.processIdentifier, SIGKILL)
    }
    process.waitUntilExit()
}
