import ArgumentParser
import AsyncHTTPClient
import NIOFoundationCompat
import Foundation
import TallyCrypto
import TallyNode
import TallyStore
import TallyTestbed
import TallyTypes
import TallyVerifyTesting

/// `tally verify --json` on a node home: transactions and signatures per second.
struct VerifyBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Offline verification rate of a chain (an e2e node home, or a generated chain).")

    @Option(name: .long, help: ArgumentHelp("Verify this node home.", valueName: "HOME")) var home: String?
    @Option(name: .long, help: "Else generate a devnet chain of this many transactions (1,000 per block) and verify it.")
    var generate = 1_000_000
    @Option(name: .long, help: ArgumentHelp("Where generated chains are kept (reused).", valueName: "DIR"))
    var chains = FileManager.default.temporaryDirectory.appendingPathComponent("tally-bench-chains").path
    @Option(name: .long, help: ArgumentHelp("Write the JSON result here (else stdout).", valueName: "FILE")) var json: String?
    @Flag(inversion: .prefixedNo, help: "Measure libsodium's all-core raw verify rate right before and right after the verification (`tally verify --calibrate`); the ratio uses their mean.")
    var calibrate = true

    func run() throws {
        let target = try home ?? GeneratedChain.ensure(transactions: generate, under: chains)
        try writeJSON(try ChainVerify.run(home: target, calibrate: calibrate), to: json)
    }
}

enum ChainVerify {
    /// With `calibrate`, libsodium's raw verify rate on all cores is measured on the
    /// chain's own signatures just before and just after (so drift of a shared machine
    /// between minutes does not decide the ratio), and the ratio is against their mean.
    static func run(home: String, calibrate: Bool = false) throws -> [String: Any] {
        var arguments = ["verify", "--home", home, "--json"]
        if calibrate { arguments += ["--calibrate", "--calibrate-threads", "\(MachineFacts.cores)"] }
        let (status, output) = try runProcess(product("tally"), arguments)
        guard status == 0, let report = try JSONSerialization.jsonObject(with: output) as? [String: Any] else {
            throw BenchError("tally verify --home \(home) failed (exit \(status)): \(String(decoding: output, as: UTF8.self))")
        }
        benchLog(String(format: "verify %@: %d transactions in %.2f s (%.0f tx/s, %.0f signatures/s)", home,
                   report["transactions"] as? Int ?? 0, report["seconds"] as? Double ?? 0,
                   report["transactions_per_second"] as? Double ?? 0, report["signatures_per_second"] as? Double ?? 0))
        var result: [String: Any] = [
            "home": home, "transactions": report["transactions"] ?? 0, "blocks": report["blocks"] ?? 0,
            "seconds": report["seconds"] ?? 0, "tx_per_s": report["transactions_per_second"] ?? 0,
            "signatures_per_s": report["signatures_per_second"] ?? 0, "signatures_checked": report["signatures_checked"] ?? 0,
        ]
        if let calibration = report["calibration"] as? [String: Any] {
            let before = calibration["raw_verifies_per_second_before"] as? Double ?? 0
            let after = calibration["raw_verifies_per_second_after"] as? Double ?? 0
            let mean = (before + after) / 2
            let signatures = report["signatures_per_second"] as? Double ?? 0
            result["calibration_threads"] = calibration["threads"] ?? 0
            result["calibration_before_per_s"] = before
            result["calibration_after_per_s"] = after
            result["calibration_mean_per_s"] = mean
            result["calibrated_ratio"] = mean > 0 ? signatures / mean : 0
            result["cpu_ratio"] = calibration["cpu_ratio"] ?? 0
            benchLog(String(format: "  calibration (%d threads): %.0f /s before, %.0f /s after; %.0f signatures/s = %.2f of their mean (CPU-time ratio %.2f)",
                       calibration["threads"] as? Int ?? 0, before, after, signatures, mean > 0 ? signatures / mean : 0,
                       calibration["cpu_ratio"] as? Double ?? 0))
        }
        return result
    }
}

enum GeneratedChain {
    static let transactionsPerBlock = 1_000

    /// A devnet chain of `transactions` transfers under `directory`, generated once.
    static func ensure(transactions: Int, under directory: String) throws -> String {
        let home = directory + "/chain-\(transactions)"
        if !FileManager.default.fileExists(atPath: home + "/data/blocks") {
            let blocks = max(1, transactions / transactionsPerBlock)
            benchLog("generating \(blocks) blocks × \(transactionsPerBlock) transactions in \(home)")
            try? FileManager.default.removeItem(atPath: home)
            // What `tally-bench generate-chain` writes, in this process.
            try ChainGenerator.write(ChainGenerator.Parameters(blocks: blocks, transactionsPerBlock: transactionsPerBlock), to: home)
        }
        return home
    }
}

/// The same figures at growing chain lengths: verify time, and a validator started on
/// the chain (devnet validator 0, alone: it loads the chain and serves it) for its
/// memory and its restart time.
struct Growth: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Verify time, validator memory and restart time at growing chain lengths.")

    @Option(name: .long, parsing: .upToNextOption, help: "Chain lengths in transactions.") var lengths = [10_000, 100_000, 1_000_000]
    @Option(name: .long, help: ArgumentHelp("Where generated chains are kept (reused).", valueName: "DIR"))
    var chains = FileManager.default.temporaryDirectory.appendingPathComponent("tally-bench-chains").path
    @Option(name: .long, help: ArgumentHelp("Write the JSON result here (else stdout).", valueName: "FILE")) var json: String?

    func run() async throws {
        var rows: [[String: Any]] = []
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            for length in lengths {
                let home = try GeneratedChain.ensure(transactions: length, under: chains)
                var row = try ChainVerify.run(home: home)
                row["length"] = length
                let node = try await SoloValidator.measure(home: home, client: client)
                row.merge(node) { _, new in new }
                rows.append(row)
            }
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        try writeJSON(["growth": rows], to: json)
    }
}

/// Devnet validator 0 started alone on a generated chain.
enum SoloValidator {
    static func measure(home: String, client: HTTPClient) async throws -> [String: Any] {
        let genesis = try Genesis.load(path: home + "/genesis.json")
        let blocks = try Self.prepare(home: home, genesis: genesis)
        let port = Int.random(in: 41_000...50_000)
        var config = NodeConfig()
        config.keyPasswordFile = "validator.password"
        config.api.listen = "127.0.0.1:\(port)"
        config.p2p.listen = genesis.validators.validators[0].networkAddress
        try NodeHome(path: home).writeConfig(config)

        var results: [String: Any] = [:]
        for phase in ["first_start", "restart"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: product("tally-node"))
            process.arguments = ["start", "--home", home]
            let logPath = home + "/node.log"
            FileManager.default.createFile(atPath: logPath, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            process.standardOutput = handle
            process.standardError = handle
            let start = monotonicSeconds()
            try process.run()
            var ready: Double?
            while monotonicSeconds() - start < 300 {
                if let data = try? await client.execute(HTTPClientRequest(url: "http://127.0.0.1:\(port)/status"), timeout: .seconds(5)),
                    data.status == .ok
                {
                    let body = try await data.body.collect(upTo: 1 << 20)
                    let object = try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any]
                    if let height = (object?["height"] as? String).flatMap(UInt64.init), height >= blocks {
                        ready = monotonicSeconds() - start
                        break
                    }
                }
                try await Task.sleep(nanoseconds: 20_000_000)
            }
            try await Task.sleep(nanoseconds: 500_000_000)
            let memory = residentMemoryMiB(pid: process.processIdentifier)
            terminate(process, graceSeconds: 5)
            guard let ready else { throw BenchError("validator on \(home) did not serve height \(blocks) within 300 s (log \(logPath))") }
            benchLog(String(format: "%@: %@ in %.2f s, RSS %.0f MiB (peak %.0f)", home, phase, ready, memory?.current ?? 0, memory?.peak ?? 0))
            results["\(phase)_seconds"] = ready
            // Whether the start loaded a snapshot or replayed the chain (restart should load one).
            if let log = try? String(contentsOfFile: logPath, encoding: .utf8),
               let line = log.split(separator: "\n").first(where: { $0.contains("chain recovered") })
            {
                for field in ["snapshot", "replayed"] {
                    if let range = line.range(of: field + "=") {
                        let digits = line[range.upperBound...].prefix { $0.isNumber }
                        results["\(phase)_\(field)_\(field == "snapshot" ? "height" : "blocks")"] = Int(digits) ?? -1
                    }
                }
            }
            results["\(phase)_rss_mb"] = memory?.current ?? 0
            results["\(phase)_rss_mb_peak"] = memory?.peak ?? 0
        }
        return results
    }

    /// Makes the generated chain's directory a home for devnet validator 0; returns its height.
    static func prepare(home: String, genesis: Genesis) throws -> UInt64 {
        let password = "devnet-bench"
        // Owner-only: the node refuses a passphrase file others can read.
        try AtomicFile.write(Data((password + "\n").utf8), to: home + "/validator.password", mode: 0o600)
        try KeyFile.seal(DevnetKeys.validatorKey(0), passphrase: password, cost: .light).write(path: home + "/validator.key")
        let report = try ChainVerify.height(home: home)
        return report
    }
}

extension ChainVerify {
    /// The chain's tip height, from the block files (`tally verify` would take as long as the bench).
    static func height(home: String) throws -> UInt64 {
        var reader = try ChainReader(dataDirectory: home + "/data", fileSystem: PosixFileSystem())
        var height: UInt64 = 0
        while let record = try reader.next() { height = record.height }
        return height
    }
}
