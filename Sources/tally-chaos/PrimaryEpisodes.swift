import AsyncHTTPClient
import Foundation
import TallyCrypto
import TallyNode
import TallyTestbed
import TallyTypes

/// A process the harness started outside the testbed's slots (the twin).
final class ProcessBox: @unchecked Sendable {
    let process: Process
    init(_ process: Process) { self.process = process }
    func kill() {
        guard process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGCONT)
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// The episodes of issue 13's last bullet: a slow primary, a twin, a primary killed
/// under full blocks, and the restored-data fault's peers-paused restore.
extension ChaosRun {
    static let networkDrops = "tally_network_messages_dropped_total"
    static let transactionsCommitted = "tally_transactions_committed_total"
    static let blocksCommitted = "tally_blocks_committed_total"
    static let connectionsEstablished = "tally_network_connections_established_total"
    static let connectionsClosed = "tally_network_connections_closed_total"

    /// The status of the first healthy validator (other than `excluding`) that answers.
    func healthyStatus(excluding: Int? = nil) async -> (node: Int, height: UInt64, view: UInt64)? {
        for node in cluster.healthyNodes where node != excluding {
            if let status = await cluster.status(node) { return (node, status.height, status.view) }
        }
        return nil
    }

    /// The primary most healthy validators name (ties: the lower index), with the
    /// highest view among those naming it: one validator alone in a later view (its own
    /// timer ran out while it was busy) decides nothing.
    func majorityPrimary(excluding: Int? = nil) async -> (primary: Int, view: UInt64)? {
        var votes: [Int: (count: Int, view: UInt64)] = [:]
        for node in cluster.healthyNodes where node != excluding {
            guard let status = try? await cluster.json(node, "status"),
                  let primary = status["primary"] as? Int ?? (status["primary"] as? String).flatMap(Int.init),
                  let view = (status["view"] as? String).flatMap(UInt64.init)
            else { continue }
            votes[primary] = ((votes[primary]?.count ?? 0) + 1, max(votes[primary]?.view ?? 0, view))
        }
        let ranked = votes.sorted { $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key }
        return ranked.first.map { ($0.key, $0.value.view) }
    }

    // MARK: slow-primary

    /// Pauses `node` (the primary) 1.9 s of every 2.1 s until the episode ends, and
    /// watches for a healthy validator to name another primary.
    func startSlowPrimary(_ node: Int, started: Date, end: EpisodeEnd) async {
        let bounds = slowPrimaryBounds
        let viewAtStart = await majorityPrimary(excluding: node)?.view ?? 0
        let start = Date()
        let stop = StopFlag()
        let cluster = self.cluster
        let pauser = Task.detached {
            while !stop.isSet {
                cluster.signal(node, SIGSTOP)
                try? await Task.sleep(for: .milliseconds(Int(bounds.stoppedSeconds * 1000)))
                cluster.signal(node, SIGCONT)
                if stop.isSet { break }
                try? await Task.sleep(for: .milliseconds(Int(bounds.runningSeconds * 1000)))
            }
            cluster.signal(node, SIGCONT)
        }
        let watcher = Task { [self] () -> Double? in
            while !stop.isSet {
                if let now = await majorityPrimary(excluding: node), now.primary != node { return Date().timeIntervalSince(start) }
                try? await Task.sleep(for: .milliseconds(250))
            }
            return nil
        }
        print("\(elapsed(started)) slow-primary: node\(node) (the primary, view \(viewAtStart)) stopped \(bounds.stoppedSeconds) s of every \(bounds.cycleSeconds) s")
        end.add { [self] in
            stop.set()
            await pauser.value
            let replaced = await watcher.value
            statistics.recordSlowPrimary(SlowPrimaryEpisode(
                node: node, start: start, end: Date(), viewAtStart: viewAtStart, replacedAfterSeconds: replaced))
            let what = replaced.map { String(format: "replaced after %.1f s", $0) } ?? "never replaced"
            print("\(elapsed(started)) slow-primary: node\(node) runs on (\(what))")
        }
    }

    /// Each slow-primary episode, judged once every transfer had its chance to commit.
    func slowPrimaryCheck(_ load: LoadGenerator) -> CheckResult? {
        let episodes = statistics.slowPrimaryEpisodes
        guard !episodes.isEmpty else { return nil }
        let bounds = slowPrimaryBounds
        var passed = true
        var details: [String] = []
        let submitted = load.firstSubmitted
        let acknowledged = load.acknowledgedAt
        for episode in episodes {
            let window = submitted.filter { $0.value >= episode.start && $0.value <= episode.end }
            let latencies = window.map { nonce, time in acknowledged[nonce].map { $0.timeIntervalSince(time) } ?? .infinity }.sorted()
            var problems: [String] = []
            guard let replaced = episode.replacedAfterSeconds, replaced <= bounds.replacementSeconds else {
                passed = false
                details.append(String(format: "node%d (view %llu): %@ within %.1f s", episode.node, episode.viewAtStart,
                                      episode.replacedAfterSeconds.map { String(format: "replaced only after %.1f s", $0) } ?? "not replaced",
                                      bounds.replacementSeconds))
                continue
            }
            let worst = latencies.last ?? 0
            if worst > bounds.latencySeconds { problems.append(String(format: "a transfer took %.1f s > %.1f s", worst, bounds.latencySeconds)) }
            let settled = episode.start.addingTimeInterval(replaced + bounds.viewChangeTimeoutSeconds)
            let after = window.filter { $0.value >= settled }.map { nonce, time in
                acknowledged[nonce].map { $0.timeIntervalSince(time) } ?? .infinity
            }.sorted()
            let median = after.isEmpty ? Double.infinity : after[after.count / 2]
            if after.isEmpty { problems.append("no transfer sent after the replacement") }
            else if median >= bounds.afterReplacementMedianSeconds {
                problems.append(String(format: "median latency after the replacement %.2f s ≥ %.1f s", median, bounds.afterReplacementMedianSeconds))
            }
            if !problems.isEmpty { passed = false }
            details.append(String(
                format: "node%d (view %llu) replaced after %.1f s; %d transfers sent meanwhile, max latency %.1f s, median after the replacement %.2f s (%d)%@",
                episode.node, episode.viewAtStart, replaced, latencies.count, worst, after.isEmpty ? 0 : median, after.count,
                problems.isEmpty ? "" : ": " + problems.joined(separator: ", ")))
        }
        return CheckResult(
            name: String(format: "slow-primary: replaced within %.1f s, every transfer sent meanwhile committed within %.1f s, median latency after it under %.1f s",
                         bounds.replacementSeconds, bounds.latencySeconds, bounds.afterReplacementMedianSeconds),
            passed: passed, detail: details.joined(separator: "; "))
    }

    /// The checks of the episodes that judge themselves, one line per kind.
    func episodeChecks(_ load: LoadGenerator) -> [CheckResult] {
        var results: [CheckResult] = []
        if let slow = slowPrimaryCheck(load) { results.append(slow) }
        let findings = statistics.episodeFindings
        let names: [(FaultKind, String)] = [
            (.twin, "twin: the other validators keep their peers (no eviction storm) and count key_in_use_twice"),
            (.killPrimaryFullBlocks, String(
                format: "kill-primary-full-blocks: blocks full, then commits (transactions) resume in a later view within %.0f s; no message_too_large",
                viewChangeBoundSeconds)),
        ]
        for (kind, name) in names {
            guard let list = findings[kind] else { continue }
            results.append(CheckResult(name: name, passed: list.allSatisfy(\.passed), detail: list.map(\.detail).joined(separator: "; ")))
        }
        return results
    }

    // MARK: twin

    private func twinCounters(_ node: Int) async -> (established: Double?, twice: Double?) {
        guard let text = await cluster.metricsText(node) else { return (nil, nil) }
        return (PrometheusText.value(text, Self.connectionsEstablished),
                PrometheusText.value(text, Self.connectionsClosed, labels: ["reason": "key_in_use_twice"]))
    }

    /// Starts a second `tally-node` on a copy of `node`'s home (its key) on other
    /// ports; at the episode's end it is killed and judged.
    func startTwin(_ node: Int, started: Date, until episodeEnd: Date, end: EpisodeEnd) async throws {
        statistics.recordTwinned(node)
        let others = (0..<cluster.validators).filter { $0 != node }
        var counters: [Int: (established: Double?, twice: Double?)] = [:]
        for other in others { counters[other] = await twinCounters(other) }
        let before = counters
        let twinHome = cluster.directory.appendingPathComponent("twin\(node)").path
        let files = FileManager.default
        if files.fileExists(atPath: twinHome) { try files.removeItem(atPath: twinHome) }
        cluster.signal(node, SIGSTOP)
        do { try files.copyItem(atPath: cluster.home(node), toPath: twinHome) } catch {
            cluster.signal(node, SIGCONT)
            throw error
        }
        cluster.signal(node, SIGCONT)
        let home = NodeHome(path: twinHome)
        var config = try home.loadConfig()
        let ports = TwinEpisode.ports(basePort: cluster.basePort, validators: cluster.validators, node: node)
        config.api.listen = "\(cluster.host(node)):\(ports.api)"
        config.p2p.listen = "\(cluster.host(node)):\(ports.p2p)"
        try home.writeConfig(config)
        if let password = config.keyPasswordFile { try? files.setAttributes([.posixPermissions: 0o600], ofItemAtPath: home.file(password)) }

        let process = Process()
        let command = [cluster.binary("tally-node").path, "start", "--home", twinHome]
        if let lab = cluster.lab {
            let wrapped = lab.command(validator: node, command)
            process.executableURL = wrapped.executable
            process.arguments = wrapped.arguments
        } else {
            process.executableURL = URL(fileURLWithPath: command[0])
            process.arguments = Array(command.dropFirst())
        }
        let logPath = cluster.directory.appendingPathComponent("twin\(node).log").path
        if !files.fileExists(atPath: logPath) { _ = files.createFile(atPath: logPath, contents: nil) }
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        log.seekToEndOfFile()
        process.standardOutput = log
        process.standardError = log
        try process.run()
        try? log.close()
        let twin = ProcessBox(process)
        print("\(elapsed(started)) twin: a copy of node\(node)'s home (its key) runs as a second tally-node, API port \(ports.api), peer port \(ports.p2p)")

        let cluster = self.cluster
        let startedAt = Date()
        let watcher = Task { () -> [Int: Int] in
            var least: [Int: Int] = [:]
            while Date() < episodeEnd {
                if Date().timeIntervalSince(startedAt) >= TwinEpisode.settleSeconds {
                    for other in others {
                        if let peers = await cluster.peersConnected(other) { least[other] = min(least[other] ?? Int.max, peers) }
                    }
                }
                try? await Task.sleep(for: .milliseconds(TwinEpisode.pollMilliseconds))
            }
            return least
        }
        end.add { [self] in
            let least = await watcher.value
            twin.kill()
            try? FileManager.default.removeItem(atPath: twinHome)
            var twice = 0.0
            var worstEstablished = 0.0
            var counts: [String] = []
            for other in others {
                let after = await twinCounters(other)
                let refused = counterRise(from: before[other]?.twice, to: after.twice)
                let established = counterRise(from: before[other]?.established, to: after.established)
                twice += refused
                worstEstablished = max(worstEstablished, established)
                counts.append("node\(other) \(Int(refused)) twice, +\(Int(established)) connections, ≥ \(least[other].map(String.init) ?? "?") peers")
            }
            let peersKept = others.allSatisfy { (least[$0] ?? 0) >= cluster.validators - 1 }
            let passed = twice >= 1 && worstEstablished <= TwinEpisode.maxConnectionsEstablished && peersKept
            var problems: [String] = []
            if twice < 1 { problems.append("nobody counted key_in_use_twice") }
            if worstEstablished > TwinEpisode.maxConnectionsEstablished {
                problems.append("eviction storm: \(Int(worstEstablished)) connections established > \(Int(TwinEpisode.maxConnectionsEstablished))")
            }
            if !peersKept { problems.append("a validator lost a peer") }
            statistics.recordFinding(.twin, passed: passed, "twin of node\(node): " + counts.joined(separator: ", ")
                + (problems.isEmpty ? "" : " — " + problems.joined(separator: ", ")))
            print("\(elapsed(started)) twin of node\(node) killed (\(passed ? "ok" : problems.joined(separator: ", ")))")
        }
    }

    // MARK: kill-primary-full-blocks

    private func committedCounters(_ node: Int) async -> (transactions: Double, blocks: Double)? {
        guard let text = await cluster.metricsText(node),
              let transactions = PrometheusText.value(text, Self.transactionsCommitted),
              let blocks = PrometheusText.value(text, Self.blocksCommitted)
        else { return nil }
        return (transactions, blocks)
    }

    /// Liveness of the full-blocks load: every mempool empty (each posted transfer is
    /// valid, so each commits) within the recovery time. The live-balance checks that
    /// follow need the chain to have stopped moving.
    func fullBlocksDrained(since: Date) async -> CheckResult {
        let deadline = since.addingTimeInterval(recoverySeconds)
        var sizes: [String] = []
        while Date() < deadline {
            sizes = []
            var empty = true
            for node in 0..<cluster.validators {
                let size = (try? await cluster.json(node, "status"))?["mempool_size"] as? Int
                sizes.append("node\(node) \(size.map(String.init) ?? "?")")
                if size != 0 { empty = false }
            }
            if empty {
                return CheckResult(
                    name: "full-blocks load committed: every mempool empty within \(Int(recoverySeconds)) s of the faults ending", passed: true,
                    detail: String(format: "after %.1f s", Date().timeIntervalSince(since)))
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
        return CheckResult(
            name: "full-blocks load committed: every mempool empty within \(Int(recoverySeconds)) s of the faults ending", passed: false,
            detail: "mempool sizes: " + sizes.joined(separator: ", "))
    }

    /// Transactions in the committed block at `height` (its canonical bytes), or nil.
    private func transactionCount(_ node: Int, height: UInt64) async -> Int? {
        guard let (status, data) = try? await cluster.request(node, "blocks/\(height)", accept: "application/octet-stream"), status == 200,
              let block = try? CertifiedBlock(canonicalBytes: Array(data))
        else { return nil }
        return block.block.transactions.count
    }

    private func dropCounters() async -> [Int: (tooLarge: Double?, queueFull: Double?)] {
        var counters: [Int: (tooLarge: Double?, queueFull: Double?)] = [:]
        for node in 0..<cluster.validators {
            let text = await cluster.metricsText(node)
            counters[node] = (text.flatMap { PrometheusText.value($0, Self.networkDrops, labels: ["reason": "message_too_large"]) },
                              text.flatMap { PrometheusText.value($0, Self.networkDrops, labels: ["reason": "outbound_queue_full"]) })
        }
        return counters
    }

    /// Posts the full-blocks load to the backups, waits until blocks are full, kills
    /// the primary (asked again just before) and judges the recovery. Returns the node
    /// killed, which the episode's end restarts; the load stops then too.
    func killPrimaryUnderFullBlocks(_ primary: Int, started: Date, end: EpisodeEnd) async -> Int {
        guard let load = fullBlocks else { preconditionFailure("kill-primary-full-blocks without its load") }
        var primary = primary
        let backups = cluster.healthyNodes.filter { $0 != primary }
        guard let observer = backups.first else {
            statistics.recordFinding(.killPrimaryFullBlocks, passed: false, "no healthy backup")
            return primary
        }
        let dropsBefore = await dropCounters()
        let stop = StopFlag()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let loadTask = Task { await load.run(from: observer, backups: backups, client: client, shouldStop: { stop.isSet }) }
        end.add {
            stop.set()
            // The posts in flight finish on their own; the transfers stay in the mempools.
            Task {
                await loadTask.value
                try? await client.shutdown()
            }
        }
        print("\(elapsed(started)) kill-primary-full-blocks: posting \(load.transactionsPerEpisode) transfers from \(load.accounts) accounts to "
            + backups.map { "node\($0)" }.joined(separator: ","))

        // Full: a block the observer committed since the load started holds the genesis maximum.
        let maxTransactions = Double(cluster.genesis.consensus.maxBlockTransactions)
        let fillStart = Date()
        var seenHeight = await cluster.height(observer) ?? 0
        var full = false
        var fullest = 0.0
        while !full && Date().timeIntervalSince(fillStart) < FullBlocksLoad.fillTimeoutSeconds {
            try? await Task.sleep(for: .milliseconds(FullBlocksLoad.pollMilliseconds))
            guard let height = await cluster.height(observer), height > seenHeight else { continue }
            // The newest few only: while blocks are small there are many, and small.
            for block in max(seenHeight + 1, height - min(height, FullBlocksLoad.blocksReadPerPoll) + 1)...height {
                let count = Double(await transactionCount(observer, height: block) ?? 0)
                fullest = max(fullest, count)
                if count >= maxTransactions { full = true }
            }
            seenHeight = height
        }
        let majority = await majorityPrimary(excluding: primary)
        if let now = majority?.primary, now != primary, cluster.healthyNodes.contains(now) {
            cluster.setFaulty(primary, false)
            cluster.setFaulty(now, true)
            print("\(elapsed(started)) kill-primary-full-blocks: the primary is node\(now) now (not node\(primary))")
            primary = now
        }
        let atKill = await cluster.status(observer)
        let viewAtKill = majority?.view ?? atKill?.view ?? 0
        cluster.kill(primary)
        let killedAt = Date()
        print(String(format: "%@ kill -9 node%d (the primary, view %llu, height %llu) after %.1f s of load, blocks %@",
                     elapsed(started), primary, viewAtKill, atKill?.height ?? 0, killedAt.timeIntervalSince(fillStart),
                     full ? "full" : String(format: "NOT full (at most %.0f of %.0f transactions a block)", fullest, maxTransactions)))

        // Resumed: most healthy validators are in a later view, and one of them commits
        // transactions after it got there.
        var baseline: [Int: Double] = [:]
        var resumedAfter: Double?
        var newView: UInt64 = 0
        watching: while Date().timeIntervalSince(killedAt) < viewChangeBoundSeconds {
            var later: [(node: Int, view: UInt64)] = []
            let healthy = cluster.healthyNodes
            for node in healthy {
                if let status = await cluster.status(node), status.view > viewAtKill { later.append((node, status.view)) }
            }
            for (node, view) in later where 2 * later.count > healthy.count {
                guard let counters = await committedCounters(node) else { continue }
                if let first = baseline[node] {
                    if counters.transactions > first {
                        resumedAfter = Date().timeIntervalSince(killedAt)
                        newView = view
                        break watching
                    }
                } else {
                    baseline[node] = counters.transactions
                }
            }
            try? await Task.sleep(for: .milliseconds(FullBlocksLoad.pollMilliseconds))
        }
        let dropsAfter = await dropCounters()
        var tooLarge = 0.0
        var queueFull = 0.0
        for node in 0..<cluster.validators where node != primary {
            tooLarge += counterRise(from: dropsBefore[node]?.tooLarge, to: dropsAfter[node]?.tooLarge)
            queueFull += counterRise(from: dropsBefore[node]?.queueFull, to: dropsAfter[node]?.queueFull)
        }
        let passed = full && resumedAfter != nil && tooLarge == 0
        let resumed = resumedAfter.map { String(format: "commits resumed in view %llu %.1f s after the kill", newView, $0) }
            ?? String(format: "NO transaction committed in a later view within %.0f s", viewChangeBoundSeconds)
        let detail = String(
            format: "node%d killed at view %llu height %llu, blocks %@; %@; message_too_large +%.0f, outbound_queue_full +%.0f; load %@",
            primary, viewAtKill, atKill?.height ?? 0, full ? "full" : String(format: "never full (at most %.0f)", fullest), resumed, tooLarge,
            queueFull, load.summary)
        statistics.recordFinding(.killPrimaryFullBlocks, passed: passed, detail)
        print("\(elapsed(started)) kill-primary-full-blocks: \(passed ? "ok" : "FAILED"): \(resumed)")
        return primary
    }

    // MARK: restored-data

    /// Devnet account 0 sends the restored node one transfer (to the faucet, an account
    /// the supply checks cover), so that it proposes.
    var restoreProbeKey: SigningKey { DevnetKeys.accountKey(0) }

    /// Waits (until the episode's end at most) for the chain to be just past a checkpoint,
    /// then copies the frozen node's data directory; returns the height copied. A
    /// restored primary's second PRE-PREPARE can show as evidence only while its peers
    /// still hold that height's slot, i.e. below their next stable checkpoint.
    /// Also returns the probe account's nonce in the copy (a restored node in its
    /// start-up quarantine does not serve accounts).
    func copyDataAfterCheckpoint(_ node: Int, until episodeEnd: Date) async throws -> (height: UInt64, probeNonce: UInt64?) {
        let interval = cluster.genesis.consensus.checkpointIntervalBlocks
        var height = await cluster.height(node) ?? 0
        while height % interval > 1 && Date() < episodeEnd {
            try? await Task.sleep(for: .milliseconds(100))
            height = await cluster.height(node) ?? height
        }
        let nonce = await cluster.account(node, Address(publicKey: restoreProbeKey.publicKey))?.nonce
        try copyData(node)
        return (height, nonce)
    }

    /// The run-on phase ends a few heights after the copy: at the episode's end or just
    /// before the next checkpoint, whichever comes first (at most 20 s past the end).
    func waitBeforeCheckpoint(after height: UInt64, until episodeEnd: Date) async {
        let interval = cluster.genesis.consensus.checkpointIntervalBlocks
        let nextCheckpoint = (height / interval + 1) * interval
        let margin = min(3, interval - 1)
        while Date() < episodeEnd.addingTimeInterval(20) {
            let now = await healthyStatus()?.height ?? 0
            if now >= height + margin && (now + margin >= nextCheckpoint || Date() >= episodeEnd) { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }

    /// Issue 13 item 8's reproduction: kill -9 the node, pause every other running
    /// validator, put the old copy back, restart it, send it one transfer (it is the
    /// primary of its restored view: without the start-up safety it proposes again for a
    /// height it already proposed), wait, and let the others run again. Their evidence
    /// then shows any second signature (the end-of-run evidence check).
    func restoreWhilePeersPause(_ node: Int, probeNonce: UInt64?, started: Date) async throws {
        cluster.kill(node)
        let paused = cluster.healthyNodes.filter { $0 != node && cluster.isRunning($0) }
        for other in paused { cluster.signal(other, SIGSTOP) }
        defer { for other in paused { cluster.signal(other, SIGCONT) } }
        try restoreData(node)
        try cluster.start(node)
        let deadline = Date().addingTimeInterval(60)
        while await cluster.status(node) == nil && Date() < deadline { try? await Task.sleep(for: .milliseconds(200)) }
        let address = Address(publicKey: restoreProbeKey.publicKey)
        let account = await cluster.account(node, address)
        // Nonces around the copy's: one of them is next in its restored state (the
        // others wait or are refused; any may commit later, as any transfer may).
        let nonce = account?.nonce ?? probeNonce ?? 0
        let probes = (nonce - min(nonce, Self.probeNonceSpread)...nonce + Self.probeNonceSpread).map {
            Transaction.signed(
                by: restoreProbeKey, chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash,
                to: Address(publicKey: cluster.faucet.publicKey), amount: 1, fee: cluster.genesis.consensus.minFee, nonce: $0)
        }
        let answers = await submit(probes, to: node)
        try? await Task.sleep(for: .seconds(2))
        print("\(elapsed(started)) kill -9 node\(node), others paused, its older data directory put back, restart, "
            + "transfers sent to it (nonces from \(nonce - min(nonce, Self.probeNonceSpread)): \(answers.joined(separator: ", "))), others resumed")
    }

    static let probeNonceSpread: UInt64 = 2

    /// Posts a batch; "ok" or the error code of each transaction.
    private func submit(_ transactions: [Transaction], to node: Int) async -> [String] {
        let body = try! JSONSerialization.data(withJSONObject: ["txs": transactions.map { Hex.encode($0.canonicalBytes) }])
        guard let (status, data) = try? await cluster.request(node, "txs", method: "POST", body: body) else { return ["no answer"] }
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
        guard let results = object?["results"] as? [[String: Any]] else {
            return [((object?["error"] as? [String: Any])?["code"] as? String) ?? "HTTP \(status)"]
        }
        return results.map { (($0["error"] as? [String: Any])?["code"] as? String) ?? "ok" }
    }
}
