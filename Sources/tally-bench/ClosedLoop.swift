import AsyncHTTPClient
import Foundation
import TallyCrypto
import TallyTestbed
import TallyTypes

/// The closed-loop workload of BFT-SMaRt's ThroughputLatency demo: N clients, each
/// with one request outstanding: sign a transfer, submit it, wait for its commit, repeat.
/// Client `c` sends from its own funded devnet account (`firstAccount + c`, untouched
/// by the other phases) to the next validator in turn (`c mod V`); its commit is the
/// transfer's `tx` event on node 0's `/events`. Latency = submit → that event.
enum ClosedLoop {
    /// A client that waits this long for one commit fails the phase (stalled network).
    static let commitTimeoutSeconds = 30.0
    /// Refused submissions (all clients) before the phase gives up.
    static let maxRejections = 1_000

    /// Each client account's next nonce, kept across phases (a later phase with more
    /// clients reuses the first accounts).
    final class Nonces: @unchecked Sendable {
        private let lock = NSLock()
        private var next: [UInt64]
        init(accounts: Int) { next = Array(repeating: 0, count: accounts) }
        func take(_ account: Int) -> UInt64 { lock.withLock { next[account] } }
        func advance(_ account: Int) { lock.withLock { next[account] += 1 } }
    }

    /// Completed operations: submit time and latency.
    final class Results: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var latencies: [Double] = []
        private(set) var completions: [Double] = []
        private(set) var rejections: [String: Int] = [:]
        func complete(at time: Double, latency: Double) { lock.withLock { latencies.append(latency); completions.append(time) } }
        func reject(_ code: String) -> Int {
            lock.withLock {
                rejections[code, default: 0] += 1
                return rejections.values.reduce(0, +)
            }
        }
        var snapshot: (latencies: [Double], completions: [Double], rejections: [String: Int]) {
            lock.withLock { (latencies, completions, rejections) }
        }
    }

    /// One phase per client count in turn (client accounts and their nonces carry over),
    /// each with its stage breakdown; returns the phases, their samples (`closed_loop_N`)
    /// and the last scrape of the validators' stage histograms.
    static func runPhases(
        _ counts: [Int], seconds: Double, firstAccount: Int, network: Testbed, client: HTTPClient, events: CommitLog,
        stagesBefore: StageBreakdown
    ) async throws -> (phases: [[String: Any]], series: [String: Any], stagesAfter: StageBreakdown) {
        let nonces = Nonces(accounts: counts.max() ?? 0)
        var phases: [[String: Any]] = [], series: [String: Any] = [:]
        var scraped = stagesBefore
        for count in counts {
            benchLog("closed loop: \(count) clients for \(seconds) s")
            var (phase, samples) = try await run(
                clients: count, seconds: seconds, firstAccount: firstAccount, nonces: nonces, network: network, client: client, events: events)
            let (rows, after) = await StageBreakdown.since(scraped, phase: "closed loop, \(count) clients", network: network, client: client)
            phase["stages"] = rows
            scraped = after
            phases.append(phase)
            series["closed_loop_\(count)"] = samples
        }
        return (phases, series, scraped)
    }

    static func run(
        clients: Int, seconds: Double, firstAccount: Int, nonces: Nonces, network: Testbed, client: HTTPClient, events: CommitLog
    ) async throws -> (summary: [String: Any], series: [String: Any]) {
        let chainID = network.genesis.chainID, genesisHash = network.genesis.hash
        let results = Results()
        let start = monotonicSeconds()
        let deadline = start + seconds
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<clients {
                group.addTask {
                    let key = DevnetKeys.accountKey(firstAccount + index)
                    // A recipient no phase sends from.
                    let recipient = Address(publicKey: DevnetKeys.accountKey(firstAccount + clients + index).publicKey)
                    let node = index % network.validators
                    while monotonicSeconds() < deadline {
                        let transaction = Transaction.signed(
                            by: key, chainID: chainID, genesisHash: genesisHash, to: recipient, amount: 1, fee: 1,
                            nonce: nonces.take(index))
                        let signed = Workload.Signed(hex: Hex.encode(transaction.canonicalBytes), hash: transaction.hash.hex)
                        let sentAt = monotonicSeconds()
                        let rejected = try await network.submit(client, node, [signed])
                        if let code = rejected[signed.hash] {
                            if results.reject(code) > maxRejections {
                                throw BenchError("closed loop: over \(maxRejections) refused submissions (last: \(code))")
                            }
                            try await Task.sleep(nanoseconds: 20_000_000)
                            continue
                        }
                        nonces.advance(index)
                        guard let committed = await events.waitForCommit(signed.hash, timeoutSeconds: commitTimeoutSeconds) else {
                            throw BenchError("closed loop: client \(index)'s transfer not committed within \(Int(commitTimeoutSeconds)) s")
                        }
                        results.complete(at: committed, latency: (committed - sentAt) * 1000)
                    }
                }
            }
            try await group.waitForAll()
        }
        let (latencies, completions, rejections) = results.snapshot
        let end = completions.max() ?? monotonicSeconds()
        let sorted = latencies.sorted()
        let opsPerSecond = end > start ? Double(sorted.count) / (end - start) : 0
        benchLog(String(format: "closed loop, %d clients: %.0f ops/s; latency median %.1f / p90 %.1f / p99 %.1f ms (%d ops in %.1f s, %d refused)",
                   clients, opsPerSecond, quantile(sorted, 0.5), quantile(sorted, 0.9), quantile(sorted, 0.99), sorted.count,
                   end - start, rejections.values.reduce(0, +)))
        let summary: [String: Any] = [
            "clients": clients, "ops": sorted.count, "seconds": end - start, "ops_per_s": opsPerSecond,
            "latency_median_ms": quantile(sorted, 0.5), "latency_p90_ms": quantile(sorted, 0.9),
            "latency_p99_ms": quantile(sorted, 0.99), "latency_max_ms": sorted.last ?? 0, "rejections": rejections,
        ]
        // For the plots: each operation's latency, and completion times from the phase's start.
        return (summary, ["latency_ms": latencies, "completed_s": completions.sorted().map { $0 - start }])
    }
}
