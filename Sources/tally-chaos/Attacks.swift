import Foundation
import TallyCrypto
import TallyTestbed
import TallyTypes

/// The attacks of `--faults hostile`, each one selectable (`--attacks`).
enum Attack: String, CaseIterable, Sendable {
    /// Never-funded keys, every nonce of the window each, past the mempool bound.
    case spam
    /// Zero-amount and zero-fee transfers (state growth for free), from never-funded and funded keys.
    case zeroValue = "zero-value"
    /// T0' spending the whole balance to the primary, T0 and T1 = nonce + 1 to the backups at once.
    case stuck
    /// Idle, slowloris-head and slow-body connections to one node's API, past its descriptor limit.
    case connections
    /// GET /txs/{hash} and /blocks/* as fast as the node answers, from several addresses.
    case hammer
    /// /events streams from many addresses, more than each may hold.
    case events
    /// Idle unauthenticated connections on every peer port while a validator restarts.
    case peerFlood = "peer-flood"
    /// Crafted block segments (thousands of fake record headers; a huge sparse file) for `tally verify`.
    case verify
}

/// Bounded, parameterised sizes of a hostile run (short defaults: a test-sized run).
struct HostileOptions: Sendable {
    /// Long enough for the slow-body deadline (30 s) to be seen.
    var phaseSeconds = 40.0
    var honestRatePerSecond = 10.0
    var honestSenders = 4
    /// Every node's `mempool.max_transactions`, so the spam can go past the bound.
    var mempoolBound = 2_000
    /// Every node's `api.thread_nice_increment`; nil: the node's default (to measure the
    /// API's threads at the consensus threads' priority, 0).
    var apiThreadNiceIncrement: Int?
    var spamTransactions = 6_000
    var zeroValueTransactions = 200
    var stuckRounds = 3
    var idleConnections = 1_100
    var slowConnections = 32
    /// `ulimit -n` of the node whose API is flooded.
    var floodedNodeDescriptorLimit = 1_024
    var hammerThreads = 4
    /// Valid transfers committed first, whose lookups the hammer then asks for (at
    /// most half the mempool bound: valid, fee-paying transfers may fill a mempool,
    /// and the honest load must not meet one the run itself filled).
    var hammerBlockTransactions = 1_000
    var eventAddresses = 20
    var peerFloodAddresses = 2
    var peerFloodPerAddress = 70
    var peerFloodSeconds = 20.0
    /// A restarted validator must have every peer again within this, flood or not.
    var peerReconnectBoundSeconds = 30.0
    var craftedSegmentBytes = 10 << 20
    var craftedRecordHeaders = 2_000
    var sparseSegmentBytes: Int64 = 64 << 30
    var verifyBoundSeconds = 60.0
    /// No honest commit for this long during the attack phase is a stall.
    var stallSeconds = 20.0
    /// A node not answering `/status` for this long under the connection flood is down.
    var statusOutageSeconds = 10.0
    var attacks = Set(Attack.allCases)
}

/// What one attack did: counts by outcome, the transactions it sent, and its checks.
final class AttackReport: @unchecked Sendable {
    let attack: Attack
    private let lock = NSLock()
    private var outcomes: [String: Int] = [:]
    private var notes: [String] = []
    private var hashes: Set<Hash> = []
    private var addresses: Set<Address> = []
    private var checks: [CheckResult] = []

    init(_ attack: Attack) { self.attack = attack }

    func count(_ outcome: String, _ amount: Int = 1) { lock.withLock { outcomes[outcome, default: 0] += amount } }
    func note(_ text: String) { lock.withLock { notes.append(text) } }
    func sent(_ transactions: [Transaction]) {
        lock.withLock {
            for transaction in transactions {
                hashes.insert(transaction.hash)
                addresses.insert(Address(publicKey: transaction.sender))
                addresses.insert(transaction.recipient)
            }
        }
    }
    func add(_ check: CheckResult) { lock.withLock { checks.append(check) } }

    var counts: [String: Int] { lock.withLock { outcomes } }
    var sentHashes: Set<Hash> { lock.withLock { hashes } }
    /// Senders and recipients of what the attack sent (none may end up in the ledger
    /// for the refused kinds).
    var touchedAddresses: Set<Address> { lock.withLock { addresses } }
    var results: [CheckResult] { lock.withLock { checks } }
    var summary: String {
        lock.withLock {
            let counted = outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            return ([counted] + notes).filter { !$0.isEmpty }.joined(separator: "; ")
        }
    }
}

/// A thread for blocking attack work (raw sockets), so it never holds one of the
/// few cooperative threads the honest load and the checks run on.
final class AttackThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    init(_ name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in
            body()
            done.signal()
        }
        thread.name = name
        thread.start()
    }

    func join() { done.wait() }
}

/// Admission attacks over POST /txs from attacker addresses.
struct AdmissionAttacks {
    static let batchSize = 2_000
    static let requestTimeoutSeconds = 30.0
    /// The stuck sends must arrive together; one to a node that does not answer soon is lost.
    static let stuckTimeoutSeconds = 5.0

    let cluster: Testbed
    let options: HostileOptions
    let firstAddress: Int

    var host: String { cluster.host(0) }
    var minFee: UInt64 { cluster.genesis.consensus.minFee }
    var nonceWindow: UInt64 { UInt64(LoadGeneratorLimits.nonceWindow) }

    static func neverFunded(_ label: String, _ index: Int) -> SigningKey {
        SigningKey(seed: SHA256.hash(Array("hostile-\(label)-\(index)".utf8)).bytes)!
    }

    /// Posts `transactions` in batches, nodes in turn, and counts each result code.
    func post(_ transactions: [Transaction], report: AttackReport, addressOffset: Int = 0, label: String = "") {
        for (index, start) in stride(from: 0, to: transactions.count, by: Self.batchSize).enumerated() {
            let batch = Array(transactions[start..<min(start + Self.batchSize, transactions.count)])
            let body = try! JSONSerialization.data(withJSONObject: ["txs": batch.map { Hex.encode($0.canonicalBytes) }])
            let node = index % cluster.validators
            let response = RawHTTP.request(
                from: AttackerAddress.of(firstAddress + addressOffset + index % 8), host: host, port: cluster.basePort + node,
                method: "POST", path: "/txs", body: Array(body), timeoutSeconds: Self.requestTimeoutSeconds)
            guard let response else {
                report.count(label + "no_answer", batch.count)
                continue
            }
            guard let results = response.json?["results"] as? [[String: Any]] else {
                report.count(label + (response.errorCode ?? "http_\(response.status)"), batch.count)
                continue
            }
            for result in results { report.count(label + (((result["error"] as? [String: Any])?["code"] as? String) ?? "admitted")) }
        }
    }

    /// Valid, fee-paying transfers filling each key's nonce window: a block of about
    /// `count` transactions, all sent in one batch.
    func bigBlock(keys: [SigningKey], count: Int) -> [Transaction] {
        var transactions: [Transaction] = []
        for (index, key) in keys.enumerated() {
            for nonce in 0...nonceWindow where transactions.count < count {
                transactions.append(.signed(
                    by: key, chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: Address(publicKey: Self.neverFunded("big-to", index).publicKey),
                    amount: 1, fee: minFee, nonce: nonce))
            }
        }
        return transactions
    }

    /// Never-funded keys, each sending every nonce of the window (the next and the future ones).
    func spam(_ report: AttackReport) {
        let perKey = Int(nonceWindow) + 1
        let keys = (options.spamTransactions + perKey - 1) / perKey
        var transactions: [Transaction] = []
        for key in 0..<keys {
            let signer = Self.neverFunded("spam", key)
            for nonce in 0..<UInt64(perKey) where transactions.count < options.spamTransactions {
                transactions.append(Transaction.signed(
                    by: signer, chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: Address(publicKey: Self.neverFunded("spam-to", key).publicKey),
                    amount: 1, fee: minFee, nonce: nonce))
            }
        }
        report.sent(transactions)
        report.note("\(transactions.count) transfers from \(keys) never-funded keys (nonces 0…\(perKey - 1)), mempool bound \(options.mempoolBound)")
        post(transactions, report: report)
    }

    /// Zero-amount transfers with and without a fee from never-funded keys, and
    /// zero-fee ones from a funded key, each to a fresh address.
    func zeroValue(_ report: AttackReport, fundedKey: SigningKey) {
        var transactions: [Transaction] = []
        for index in 0..<options.zeroValueTransactions {
            let to = Address(publicKey: Self.neverFunded("zero-to", index).publicKey)
            switch index % 3 {
            case 0: transactions.append(.signed(by: Self.neverFunded("zero", index), chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: to, amount: 0, fee: 0, nonce: 0))
            case 1: transactions.append(.signed(by: Self.neverFunded("zero", index), chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: to, amount: 0, fee: minFee, nonce: 0))
            default:
                let nonce = UInt64(index / 3) % (nonceWindow + 1)
                transactions.append(.signed(by: fundedKey, chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: to, amount: UInt64(index % 2), fee: 0, nonce: nonce))
            }
        }
        report.sent(transactions)
        report.note("\(transactions.count) zero-amount or zero-fee transfers to fresh addresses")
        post(transactions, report: report, addressOffset: 8)
    }

    /// Rounds of T0' (whole balance, to the primary) with T0 and T1 (to every backup)
    /// sent at the same moment, each round from its own funded key.
    func stuck(_ report: AttackReport, keys: [SigningKey], balance: UInt64, primary: () -> Int, stop: StopFlag) {
        for (round, key) in keys.enumerated() where !stop.isSet {
            let sink = Address(publicKey: Self.neverFunded("stuck-to", round).publicKey)
            let whole = Transaction.signed(by: key, chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: sink, amount: balance - minFee, fee: minFee, nonce: 0)
            let first = Transaction.signed(by: key, chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: sink, amount: 1, fee: minFee, nonce: 0)
            let second = Transaction.signed(by: key, chainID: cluster.genesis.chainID, genesisHash: cluster.genesis.hash, to: sink, amount: 1, fee: minFee, nonce: 1)
            report.sent([whole, first, second])
            let leader = primary()
            let sends: [(Int, [Transaction])] = (0..<cluster.validators).map { $0 == leader ? ($0, [whole]) : ($0, [first, second]) }
            DispatchQueue.concurrentPerform(iterations: sends.count) { index in
                let (node, transactions) = sends[index]
                let body = try! JSONSerialization.data(withJSONObject: ["txs": transactions.map { Hex.encode($0.canonicalBytes) }])
                let response = RawHTTP.request(
                    from: AttackerAddress.of(firstAddress + 16 + index), host: host, port: cluster.basePort + node, method: "POST", path: "/txs",
                    body: Array(body), timeoutSeconds: Self.stuckTimeoutSeconds)
                report.count(response.map { _ in "answered" } ?? "no_answer")
            }
            report.note("round \(round + 1): primary node\(leader) got T0', the backups T0 and T1")
            for _ in 0..<40 where !stop.isSet { usleep(100_000) }
        }
    }
}

/// The mempool nonce window the generators stay within.
enum LoadGeneratorLimits {
    /// `MempoolLimits.defaultMaxNonceGap`: nonces next … next + 16 are admissible.
    static let nonceWindow = 16
}
