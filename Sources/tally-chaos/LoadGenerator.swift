import Foundation
import TallyCrypto
import TallyTestbed
import TallyTypes

/// Keeps transfers from the faucet flowing to a healthy node and records every
/// transaction the network acknowledged as committed (a node's `GET /txs/{hash}`
/// said `committed`). Each faucet nonce has exactly one transaction (recipient and
/// amount are functions of the nonce), so a resubmission is the same bytes and a
/// nonce can never commit twice.
final class LoadGenerator: @unchecked Sendable {
    static let recipientCount = 32
    static let batchSize = 16
    /// Within the mempool's default nonce window (`MempoolLimits.defaultMaxNonceGap`,
    /// 16: nonces next … next + 16), so the whole window is admissible.
    static let maxOutstanding = 16
    static let resubmitAfterSeconds = 4.0
    static let roundMilliseconds = 250

    let cluster: Testbed
    let recipients: [Address]
    /// What the faucet's signatures commit to.
    let genesisHash: Hash
    private var nextNonce: UInt64 = 0
    private var outstanding: [UInt64: Transaction] = [:]
    private var lastSubmit = Date.distantPast
    /// Transaction hash → height a node reported it committed at.
    private(set) var acknowledged: [Hash: UInt64] = [:]
    private(set) var submissions = 0
    private(set) var signed = 0
    /// When each nonce's transaction was first sent, and when a node first said it was
    /// committed (latency of the slow-primary check; resolution about one round).
    private(set) var firstSubmitted: [UInt64: Date] = [:]
    private(set) var acknowledgedAt: [UInt64: Date] = [:]

    init(cluster: Testbed, seed: UInt64) {
        self.cluster = cluster
        genesisHash = cluster.genesis.hash
        recipients = (0..<Self.recipientCount).map { index in
            Address(publicKey: SigningKey(seed: SHA256.hash(Array("chaos-recipient-\(seed)-\(index)".utf8)).bytes)!.publicKey)
        }
    }

    var faucetAddress: Address { Address(publicKey: cluster.faucet.publicKey) }

    func transaction(nonce: UInt64) -> Transaction {
        Transaction.signed(
            by: cluster.faucet, chainID: cluster.genesis.chainID, genesisHash: genesisHash,
            to: recipients[Int(nonce % UInt64(Self.recipientCount))],
            amount: 1 + nonce % 7, fee: 1, nonce: nonce)
    }

    /// Runs rounds until `shouldStop` says so.
    func run(shouldStop: @Sendable () -> Bool) async {
        while !shouldStop() {
            await round()
            try? await Task.sleep(for: .milliseconds(Self.roundMilliseconds))
        }
    }

    /// Whether every signed transaction has been acknowledged.
    var isDrained: Bool { outstanding.isEmpty }

    /// One round against one healthy node: confirm what committed, top up the window,
    /// resubmit what seems lost (its node died before passing it on).
    func round(topUp: Bool = true) async {
        guard let node = cluster.healthyNodes.randomElement(), let faucet = await cluster.account(node, faucetAddress) else { return }
        for nonce in outstanding.keys.sorted() where nonce < faucet.nonce {
            let transaction = outstanding[nonce]!
            guard let height = await cluster.committedHeight(node, transaction.hash) else { break }
            acknowledged[transaction.hash] = height
            acknowledgedAt[nonce] = Date()
            outstanding[nonce] = nil
        }
        var fresh: [Transaction] = []
        if topUp {
            while outstanding.count < Self.maxOutstanding && fresh.count < Self.batchSize {
                let transaction = transaction(nonce: nextNonce)
                outstanding[nextNonce] = transaction
                fresh.append(transaction)
                nextNonce += 1
                signed += 1
            }
        }
        let stale = Date().timeIntervalSince(lastSubmit) > Self.resubmitAfterSeconds
        let toSend = stale ? outstanding.keys.sorted().filter { $0 >= faucet.nonce }.map { outstanding[$0]! } : fresh
        guard !toSend.isEmpty else { return }
        let now = Date()
        for transaction in fresh { firstSubmitted[transaction.nonce] = now }
        _ = await cluster.submit(node, toSend)
        submissions += 1
        lastSubmit = Date()
    }
}
