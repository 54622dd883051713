import ArgumentParser
import Foundation
import TallyConsensus
import TallySimulation

/// Long seeded sweeps of the deterministic cluster simulator.
@main
struct TallySim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-sim",
        abstract: "Run the deterministic PBFT cluster simulator over a range of seeds.",
        discussion: """
            Every run checks agreement, commit certificates, monotonic heights and views, that no honest \
            validator signs conflicting votes, that no transaction commits twice, that nothing from a \
            never-funded sender or behind a nonce gap commits, and liveness after the faults heal: by height, \
            by a transfer submitted at healing, and by transactions (every client transaction commits on every \
            honest validator within a bound of ticks). Clients, hostile ones too, submit through each replica's \
            own mempool (the node's application). Exits 0 when every run held every invariant; otherwise stops at the first failure \
            and prints its seed, its fault schedule and the command that replays it.
            """)

    @Option(help: "Seeds to run, as FIRST-LAST (inclusive) or a single number.")
    var seeds: String = "1-1000"

    @Option(help: "Validator counts (n = 3f+1), comma separated; seed s uses entry s mod count.")
    var replicas: String = "4"

    @Option(help: "Fault mix: none, network, crash, byzantine or all.")
    var faults: String = "all"

    @Option(help: "Worker threads.")
    var jobs: Int = ProcessInfo.processInfo.activeProcessorCount

    @Flag(help: "Print one line per run, with a fingerprint of everything it produced (two runs of a seed, in any process, print the same).")
    var verbose = false

    @Option(help: "Give every run at least one Byzantine replica of this mode (\(ByzantineMode.allCases.map(\.rawValue).joined(separator: ", "))).")
    var byzantine: String?

    @Option(help: "Switch off defences (comma separated) to see the invariants go red: signatures, equivocation, stale-views, view-change-certificates, new-view-recompute, view-change-timer, join-needs-f-plus-one, invalid-new-view, censorship-timer, slow-primary, quiet-chain-catch-up, quorum, chain-id, mempool-recheck, mempool-proposable.")
    var disableDefence: String?

    @Flag(help: "No empty blocks on an idle chain (a node's default): primaries propose only when transactions wait.")
    var noEmptyBlocks = false

    @Flag(help: "Full-size blocks: the node's block size and checkpoint interval (ConsensusParameters defaults) and a client load that fills every block; slow (use a few hundred seeds).")
    var fullBlocks = false

    @Flag(inversion: .prefixedNo, help: "Start-up safety as a node runs it (the default): a signing mark kept outside each journal, and the start-up quarantine after every restart.")
    var startupSafety = true

    @Option(help: "Clients (honest and hostile) submit nothing from this tick on; the height target after healing is the probe transfer's block. With --no-empty-blocks the chain goes quiet: a validator that restarts behind must catch up without traffic.")
    var quietAfter: Int?

    @Option(help: "Fail a run whose transactions submitted after healing take longer than this many ticks on average to commit everywhere (off by default; the slow-primary defence test uses it).")
    var meanLatencyBound: Int?

    @Option(help: "Ticks after healing whose transactions must all commit before a run may end.")
    var watchTicks: Int = SimulationOptions().transactionWatchTicks

    @Option(help: "When to run each replica's internal invariants: every-step or every-tick.")
    var invariants: String = "every-tick"

    @Option(help: "Print every replica's state every N ticks (use with a single seed).")
    var trace: Int?

    @Flag(help: "After the runs, print per validator count the messages and bytes the validators sent per committed block (total and per validator) and per committed transaction, split by message kind (issue 16: PBFT's all-to-all cost).")
    var traffic = false

    @Flag(help: "Print the summary (and with --traffic the traffic table) as one JSON document instead of text.")
    var json = false

    func validate() throws {
        guard parseSeeds() != nil else { throw ValidationError("--seeds must be FIRST-LAST or a number") }
        guard let counts = parseReplicas(), counts.allSatisfy({ $0 >= 4 && ($0 - 1) % 3 == 0 && $0 <= 64 }) else {
            throw ValidationError("--replicas must list values 3f+1 between 4 and 64, e.g. 4 or 4,7")
        }
        guard FaultMix(rawValue: faults) != nil else { throw ValidationError("--faults must be none, network, crash, byzantine or all") }
        if let byzantine { guard ByzantineMode(rawValue: byzantine) != nil else { throw ValidationError("unknown --byzantine mode") } }
        if let disableDefence {
            var probe = SimulationOptions()
            for name in disableDefence.split(separator: ",") {
                guard probe.disableDefence(String(name)) else { throw ValidationError("unknown --disable-defence \(name)") }
            }
        }
        guard InvariantChecking(rawValue: invariants) != nil else { throw ValidationError("--invariants must be every-step or every-tick") }
        guard jobs >= 1 && jobs <= 64 else { throw ValidationError("--jobs must be 1...64") }
        if let quietAfter { guard quietAfter >= 0 else { throw ValidationError("--quiet-after must be a tick, 0 or more") } }
        guard (0...10_000).contains(watchTicks) else { throw ValidationError("--watch-ticks must be 0...10000") }
        if let meanLatencyBound { guard meanLatencyBound >= 1 else { throw ValidationError("--mean-latency-bound must be positive") } }
    }

    func parseSeeds() -> ClosedRange<UInt64>? {
        let parts = seeds.split(separator: "-").map { UInt64($0) }
        if parts.count == 1, let only = parts[0] { return only...only }
        if parts.count == 2, let first = parts[0], let last = parts[1], first <= last { return first...last }
        return nil
    }

    func parseReplicas() -> [Int]? {
        let values = replicas.split(separator: ",").map { Int($0) }
        guard !values.isEmpty, values.allSatisfy({ $0 != nil }) else { return nil }
        return values.map { $0! }
    }

    func run() throws {
        let range = parseSeeds()!
        let counts = parseReplicas()!
        let mix = FaultMix(rawValue: faults)!
        let sweep = Sweep(range: range, counts: counts, mix: mix, verbose: verbose, trace: trace,
                          invariants: InvariantChecking(rawValue: invariants)!,
                          byzantine: byzantine.flatMap(ByzantineMode.init(rawValue:)), disableDefence: disableDefence,
                          meanLatencyBound: meanLatencyBound, watchTicks: watchTicks, noEmptyBlocks: noEmptyBlocks,
                          quietAfter: quietAfter, fullBlocks: fullBlocks, startupSafety: startupSafety)
        let started = Date()
        sweep.json = json
        Sweep.workers(jobs) { sweep.work() }
        sweep.finishProgress()
        let elapsed = Date().timeIntervalSince(started)
        if json {
            print(sweep.summaryJSON(elapsed: elapsed, traffic: traffic, replay: sweep.failure.map(replayCommand)))
            if sweep.failure != nil { throw ExitCode(1) }
            return
        }
        print(sweep.summary(elapsed: elapsed))
        if traffic { print("\n" + sweep.trafficTable()) }
        if let failure = sweep.failure {
            print("")
            print("FAILED seed \(failure.seed) (n = \(failure.validatorCount), faults \(failure.mix.rawValue)): \(failure.failure!)")
            print("fault schedule:\n\(failure.plan)")
            print("replay: \(replayCommand(failure))")
            throw ExitCode(1)
        }
    }

    func replayCommand(_ failure: SimulationResult) -> String {
        var replay = "tally-sim --seeds \(failure.seed) --replicas \(failure.validatorCount) --faults \(failure.mix.rawValue)"
        if let byzantine { replay += " --byzantine \(byzantine)" }
        if let disableDefence { replay += " --disable-defence \(disableDefence)" }
        if let meanLatencyBound { replay += " --mean-latency-bound \(meanLatencyBound)" }
        if watchTicks != SimulationOptions().transactionWatchTicks { replay += " --watch-ticks \(watchTicks)" }
        if noEmptyBlocks { replay += " --no-empty-blocks" }
        if let quietAfter { replay += " --quiet-after \(quietAfter)" }
        if fullBlocks { replay += " --full-blocks" }
        if !startupSafety { replay += " --no-startup-safety" }
        return replay
    }
}

/// Shared state of a sweep across worker threads.
final class Sweep: @unchecked Sendable {
    let range: ClosedRange<UInt64>
    let counts: [Int]
    let mix: FaultMix
    let verbose: Bool
    let trace: Int?
    let invariants: InvariantChecking
    let forcedMode: ByzantineMode?
    let disableDefence: String?
    let meanLatencyBound: Int?
    let watchTicks: Int
    let noEmptyBlocks: Bool
    let quietAfter: Int?
    let fullBlocks: Bool
    let startupSafety: Bool
    let lock = NSLock()
    var next: UInt64
    var runs = 0
    var blocks: UInt64 = 0
    var viewChanges = 0
    var transactions = 0
    var faults: [String: Int] = [:]
    var dropped: [DropReason: Int] = [:]
    var suspicions: [BackupSuspicion: Int] = [:]
    var evictions: [String: Int] = [:]
    var transport: [TransportEvent: Int] = [:]
    var viewChangeSizes = ViewChangeSizes()
    var byzantine: [String: Int] = [:]
    var runsByCount: [Int: Int] = [:]
    /// Per validator count: what the runs committed and what their validators sent.
    var byCount: [Int: CountTotals] = [:]
    var failure: SimulationResult?
    var lastProgress = Date.distantPast
    let interactive = isatty(1) == 1
    /// Standard output holds one JSON document: per-run and progress lines go to standard error.
    var json = false

    init(range: ClosedRange<UInt64>, counts: [Int], mix: FaultMix, verbose: Bool, trace: Int?, invariants: InvariantChecking,
         byzantine: ByzantineMode?, disableDefence: String?, meanLatencyBound: Int?, watchTicks: Int, noEmptyBlocks: Bool,
         quietAfter: Int?, fullBlocks: Bool, startupSafety: Bool) {
        forcedMode = byzantine
        self.startupSafety = startupSafety
        self.fullBlocks = fullBlocks
        self.quietAfter = quietAfter
        self.meanLatencyBound = meanLatencyBound
        self.watchTicks = watchTicks
        self.noEmptyBlocks = noEmptyBlocks
        self.disableDefence = disableDefence
        self.trace = trace
        self.invariants = invariants
        self.range = range
        self.counts = counts
        self.mix = mix
        self.verbose = verbose
        next = range.lowerBound
    }

    var total: Int { Int(range.upperBound - range.lowerBound) + 1 }

    static func workers(_ count: Int, _ body: @escaping @Sendable () -> Void) {
        let group = DispatchGroup()
        for _ in 0..<count {
            group.enter()
            Thread.detachNewThread {
                body()
                group.leave()
            }
        }
        group.wait()
    }

    func claim() -> UInt64? {
        lock.lock()
        defer { lock.unlock() }
        guard failure == nil, next <= range.upperBound else { return nil }
        defer { next += 1 }
        return next
    }

    func work() {
        while let seed = claim() {
            let count = counts[Int(seed % UInt64(counts.count))]
            var options = SimulationOptions(validatorCount: count, mix: mix)
            options.traceEveryTicks = trace
            options.checkReplicaInvariants = invariants
            if let forcedMode {
                options.byzantineModes = [forcedMode]
                options.forceByzantine = true
            }
            for name in disableDefence?.split(separator: ",") ?? [] { _ = options.disableDefence(String(name)) }
            if noEmptyBlocks { options.emptyBlockIntervalTicks = nil }
            options.fullBlocks = fullBlocks
            options.startupSafety = startupSafety
            if let quietAfter {
                options.quietAfterTick = quietAfter
                options.heightsAfterHeal = 1
            }
            options.maxMeanTransactionLatencyTicks = meanLatencyBound
            options.transactionWatchTicks = watchTicks
            let result = Simulation(seed: seed, options: options).run()
            record(result)
        }
    }

    func record(_ result: SimulationResult) {
        lock.lock()
        defer { lock.unlock() }
        runs += 1
        runsByCount[result.validatorCount, default: 0] += 1
        byCount[result.validatorCount, default: CountTotals()].add(result)
        blocks += result.blocksCommitted
        viewChanges += result.viewChanges
        transactions += result.transactionsCommitted
        faults.merge(result.faults, uniquingKeysWith: +)
        dropped.merge(result.dropped, uniquingKeysWith: +)
        suspicions.merge(result.suspicions, uniquingKeysWith: +)
        for (reason, count) in result.evictions { evictions[reason.rawValue, default: 0] += count }
        transport.merge(result.transport, uniquingKeysWith: +)
        viewChangeSizes.merge(result.viewChangeSizes)
        for mode in result.plan.byzantine.values { byzantine[mode.rawValue, default: 0] += 1 }
        if result.failure != nil && failure == nil { failure = result }
        if verbose {
            printLine("seed \(result.seed) n=\(result.validatorCount) height \(result.blocksCommitted) ticks \(result.ticks) fingerprint \(result.fingerprint.hex.prefix(16)) \(result.failure ?? "ok")")
        }
        let now = Date()
        if now.timeIntervalSince(lastProgress) >= (interactive ? 0.25 : 30) || runs == total {
            lastProgress = now
            let line = "\(runs)/\(total) runs, \(blocks) blocks, \(viewChanges) view changes"
            if interactive {
                FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
            } else {
                printLine(line)
            }
        }
    }

    func printLine(_ line: String) {
        if json {
            FileHandle.standardError.write(Data((line + "\n").utf8))
        } else {
            print(line)
            fflush(nil)
        }
    }

    func finishProgress() {
        if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    func summary(elapsed: TimeInterval) -> String {
        var lines: [String] = []
        let counts = runsByCount.sorted { $0.key < $1.key }.map { "n=\($0.key): \($0.value)" }.joined(separator: ", ")
        lines.append("runs: \(runs) (\(counts)), faults \(mix.rawValue), \(String(format: "%.1f", elapsed)) s")
        lines.append("blocks committed: \(blocks) (highest honest height per run, summed); transactions: \(transactions)")
        lines.append("view changes: \(viewChanges); started by honest backups suspecting the primary: "
            + BackupSuspicion.allCases.map { "\($0.rawValue) \(suspicions[$0, default: 0])" }.joined(separator: ", "))
        lines.append("faults injected: " + faults.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        lines.append("byzantine replicas by mode: " + byzantine.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        lines.append("inputs dropped by honest replicas: " + dropped.sorted { $0.key < $1.key }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", "))
        lines.append("transport (the node's frame and queue bounds): "
            + TransportEvent.allCases.map { "\($0.rawValue) \(transport[$0, default: 0])" }.joined(separator: ", "))
        let sizes = viewChangeSizes
        lines.append("largest VIEW-CHANGE \(sizes.viewChangeBytes) bytes (\(sizes.viewChangeWholeBlockBytes) with whole blocks), "
            + "NEW-VIEW \(sizes.newViewBytes) bytes (\(sizes.newViewWholeBlockBytes) with whole blocks); frame bound \(Simulation.maxMessageBytes)")
        lines.append("mempool evictions by honest replicas: " + evictions.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        lines.append(failure == nil ? "result: every run held every invariant" : "result: FAILED")
        return lines.joined(separator: "\n")
    }
}
