import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import TallyCrypto
import TallyNode
import TallyTestbed
import TallyTypes

/// End to end: V validators as separate `tally-node` processes on 127.0.0.1, driven
/// over the HTTP API by pre-signed transfers from many funded accounts. Two phases:
/// a fixed offered load (commit latency, submit → `tx` event on node 0), then
/// saturation (committed transactions per second from node 0's `block` events over
/// the middle 80 % of the run, excluding warm-up and drain).
struct EndToEnd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e", abstract: "Throughput and commit latency of a local network of validator processes.")

    @Option(name: .long, help: "Validators (separate processes).") var validators = 4
    @Option(name: .long, help: "Funded sender accounts (well-known devnet keys).") var accounts = 1_000
    @Option(name: .long, help: "Transactions in the saturation phase.") var transactions = 100_000
    @Option(name: .long, help: "Transactions per POST /txs batch in the saturation phase.") var batch = 1_000
    @Option(name: .long, help: "Batches in flight at once in the saturation phase.") var concurrency = 8
    @Option(name: .long, help: "Offered load of the latency phase, transactions per second.") var latencyRate = 1_000
    @Option(name: .long, help: "Seconds of the latency phase.") var latencySeconds = 10
    @Option(name: .long, parsing: .upToNextOption, help: "Validators the latency phase submits to, in turn (default: all; e.g. --latency-nodes 1 to send everything to a backup).")
    var latencyNodes: [Int] = []
    @Option(name: .long, help: "Override the genesis max_blocks_in_flight (PBFT window).") var maxBlocksInFlight: UInt64?
    @Flag(name: .long, help: "Run only the latency phase and the closed-loop phases (no saturation, no restart).") var latencyOnly = false
    @Option(name: .long, parsing: .upToNextOption, help: "Closed-loop phases, one per client count (e.g. --clients 1 100): each client signs a transfer, submits it, waits for its commit, repeats.")
    var clients: [Int] = []
    @Option(name: .long, help: "Seconds of each closed-loop phase.") var closedLoopSeconds = 10.0
    @Option(name: .long, help: ArgumentHelp("Write the raw samples for plots here (latencies, block events).", valueName: "FILE")) var series: String?
    @Option(name: .long, help: ArgumentHelp("Network directory (default: a new temporary one).", valueName: "DIR")) var output: String?
    @Option(name: .long, help: "First API port (peers 100 above); default random.") var basePort: Int?
    @Option(name: .long, help: ArgumentHelp("Write the JSON result here (else stdout).", valueName: "FILE")) var json: String?
    @Flag(name: .long, help: "WAN profile (root only): every validator in its own network namespace, WAN delay on every validator↔validator link.")
    var wan = false
    @Option(name: .long, help: "One-way delay of the WAN profile, milliseconds.") var wanDelayMs = 25

    func validate() throws {
        guard validators >= 1, accounts >= 1, transactions >= 1, batch >= 1, batch <= 10_000, concurrency >= 1,
            latencyRate >= 100, latencySeconds >= 1
        else { throw ValidationError("counts must be positive; --batch at most 10000; --latency-rate at least 100") }
        guard clients.allSatisfy({ (1...Self.maxClosedLoopClients).contains($0) }), closedLoopSeconds > 0 else {
            throw ValidationError("--clients: each between 1 and \(Self.maxClosedLoopClients); --closed-loop-seconds positive")
        }
        guard latencyNodes.allSatisfy({ (0..<validators).contains($0) }) else {
            throw ValidationError("--latency-nodes: each between 0 and \(validators - 1)")
        }
        guard noncesPerAccount <= Self.maxNoncesPerAccount else {
            throw ValidationError("too many transactions per account (\(noncesPerAccount)); raise --accounts")
        }
    }

    /// Nonces the workload pre-signs per account (all of them may be offered before
    /// the first commits).
    var noncesPerAccount: Int { (transactions + latencyRate * latencySeconds + accounts - 1) / accounts }
    static let maxNoncesPerAccount = 5_000
    /// Closed-loop clients at most (each its own funded account and request in flight).
    static let maxClosedLoopClients = 1_000

    func run() async throws {
        let directory = output ?? FileManager.default.temporaryDirectory.appendingPathComponent("tally-bench-e2e-\(getpid())").path
        let port = basePort ?? Testbed.randomBasePort(validators: validators)
        var lab: NetworkLab?
        if wan {
            if let reason = NetworkLab.unavailableReason() { throw BenchError("--wan: \(reason)") }
            let built = try NetworkLab(validators: validators, seed: 1)
            // The harness (clients) stays close to every validator; the validators are far apart.
            built.setValidatorLinks { _, _ in LinkPolicy(delayMicroseconds: UInt64(wanDelayMs) * 1000) }
            lab = built
        }
        defer { lab?.stop() }
        let network = try Testbed(
            directory: URL(fileURLWithPath: directory), validators: validators, basePort: port, binaries: productsDirectory,
            chainID: "tally-bench", fundedDevnetAccounts: accounts + (clients.max() ?? 0), maxBlocksInFlight: maxBlocksInFlight, lab: lab)
        // The saturation phase offers every pre-signed nonce as fast as the network
        // takes it, far beyond the public default window (16): a benchmark of
        // throughput, not of admission policy, so the nodes take the whole window.
        for index in 0..<validators {
            let home = NodeHome(path: network.home(index))
            var config = try home.loadConfig()
            config.mempool.maxNonceGap = UInt64(noncesPerAccount)
            config.mempool.maxPerSender = max(config.mempool.maxPerSender, noncesPerAccount + 1)
            // Every benchmark client connects from 127.0.0.1, where real clients come
            // from many addresses: the per-address submit limit (200/s) would measure
            // itself (100 closed-loop clients are refused `rate_limited`), so it is
            // raised to its configuration bound for the run.
            config.api.submitRequestsPerSecond = 1_000_000
            config.api.submitBurst = 1_000_000
            try home.writeConfig(config)
        }
        let latencyCount = latencyRate * latencySeconds
        benchLog("signing \(latencyCount + (latencyOnly ? 0 : transactions)) transfers from \(accounts) accounts")
        let signed = Workload.sign(accounts: accounts, count: latencyCount + (latencyOnly ? 0 : transactions), chainID: network.genesis.chainID,
            genesisHash: network.genesis.hash)
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        var result: [String: Any] = [:]
        do {
            try network.startAll()
            try await network.waitUntilConnected(client)
            let events = CommitLog()
            let reader = Task { try await events.follow(client: client, url: network.apiString(0) + "/events") }
            try await events.waitUntilSubscribed()

            benchLog("latency phase: \(latencyCount) transfers at \(latencyRate) tx/s")
            var scraped = await StageBreakdown.scrape(network, client: client)
            var (latency, latencySeries) = Series.split(try await Workload.offerFixedRate(
                Array(signed[0..<latencyCount]), rate: latencyRate, nodes: latencyNodes.isEmpty ? Array(0..<validators) : latencyNodes,
                network: network, client: client, events: events))
            var stages: [String: Any] = [:]
            let (latencyStages, afterLatency) = await StageBreakdown.since(scraped, phase: "fixed load", network: network, client: client)
            stages["latency"] = latencyStages
            latency.merge(bytesPerTransaction(
                "latency", from: scraped, to: afterLatency, committed: latency["latency_committed"] as? Int ?? 0)) { _, new in new }
            scraped = afterLatency
            var plotSeries: [String: Any] = ["latency": latencySeries]

            let (closedLoops, closedLoopSeries, afterClosedLoops) = try await ClosedLoop.runPhases(
                clients, seconds: closedLoopSeconds, firstAccount: accounts, network: network, client: client, events: events,
                stagesBefore: scraped)
            scraped = afterClosedLoops
            plotSeries.merge(closedLoopSeries) { _, new in new }
            defer { if let series { try? writeJSON(plotSeries, to: series) } }
            if latencyOnly {
                reader.cancel()
                result = latency
                result["closed_loop"] = closedLoops
                result["stages"] = stages
                result["validators"] = validators
                result["e2e_dir"] = directory
                network.terminateAll(graceSeconds: 5)
                try await client.shutdown()
                return try writeJSON(result, to: json)
            }
            benchLog("saturation phase: \(transactions) transfers, batches of \(batch), \(concurrency) in flight")
            var (saturation, saturationSeries) = Series.split(try await Workload.saturate(
                Array(signed[latencyCount...]), batch: batch, concurrency: concurrency, network: network, client: client, events: events))
            reader.cancel()
            let (saturationStages, afterSaturation) = await StageBreakdown.since(
                scraped, phase: "saturation", network: network, client: client)
            stages["saturation"] = saturationStages
            saturation.merge(bytesPerTransaction(
                "saturation", from: scraped, to: afterSaturation, committed: saturation["e2e_committed"] as? Int ?? 0)) { _, new in new }
            plotSeries["saturation"] = saturationSeries

            var viewChanges = 0.0
            for index in 0..<validators { viewChanges += await network.metric(client, index, "tally_view_changes_total") ?? 0 }
            let memory = (0..<validators).map { network.memory($0)?.peak ?? 0 }
            let tip = try await network.height(client, 0)
            let restartSeconds = try await network.restart(0, client: client, untilHeight: tip)
            result = latency.merging(saturation) { first, _ in first }
            result["closed_loop"] = closedLoops
            result["stages"] = stages
            result["view_changes"] = viewChanges
            result["validator_rss_mb"] = memory
            result["validator_rss_mb_max"] = memory.max() ?? 0
            result["restart_seconds"] = restartSeconds
            result["chain_height"] = Int(tip)
            result["validators"] = validators
            result["accounts"] = accounts
            result["e2e_dir"] = directory
            result["max_blocks_in_flight"] = Int(network.genesis.consensus.maxBlocksInFlight)
        } catch {
            await reportState(network, client: client)
            network.terminateAll(graceSeconds: 5)
            try? await client.shutdown()
            throw error
        }
        if let lab { result["wan_delay_ms"] = wanDelayMs; result["switch"] = "\(lab.statistics)" }
        network.terminateAll(graceSeconds: 5)
        try await client.shutdown()
        try writeJSON(result, to: json)
    }
}

extension EndToEnd {
    /// `<phase>_bytes_sent_per_tx_per_validator`: the wire bytes all validators sent each
    /// other during the phase (`tally_network_bytes_sent_total`, summed over the nodes)
    /// ÷ the transactions committed in it ÷ validators; logged. Empty when a node's
    /// counter could not be read or nothing committed.
    func bytesPerTransaction(
        _ phase: String, from before: StageBreakdown, to after: StageBreakdown, committed: Int
    ) -> [String: Any] {
        guard let bytes = StageBreakdown.bytesSentRise(from: before, to: after), committed > 0 else {
            benchLog("\(phase): bytes sent per committed transaction unknown (a node's counter unread, or nothing committed)")
            return [:]
        }
        let perValidator = bytes / Double(committed) / Double(validators)
        benchLog(String(format: "%@: %.0f bytes sent per committed transaction per validator (%.1f MB over %d validators, %d transactions)",
                   phase, perValidator, bytes / 1e6, validators, committed))
        return ["\(phase)_bytes_sent_total": bytes, "\(phase)_bytes_sent_per_tx_per_validator": perValidator]
    }
}

/// A failed run's evidence: each validator's status, view changes and dropped messages.
func reportState(_ network: Testbed, client: HTTPClient) async {
    for index in 0..<network.validators {
        let status = (try? await network.status(client, index)).map { status in
            ["height", "view", "primary", "catching_up", "peers_connected", "mempool_size"].map { "\($0)=\(status[$0] ?? "?")" }
                .joined(separator: " ")
        } ?? "no answer"
        var counters: [String] = []
        if let data = try? await network.get(client, index, "/metrics") {
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n")
            where (line.hasPrefix("tally_network_messages_dropped_total") || line.hasPrefix("tally_view_changes_total")) && !line.hasSuffix(" 0") {
                counters.append(String(line))
            }
        }
        benchLog("node\(index): \(status); " + (counters.isEmpty ? "no drops, no view changes" : counters.joined(separator: ", ")))
    }
    if let lab = network.lab { benchLog("switch: \(lab.statistics)") }
}

/// Pre-signed transfers and the two load shapes.
enum Workload {
    struct Signed: Sendable {
        let hex: String
        let hash: String
    }

    /// Transfer `k` is from account `k % accounts` with nonce `k / accounts`, to one of
    /// as many unfunded accounts (the chain creates them), signed on all cores.
    static func sign(accounts: Int, count: Int, chainID: String, genesisHash: Hash) -> [Signed] {
        let keys = (0..<accounts).map(DevnetKeys.accountKey)
        let recipients = (accounts..<(2 * accounts)).map { Address(publicKey: DevnetKeys.accountKey($0).publicKey) }
        let output = UnsafeMutableBufferPointer<Signed>.allocate(capacity: count)
        defer { output.deallocate() }
        let chunks = MachineFacts.cores * 4
        let base = UnsafeMutableBufferPointer(start: output.baseAddress, count: count)
        nonisolated(unsafe) let shared = base
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
            var k = chunk
            while k < count {
                let transaction = Transaction.signed(
                    by: keys[k % accounts], chainID: chainID, genesisHash: genesisHash,
                    to: recipients[(k * 7 + k / accounts) % accounts], amount: 1, fee: 1, nonce: UInt64(k / accounts))
                (shared.baseAddress! + k).initialize(to: Signed(hex: Hex.encode(transaction.canonicalBytes), hash: transaction.hash.hex))
                k += chunks
            }
        }
        return Array(base)
    }

    /// Sends `transactions` in small batches at `rate` per second (one batch every
    /// 10 ms, to `nodes` in turn), then waits for every one to commit. Latency = commit
    /// event on node 0 minus the moment its batch was sent.
    static func offerFixedRate(
        _ transactions: [Signed], rate: Int, nodes: [Int], network: Testbed, client: HTTPClient, events: CommitLog
    ) async throws -> [String: Any] {
        let perBatch = max(1, rate / 100)
        let batches = stride(from: 0, to: transactions.count, by: perBatch).map { Array(transactions[$0..<min($0 + perBatch, transactions.count)]) }
        let submitted = SubmitLog()
        let start = monotonicSeconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, batch) in batches.enumerated() {
                let due = start + Double(index) * 0.01
                let wait = due - monotonicSeconds()
                if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
                group.addTask {
                    let sentAt = monotonicSeconds()
                    let rejected = try await network.submit(client, nodes[index % nodes.count], batch)
                    submitted.record(batch, at: sentAt, rejected: rejected)
                }
            }
            try await group.waitForAll()
        }
        let offeredSeconds = monotonicSeconds() - start
        let accepted = submitted.accepted
        let lost = try await events.waitForCommits(of: accepted.map(\.hash), since: start, seconds: 60)
        var latencies = accepted.compactMap { tx in events.commitTime(tx.hash).map { ($0 - tx.sentAt) * 1000 } }
        latencies.sort()
        benchLog(String(format: "latency at %.0f tx/s offered: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d rejected)",
                   Double(transactions.count) / offeredSeconds, quantile(latencies, 0.5), quantile(latencies, 0.99),
                   latencies.last ?? 0, submitted.rejectedCount))
        return [
            "latency_offered_tx_per_s": Double(transactions.count) / offeredSeconds, "latency_nodes": nodes,
            "latency_p50_ms": quantile(latencies, 0.5), "latency_p90_ms": quantile(latencies, 0.9),
            "latency_p99_ms": quantile(latencies, 0.99),
            "latency_max_ms": latencies.last ?? 0, "latency_committed": accepted.count, "latency_rejected": submitted.rejectedCount,
            "latency_rejections": submitted.rejectionCodes, "latency_lost_tx_events": lost,
            Series.prefix + "latency_ms": latencies,
        ]
    }

    /// Submits everything as fast as the network takes it (`concurrency` batches in
    /// flight, nodes in turn, `mempool_full` retried), then waits for all commits.
    static func saturate(
        _ transactions: [Signed], batch: Int, concurrency: Int, network: Testbed, client: HTTPClient, events: CommitLog
    ) async throws -> [String: Any] {
        let batches = stride(from: 0, to: transactions.count, by: batch).map { Array(transactions[$0..<min($0 + batch, transactions.count)]) }
        let submitted = SubmitLog()
        let next = IndexCounter()
        let start = monotonicSeconds()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    while let index = next.take(below: batches.count) {
                        var pending = batches[index]
                        var attempts = 0
                        while !pending.isEmpty {
                            let sentAt = monotonicSeconds()
                            let rejected = try await network.submit(client, (index + attempts) % network.validators, pending)
                            let full = rejected.filter { $0.value == "mempool_full" }
                            submitted.record(pending.filter { full[$0.hash] == nil }, at: sentAt, rejected: rejected.filter { $0.value != "mempool_full" })
                            pending = pending.filter { full[$0.hash] != nil }
                            attempts += 1
                            if !pending.isEmpty { try await Task.sleep(nanoseconds: 20_000_000) }
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let submitSeconds = monotonicSeconds() - start
        let accepted = submitted.accepted
        let lost = try await events.waitForCommits(of: accepted.map(\.hash), since: start, seconds: max(120, Double(transactions.count) / 200))
        let end = monotonicSeconds()
        let blocks = events.blocks.filter { $0.time >= start && $0.time <= end && $0.transactions > 0 }
        let total = blocks.reduce(0) { $0 + $1.transactions }
        // The middle 80 % of committed transactions: excludes warm-up and the drain.
        var cumulative = 0
        var low: (time: Double, count: Int)?
        var high: (time: Double, count: Int)?
        var windowBlocks = 0
        for block in blocks {
            if low != nil && high == nil { windowBlocks += 1 }
            cumulative += block.transactions
            if low == nil && Double(cumulative) >= 0.1 * Double(total) { low = (block.time, cumulative) }
            if high == nil && Double(cumulative) >= 0.9 * Double(total) { high = (block.time, cumulative) }
        }
        // The whole run: first submit to the last commit (the last block event that held transactions).
        let lastCommit = blocks.last?.time ?? end
        let wholeRunRate = lastCommit > start ? Double(total) / (lastCommit - start) : 0
        var rate = 0.0
        var blocksPerSecond = 0.0
        var perBlock = 0.0
        if let low, let high, high.time > low.time {
            rate = Double(high.count - low.count) / (high.time - low.time)
            blocksPerSecond = Double(windowBlocks) / (high.time - low.time)
            perBlock = windowBlocks > 0 ? Double(high.count - low.count) / Double(windowBlocks) : 0
        }
        benchLog(String(format: "saturation: %.0f tx/s committed (middle 80%%), %.0f tx/s over the whole run, %.1f blocks/s, %.0f tx/block; %d committed in %.1f s (submitted in %.1f s), %d rejected",
                   rate, wholeRunRate, blocksPerSecond, perBlock, total, lastCommit - start, submitSeconds, submitted.rejectedCount))
        return [
            "e2e_tx_per_s": rate, "e2e_blocks_per_s": blocksPerSecond, "e2e_tx_per_block": perBlock,
            "e2e_committed": total, "e2e_seconds": lastCommit - start, "e2e_submit_seconds": submitSeconds,
            "e2e_overall_tx_per_s": wholeRunRate, "e2e_rejected": submitted.rejectedCount,
            "e2e_rejections": submitted.rejectionCodes, "e2e_lost_tx_events": lost,
            // Each block event's arrival (seconds from the first submit) and size, for the throughput plot.
            Series.prefix + "blocks": blocks.map { [$0.time - start, Double($0.transactions)] },
        ]
    }
}

/// Raw samples for the plots (`--series`), kept out of the JSON result the table reads.
enum Series {
    static let prefix = "series_"

    /// `result` without its series, and the series (keys without the prefix).
    static func split(_ result: [String: Any]) -> (result: [String: Any], series: [String: Any]) {
        var rest: [String: Any] = [:], series: [String: Any] = [:]
        for (key, value) in result {
            if key.hasPrefix(prefix) { series[String(key.dropFirst(prefix.count))] = value } else { rest[key] = value }
        }
        return (rest, series)
    }
}

/// Accepted transactions with their send time; rejections by code.
final class SubmitLog: @unchecked Sendable {
    struct Entry { let hash: String; let sentAt: Double }
    private let lock = NSLock()
    private var entries: [Entry] = []
    private var codes: [String: Int] = [:]

    func record(_ batch: [Workload.Signed], at sentAt: Double, rejected: [String: String]) {
        lock.withLock {
            for tx in batch where rejected[tx.hash] == nil { entries.append(Entry(hash: tx.hash, sentAt: sentAt)) }
            for code in rejected.values { codes[code, default: 0] += 1 }
        }
    }
    var accepted: [Entry] { lock.withLock { entries } }
    var rejectedCount: Int { lock.withLock { codes.values.reduce(0, +) } }
    var rejectionCodes: [String: Int] { lock.withLock { codes } }
}

/// Node 0's commit events: arrival time of each `tx` and `block` event.
final class CommitLog: @unchecked Sendable {
    struct BlockEvent { let time: Double; let height: UInt64; let transactions: Int }
    private let lock = NSLock()
    private var commits: [String: Double] = [:]
    private var blockEvents: [BlockEvent] = []
    /// Closed-loop clients waiting for one transaction's `tx` event each.
    private var waiters: [String: CheckedContinuation<Double?, Never>] = [:]
    /// Their timeouts, cancelled when the event comes.
    private var waiterTimeouts: [String: Task<Void, Never>] = [:]
    private var subscribed = false
    static let stallSeconds = 30.0

    func commitTime(_ hash: String) -> Double? { lock.withLock { commits[hash] } }
    var blocks: [BlockEvent] { lock.withLock { blockEvents } }

    /// The arrival time of `hash`'s `tx` event, as soon as it arrives (or arrived);
    /// nil after `timeoutSeconds` without it.
    func waitForCommit(_ hash: String, timeoutSeconds: Double) async -> Double? {
        await withCheckedContinuation { continuation in
            let known: Double? = lock.withLock {
                if let time = commits[hash] { return time }
                waiters[hash] = continuation
                return nil
            }
            if let known { return continuation.resume(returning: known) }
            // Started after the waiter is registered, so it cannot fire before it.
            let timeout = Task {
                try? await Task.sleep(nanoseconds: UInt64(timeoutSeconds * 1e9))
                if Task.isCancelled { return }
                self.lock.withLock {
                    self.waiterTimeouts[hash] = nil
                    return self.waiters.removeValue(forKey: hash)
                }?.resume(returning: nil)
            }
            lock.withLock { if waiters[hash] != nil { waiterTimeouts[hash] = timeout } }
        }
    }

    func waitUntilSubscribed() async throws {
        for _ in 0..<200 {
            if lock.withLock({ subscribed }) { return }
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        throw BenchError("could not subscribe to node 0's /events")
    }

    /// Waits until every hash has a `tx` event, or block events since `since` account
    /// for all of them (a slow reader may lose `tx` events to the node's bounded
    /// buffer); returns how many have no `tx` event.
    @discardableResult
    func waitForCommits(of hashes: [String], since: Double, seconds: Double) async throws -> Int {
        let deadline = monotonicSeconds() + seconds
        while true {
            let (missing, inBlocks) = lock.withLock {
                (hashes.lazy.filter { self.commits[$0] == nil }.count,
                 blockEvents.lazy.filter { $0.time >= since }.reduce(0) { $0 + $1.transactions })
            }
            if missing == 0 { return 0 }
            if inBlocks >= hashes.count {
                try await Task.sleep(nanoseconds: 500_000_000)
                let late = lock.withLock { hashes.lazy.filter { self.commits[$0] == nil }.count }
                if late > 0 { benchLog("warning: \(late) commits seen only in block events (tx events lost)") }
                return late
            }
            if monotonicSeconds() > deadline { throw BenchError("\(missing) accepted transactions not committed after \(Int(seconds)) s") }
            // A stalled node (no block event for a while) fails the run rather than waiting out the deadline.
            let lastBlock = lock.withLock { blockEvents.last?.time ?? since }
            if monotonicSeconds() - max(lastBlock, since) > Self.stallSeconds {
                throw BenchError("node 0 committed no block for \(Int(Self.stallSeconds)) s with \(missing) transactions outstanding (stalled)")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }

    /// Reads the server-sent events until cancelled.
    func follow(client: HTTPClient, url: String) async throws {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "Accept", value: "text/event-stream")
        let response = try await client.execute(request, timeout: .hours(24))
        guard response.status == .ok else { throw BenchError("/events answered \(response.status)") }
        lock.withLock { subscribed = true }
        var pending: [UInt8] = []
        for try await buffer in response.body {
            let now = monotonicSeconds()
            pending.append(contentsOf: buffer.readableBytesView)
            var start = 0
            var index = 0
            while index + 1 < pending.count {
                if pending[index] == 0x0a && pending[index + 1] == 0x0a {
                    handle(pending[start..<index], at: now)
                    start = index + 2
                    index = start
                } else {
                    index += 1
                }
            }
            pending.removeFirst(start)
        }
    }

    private func handle(_ event: ArraySlice<UInt8>, at time: Double) {
        var name = ""
        var data: Data?
        for line in event.split(separator: 0x0a) {
            if line.starts(with: Array("event: ".utf8)) { name = String(decoding: line.dropFirst(7), as: UTF8.self) }
            if line.starts(with: Array("data: ".utf8)) { data = Data(line.dropFirst(6)) }
        }
        guard let data else { return }
        if name == "tx" {
            // Thousands a second at saturation: take the hash from its fixed place
            // (`{"hash":"<64 hex>",…`, HTTPAPI.serverSentEvent) instead of a JSON parse.
            let prefix = Array("{\"hash\":\"".utf8)
            guard data.count >= prefix.count + 64, data.prefix(prefix.count).elementsEqual(prefix) else { return }
            let hash = String(decoding: data.dropFirst(prefix.count).prefix(64), as: UTF8.self)
            let (waiter, timeout) = lock.withLock {
                if commits[hash] == nil { commits[hash] = time }
                return (waiters.removeValue(forKey: hash), waiterTimeouts.removeValue(forKey: hash))
            }
            timeout?.cancel()
            waiter?.resume(returning: time)
            return
        }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return }
        switch name {
        case "block":
            let height = (object["height"] as? String).flatMap { UInt64($0) } ?? 0
            let count = object["transactions"] as? Int ?? 0
            lock.withLock { blockEvents.append(BlockEvent(time: time, height: height, transactions: count)) }
        default: break
        }
    }
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
