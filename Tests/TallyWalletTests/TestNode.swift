import Foundation
import Hummingbird
import Logging
import NIOCore
import TallyCrypto
import TallyApplication
import TallyLedger
import TallyNode
import TallyTypes

/// How a test node lies, to check that the wallet notices.
enum Forgery: Sendable {
    case none
    /// Certificates signed over another chain id.
    case certificateForAnotherChain
    /// Certificates with fewer signers than the quorum.
    case certificateBelowQuorum
    /// Inclusion proofs with the right index but another leaf's audit path.
    case proofWithAnotherPath
}

/// A node without consensus but with real blocks: a ledger, a mempool and the real
/// admission path; `produceBlock()` reaps the mempool, executes it, and stores a
/// block with a commit certificate signed by the test validators over
/// `VoteTarget(phase: .commit, …).signingBytes(chainID:)`, and serves RFC 6962
/// inclusion proofs (`Merkle.proof`), as a real node does.
actor CommittingNode: NodeService {
    nonisolated let genesis: Genesis
    nonisolated let genesisJSON: Data
    let validatorKeys: [SigningKey]
    var ledger: Ledger
    var mempool: Mempool
    var committed: [CertifiedBlock] = []
    var location: [Hash: (height: UInt64, index: Int)] = [:]
    var forgery: Forgery = .none
    /// Fewest pending transactions worth a block (to put several in one).
    var minimumBlockTransactions = 1

    init(genesis: Genesis, validatorKeys: [SigningKey]) {
        self.genesis = genesis
        genesisJSON = genesis.jsonData()
        self.validatorKeys = validatorKeys
        ledger = Ledger(genesis: genesis)
        mempool = Mempool(genesis: genesis)
    }

    func setForgery(_ forgery: Forgery, minimumBlockTransactions: Int = 1) {
        self.forgery = forgery
        self.minimumBlockTransactions = minimumBlockTransactions
    }

    /// Commits every pending transaction (if any) as the next block; returns its height.
    @discardableResult
    func produceBlock() -> UInt64? {
        let transactions = mempool.reap(maxCount: Int(genesis.consensus.maxBlockTransactions)) {
            ledger.account($0)?.nonce ?? 0
        }
        guard !transactions.isEmpty, transactions.count >= minimumBlockTransactions else { return nil }
        let height = ledger.height + 1
        let proposer = Int(height % UInt64(genesis.validators.count))
        let execution = ledger.apply(transactions.map(VerifiedTransaction.init(signatureAlreadyVerified:)), proposer: proposer)
        precondition(execution.allApplied, "the test node reaps only applicable transactions")
        let header = BlockHeader(
            height: height, view: 0, timestampMs: 1_000 * height, previousHash: committed.last?.block.hash ?? genesis.hash,
            transactionsRoot: Block.transactionsRoot(transactions), stateRoot: ledger.stateRoot, proposer: UInt32(proposer),
            transactionCount: UInt32(transactions.count))
        let block = Block(header: header, transactions: transactions)
        committed.append(CertifiedBlock(block: block, certificate: certificate(for: block)))
        for (index, transaction) in transactions.enumerated() { location[transaction.hash] = (height, index) }
        mempool.removeCommitted(transactions) { ledger.account($0) ?? .empty }
        return height
    }

    /// COMMIT signatures of validators 0…quorum-1 (sorted by index), or a forgery.
    func certificate(for block: Block) -> CommitCertificate {
        let target = VoteTarget(phase: .commit, view: block.header.view, height: block.height, blockHash: block.hash)
        let chainID = forgery == .certificateForAnotherChain ? "another-chain" : genesis.chainID
        let signerCount = forgery == .certificateBelowQuorum ? genesis.validators.quorum - 1 : genesis.validators.quorum
        let message = target.signingBytes(chainID: chainID)
        let entries = (0..<signerCount).map {
            CommitCertificate.Entry(validatorIndex: UInt32($0), signature: validatorKeys[$0].sign(message))
        }
        return CommitCertificate(view: target.view, height: target.height, blockHash: target.blockHash, signatures: entries)
    }

    // MARK: NodeService

    func status() -> NodeStatus {
        NodeStatus(chainID: genesis.chainID, height: ledger.height, latestBlockHash: committed.last?.block.hash ?? genesis.hash,
                   view: 0, primary: 0, validatorIndex: 1, validatorName: "validator1", catchingUp: false,
                   peersConnected: 3, mempoolSize: mempool.count)
    }

    func submit(_ transactions: [Transaction]) -> [Result<Hash, SubmissionError>] {
        zip(transactions, SignatureBatch.verify(transactions, genesisHash: genesis.hash)).map { transaction, verified in
            guard let verified else { return .failure(.rejected(.badSignature)) }
            if location[transaction.hash] != nil { return .failure(.rejected(.duplicate)) }
            let account = ledger.account(transaction.senderAddress) ?? .empty
            return mempool.admit(verified, account: account).mapError { .rejected($0) }
        }
    }

    func transactionStatus(_ hash: Hash) -> TransactionStatus {
        if mempool.contains(hash) { return .pending }
        guard let (height, index) = location[hash] else { return .unknown }
        let block = committed[Int(height - 1)].block
        let hashes = block.transactions.map(\.hash)
        var proof = Merkle.proof(hashes, index: index)!
        if forgery == .proofWithAnotherPath {
            let other = Merkle.proof(hashes, index: (index + 1) % hashes.count)!
            proof = InclusionProof(index: proof.index, leafCount: proof.leafCount, path: other.path)
        }
        return .committed(height: height, index: index, blockHash: block.hash, proof: proof)
    }

    func account(_ address: Address) -> Account { ledger.account(address) ?? .empty }
    func pendingNonce(_ address: Address) -> UInt64 { mempool.nextNonce(for: address, committed: account(address).nonce) }

    func block(at height: UInt64) -> CertifiedBlock? {
        height >= 1 && height <= UInt64(committed.count) ? committed[Int(height - 1)] : nil
    }

    func latestHeight() -> UInt64 { UInt64(committed.count) }

    /// By scanning every block, newest first.
    func accountTransactions(_ address: Address, before: TransactionPosition?, limit: Int) -> AccountTransactionsPage {
        var found: [AccountTransactionsPage.Entry] = []
        for certified in committed.reversed() {
            for (offset, transaction) in certified.block.transactions.enumerated().reversed()
            where transaction.senderAddress == address || transaction.recipient == address {
                let position = TransactionPosition(height: certified.block.height, index: UInt32(offset))
                if before.map({ position < $0 }) ?? true { found.append(.init(position: position, transaction: transaction)) }
            }
        }
        let page = Array(found.prefix(limit))
        return AccountTransactionsPage(entries: page, next: found.count > limit ? page.last?.position : nil, indexedFromHeight: 1)
    }

    func subscribe(from address: String) -> AsyncStream<[NodeEvent]>? { nil }
}

/// Runs the real `HTTPAPI` router in a real Hummingbird server on 127.0.0.1, port
/// 0, for the duration of `body`, which gets the base URL.
func withServer<Value: Sendable>(
    _ node: any NodeService, _ body: @Sendable (String) async throws -> Value
) async throws -> Value {
    let (ports, continuation) = AsyncStream<Int>.makeStream()
    var logger = Logger(label: "wallet-test-node")
    // Cancelling the server at the end of a test logs shutdown errors; not ours to see.
    logger.logLevel = .critical
    let api = HTTPAPI(node: node, maxBodyBytes: 1 << 20, maxBatchTransactions: 100, metricsText: { "" })
    let app = Application(
        router: api.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
        onServerRunning: { channel in continuation.yield(channel.localAddress?.port ?? 0) }, logger: logger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await app.runService(gracefulShutdownSignals: []) }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw CancellationError() }
        do {
            let value = try await body("http://127.0.0.1:\(port)")
            group.cancelAll()
            return value
        } catch {
            group.cancelAll()
            throw error
        }
    }
}

/// Produces a block every few milliseconds while `body` runs, like a live network.
func whileProducingBlocks<Value: Sendable>(
    _ node: CommittingNode, _ body: @Sendable () async throws -> Value
) async throws -> Value {
    let producer = Task {
        while !Task.isCancelled {
            await node.produceBlock()
            try? await Task.sleep(for: .milliseconds(20))
        }
    }
    defer { producer.cancel() }
    return try await body()
}
