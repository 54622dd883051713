import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TallyCrypto
import TallyNode
import TallyTypes

/// What runs in one validator slot: `tally-node start --home HOME` by default, or
/// another executable with the same command line (a Byzantine test node) and extra
/// arguments after it.
public struct ValidatorLaunch: Sendable {
    public var executable: URL
    public var extraArguments: [String]
    public init(executable: URL, extraArguments: [String] = []) {
        self.executable = executable
        self.extraArguments = extraArguments
    }
}

/// A local network of validators as real processes, made like `tally-node testnet`
/// (`TestnetGenerator`): on 127.0.0.1, or each in its own namespace of a
/// `NetworkLab`. Starts, kills (-9), freezes (SIGSTOP/SIGCONT), terminates and
/// restarts them, tears a stopped node's newest block segment, and tracks which nodes
/// are faulty so clients go elsewhere, as a real client retries another validator.
/// Every process it started is killed by `killAll()`.
public final class Testbed: @unchecked Sendable {
    public static let defaultRequestTimeoutSeconds = 3.0

    public let directory: URL
    public let validators: Int
    public let basePort: Int
    public let genesis: Genesis
    public let faucet: SigningKey
    /// Where `tally-node` and `tally` are.
    public let binaries: URL
    public let lab: NetworkLab?
    private let lock = NSLock()
    private var processes: [Int: Process] = [:]
    private var faulty: Set<Int> = []
    private var launches: [Int: ValidatorLaunch] = [:]
    let session: URLSession
    /// How long one HTTP request may take.
    public let requestTimeoutSeconds: Double

    /// Generates the network in `directory` (which must not hold one yet). Node `i`
    /// serves its API on port `basePort + i` and its peers on `basePort + 100 + i`, at
    /// 127.0.0.1 or at its lab address. `maxBlocksInFlight` overrides the genesis PBFT
    /// window and `maxBlockTransactions` its block size; `fundedDevnetAccounts` funds
    /// `DevnetKeys.accountKey(0..<N)`.
    /// A random `basePort` whose ports (API `basePort + i`, peers `basePort + 100 + i`)
    /// all lie below the kernel's ephemeral range, where an outgoing connection of any
    /// process may already hold a port and the validator would fail to bind it.
    public static func randomBasePort(validators: Int) -> Int {
        let range = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
        let ephemeralStart = range.flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32_768
        let lowest = 10_000
        let highest = max(lowest, ephemeralStart - 101 - validators)
        return Int.random(in: lowest...highest)
    }

    public init(
        directory: URL, validators: Int, basePort: Int, binaries: URL, chainID: String = "tally-testbed",
        fundedDevnetAccounts: Int = 0, maxBlocksInFlight: UInt64? = nil, maxBlockTransactions: UInt32? = nil, lab: NetworkLab? = nil,
        requestTimeoutSeconds: Double = Testbed.defaultRequestTimeoutSeconds
    ) throws {
        precondition(lab == nil || lab!.validators == validators)
        self.directory = directory
        self.validators = validators
        self.basePort = basePort
        self.binaries = binaries
        self.lab = lab
        let configuration = URLSessionConfiguration.ephemeral
        self.requestTimeoutSeconds = requestTimeoutSeconds
        configuration.timeoutIntervalForRequest = requestTimeoutSeconds
        configuration.timeoutIntervalForResource = requestTimeoutSeconds * 2
        session = URLSession(configuration: configuration)
        let output = try TestnetGenerator.generate(
            validators: validators, output: directory.path, basePort: basePort, chainID: chainID, keyCost: .light,
            fundedDevnetAccounts: fundedDevnetAccounts)
        var genesis = output.genesis
        // Nothing has started yet, so rewriting genesis and configs everywhere is safe.
        if let maxBlocksInFlight { genesis.consensus.maxBlocksInFlight = maxBlocksInFlight }
        if let maxBlockTransactions { genesis.consensus.maxBlockTransactions = maxBlockTransactions }
        if let lab {
            genesis.validators = ValidatorSet(genesis.validators.validators.enumerated().map { index, validator in
                Validator(name: validator.name, publicKey: validator.publicKey, networkAddress: "\(lab.address(validator: index)):\(basePort + 100 + index)")
            })
            for (index, home) in output.homes.enumerated() {
                var config = try home.loadConfig()
                config.api.listen = "\(lab.address(validator: index)):\(basePort + index)"
                config.p2p.listen = "\(lab.address(validator: index)):\(basePort + 100 + index)"
                try home.writeConfig(config)
            }
        }
        if genesis != output.genesis {
            let data = genesis.jsonData()
            try data.write(to: directory.appendingPathComponent("genesis.json"))
            for home in output.homes { try data.write(to: URL(fileURLWithPath: home.file("genesis.json"))) }
        }
        self.genesis = genesis
        var passphrase = try NodeHome.readPassphrase(file: directory.appendingPathComponent("faucet.password").path)
        defer { KeyFile.zero(&passphrase) }
        faucet = try KeyFile.load(path: directory.appendingPathComponent("faucet.key").path).open(passphrase: passphrase)
    }

    public var faultTolerance: Int { (validators - 1) / 3 }
    public func home(_ index: Int) -> String { directory.appendingPathComponent("node\(index)").path }
    public func dataDirectory(_ index: Int) -> String { home(index) + "/data" }
    public func host(_ index: Int) -> String { lab?.address(validator: index) ?? "127.0.0.1" }
    public func api(_ index: Int) -> URL { URL(string: "http://\(host(index)):\(basePort + index)")! }
    public func logPath(_ index: Int) -> String { directory.appendingPathComponent("node\(index).log").path }
    public func binary(_ name: String) -> URL { binaries.appendingPathComponent(name) }

    // MARK: processes

    /// Runs `launch` instead of `tally-node start` in slot `index` from its next start.
    public func setLaunch(_ launch: ValidatorLaunch?, for index: Int) { lock.withLock { launches[index] = launch } }

    public func start(_ index: Int) throws {
        let launch = lock.withLock { launches[index] } ?? ValidatorLaunch(executable: binary("tally-node"))
        let arguments = ["start", "--home", home(index)] + launch.extraArguments
        let process = Process()
        if let lab {
            let command = lab.command(validator: index, [launch.executable.path] + arguments)
            process.executableURL = command.executable
            process.arguments = command.arguments
        } else {
            process.executableURL = launch.executable
            process.arguments = arguments
        }
        if !FileManager.default.fileExists(atPath: logPath(index)) { _ = FileManager.default.createFile(atPath: logPath(index), contents: nil) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath(index)))
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try? handle.close()
        lock.withLock { processes[index] = process }
    }

    public func startAll() throws { for index in 0..<validators { try start(index) } }

    public func isRunning(_ index: Int) -> Bool { lock.withLock { processes[index] != nil } }
    public func pid(_ index: Int) -> Int32? { lock.withLock { processes[index]?.processIdentifier } }

    /// SIGKILL: nothing flushed, nothing closed. (`ip netns exec` execs the node, so
    /// the pid is the node's even in a lab.)
    public func kill(_ index: Int) {
        guard let process = lock.withLock({ processes.removeValue(forKey: index) }) else { return }
        Foundation.kill(process.processIdentifier, SIGCONT)
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    public func signal(_ index: Int, _ signal: Int32) {
        if let pid = pid(index) { Foundation.kill(pid, signal) }
    }

    /// SIGTERM and wait: the clean stop. A node that does not stop in `graceSeconds` is killed.
    /// Returns the exit status, or nil when the node was not running or had to be killed.
    @discardableResult
    public func terminate(_ index: Int, graceSeconds: Double = 20) -> Int32? {
        guard let process = lock.withLock({ processes.removeValue(forKey: index) }) else { return nil }
        Foundation.kill(process.processIdentifier, SIGCONT)
        process.terminate()
        let deadline = Date().addingTimeInterval(graceSeconds)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            FileHandle.standardError.write(Data("testbed: node\(index) ignored SIGTERM for \(graceSeconds) s; killing it\n".utf8))
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return nil
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    public func killAll() { for index in 0..<validators { kill(index) } }
    public func terminateAll(graceSeconds: Double = 20) { for index in 0..<validators { terminate(index, graceSeconds: graceSeconds) } }

    public func setFaulty(_ index: Int, _ isFaulty: Bool) {
        lock.withLock { if isFaulty { faulty.insert(index) } else { faulty.remove(index) } }
    }

    public var healthyNodes: [Int] { lock.withLock { (0..<validators).filter { !faulty.contains($0) } } }

    /// Cuts `bytes` off the newest segment file of a stopped node: a torn last append.
    public func tearNewestSegment(_ index: Int, bytes: Int) throws -> String {
        let blocks = dataDirectory(index) + "/blocks"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: blocks)) ?? []
        guard let newest = names.filter({ $0.hasPrefix("segment-") }).sorted().last else { return "no segment yet" }
        let path = blocks + "/" + newest
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.intValue ?? 0
        guard size > bytes else { return "\(newest) has only \(size) B" }
        guard truncate(path, off_t(size - bytes)) == 0 else { throw TestbedError("truncate \(path): errno \(errno)") }
        return "\(newest) \(size) → \(size - bytes) B"
    }

    public func log(_ index: Int) -> String { (try? String(contentsOfFile: logPath(index), encoding: .utf8)) ?? "" }

    /// Peak and current resident set of validator `index`, in MiB.
    public func memory(_ index: Int) -> (peak: Double, current: Double)? { pid(index).flatMap(residentMemoryMiB) }
}

/// Peak and current resident set of a process, in MiB, from /proc (Linux).
public func residentMemoryMiB(pid: Int32) -> (peak: Double, current: Double)? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
    func field(_ name: String) -> Double? {
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name + ":") }) else { return nil }
        let digits = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first
        return digits.flatMap { Double($0) }.map { $0 / 1024 }
    }
    guard let peak = field("VmHWM"), let current = field("VmRSS") else { return nil }
    return (peak, current)
}

/// SIGTERM, wait up to `graceSeconds`, then SIGKILL.
public func terminate(_ process: Process, graceSeconds: Double) {
    process.terminate()
    let deadline = Date().addingTimeInterval(graceSeconds)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
        FileHandle.standardError.write(Data("testbed: pid \(process.processIdentifier) still running \(graceSeconds) s after SIGTERM; killing it\n".utf8))
        kill(process.processIdentifier, SIGKILL)
    }
    process.waitUntilExit()
}
