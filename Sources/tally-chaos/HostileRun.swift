import AsyncHTTPClient
import Foundation
import TallyCrypto
import TallyLedger
import TallyNode
import TallyTestbed
import TallyTypes

/// `--faults hostile`: honest load for a baseline phase, then the same load while
/// the attacks run (`Attack`), then the chaos suite's end checks plus each attack's
/// own (what should be refused was refused), and honest latency under attack within
/// `maxLatencyRatio` of the baseline.
struct HostileRun {
    static let maxLatencyRatio = 2.0
    /// Node 0 serves the honest `/events` observer; node 1's API is flooded (and runs
    /// with `floodedNodeDescriptorLimit` descriptors); a backup other than these restarts.
    static let observerNode = 0
    static let floodedNode = 1
    /// Attacker source addresses: each attack its own block of `AttackerAddress` indices.
    static let admissionAddresses = 0
    static let networkAddresses = 1_000

    let cluster: Testbed
    let options: HostileOptions
    let recoverySeconds: Double

    /// Devnet accounts: honest senders first, then the zero-fee attacker, one per stuck
    /// round, then the hammer's senders of its big block.
    static func fundedAccounts(_ options: HostileOptions) -> Int { firstHammerSender(options) + hammerSenders(options) }
    static func firstHammerSender(_ options: HostileOptions) -> Int { options.honestSenders + 1 + options.stuckRounds }
    /// Senders of the hammer's big block: each fills the nonce window (nonces 0…16).
    static func hammerSenders(_ options: HostileOptions) -> Int {
        (options.hammerBlockTransactions + LoadGeneratorLimits.nonceWindow) / (LoadGeneratorLimits.nonceWindow + 1)
    }
    static let fundedBalance: UInt64 = 1_000_000_000_000

    /// Rewrites the homes before the first start: the mempool bound (and the API threads'
    /// priority, when given) everywhere, and the flooded node behind a descriptor limit.
    func prepare() throws {
        for index in 0..<cluster.validators {
            let home = NodeHome(path: cluster.home(index))
            var config = try home.loadConfig()
            config.mempool.maxTransactions = options.mempoolBound
            if let increment = options.apiThreadNiceIncrement { config.api.threadNiceIncrement = increment }
            try home.writeConfig(config)
        }
        guard options.attacks.contains(.connections) else { return }
        let wrapper = cluster.directory.appendingPathComponent("tally-node-limited")
        let script = "#!/bin/sh\n# The flooded validator, with a soft and hard open-file limit of \(options.floodedNodeDescriptorLimit).\n"
            + "ulimit -n \(options.floodedNodeDescriptorLimit) || exit 70\nexec '\(cluster.binary("tally-node").path)' \"$@\"\n"
        try script.write(to: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper.path, 0o755)
        cluster.setLaunch(ValidatorLaunch(executable: wrapper), for: Self.floodedNode)
    }

    func execute() async throws -> Bool {
        defer { cluster.killAll() }
        raiseOpenFileLimit()
        try prepare()
        try cluster.startAll()
        try await cluster.waitUntilUp(seconds: 120)
        try await waitForPeers(seconds: 60)
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            let passed = try await execute(client: client)
            try? await client.shutdown()
            return passed
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func execute(client: HTTPClient) async throws -> Bool {
        let observer = CommitObserver(url: cluster.api(Self.observerNode).absoluteString + "/events")
        let observerTask = Task { await observer.follow(client: client) }
        defer { observerTask.cancel() }
        for _ in 0..<100 where !observer.isSubscribed { try await Task.sleep(for: .milliseconds(100)) }
        guard observer.isSubscribed else { throw TestbedError("could not subscribe to node\(Self.observerNode)'s /events") }

        let honest = HonestLoad(
            cluster: cluster, senders: (0..<options.honestSenders).map(DevnetKeys.accountKey),
            ratePerSecond: options.honestRatePerSecond, observer: observer)
        print("tally-hostile: baseline phase, \(Int(options.phaseSeconds)) s of honest load at \(options.honestRatePerSecond) tx/s")
        let viewBefore = await highestView()
        await honest.run(seconds: options.phaseSeconds)
        honest.phase = "attack"
        print("tally-hostile: attack phase, \(Int(options.phaseSeconds)) s; attacks: \(Attack.allCases.filter(options.attacks.contains).map(\.rawValue).joined(separator: ", "))")
        let viewAtAttack = await highestView()
        let attackStart = monotonicNow()
        let attacks = AttackSet(cluster: cluster, options: options, observer: observer)
        try await attacks.start()
        let statusProbe = Task { await probeStatus(Self.floodedNode, seconds: options.phaseSeconds) }
        await honest.run(seconds: options.phaseSeconds)
        let attackEnd = monotonicNow()
        let longestOutage = await statusProbe.value
        await attacks.stop()
        let viewAfterAttack = await highestView()
        print("tally-hostile: attacks stopped; draining the honest load")

        var results: [CheckResult] = []
        let drained = await honest.drain(seconds: recoverySeconds)
        await resolveLate(honest, observer: observer)
        results.append(CheckResult(
            name: "honest: every transfer sent committed", passed: drained,
            detail: "\(honest.sent.count) sent, \(honest.outstanding) not committed \(Int(recoverySeconds)) s after the attacks"))
        let baseline = honest.figures(phase: "baseline", phaseSeconds: options.phaseSeconds)
        let attacked = honest.figures(phase: "attack", phaseSeconds: options.phaseSeconds)
        results.append(stallCheck(observer: observer, honest: honest, from: attackStart, to: attackEnd))
        results.append(CheckResult(
            name: "honest: p50 latency under attack within \(Self.maxLatencyRatio)× the baseline",
            passed: attacked.committed > 0 && baseline.committed > 0 && attacked.p50Milliseconds <= Self.maxLatencyRatio * baseline.p50Milliseconds,
            detail: String(format: "%.0f ms under attack, %.0f ms baseline", attacked.p50Milliseconds, baseline.p50Milliseconds)))
        results.append(CheckResult(
            name: "honest: no funded transfer refused (no mempool_full, no other refusal)",
            passed: honest.mempoolFullCount == 0 && honest.refusals.isEmpty,
            detail: "codes seen \(honest.rejectionCodes.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" })"
                + (honest.refusals.isEmpty ? "" : "; refused: " + honest.refusals.prefix(5).joined(separator: ", "))))
        if options.attacks.contains(.connections) {
            results.append(CheckResult(
                name: "connections: node\(Self.floodedNode) kept answering /status (at most \(Int(options.statusOutageSeconds)) s without an answer)",
                passed: longestOutage <= options.statusOutageSeconds, detail: String(format: "longest gap %.1f s", longestOutage)))
        }
        results.append(await emptyMempools(seconds: 30))
        let (convergence, _) = await converge(seconds: recoverySeconds)
        results.append(convergence)

        for node in 0..<cluster.validators { cluster.terminate(node) }
        results += endChecks(honest: honest, observer: observer, attacks: attacks)
        if options.attacks.contains(.verify) { results += craftedVerify() }
        results += attacks.reports.flatMap(\.results)

        printSummary(baseline: baseline, attacked: attacked, attacks: attacks, views: (viewBefore, viewAtAttack, viewAfterAttack), results: results)
        return results.allSatisfy(\.passed)
    }

    // MARK: phases

    private func waitForPeers(seconds: Double) async throws {
        let deadline = monotonicNow() + seconds
        while monotonicNow() < deadline {
            var ready = 0
            for node in 0..<cluster.validators {
                if let peers = (try? await cluster.json(node, "status"))?["peers_connected"] as? Int, peers == cluster.validators - 1 { ready += 1 }
            }
            if ready == cluster.validators { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw TestbedError("validators did not connect to each other within \(Int(seconds)) s")
    }

    private func highestView() async -> UInt64 {
        var highest: UInt64 = 0
        for node in 0..<cluster.validators { if let status = await cluster.status(node) { highest = max(highest, status.view) } }
        return highest
    }

    /// Asks `node` for `/status` once a second from the honest address; the longest
    /// time it went without an answer.
    private func probeStatus(_ node: Int, seconds: Double) async -> Double {
        let end = monotonicNow() + seconds
        var lastAnswer = monotonicNow()
        var longest = 0.0
        while monotonicNow() < end {
            if await cluster.status(node) != nil { lastAnswer = monotonicNow() }
            longest = max(longest, monotonicNow() - lastAnswer)
            try? await Task.sleep(for: .seconds(1))
        }
        return longest
    }

    /// Transfers committed without a `tx` event on the observer (its stream was cut):
    /// asked of the nodes, so the end checks know them (no latency for them).
    private func resolveLate(_ honest: HonestLoad, observer: CommitObserver) async {
        let committed = observer.committed
        for hash in honest.sent.keys where committed[hash] == nil {
            for node in 0..<cluster.validators {
                if let height = await cluster.committedHeight(node, hash) {
                    observer.recordLate(hash, height: height)
                    break
                }
            }
        }
    }

    /// Honest commits kept coming during the attack phase: no gap longer than `stallSeconds`.
    private func stallCheck(observer: CommitObserver, honest: HonestLoad, from start: Double, to end: Double) -> CheckResult {
        let ours = Set(honest.sent.keys)
        let times = observer.committed.filter { ours.contains($0.key) && $0.value.time.isFinite }.map(\.value.time)
            .filter { $0 >= start && $0 <= end }.sorted()
        var longest = 0.0
        var previous = start
        for time in times + [end] {
            longest = max(longest, time - previous)
            previous = time
        }
        return CheckResult(
            name: "honest: transfers kept committing during the attacks (no gap over \(Int(options.stallSeconds)) s)",
            passed: longest <= options.stallSeconds, detail: String(format: "%d honest commits in the attack phase, longest gap %.1f s", times.count, longest))
    }

    /// Once the honest load is drained, no node keeps anything: what could not apply
    /// (the stuck rounds) was evicted, and nothing refused was admitted.
    private func emptyMempools(seconds: Double) async -> CheckResult {
        let deadline = monotonicNow() + seconds
        var sizes: [Int: Int] = [:]
        while monotonicNow() < deadline {
            sizes = [:]
            for node in 0..<cluster.validators { sizes[node] = (try? await cluster.json(node, "status"))?["mempool_size"] as? Int }
            if sizes.count == cluster.validators && sizes.values.allSatisfy({ $0 == 0 }) { break }
            try? await Task.sleep(for: .milliseconds(500))
        }
        let passed = sizes.count == cluster.validators && sizes.values.allSatisfy { $0 == 0 }
        return CheckResult(
            name: "mempools: empty on every node once the honest load is committed (stuck transactions evicted)", passed: passed,
            detail: (0..<cluster.validators).map { "node\($0)=\(sizes[$0].map(String.init) ?? "?")" }.joined(separator: " "))
    }

    private func converge(seconds: Double) async -> (CheckResult, UInt64) {
        let deadline = monotonicNow() + seconds
        var lines: [String] = []
        while monotonicNow() < deadline {
            var heights: [UInt64] = []
            for node in 0..<cluster.validators { if let height = await cluster.height(node) { heights.append(height) } }
            if heights.count == cluster.validators, Set(heights).count == 1 {
                return (CheckResult(name: "every validator at the same height", passed: true, detail: "height \(heights[0])"), heights[0])
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        for node in 0..<cluster.validators { lines.append(await cluster.statusLine(node)) }
        return (CheckResult(name: "every validator at the same height", passed: false, detail: lines.joined(separator: "; ")), 0)
    }

    // MARK: end checks

    /// The chaos suite's checks on the stopped validators' data, and that nothing the
    /// refused attacks sent is in the chain or left an account.
    private func endChecks(honest: HonestLoad, observer: CommitObserver, attacks: AttackSet) -> [CheckResult] {
        var results: [CheckResult] = []
        var chains: [Int: [CertifiedBlock]] = [:]
        for node in 0..<cluster.validators {
            do { chains[node] = try ChainChecks.readChain(dataDirectory: cluster.dataDirectory(node)) } catch {
                results.append(CheckResult(name: "read node\(node)'s data directory", passed: false, detail: "\(error)"))
            }
        }
        results.append(ChainChecks.agreement(chains))
        results.append(ChainChecks.verify(cluster: cluster))
        let longest = chains.values.max { $0.count < $1.count } ?? []
        let ours = Set(honest.sent.keys)
        let acknowledged = observer.committed.filter { ours.contains($0.key) }.mapValues(\.height)
        let replay = ChainChecks.replay(chain: longest, genesis: cluster.genesis, acknowledged: acknowledged)
        results += replay.results
        let inChain = Set(longest.flatMap { $0.block.transactions.map(\.hash) })
        for report in attacks.reports where report.attack == .spam || report.attack == .zeroValue {
            let committed = report.sentHashes.intersection(inChain).count
            let admitted = report.counts["admitted"] ?? 0
            let genesisAddresses = Set(cluster.genesis.accounts.map(\.address))
            let leftAccounts = replay.ledger.map { ledger in
                let inLedger = Set(ledger.allAccounts.map(\.address))
                return report.touchedAddresses.filter { inLedger.contains($0) && !genesisAddresses.contains($0) }.count
            } ?? -1
            results.append(CheckResult(
                name: "\(report.attack.rawValue): nothing admitted, nothing committed, no account created",
                passed: committed == 0 && admitted == 0 && leftAccounts == 0,
                detail: "\(report.sentHashes.count) sent: \(admitted) admitted, \(committed) in the chain, \(leftAccounts) new accounts"))
        }
        if let stuck = attacks.reports.first(where: { $0.attack == .stuck }) {
            let committed = stuck.sentHashes.intersection(inChain).count
            results.append(CheckResult(
                name: "stuck: each round committed its whole-balance spend or its two small ones, never more",
                passed: committed <= 2 * options.stuckRounds, detail: "\(committed) of \(stuck.sentHashes.count) in the chain over \(options.stuckRounds) rounds"))
        }
        return results
    }

    private func craftedVerify() -> [CheckResult] {
        let tally = cluster.binary("tally")
        let directory = cluster.directory
        var results: [CheckResult] = []
        do {
            results.append(try CraftedSegments.verify(
                tally: tally, genesis: cluster.genesis, directory: directory, name: "fake-headers",
                segment: CraftedSegments.fakeHeaders(bytes: options.craftedSegmentBytes, headers: options.craftedRecordHeaders, seed: 14),
                sparseBytes: nil, boundSeconds: options.verifyBoundSeconds))
            results.append(try CraftedSegments.verify(
                tally: tally, genesis: cluster.genesis, directory: directory, name: "sparse", segment: nil,
                sparseBytes: options.sparseSegmentBytes, boundSeconds: options.verifyBoundSeconds))
        } catch {
            results.append(CheckResult(name: "verify: crafted segments", passed: false, detail: "\(error)"))
        }
        return results
    }

    private func printSummary(
        baseline: PhaseFigures, attacked: PhaseFigures, attacks: AttackSet, views: (UInt64, UInt64, UInt64), results: [CheckResult]
    ) {
        print("")
        print("=== tally-chaos --faults hostile summary ===")
        print("honest load: \(options.honestSenders) funded senders, \(options.honestRatePerSecond) tx/s offered, \(Int(options.phaseSeconds)) s per phase")
        print("  " + baseline.line)
        print("  " + attacked.line)
        print("view: \(views.0) at the start, \(views.1) when the attacks began, \(views.2) when they ended")
        for report in attacks.reports { print("attack \(report.attack.rawValue): \(report.summary)") }
        for result in results { print("\(result.passed ? "PASS" : "FAIL")  \(result.name): \(result.detail)") }
        print(results.allSatisfy(\.passed) ? "ALL CHECKS PASSED" : "SOME CHECKS FAILED")
    }
}

/// The attacks of one run, started together at the attack phase and stopped at its end.
final class AttackSet: @unchecked Sendable {
    let cluster: Testbed
    let options: HostileOptions
    let observer: CommitObserver
    let stopFlag = StopFlag()
    private(set) var reports: [AttackReport] = []
    private var threads: [AttackThread] = []
    private var floods: [ConnectionFlood] = []
    private var eventFlood: ConnectionFlood?
    private var peerTask: Task<Void, Never>?
    private var network: NetworkAttacks { NetworkAttacks(cluster: cluster, options: options, firstAddress: HostileRun.networkAddresses) }

    init(cluster: Testbed, options: HostileOptions, observer: CommitObserver) {
        self.cluster = cluster
        self.options = options
        self.observer = observer
    }

    private func report(_ attack: Attack) -> AttackReport {
        let report = AttackReport(attack)
        reports.append(report)
        return report
    }

    func start() async throws {
        let admission = AdmissionAttacks(cluster: cluster, options: options, firstAddress: HostileRun.admissionAddresses)
        let attacks = options.attacks
        if attacks.contains(.connections) {
            floods = network.connectionFloods(target: HostileRun.floodedNode)
            for flood in floods { flood.start() }
        }
        if attacks.contains(.events) {
            let flood = network.eventGrab(target: HostileRun.observerNode)
            flood.start()
            eventFlood = flood
        }
        if attacks.contains(.spam) {
            let report = report(.spam)
            threads.append(AttackThread("spam") { admission.spam(report) })
        }
        if attacks.contains(.zeroValue) {
            let report = report(.zeroValue)
            let funded = DevnetKeys.accountKey(options.honestSenders)
            threads.append(AttackThread("zero-value") { admission.zeroValue(report, fundedKey: funded) })
        }
        if attacks.contains(.stuck) {
            let report = report(.stuck)
            let keys = (0..<options.stuckRounds).map { DevnetKeys.accountKey(options.honestSenders + 1 + $0) }
            let primary = await cluster.primary(HostileRun.observerNode) ?? 0
            let stop = stopFlag
            let cluster = cluster
            threads.append(AttackThread("stuck") {
                admission.stuck(report, keys: keys, balance: HostileRun.fundedBalance, primary: {
                    // Asked fresh each round: a view change moves the primary.
                    let answer = RawHTTP.request(from: "127.0.0.1", host: cluster.host(0), port: cluster.basePort, method: "GET", path: "/status", timeoutSeconds: 3)
                    return (answer?.json?["primary"] as? Int) ?? primary
                }, stop: stop)
            })
        }
        if attacks.contains(.hammer) {
            let report = report(.hammer)
            let observer = observer
            // A big block first (valid transfers from funded attacker keys): a lookup of a
            // transaction in it costs the node the most (block read, hashes, proof).
            let keys = (0..<HostileRun.hammerSenders(options)).map { DevnetKeys.accountKey(HostileRun.firstHammerSender(options) + $0) }
            let big = admission.bigBlock(keys: keys, count: options.hammerBlockTransactions)
            report.sent(big)
            let bigHashes = big.map(\.hash)
            threads.append(AttackThread("hammer-block") { admission.post(big, report: report, addressOffset: 24, label: "big block ") })
            threads += network.hammer(report, avoid: HostileRun.floodedNode, hashes: {
                let committed = observer.committed
                let inBig = bigHashes.filter { committed[$0] != nil }.prefix(256)
                return inBig.isEmpty ? Array(committed.keys.prefix(256)) : Array(inBig)
            }, stop: stopFlag)
        }
        if attacks.contains(.peerFlood) {
            let report = report(.peerFlood)
            peerTask = Task { await self.peerFloodDuringRestart(report) }
        }
    }

    func stop() async {
        stopFlag.set()
        for thread in threads { thread.join() }
        await peerTask?.value
        for flood in floods { flood.stop() }
        if !floods.isEmpty {
            let report = report(.connections)
            network.checkFloods(floods, report: report)
        }
        if let eventFlood {
            let report = report(.events)
            // The total cap is shared fairly: an address holding fewer streams than the
            // heaviest takes one of its slots, so many attacker addresses cannot lock out
            // a new honest subscriber.
            let answer = honestSubscriberAnswer(node: HostileRun.observerNode)
            report.add(CheckResult(
                name: "events: a new honest subscriber gets a stream while the attackers hold theirs",
                passed: answer.hasPrefix("HTTP/1.1 200"), detail: answer))
            eventFlood.stop()
            let displaced = await displacedEventStreams(node: HostileRun.observerNode)
            network.checkEventGrab(eventFlood, displaced: displaced, report: report)
        }
    }

    /// `tally_event_subscribers_dropped_total{reason="displaced"}` of `node` (0 if unreadable).
    private func displacedEventStreams(node: Int) async -> Int {
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        defer { Task { try? await client.shutdown() } }
        guard let response = try? await client.execute(
                HTTPClientRequest(url: cluster.api(node).absoluteString + "/metrics"), timeout: .seconds(10)),
            let body = try? await response.body.collect(upTo: 16 << 20)
        else { return 0 }
        let prefix = "tally_event_subscribers_dropped_total{reason=\"displaced\"} "
        let line = String(buffer: body).split(separator: "\n").first { $0.hasPrefix(prefix) }
        return line.flatMap { Int($0.dropFirst(prefix.count).split(separator: ".").first ?? "") } ?? 0
    }

    /// The status line a new `/events` subscriber from the honest address gets.
    private func honestSubscriberAnswer(node: Int) -> String {
        guard let socket = RawSocket.connect(from: "127.0.0.1", to: cluster.host(node), port: cluster.basePort + node),
            socket.waitConnected(timeoutSeconds: 3)
        else { return "no connection" }
        defer { socket.close() }
        let deadline = monotonicNow() + 5
        guard socket.sendAll(Array("GET /events HTTP/1.1\r\nHost: \(cluster.host(node))\r\nAccept: text/event-stream\r\n\r\n".utf8), deadline: deadline) else {
            return "could not send"
        }
        var received: [UInt8] = []
        reading: while received.count < 12 && monotonicNow() < deadline {
            switch socket.receive() {
            case .data(let bytes): received += bytes
            case .wouldBlock: _ = socket.waitFor(Int16(POLLIN), until: deadline)
            case .closed: break reading
            }
        }
        let line = String(decoding: received.prefix { $0 != 13 }, as: UTF8.self)
        return line.isEmpty ? "no answer in 5 s" : line
    }

    /// Restarts a backup that is neither the observer's node nor the flooded one
    /// while every peer port is flooded; it must have all its peers back within the
    /// bound, and no node's log may grow by more than `maxLogGrowthBytes`.
    private func peerFloodDuringRestart(_ report: AttackReport) async {
        let maxLogGrowthBytes = 2 << 20
        let primary = await cluster.primary(HostileRun.observerNode) ?? 0
        let candidates = (0..<cluster.validators).filter { $0 != HostileRun.observerNode && $0 != HostileRun.floodedNode }
        let node = candidates.first { $0 != primary } ?? candidates.last!
        let logSizes = (0..<cluster.validators).map { logSize($0) }
        cluster.setFaulty(node, true)
        cluster.terminate(node, graceSeconds: 10)
        let floods = network.peerFloods()
        for flood in floods { flood.start() }
        let restarted = monotonicNow()
        do { try cluster.start(node) } catch { report.note("restart failed: \(error)") }
        var reconnectedAfter: Double?
        while monotonicNow() - restarted < max(options.peerFloodSeconds, options.peerReconnectBoundSeconds) {
            if reconnectedAfter == nil, let peers = (try? await cluster.json(node, "status"))?["peers_connected"] as? Int, peers == cluster.validators - 1 {
                reconnectedAfter = monotonicNow() - restarted
            }
            if reconnectedAfter != nil && monotonicNow() - restarted >= options.peerFloodSeconds { break }
            try? await Task.sleep(for: .milliseconds(250))
        }
        for flood in floods { flood.stop() }
        cluster.setFaulty(node, false)
        let opened = floods.reduce(0) { $0 + $1.snapshot.count }
        report.count("connections opened", opened)
        report.note("node\(node) restarted under the flood")
        let growth = (0..<cluster.validators).map { logSize($0) - logSizes[$0] }
        report.add(CheckResult(
            name: "peer-flood: the restarted validator has every peer within \(Int(options.peerReconnectBoundSeconds)) s while every peer port is flooded",
            passed: reconnectedAfter.map { $0 <= options.peerReconnectBoundSeconds } ?? false,
            detail: reconnectedAfter.map { String(format: "node\(node): all peers after %.1f s; %d flood connections", $0, opened) }
                ?? "node\(node) still without all peers; \(opened) flood connections"))
        report.add(CheckResult(
            name: "peer-flood: no node's log grew by more than \(maxLogGrowthBytes >> 20) MiB during the flood",
            passed: growth.allSatisfy { $0 <= maxLogGrowthBytes }, detail: "growth in bytes \(growth)"))
    }

    private func logSize(_ node: Int) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: cluster.logPath(node))[.size]) as? NSNumber)?.intValue ?? 0
    }
}
