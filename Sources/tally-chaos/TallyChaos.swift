import ArgumentParser
import Foundation
import TallyCrypto
import TallyLedger
import TallyNode
import TallyTestbed
import TallyTypes

/// A chaos run: real validator processes, a load generator and a seeded fault
/// schedule; afterwards the safety and liveness checks, PASS/FAIL each.
@main
struct TallyChaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-chaos",
        abstract: "Run validators as real processes under seeded faults, then check safety and liveness.",
        discussion: """
            Exit 0 only when every check passes. The seed is printed; --seed replays the same fault schedule. \
            Process faults: kill -9 and restart, SIGSTOP/SIGCONT, restart with the newest block segment torn, \
            restored-data (the primary's data directory copied, later put back while its peers pause: nobody may then hold \
            evidence against it), slow-primary (the primary stopped 1.9 s of every 2.1 s: it must be replaced and latency \
            stay bounded), twin (a second tally-node on a copy of one validator's home: the others keep their peers and count \
            key_in_use_twice). Full-blocks faults (--faults full-blocks): transfers from --full-blocks-accounts funded accounts \
            fill blocks, then kill -9 of the primary; transactions must commit in a later view within --view-change-bound. \
            Network faults (root only: each validator in its own network namespace behind a userspace packet switch): \
            isolate a node or the primary, split the validators in two, one-way loss, delay + jitter, loss, duplication. \
            Without root, --faults network exits 2. Byzantine faults: a validator restarted as tally-byzantine \
            --misbehaviour equivocate|conflicting-votes|forged-view-change|garbage-frames|silent|forged-new-view|censor for the episode, \
            then as an honest tally-node on the same data; it counts towards the at most --max-faulty (≤ f) faulty validators.

            --faults hostile (alone) is another run: honest load for --phase-seconds (the baseline), then the same load \
            for --phase-seconds while attackers on other loopback addresses (127.66.x.y) spam from never-funded keys past \
            the mempool bound, send zero-value and zero-fee transfers, send stuck transactions (T0' to the primary, T0 and \
            T1 to the backups), flood one node's API with idle, slowloris and slow-body connections past its descriptor \
            limit, hammer /txs/{hash} and /blocks, grab /events slots, flood every peer port while a validator restarts; \
            afterwards tally verify gets crafted block segments. Honest throughput and p50/p99 latency of both phases are \
            printed; it fails when honest transfers stop committing, honest p50 under attack is over 2× the baseline, \
            or an attack that should be refused was not. --attacks picks some; the sizes have options.
            """)

    @Option(help: "Number of validators (4 or 7).") var validators = 4
    @Option(help: "How long faults are injected: seconds, or with a unit (90s, 10m, 1h).") var duration = "120"
    @Option(help: "Seed of the fault schedule (default: random, printed).") var seed: UInt64?
    @Option(help: "Fault classes, comma-separated: process, network (root only), byzantine, full-blocks.") var faults = "process"
    @Option(help: "Only these fault kinds of the classes (comma-separated, e.g. slow-primary,twin); default all of them.")
    var kinds: String?
    @Option(help: "full-blocks: funded devnet accounts sending the load (each up to its share of the transfers in the mempool's nonce window).")
    var fullBlocksAccounts = 400
    @Option(help: "full-blocks: transfers posted to the backups in each kill-primary-full-blocks episode.")
    var fullBlocksTransactions = 180_000
    @Option(help: "full-blocks: seconds after the kill -9 within which transactions must commit in a later view (default 10 view-change timeouts).")
    var viewChangeBound: Double?
    @Option(help: "Genesis maximum transactions a block (default the genesis default, 4000): smaller fills blocks sooner on a slow build.")
    var maxBlockTransactions: UInt32?
    @Option(help: "Most validators faulty at a time (default f = (n-1)/3). More than f must stay safe and may stall.")
    var maxFaulty: Int?
    @Option(help: "Seconds the network has, after the faults end, to commit everything and reach one height.")
    var recoverySeconds = 120.0
    @Option(help: "First API port; peers use base+100.") var basePort: Int?
    @Option(help: "Directory for the testnet (default: a new temporary one).") var output: String?
    @Flag(help: "Keep the testnet directory even when every check passes.") var keep = false

    // --faults hostile
    @Option(help: "hostile: attacks, comma-separated (default all): \(Attack.allCases.map(\.rawValue).joined(separator: ", ")).")
    var attacks: String?
    @Option(help: "hostile: seconds of the baseline phase and of the attack phase.") var phaseSeconds = HostileOptions().phaseSeconds
    @Option(help: "hostile: honest transfers offered per second.") var honestRate = HostileOptions().honestRatePerSecond
    @Option(help: "hostile: funded honest senders.") var honestSenders = HostileOptions().honestSenders
    @Option(help: "hostile: every node's mempool.max_transactions.") var mempoolBound = HostileOptions().mempoolBound
    @Option(help: "hostile: every node's api.thread_nice_increment (default: the node's, 10; 0 puts the API's threads at consensus's priority).")
    var apiThreadNiceIncrement: Int?
    @Option(help: "hostile: unfunded spam transfers (past the mempool bound).") var spamTransactions = HostileOptions().spamTransactions
    @Option(help: "hostile: zero-amount / zero-fee transfers.") var zeroValueTransactions = HostileOptions().zeroValueTransactions
    @Option(help: "hostile: stuck-transaction rounds (one funded key each).") var stuckRounds = HostileOptions().stuckRounds
    @Option(help: "hostile: idle connections to the flooded API.") var idleConnections = HostileOptions().idleConnections
    @Option(help: "hostile: slowloris-head and slow-body connections (each).") var slowConnections = HostileOptions().slowConnections
    @Option(help: "hostile: open-file limit of the flooded validator.") var descriptorLimit = HostileOptions().floodedNodeDescriptorLimit
    @Option(help: "hostile: threads hammering /txs/{hash} and /blocks.") var hammerThreads = HostileOptions().hammerThreads
    @Option(help: "hostile: valid transfers the hammer commits first (a big block) and then looks up.")
    var hammerBlockTransactions = HostileOptions().hammerBlockTransactions
    @Option(help: "hostile: addresses grabbing /events streams.") var eventAddresses = HostileOptions().eventAddresses
    @Option(help: "hostile: idle connections per address and peer port during the restart.") var peerFloodPerAddress = HostileOptions().peerFloodPerAddress
    @Option(help: "hostile: seconds the peer ports are flooded after the restart.") var peerFloodSeconds = HostileOptions().peerFloodSeconds
    @Option(help: "hostile: seconds tally verify may take on a crafted segment.") var verifyBoundSeconds = HostileOptions().verifyBoundSeconds

    func validate() throws {
        guard validators >= 4 else { throw ValidationError("--validators must be at least 4") }
        guard (try? Self.seconds(duration)) != nil else { throw ValidationError("--duration: seconds or 90s, 10m, 1h") }
        if faults == "hostile" {
            guard phaseSeconds >= 5, honestRate > 0, honestSenders >= 1, mempoolBound >= 1, spamTransactions >= 0, zeroValueTransactions >= 0,
                stuckRounds >= 0, idleConnections >= 0, slowConnections >= 0, descriptorLimit >= 256, hammerThreads >= 0,
                hammerBlockTransactions >= 0, eventAddresses >= 0, peerFloodPerAddress >= 0, peerFloodSeconds >= 1, verifyBoundSeconds >= 1
            else { throw ValidationError("hostile: sizes must not be negative; --phase-seconds at least 5, --descriptor-limit at least 256") }
            // Bounds that keep one run's harness within a machine's means.
            guard idleConnections <= 20_000, spamTransactions <= 1_000_000, eventAddresses <= 1_000, hammerThreads <= 64, stuckRounds <= 100,
                hammerBlockTransactions <= 10_000 else {
                throw ValidationError("hostile: at most 20000 idle connections, 1000000 spam transfers, 1000 event addresses, 64 hammer threads, 100 stuck rounds, 10000 hammer block transactions")
            }
            if let apiThreadNiceIncrement, !(0...19).contains(apiThreadNiceIncrement) {
                throw ValidationError("hostile: --api-thread-nice-increment is 0…19")
            }
            guard hammerBlockTransactions <= mempoolBound / 2 else {
                throw ValidationError("hostile: --hammer-block-transactions at most half of --mempool-bound (valid transfers may fill a mempool)")
            }
            guard (try? hostileAttacks()) != nil else { throw ValidationError("--attacks: \(Attack.allCases.map(\.rawValue).joined(separator: ", "))") }
            return
        }
        let classes = faults.split(separator: ",").map { FaultClass(rawValue: String($0)) }
        guard classes.allSatisfy({ $0 != nil }) else { throw ValidationError("--faults: process, network, byzantine, full-blocks; or hostile alone") }
        guard (try? faultKinds()) != nil else {
            throw ValidationError("--kinds: kinds of the --faults classes: \(FaultKind.of(faultClasses).map(\.rawValue).joined(separator: ", "))")
        }
        guard (2...100_000).contains(fullBlocksAccounts), (1...1_000_000).contains(fullBlocksTransactions),
              FullBlocksLoad.perAccount(transactions: fullBlocksTransactions, accounts: fullBlocksAccounts) <= 100_000 else {
            throw ValidationError("--full-blocks-accounts 2…100000, --full-blocks-transactions 1…1000000, at most 100000 per account")
        }
        if let maxBlockTransactions {
            guard (1...ConsensusParameters.default.maxBlockTransactions).contains(maxBlockTransactions) else {
                throw ValidationError("--max-block-transactions: 1…\(ConsensusParameters.default.maxBlockTransactions)")
            }
        }
        if let viewChangeBound { guard viewChangeBound > 0 else { throw ValidationError("--view-change-bound must be positive") } }
        if let basePort { guard basePort - 2 * validators >= 1024 else { throw ValidationError("--base-port: at least 1024 + 2 × validators (twins listen below it)") } }
        if let maxFaulty {
            guard (1...validators).contains(maxFaulty) else { throw ValidationError("--max-faulty: 1...\(validators)") }
            // PBFT promises nothing with more than f Byzantine validators, so such a run could fail without a bug.
            guard !classes.contains(.byzantine) || maxFaulty <= (validators - 1) / 3 else {
                throw ValidationError("--max-faulty: at most f = \((validators - 1) / 3) with --faults byzantine")
            }
        }
    }

    static func seconds(_ text: String) throws -> Double {
        let units: [(String, Double)] = [("h", 3600), ("m", 60), ("s", 1)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let value = Double(text.dropLast()), value > 0 else { throw ValidationError("bad duration") }
            return value * scale
        }
        guard let value = Double(text), value > 0 else { throw ValidationError("bad duration") }
        return value
    }

    var faultClasses: Set<FaultClass> { Set(faults.split(separator: ",").compactMap { FaultClass(rawValue: String($0)) }) }

    /// The kinds the schedule draws from: every kind of the classes, or `--kinds` of them.
    func faultKinds() throws -> [FaultKind] {
        let all = FaultKind.of(faultClasses)
        guard let kinds else { return all }
        let chosen = try kinds.split(separator: ",").map { name in
            guard let kind = FaultKind(rawValue: String(name)), all.contains(kind) else { throw ValidationError("--kinds") }
            return kind
        }
        guard !chosen.isEmpty else { throw ValidationError("--kinds") }
        return all.filter(chosen.contains)
    }

    func hostileAttacks() throws -> Set<Attack> {
        guard let attacks else { return Set(Attack.allCases) }
        let parsed = attacks.split(separator: ",").map { Attack(rawValue: String($0)) }
        guard parsed.allSatisfy({ $0 != nil }) else { throw ValidationError("--attacks") }
        return Set(parsed.compactMap { $0 })
    }

    var hostileOptions: HostileOptions {
        var options = HostileOptions()
        options.phaseSeconds = phaseSeconds
        options.honestRatePerSecond = honestRate
        options.honestSenders = honestSenders
        options.mempoolBound = mempoolBound
        options.apiThreadNiceIncrement = apiThreadNiceIncrement
        options.spamTransactions = spamTransactions
        options.zeroValueTransactions = zeroValueTransactions
        options.stuckRounds = stuckRounds
        options.idleConnections = idleConnections
        options.slowConnections = slowConnections
        options.floodedNodeDescriptorLimit = descriptorLimit
        options.hammerThreads = hammerThreads
        options.hammerBlockTransactions = hammerBlockTransactions
        options.eventAddresses = eventAddresses
        options.peerFloodPerAddress = peerFloodPerAddress
        options.peerFloodSeconds = peerFloodSeconds
        options.verifyBoundSeconds = verifyBoundSeconds
        options.attacks = (try? hostileAttacks()) ?? Set(Attack.allCases)
        return options
    }

    /// `--faults hostile`: its own testnet (funded honest and attacker accounts), then `HostileRun`.
    func runHostile() async throws {
        let options = hostileOptions
        let directory = URL(fileURLWithPath: output ?? (NSTemporaryDirectory() + "tally-hostile-\(getpid())"))
        if output == nil { try? FileManager.default.removeItem(at: directory) }
        let binaries = Bundle.main.executableURL!.resolvingSymlinksInPath().deletingLastPathComponent()
        let cluster = try Testbed(
            directory: directory, validators: validators, basePort: basePort ?? Testbed.randomBasePort(validators: validators), binaries: binaries,
            chainID: "tally-hostile", fundedDevnetAccounts: HostileRun.fundedAccounts(options))
        print("tally-chaos: --faults hostile: \(validators) validators in \(directory.path), API ports \(cluster.basePort)…")
        installStopHandler(cluster)
        let run = HostileRun(cluster: cluster, options: options, recoverySeconds: recoverySeconds)
        let passed = try await run.execute()
        if passed && !keep && output == nil { try? FileManager.default.removeItem(at: directory) }
        if !passed { print("tally-chaos: kept \(directory.path) (logs node*.log)") }
        if !passed { throw ExitCode(1) }
    }

    func run() async throws {
        if faults == "hostile" { return try await runHostile() }
        let seed = seed ?? UInt64.random(in: 0...UInt64.max)
        let durationSeconds = try Self.seconds(duration)
        let classes = faultClasses
        var lab: NetworkLab?
        if classes.contains(.network) {
            if let reason = NetworkLab.unavailableReason() {
                FileHandle.standardError.write(Data("tally-chaos: --faults network: \(reason)\n".utf8))
                throw ExitCode(2)
            }
            do { lab = try NetworkLab(validators: validators, seed: seed) } catch {
                FileHandle.standardError.write(Data("tally-chaos: --faults network: cannot build the network lab: \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        defer { lab?.stop() }
        let directory = URL(fileURLWithPath: output ?? (NSTemporaryDirectory() + "tally-chaos-\(seed)"))
        if output == nil { try? FileManager.default.removeItem(at: directory) }
        let binaries = Bundle.main.executableURL!.resolvingSymlinksInPath().deletingLastPathComponent()
        let kinds = try faultKinds()
        let fullBlocks = kinds.contains(.killPrimaryFullBlocks)
        // Devnet account 0 sends the restored-data probe; 1… the full-blocks load.
        let cluster = try Testbed(
            directory: directory, validators: validators, basePort: basePort ?? Testbed.randomBasePort(validators: validators), binaries: binaries,
            chainID: "tally-chaos", fundedDevnetAccounts: FullBlocksLoad.firstAccount + (fullBlocks ? fullBlocksAccounts : 0),
            maxBlockTransactions: maxBlockTransactions, lab: lab)
        if fullBlocks { try widenNonceWindow(cluster) }
        let maxFaulty = maxFaulty ?? cluster.faultTolerance
        let schedule = FaultSchedule(
            seed: seed, validators: validators, maxFaulty: maxFaulty, durationSeconds: durationSeconds, kinds: kinds)
        let classList = FaultClass.allCases.filter(classes.contains).map(\.rawValue).joined(separator: ",")
        let kindList = self.kinds == nil ? "" : " --kinds " + kinds.map(\.rawValue).joined(separator: ",")
        let blockSize = maxBlockTransactions.map { " --max-block-transactions \($0)" } ?? ""
        print("tally-chaos: seed \(seed) (replay: --seed \(seed) --validators \(validators) --duration \(duration) --max-faulty \(maxFaulty) --faults \(classList)\(kindList)\(blockSize))")
        let placement = lab.map { "network namespaces \(NetworkLab.namespacePrefix)\(getpid())-v*, 10.77.\($0.subnet).2…" } ?? "127.0.0.1"
        print("tally-chaos: \(validators) validators (f = \(cluster.faultTolerance)) in \(directory.path) on \(placement), API ports \(cluster.basePort)…")
        print("tally-chaos: schedule of \(schedule.episodes.count) episodes:")
        for episode in schedule.episodes { print("  " + episode.description) }
        installStopHandler(cluster)

        var run = ChaosRun(cluster: cluster, schedule: schedule, seed: seed, durationSeconds: durationSeconds, recoverySeconds: recoverySeconds)
        run.slowPrimaryBounds = SlowPrimaryBounds(parameters: cluster.genesis.consensus)
        run.viewChangeBoundSeconds = viewChangeBound ?? ChaosRun.defaultViewChangeBoundSeconds(cluster.genesis.consensus)
        if fullBlocks {
            run.fullBlocks = FullBlocksLoad(cluster: cluster, accounts: fullBlocksAccounts, transactionsPerEpisode: fullBlocksTransactions)
            print("tally-chaos: full blocks: \(fullBlocksTransactions) transfers from \(fullBlocksAccounts) accounts an episode "
                + "(blocks of \(cluster.genesis.consensus.maxBlockTransactions)); view-change bound \(Int(run.viewChangeBoundSeconds)) s")
        }
        let passed = try await run.execute()
        if passed && !keep && output == nil { try? FileManager.default.removeItem(at: directory) }
        if !passed { print("tally-chaos: kept \(directory.path) (logs node*.log)") }
        if !passed { throw ExitCode(1) }
    }

    /// The full-blocks load sends each account's share of an episode's transfers at once
    /// (posted out of nonce order across backups), so every node's mempool takes that
    /// many nonces ahead per sender, as `tally-bench` does for its saturation load.
    private func widenNonceWindow(_ cluster: Testbed) throws {
        let perAccount = FullBlocksLoad.perAccount(transactions: fullBlocksTransactions, accounts: fullBlocksAccounts)
        for index in 0..<validators {
            let home = NodeHome(path: cluster.home(index))
            var config = try home.loadConfig()
            config.mempool.maxNonceGap = max(config.mempool.maxNonceGap, UInt64(perAccount))
            config.mempool.maxPerSender = max(config.mempool.maxPerSender, perAccount + 1)
            try home.writeConfig(config)
        }
    }

    /// Ctrl-C or SIGTERM: kill every validator we started, then exit.
    private func installStopHandler(_ cluster: Testbed) {
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                print("tally-chaos: interrupted; stopping validators")
                cluster.killAll()
                Foundation.exit(130)
            }
            source.resume()
            Self.signalSources.append(source)
        }
    }
    nonisolated(unsafe) static var signalSources: [DispatchSourceSignal] = []
}

/// Unbuffered, so progress lines appear as they happen even into a pipe or a file
/// (Swift's `print` is block-buffered there and loses them on a kill).
func print(_ line: String = "") {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
