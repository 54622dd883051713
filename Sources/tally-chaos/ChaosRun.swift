import Foundation
import TallyCrypto
import TallyLedger
import TallyTestbed
import TallyTypes

/// Counts of what a run did, for the summary.
final class RunStatistics: @unchecked Sendable {
    private let lock = NSLock()
    private var faultsByKind: [FaultKind: Int] = [:]
    private var maxView: UInt64 = 0
    private var byzantineNotRunning: [String] = []
    func record(_ kind: FaultKind) { lock.withLock { faultsByKind[kind, default: 0] += 1 } }
    func recordByzantineNotRunning(_ what: String) { lock.withLock { byzantineNotRunning.append(what) } }
    var byzantineFailures: [String] { lock.withLock { byzantineNotRunning } }
    private var startsBefore: [Int: Int] = [:]
    func setByzantineStartsBefore(_ node: Int, _ count: Int) { lock.withLock { startsBefore[node] = count } }
    func byzantineStartsBefore(_ node: Int) -> Int { lock.withLock { startsBefore[node] ?? 0 } }
    func observe(view: UInt64) { lock.withLock { maxView = max(maxView, view) } }
    private var byzantine: Set<Int> = []
    func recordByzantine(_ node: Int) { _ = lock.withLock { byzantine.insert(node) } }
    /// Validators that ran a Byzantine misbehaviour at some point.
    var byzantineNodes: Set<Int> { lock.withLock { byzantine } }
    var faults: [FaultKind: Int] { lock.withLock { faultsByKind } }
    var highestView: UInt64 { lock.withLock { maxView } }
    private var twinned: Set<Int> = []
    /// A validator whose key a twin held: evidence against it is the twin's doing.
    func recordTwinned(_ node: Int) { _ = lock.withLock { twinned.insert(node) } }
    var twinnedNodes: Set<Int> { lock.withLock { twinned } }
    private var findings: [FaultKind: [(passed: Bool, detail: String)]] = [:]
    /// One episode's own check (slow-primary, twin, kill-primary-full-blocks, restored-data).
    func recordFinding(_ kind: FaultKind, passed: Bool, _ detail: String) {
        lock.withLock { findings[kind, default: []].append((passed, detail)) }
    }
    var episodeFindings: [FaultKind: [(passed: Bool, detail: String)]] { lock.withLock { findings } }
    private var slow: [SlowPrimaryEpisode] = []
    func recordSlowPrimary(_ episode: SlowPrimaryEpisode) { lock.withLock { slow.append(episode) } }
    var slowPrimaryEpisodes: [SlowPrimaryEpisode] { lock.withLock { slow } }
}

/// What a slow-primary episode saw; its latency check waits for the end of the run.
struct SlowPrimaryEpisode {
    let node: Int
    let start: Date
    let end: Date
    let viewAtStart: UInt64
    /// Seconds from the start until a healthy validator named another primary.
    let replacedAfterSeconds: Double?
}

/// Work an episode's faults leave for its end (stop a load, a pause loop, a twin).
final class EpisodeEnd: @unchecked Sendable {
    private let lock = NSLock()
    private var actions: [@Sendable () async -> Void] = []
    func add(_ action: @escaping @Sendable () async -> Void) { lock.withLock { actions.append(action) } }
    func run() async {
        for action in lock.withLock({ actions }) { await action() }
        lock.withLock { actions = [] }
    }
}

/// One run: start, load + faults, heal, recover, stop, check.
struct ChaosRun {
    static let statusPollSeconds = 1.0
    /// How long past its episode a Byzantine start may take to show in the node's log.
    static let byzantineStartGraceMilliseconds = 10_000

    let cluster: Testbed
    let schedule: FaultSchedule
    let seed: UInt64
    let durationSeconds: Double
    let recoverySeconds: Double
    /// The kill-primary-full-blocks load (nil when that class is off).
    var fullBlocks: FullBlocksLoad?
    /// How soon after the primary's kill -9 under full blocks commits must resume.
    var viewChangeBoundSeconds = ChaosRun.defaultViewChangeBoundSeconds(.default)
    var slowPrimaryBounds = SlowPrimaryBounds.default
    let statistics = RunStatistics()

    /// The view-change bound: the first three view-change timeouts (T + 2T + 4T: the
    /// change to the next primary may have to be repeated twice on a busy machine) plus
    /// 3T for the new primary to fetch the re-proposed blocks by hash and commit a full
    /// block. Default genesis (T = 2 s): 20 s.
    static func defaultViewChangeBoundSeconds(_ parameters: ConsensusParameters) -> Double {
        10 * Double(parameters.viewChangeTimeoutTicks * parameters.tickMs) / 1000
    }

    func execute() async throws -> Bool {
        defer { cluster.killAll() }
        try cluster.startAll()
        try await waitForAllUp()
        let load = LoadGenerator(cluster: cluster, seed: seed)
        let started = Date()
        let stopFlag = StopFlag()
        let loadTask = Task { await load.run(shouldStop: { stopFlag.isSet }) }
        let monitorTask = Task { await monitor(stopFlag) }

        try await injectFaults(started: started)
        let faultsEnded = Date()
        print("tally-chaos: faults ended at t=\(Int(faultsEnded.timeIntervalSince(started)))s; recovering")
        stopFlag.set()
        await loadTask.value

        var results: [CheckResult] = []
        let byzantineFailures = statistics.byzantineFailures
        let byzantineEpisodes = statistics.faults.filter { $0.key.faultClass == .byzantine }.values.reduce(0, +)
        results.append(CheckResult(
            name: "every Byzantine episode ran tally-byzantine (its start logged)", passed: byzantineFailures.isEmpty,
            detail: byzantineFailures.isEmpty ? "\(byzantineEpisodes) episodes" : "not running: " + byzantineFailures.joined(separator: "; ")))
        results.append(await drain(load, since: faultsEnded))
        if fullBlocks != nil { results.append(await fullBlocksDrained(since: faultsEnded)) }
        results += episodeChecks(load)
        let (convergence, height) = await converge(since: faultsEnded)
        results.append(convergence)
        for node in 0..<cluster.validators { if let status = await cluster.status(node) { statistics.observe(view: status.view) } }
        let liveBalances = await liveSupply(load, height: height)
        results.append(liveBalances.result)
        await monitorTask.value
        results.append(await evidenceAgainstHonest())

        for node in 0..<cluster.validators { cluster.terminate(node) }
        var chains: [Int: [CertifiedBlock]] = [:]
        var readFailures: [String] = []
        for node in 0..<cluster.validators {
            do { chains[node] = try ChainChecks.readChain(dataDirectory: cluster.dataDirectory(node)) } catch {
                readFailures.append("node\(node): \(error)")
            }
        }
        if !readFailures.isEmpty {
            results.append(CheckResult(name: "read every data directory", passed: false, detail: readFailures.joined(separator: "; ")))
        }
        results.append(ChainChecks.agreement(chains))
        results.append(ChainChecks.verify(cluster: cluster))
        let longest = chains.values.max { $0.count < $1.count } ?? []
        let replay = ChainChecks.replay(chain: longest, genesis: cluster.genesis, acknowledged: load.acknowledged)
        results += replay.results
        if let ledger = replay.ledger { results.append(liveBalances.matches(ledger)) }

        printSummary(load: load, results: results, started: started)
        return results.allSatisfy(\.passed)
    }

    private func waitForAllUp() async throws { try await cluster.waitUntilUp(seconds: 120) }

    func elapsed(_ started: Date) -> String { String(format: "t=%.1fs", Date().timeIntervalSince(started)) }

    private func injectFaults(started: Date) async throws {
        for episode in schedule.episodes {
            try await sleep(until: started.addingTimeInterval(episode.startSeconds))
            var faults: [FaultEpisode.Fault] = []
            let end = EpisodeEnd()
            let episodeEnd = started.addingTimeInterval(episode.startSeconds + episode.durationSeconds)
            for fault in episode.faults {
                guard var resolved = await resolve(fault, started: started) else { continue }
                if fault.kind.actsAsPrimary { resolved = await retargetToPrimary(resolved, episode: episode) }
                faults.append(resolved)
                cluster.setFaulty(resolved.node!, true)
                if fault.kind != .split || faults.count == 1 { statistics.record(fault.kind) }
                switch fault.kind {
                case .slowPrimary:
                    await startSlowPrimary(resolved.node!, started: started, end: end)
                case .twin:
                    try await startTwin(resolved.node!, started: started, until: episodeEnd, end: end)
                case .killPrimaryFullBlocks:
                    // The primary may have changed while the load filled the blocks.
                    let killed = await killPrimaryUnderFullBlocks(resolved.node!, started: started, end: end)
                    faults[faults.count - 1] = FaultEpisode.Fault(
                        node: killed, kind: fault.kind, tornBytes: 0, peer: killed, link: fault.link)
                case .kill:
                    cluster.kill(resolved.node!)
                    print("\(elapsed(started)) kill -9 node\(resolved.node!)")
                case .freeze:
                    cluster.signal(resolved.node!, SIGSTOP)
                    print("\(elapsed(started)) SIGSTOP node\(resolved.node!)")
                case .tear:
                    cluster.kill(resolved.node!)
                    let what = try cluster.tearNewestSegment(resolved.node!, bytes: fault.tornBytes)
                    print("\(elapsed(started)) kill -9 node\(resolved.node!), tore \(what)")
                case .restoredData:
                    let node = resolved.node!
                    let copy = try await copyDataAfterCheckpoint(node, until: episodeEnd)
                    print("\(elapsed(started)) copied node\(node)'s data directory at height \(copy.height) (it runs on)")
                    // The restore comes at the episode's end or just before the next checkpoint.
                    let restore = Task { [self] in
                        await waitBeforeCheckpoint(after: copy.height, until: episodeEnd)
                        do { try await restoreWhilePeersPause(node, probeNonce: copy.probeNonce, started: started) } catch {
                            print("\(elapsed(started)) restoring node\(node) failed: \(error)")
                        }
                    }
                    end.add { await restore.value }
                case _ where fault.kind.faultClass == .byzantine:
                    statistics.setByzantineStartsBefore(resolved.node!, Self.byzantineStarts(in: cluster.log(resolved.node!), fault.kind))
                    statistics.recordByzantine(resolved.node!)
                    try relaunch(resolved.node!, as: fault.kind)
                    let retargeted = resolved.node == fault.node ? "" : " (the primary, instead of node\(fault.node!))"
                    print("\(elapsed(started)) node\(resolved.node!)\(retargeted) restarted as tally-byzantine --misbehaviour \(fault.kind.rawValue)")
                default:
                    break
                }
            }
            let network = faults.filter { $0.kind.faultClass == .network }
            if !network.isEmpty, let lab = cluster.lab {
                Self.apply(network, to: lab)
                print("\(elapsed(started)) network: " + (episode.faults.first?.kind == .split ? episode.description : network.map(\.description).joined(separator: " ")))
            }
            try await sleep(until: episodeEnd)
            await end.run()
            if !network.isEmpty, let lab = cluster.lab {
                lab.healAll()
                print("\(elapsed(started)) network healed")
            }
            for fault in faults {
                switch fault.kind {
                case .kill, .tear, .killPrimaryFullBlocks:
                    try cluster.start(fault.node!)
                    print("\(elapsed(started)) restart node\(fault.node!)")
                case .freeze:
                    cluster.signal(fault.node!, SIGCONT)
                    print("\(elapsed(started)) SIGCONT node\(fault.node!)")
                case _ where fault.kind.faultClass == .byzantine:
                    // tally-byzantine logs its misbehaviour when it starts; without that line the
                    // episode was a plain kill and the run would test less than it says.
                    // A slow start on a busy machine gets a few more seconds.
                    var waited = 0
                    while Self.byzantineStarts(in: cluster.log(fault.node!), fault.kind) <= statistics.byzantineStartsBefore(fault.node!),
                        waited < Self.byzantineStartGraceMilliseconds {
                        try await Task.sleep(for: .milliseconds(250))
                        waited += 250
                    }
                    if Self.byzantineStarts(in: cluster.log(fault.node!), fault.kind) <= statistics.byzantineStartsBefore(fault.node!) {
                        statistics.recordByzantineNotRunning("node\(fault.node!) \(fault.kind.rawValue) at \(elapsed(started))")
                    }
                    try relaunch(fault.node!, as: nil)
                    print("\(elapsed(started)) node\(fault.node!) restarted as an honest tally-node")
                default:
                    break
                }
                cluster.setFaulty(fault.node!, false)
            }
        }
        try await sleep(until: started.addingTimeInterval(durationSeconds))
        if let lab = cluster.lab { print("tally-chaos: packet switch: \(lab.statistics)") }
    }

    /// `equivocate` and `forged-view-change` do their worst as the primary: their node
    /// becomes whoever a healthy node says is primary now, unless that node has another
    /// fault in this episode (then the drawn node stays).
    private func retargetToPrimary(_ fault: FaultEpisode.Fault, episode: FaultEpisode) async -> FaultEpisode.Fault {
        let others = Set(episode.faults.compactMap(\.node)).subtracting([fault.node!])
        for node in cluster.healthyNodes {
            guard let primary = await cluster.primary(node) else { continue }
            guard !others.contains(primary), (0..<cluster.validators).contains(primary) else { return fault }
            return FaultEpisode.Fault(node: primary, kind: fault.kind, tornBytes: fault.tornBytes, peer: fault.peer, link: fault.link)
        }
        return fault
    }

    private func dataCopy(_ node: Int) -> String { cluster.dataDirectory(node) + ".restore" }

    /// Copies a frozen node's data directory (consistent: nothing is written meanwhile).
    func copyData(_ node: Int) throws {
        let files = FileManager.default
        if files.fileExists(atPath: dataCopy(node)) { try files.removeItem(atPath: dataCopy(node)) }
        cluster.signal(node, SIGSTOP)
        defer { cluster.signal(node, SIGCONT) }
        try files.copyItem(atPath: cluster.dataDirectory(node), toPath: dataCopy(node))
    }

    /// Puts the copy back over the (stopped) node's data directory; HOME/signing-mark stays.
    func restoreData(_ node: Int) throws {
        let files = FileManager.default
        try files.removeItem(atPath: cluster.dataDirectory(node))
        try files.moveItem(atPath: dataCopy(node), toPath: cluster.dataDirectory(node))
    }

    /// Equivocation evidence the running validators hold against validators that never
    /// ran a Byzantine misbehaviour nor had a twin: an honest validator (restored from
    /// older data, say) signed two conflicting statements.
    private func evidenceAgainstHonest() async -> CheckResult {
        let byzantine = statistics.byzantineNodes.union(statistics.twinnedNodes)
        var against: [String] = []
        var total = 0
        for node in 0..<cluster.validators {
            guard let (status, body) = try? await cluster.request(node, "evidence"), status == 200,
                  let list = try? JSONSerialization.jsonObject(with: body) as? [[String: Any]]
            else { continue }
            total += list.count
            for item in list {
                guard let validator = item["validator"] as? Int, !byzantine.contains(validator) else { continue }
                against.append("node\(node) holds \(item["kind"] ?? "?") evidence against node\(validator) at view \(item["view"] ?? "?") height \(item["height"] ?? "?")")
            }
        }
        return CheckResult(
            name: "no equivocation evidence against a validator that was never Byzantine", passed: against.isEmpty,
            detail: against.isEmpty ? "\(total) pieces of evidence, all against Byzantine or twinned validators" : against.joined(separator: "; "))
    }

    /// How many times a node's log says tally-byzantine started with this misbehaviour.
    static func byzantineStarts(in log: String, _ kind: FaultKind) -> Int {
        log.components(separatedBy: "misbehaviour=\(kind.rawValue) [tally_byzantine] TEST-ONLY Byzantine validator").count - 1
    }

    /// Stops the validator in `node`'s slot (kill -9) and starts it again, on the same
    /// home and data, as `tally-byzantine --misbehaviour` for a Byzantine kind or as the
    /// honest `tally-node` for nil.
    private func relaunch(_ node: Int, as kind: FaultKind?) throws {
        cluster.kill(node)
        let launch = kind.map {
            precondition($0.faultClass == .byzantine)
            return ValidatorLaunch(executable: cluster.binary("tally-byzantine"), extraArguments: ["--misbehaviour", $0.rawValue])
        }
        cluster.setLaunch(launch, for: node)
        try cluster.start(node)
    }

    /// The fault with its node decided: `isolatePrimary` asks a healthy node who the
    /// primary is now.
    private func resolve(_ fault: FaultEpisode.Fault, started: Date) async -> FaultEpisode.Fault? {
        if fault.node != nil { return fault }
        // The slow primary and the primary killed under full blocks must be the primary
        // most validators follow (a slow-primary episode on a backup would pass unjudged).
        if fault.kind == .slowPrimary || fault.kind == .killPrimaryFullBlocks, let majority = await majorityPrimary() {
            return FaultEpisode.Fault(node: majority.primary, kind: fault.kind, tornBytes: 0, peer: majority.primary, link: fault.link)
        }
        for node in cluster.healthyNodes {
            if let primary = await cluster.primary(node) {
                return FaultEpisode.Fault(node: primary, kind: fault.kind, tornBytes: fault.tornBytes, peer: fault.peer, link: fault.link)
            }
        }
        print("\(elapsed(started)) \(fault.kind.rawValue) skipped: no healthy node said who the primary is")
        return nil
    }

    /// Sets every validator link to what the episode's network faults make of it.
    static func apply(_ faults: [FaultEpisode.Fault], to lab: NetworkLab) {
        let policies = linkPolicies(faults, validators: lab.validators)
        lab.setValidatorLinks { from, to in policies[Link(from: from, to: to)] ?? .clear }
    }

    /// Validator-to-validator link policies (validator indices, not switch ports) of
    /// an episode's resolved faults; several faults on one link combine.
    static func linkPolicies(_ faults: [FaultEpisode.Fault], validators: Int) -> [Link: LinkPolicy] {
        var policies: [Link: LinkPolicy] = [:]
        func add(_ from: Int, _ to: Int, _ policy: LinkPolicy) {
            let link = Link(from: from, to: to)
            policies[link] = (policies[link] ?? .clear).combined(with: policy)
        }
        let others = { (node: Int) in (0..<validators).filter { $0 != node } }
        let splitSide = Set(faults.filter { $0.kind == .split }.compactMap(\.node))
        for fault in faults {
            let node = fault.node!
            switch fault.kind {
            case .isolate, .isolatePrimary, .delay, .loss, .duplicate:
                for other in others(node) {
                    add(node, other, fault.link)
                    add(other, node, fault.link)
                }
            case .split:
                for other in others(node) where !splitSide.contains(other) {
                    add(node, other, .partitioned)
                    add(other, node, .partitioned)
                }
            case .oneWayLoss:
                add(node, fault.peer, fault.link)
            case .kill, .freeze, .tear, .restoredData, .equivocate, .conflictingVotes, .forgedViewChange, .garbageFrames, .silent, .forgedNewView,
                 .censor, .slowPrimary, .twin, .killPrimaryFullBlocks:
                break
            }
        }
        return policies
    }

    func sleep(until date: Date) async throws {
        let seconds = date.timeIntervalSinceNow
        if seconds > 0 { try await Task.sleep(for: .milliseconds(Int(seconds * 1000))) }
    }

    /// Polls every node's view while the run lasts (view changes for the summary).
    private func monitor(_ stop: StopFlag) async {
        while !stop.isSet {
            for node in cluster.healthyNodes { if let status = await cluster.status(node) { statistics.observe(view: status.view) } }
            try? await Task.sleep(for: .milliseconds(Int(Self.statusPollSeconds * 1000)))
        }
    }

    /// Liveness: after the faults end, every transaction signed commits.
    private func drain(_ load: LoadGenerator, since: Date) async -> CheckResult {
        let deadline = since.addingTimeInterval(recoverySeconds)
        while !load.isDrained && Date() < deadline {
            await load.round(topUp: false)
            try? await Task.sleep(for: .milliseconds(LoadGenerator.roundMilliseconds))
        }
        return CheckResult(
            name: "live after the faults: every signed transaction acknowledged as committed", passed: load.isDrained,
            detail: String(format: "%d/%d acknowledged, %.1f s after the faults ended", load.acknowledged.count, load.signed,
                           Date().timeIntervalSince(since)))
    }

    /// Every validator reaches the same height within the bound.
    private func converge(since: Date) async -> (CheckResult, UInt64) {
        let deadline = since.addingTimeInterval(recoverySeconds)
        var heights: [Int: UInt64] = [:]
        while Date() < deadline {
            heights = [:]
            for node in 0..<cluster.validators { heights[node] = await cluster.status(node)?.height }
            if heights.count == cluster.validators, Set(heights.values).count == 1 {
                let height = heights[0]!
                return (CheckResult(
                    name: "every validator at the same height within \(Int(recoverySeconds)) s of the faults ending", passed: true,
                    detail: String(format: "height %llu after %.1f s", height, Date().timeIntervalSince(since))), height)
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        var lines: [String] = []
        for node in 0..<cluster.validators { lines.append(await cluster.statusLine(node)) }
        let text = lines.joined(separator: "; ")
        return (CheckResult(
            name: "every validator at the same height within \(Int(recoverySeconds)) s of the faults ending", passed: false,
            detail: text), 0)
    }

    struct LiveBalances {
        let result: CheckResult
        let balances: [Int: [Address: UInt64]]
        /// The live state of every node equals the replayed ledger, and the replayed
        /// ledger has no account the live sum missed.
        func matches(_ ledger: Ledger) -> CheckResult {
            var problems: [String] = []
            let accounts = ledger.allAccounts
            for (node, live) in balances.sorted(by: { $0.key < $1.key }) {
                for (address, account) in accounts where live[address] != account.balance {
                    problems.append("node\(node) \(address): live \(live[address].map(String.init) ?? "unknown") replay \(account.balance)")
                    break
                }
            }
            return CheckResult(
                name: "live balances equal the replayed ledger on every validator", passed: problems.isEmpty,
                detail: problems.isEmpty ? "\(accounts.count) accounts on \(balances.count) validators" : problems.joined(separator: "; "))
        }
    }

    /// A node that is still catching up right after the faults answers `/accounts` with
    /// 503 `catching_up` (by design: it would serve a stale balance), and a request can
    /// meet a connection the faults left dead: a client asks again. One that gives no
    /// balance for this long fails the check.
    static let accountAnswerSeconds = 15.0

    /// `address`'s balance and nonce on `node`, asked again every 0.5 s for at most
    /// `accountAnswerSeconds`.
    private func currentAccount(_ node: Int, _ address: Address) async -> (balance: UInt64, nonce: UInt64)? {
        let deadline = Date().addingTimeInterval(Self.accountAnswerSeconds)
        while true {
            if let account = await cluster.account(node, address) { return account }
            if Date() >= deadline { return nil }
            try? await Task.sleep(nanoseconds: 500_000_000)
        }
    }

    /// Sum of the balances each node serves for every account the run can have touched.
    private func liveSupply(_ load: LoadGenerator, height: UInt64) async -> LiveBalances {
        var addresses = Set(load.recipients)
        addresses.insert(load.faucetAddress)
        for account in cluster.genesis.accounts { addresses.insert(account.address) }
        for validator in cluster.genesis.validators.validators { addresses.insert(validator.accountAddress) }
        var balances: [Int: [Address: UInt64]] = [:]
        var problems: [String] = []
        for node in 0..<cluster.validators {
            var sum: UInt64 = 0
            var live: [Address: UInt64] = [:]
            for address in addresses {
                guard let account = await currentAccount(node, address) else {
                    problems.append("node\(node): no answer within \(Int(Self.accountAnswerSeconds)) s (\(await cluster.statusLine(node)))")
                    break
                }
                live[address] = account.balance
                sum += account.balance
            }
            balances[node] = live
            if live.count == addresses.count && sum != cluster.genesis.totalSupply {
                problems.append("node\(node): \(sum) ≠ \(cluster.genesis.totalSupply)")
            }
        }
        return LiveBalances(
            result: CheckResult(
                name: "total supply conserved (live balances on every validator)", passed: problems.isEmpty,
                detail: problems.isEmpty ? "\(addresses.count) accounts sum to \(cluster.genesis.totalSupply) at height \(height)"
                    : problems.joined(separator: "; ")),
            balances: balances)
    }

    private func printSummary(load: LoadGenerator, results: [CheckResult], started: Date) {
        let faults = statistics.faults
        print("")
        print("=== tally-chaos summary (seed \(seed)) ===")
        print(String(format: "run: %d validators, %.0f s of faults, %.0f s in all", cluster.validators, durationSeconds,
                     Date().timeIntervalSince(started)))
        func counts(_ faultClass: FaultClass) -> String {
            FaultKind.allCases.filter { $0.faultClass == faultClass }.map { "\($0.rawValue) \(faults[$0] ?? 0)" }.joined(separator: ", ")
        }
        print("faults injected (\(schedule.episodes.count) episodes): process: \(counts(.process)); network: \(counts(.network)); "
            + "byzantine: \(counts(.byzantine)); full-blocks: \(counts(.fullBlocks))")
        print("transactions: \(load.signed) signed, \(load.acknowledged.count) acknowledged as committed, \(load.submissions) submissions")
        print("view changes: highest view reached \(statistics.highestView)")
        for result in results { print("\(result.passed ? "PASS" : "FAIL")  \(result.name): \(result.detail)") }
        print(results.allSatisfy(\.passed) ? "ALL CHECKS PASSED" : "SOME CHECKS FAILED")
    }
}

/// A one-way stop signal shared between tasks.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
