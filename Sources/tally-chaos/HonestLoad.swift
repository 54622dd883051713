import AsyncHTTPClient
import Foundation
import NIOCore
import TallyCrypto
import TallyTestbed
import TallyTypes

/// The honest side of a hostile run: funded senders offering transfers at a fixed
/// rate from 127.0.0.1, each sent to the next validator and, when a node does not
/// take it (no answer, a transient refusal), to another one, as a real client does.
/// Commit times come from one `/events` stream (`CommitObserver`), so latency is
/// commit event − first send.
final class HonestLoad: @unchecked Sendable {
    static let tickMilliseconds = 100
    /// Resubmission rounds while draining.
    static let drainIntervalMilliseconds = 250
    /// Pending per sender, inside the mempool's default nonce window (16).
    static let maxPendingPerSender = 8
    static let resubmitAfterSeconds = 5.0
    /// Codes a client retries (elsewhere or later): the network did not refuse the transfer itself.
    static let transientCodes: Set<String> = [
        "mempool_full", "rate_limited", "too_many_connections", "server_busy", "catching_up", "unavailable", "no_answer",
    ]

    struct Pending {
        let transaction: Transaction
        let sender: Int
        let firstSent: Double
        var lastSent: Double
        var admitted: Bool
        let phase: String
    }

    let cluster: Testbed
    let senders: [SigningKey]
    let recipients: [Address]
    let ratePerSecond: Double
    let fee: UInt64
    let observer: CommitObserver
    private let lock = NSLock()
    private var nextNonce: [UInt64]
    private var pending: [Hash: Pending] = [:]
    private var firstSent: [Hash: (time: Double, phase: String)] = [:]
    private var created = 0
    private var nextNode = 0
    private(set) var rejectionCodes: [String: Int] = [:]
    /// Refusals a funded, well-formed transfer must never get (not transient, not duplicate).
    private(set) var refusals: [String] = []
    var phase = "baseline"

    init(cluster: Testbed, senders: [SigningKey], ratePerSecond: Double, observer: CommitObserver) {
        self.cluster = cluster
        self.senders = senders
        self.ratePerSecond = ratePerSecond
        self.fee = cluster.genesis.consensus.minFee
        self.observer = observer
        nextNonce = Array(repeating: 0, count: senders.count)
        recipients = (0..<16).map { Address(publicKey: SigningKey(seed: SHA256.hash(Array("hostile-honest-recipient-\($0)".utf8)).bytes)!.publicKey) }
    }

    var senderAddresses: [Address] { senders.map { Address(publicKey: $0.publicKey) } }

    /// Offers the load for `seconds` (labelled with the current `phase`).
    func run(seconds: Double) async {
        let createdAtStart = lock.withLock { created }
        _ = await tickRepeatedly(
            seconds: seconds, intervalMilliseconds: Self.tickMilliseconds,
            due: { elapsedSeconds in createdAtStart + Int(elapsedSeconds * self.ratePerSecond) }, finished: { false })
    }

    /// Resubmits until every transfer sent is committed or `seconds` pass; true when drained.
    func drain(seconds: Double) async -> Bool {
        await tickRepeatedly(
            seconds: seconds, intervalMilliseconds: Self.drainIntervalMilliseconds, due: { _ in nil },
            finished: { self.lock.withLock { self.pending.isEmpty } })
    }

    /// Ticks every `intervalMilliseconds` for `seconds`, each offering the transfers
    /// `due` says are due by then (nil: none new, only resubmissions), until `finished`
    /// holds; returns whether it does.
    private func tickRepeatedly(
        seconds: Double, intervalMilliseconds: Int, due: (_ elapsedSeconds: Double) -> Int?, finished: () -> Bool
    ) async -> Bool {
        let start = monotonicNow()
        while monotonicNow() - start < seconds {
            await tick(due: due(monotonicNow() - start))
            if finished() { return true }
            try? await Task.sleep(for: .milliseconds(intervalMilliseconds))
        }
        return finished()
    }

    private func tick(due: Int?) async {
        settle()
        var batch: [Transaction] = []
        lock.withLock {
            if let due {
                while created < due, let sender = senderWithRoom() {
                    let nonce = nextNonce[sender]
                    nextNonce[sender] += 1
                    let transaction = Transaction.signed(
                        by: senders[sender], chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: recipients[created % recipients.count],
                        amount: 1 + UInt64(created % 5), fee: fee, nonce: nonce)
                    let now = monotonicNow()
                    pending[transaction.hash] = Pending(transaction: transaction, sender: sender, firstSent: now, lastSent: now, admitted: false, phase: phase)
                    firstSent[transaction.hash] = (now, phase)
                    created += 1
                    batch.append(transaction)
                }
            }
            let now = monotonicNow()
            let newHashes = Set(batch.map(\.hash))
            for (hash, entry) in pending where !newHashes.contains(hash)
            && (!entry.admitted || now - entry.lastSent > Self.resubmitAfterSeconds) {
                batch.append(entry.transaction)
            }
        }
        guard !batch.isEmpty else { return }
        await submit(batch.sorted { $0.nonce < $1.nonce })
    }

    /// The sender with the fewest pending, if any has room.
    private func senderWithRoom() -> Int? {
        var counts = Array(repeating: 0, count: senders.count)
        for entry in pending.values { counts[entry.sender] += 1 }
        let sender = counts.indices.min { counts[$0] < counts[$1] }!
        return counts[sender] < Self.maxPendingPerSender ? sender : nil
    }

    /// Drops what the observer saw committed.
    private func settle() {
        let committed = observer.committed
        lock.withLock { for hash in pending.keys where committed[hash] != nil { pending[hash] = nil } }
    }

    private func submit(_ batch: [Transaction]) async {
        let node = lock.withLock { () -> Int in
            nextNode = (nextNode + 1) % cluster.validators
            return nextNode
        }
        let body = try! JSONSerialization.data(withJSONObject: ["txs": batch.map { Hex.encode($0.canonicalBytes) }])
        var codes: [Hash: String] = [:]
        if let (status, data) = try? await cluster.request(node, "txs", method: "POST", body: body),
            let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            if let results = object["results"] as? [[String: Any]] {
                for (index, result) in results.enumerated() where index < batch.count {
                    codes[batch[index].hash] = ((result["error"] as? [String: Any])?["code"] as? String) ?? "ok"
                }
            } else {
                let code = ((object["error"] as? [String: Any])?["code"] as? String) ?? "http_\(status)"
                for transaction in batch { codes[transaction.hash] = code }
            }
        }
        let now = monotonicNow()
        lock.withLock {
            for transaction in batch {
                let code = codes[transaction.hash] ?? "no_answer"
                guard var entry = pending[transaction.hash] else { continue }
                entry.lastSent = now
                if code == "ok" || code == "duplicate" {
                    entry.admitted = true
                } else {
                    rejectionCodes[code, default: 0] += 1
                    if !Self.transientCodes.contains(code) && !code.hasPrefix("http_") && code != "stale_nonce" {
                        refusals.append("\(transaction.hash.hex.prefix(12)) nonce \(transaction.nonce) at node\(node): \(code)")
                    }
                }
                pending[transaction.hash] = entry
            }
        }
    }

    /// Every transfer this load created, with when and in which phase it was first sent.
    var sent: [Hash: (time: Double, phase: String)] { lock.withLock { firstSent } }
    var outstanding: Int { lock.withLock { pending.count } }
    var mempoolFullCount: Int { lock.withLock { rejectionCodes["mempool_full"] ?? 0 } }

    /// Latencies (ms, sorted) and commits per second of the transfers first sent in `phase`.
    func figures(phase: String, phaseSeconds: Double) -> PhaseFigures {
        let committed = observer.committed
        var latencies: [Double] = []
        var count = 0
        for (hash, origin) in sent where origin.phase == phase {
            count += 1
            if let commit = committed[hash], commit.time.isFinite { latencies.append((commit.time - origin.time) * 1000) }
        }
        latencies.sort()
        return PhaseFigures(
            phase: phase, sent: count, committed: latencies.count, transactionsPerSecond: Double(latencies.count) / phaseSeconds,
            p50Milliseconds: quantile(latencies, 0.5), p99Milliseconds: quantile(latencies, 0.99), maxMilliseconds: latencies.last ?? 0)
    }
}

struct PhaseFigures {
    let phase: String
    let sent: Int
    let committed: Int
    let transactionsPerSecond: Double
    let p50Milliseconds: Double
    let p99Milliseconds: Double
    let maxMilliseconds: Double

    var line: String {
        String(format: "%@: %d sent, %d committed, %.1f tx/s, latency p50 %.0f ms, p99 %.0f ms, max %.0f ms",
               phase, sent, committed, transactionsPerSecond, p50Milliseconds, p99Milliseconds, maxMilliseconds)
    }
}

/// `p`-quantile (0…1) of sorted values, nearest rank.
func quantile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

/// One validator's `/events` stream, subscribed before any attack (so the slot it
/// holds is the honest client's): arrival time and height of every `tx` event, and
/// the time of every `block` event. Resubscribes when the stream ends.
final class CommitObserver: @unchecked Sendable {
    struct Commit {
        let time: Double
        let height: UInt64
    }

    private let lock = NSLock()
    private var commits: [Hash: Commit] = [:]
    private var blockTimes: [Double] = []
    private var subscriptions = 0
    private(set) var resubscriptions = 0
    let url: String

    init(url: String) { self.url = url }

    var committed: [Hash: Commit] { lock.withLock { commits } }
    var blocks: [Double] { lock.withLock { blockTimes } }
    var isSubscribed: Bool { lock.withLock { subscriptions > 0 } }

    /// Records a commit learned another way (a late `GET /txs/{hash}`), with no time.
    func recordLate(_ hash: Hash, height: UInt64) { lock.withLock { if commits[hash] == nil { commits[hash] = Commit(time: .infinity, height: height) } } }

    func follow(client: HTTPClient) async {
        while !Task.isCancelled {
            do {
                var request = HTTPClientRequest(url: url)
                request.headers.add(name: "Accept", value: "text/event-stream")
                let response = try await client.execute(request, timeout: .hours(24))
                guard response.status == .ok else { throw CancellationError() }
                lock.withLock {
                    subscriptions += 1
                    if subscriptions > 1 { resubscriptions += 1 }
                }
                var pending: [UInt8] = []
                for try await buffer in response.body {
                    pending += buffer.readableBytesView
                    while let end = pending.firstRange(of: [10, 10]) {
                        handle(Array(pending[..<end.lowerBound]), at: monotonicNow())
                        pending.removeSubrange(..<end.upperBound)
                    }
                }
            } catch {}
            try? await Task.sleep(for: .milliseconds(200))
        }
    }

    private func handle(_ event: [UInt8], at time: Double) {
        let text = String(decoding: event, as: UTF8.self)
        var name = ""
        var data = ""
        for line in text.split(separator: "\n") {
            if line.hasPrefix("event: ") { name = String(line.dropFirst(7)) }
            if line.hasPrefix("data: ") { data = String(line.dropFirst(6)) }
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(data.utf8)) as? [String: Any] else { return }
        switch name {
        case "tx":
            guard let hex = object["hash"] as? String, let hash = Hash(hex: hex),
                let height = (object["height"] as? String).flatMap(UInt64.init) else { return }
            lock.withLock { if commits[hash] == nil { commits[hash] = Commit(time: time, height: height) } }
        case "block":
            lock.withLock { blockTimes.append(time) }
        default: break
        }
    }
}
