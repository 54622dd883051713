import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import TallyCrypto
import TallyApplication
import TallyLedger
import TallyNode
import TallyTypes
import XCTest

/// A node without consensus: a ledger, a mempool and the real admission path, so
/// the routes are tested against real decisions.
actor LedgerOnlyNode: NodeService {
    nonisolated let genesis: Genesis
    nonisolated let genesisJSON: Data
    var ledger: Ledger
    var mempool: Mempool
    var committed: [CertifiedBlock] = []

    init(genesis: Genesis, limits: MempoolLimits = .default) {
        self.genesis = genesis
        genesisJSON = genesis.jsonData()
        ledger = Ledger(genesis: genesis)
        mempool = Mempool(genesis: genesis, limits: limits)
    }

    func status() -> NodeStatus {
        NodeStatus(chainID: genesis.chainID, height: ledger.height, latestBlockHash: committed.last?.block.hash ?? genesis.hash,
                   view: 0, primary: 0, validatorIndex: 1, validatorName: "validator1", catchingUp: false,
                   peersConnected: 3, mempoolSize: mempool.count)
    }

    func submit(_ transactions: [Transaction]) -> [Result<Hash, SubmissionError>] {
        zip(transactions, SignatureBatch.verify(transactions, genesisHash: genesis.hash)).map { transaction, verified in
            guard let verified else { return .failure(.rejected(.badSignature)) }
            let account = ledger.account(transaction.senderAddress) ?? .empty
            return mempool.admit(verified, account: account).mapError { .rejected($0) }
        }
    }

    func transactionStatus(_ hash: Hash) -> TransactionStatus {
        mempool.contains(hash) ? .pending : .unknown
    }

    func account(_ address: Address) -> Account { ledger.account(address) ?? .empty }
    func block(at height: UInt64) -> CertifiedBlock? {
        height >= 1 && height <= UInt64(committed.count) ? committed[Int(height - 1)] : nil
    }
    func latestHeight() -> UInt64 { UInt64(committed.count) }

    func append(_ blocks: [CertifiedBlock]) { committed += blocks }

    /// By scanning every block (the node's index must agree with this).
    /// Set: every history page fails as over a damaged index.
    var historyDamaged = false
    func damageHistory() { historyDamaged = true }

    func accountTransactions(_ address: Address, before: TransactionPosition?, limit: Int) throws -> AccountTransactionsPage {
        if historyDamaged { throw AccountHistoryUnavailable() }
        let all = committed.flatMap { certified in
            certified.block.transactions.enumerated().compactMap { offset, transaction in
                transaction.senderAddress == address || transaction.recipient == address
                    ? AccountTransactionsPage.Entry(
                        position: TransactionPosition(height: certified.block.height, index: UInt32(offset)), transaction: transaction)
                    : nil
            }
        }.reversed().filter { before == nil || $0.position < before! }
        let page = Array(all.prefix(limit))
        return AccountTransactionsPage(entries: page, next: all.count > limit ? page.last?.position : nil, indexedFromHeight: 1)
    }

    func subscribe(from address: String) -> AsyncStream<[NodeEvent]>? {
        AsyncStream { continuation in
            continuation.yield([
                .block(height: 1, hash: genesis.hash, transactionCount: 2),
                .transaction(hash: genesis.hash, height: 1, index: 0), .transaction(hash: genesis.hash, height: 1, index: 1),
            ])
            continuation.finish()
        }
    }
}

final class HTTPAPITests: XCTestCase, @unchecked Sendable {
    let keys = (0..<3).map { SigningKey(seed: SHA256.hash(Array("http-\($0)".utf8)).bytes)! }
    lazy var genesis = try! Genesis(
        chainID: "tally-http", genesisTimeMs: 0,
        validators: (0..<4).map { Validator(name: "validator\($0)", publicKey: SigningKey(seed: SHA256.hash([UInt8($0)]).bytes)!.publicKey, networkAddress: "127.0.0.1:\(7800 + $0)") },
        accounts: [GenesisAccount(address: Address(publicKey: keys[0].publicKey), balance: 1_000)])

    func transfer(nonce: UInt64, amount: UInt64 = 10, chain: String = "tally-http", key: Int = 0) -> Transaction {
        Transaction.signed(
            by: keys[key], chainID: chain, genesisHash: genesis.hash, to: Address(publicKey: keys[1].publicKey), amount: amount,
            fee: 1, nonce: nonce)
    }

    func app(maxBody: Int = 1 << 20, node: LedgerOnlyNode? = nil) -> some ApplicationProtocol {
        let api = HTTPAPI(node: node ?? LedgerOnlyNode(genesis: genesis), maxBodyBytes: maxBody, maxBatchTransactions: 3,
                          metricsText: { "tally_height 0\n" })
        return Application(router: api.router())
    }

    func json(_ buffer: ByteBuffer) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any] ?? [:]
    }

    func errorCode(_ buffer: ByteBuffer) -> String? { (json(buffer)["error"] as? [String: Any])?["code"] as? String }

    func post(_ client: some TestClientProtocol, _ object: Any) async throws -> (HTTPResponse.Status, ByteBuffer) {
        let body = ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: object))
        return try await client.execute(uri: "/txs", method: .post, headers: [.contentType: "application/json"], body: body) {
            ($0.status, $0.body)
        }
    }

    func testStatusNumbersAreStrings() async throws {
        try await app().test(.router) { client in
            try await client.execute(uri: "/status", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                let object = self.json(response.body)
                XCTAssertEqual(object["chain_id"] as? String, "tally-http")
                XCTAssertEqual(object["height"] as? String, "0")
                XCTAssertEqual(object["view"] as? String, "0")
                XCTAssertEqual(object["validator_index"] as? Int, 1)
            }
        }
    }

    func testSubmitOneJSONAndBinaryThenDuplicate() async throws {
        try await app().test(.router) { client in
            let first = self.transfer(nonce: 0)
            let (status, body) = try await self.post(client, ["tx": Hex.encode(first.canonicalBytes)])
            XCTAssertEqual(status, .accepted)
            XCTAssertEqual(self.json(body)["hash"] as? String, first.hash.hex)
            let second = self.transfer(nonce: 1)
            try await client.execute(uri: "/txs", method: .post, headers: [.contentType: "application/octet-stream"],
                                     body: ByteBuffer(bytes: second.canonicalBytes)) { response in
                XCTAssertEqual(response.status, .accepted)
            }
            let (dupStatus, dupBody) = try await self.post(client, ["tx": Hex.encode(first.canonicalBytes)])
            XCTAssertEqual(dupStatus, .conflict)
            XCTAssertEqual(self.errorCode(dupBody), "duplicate")
            try await client.execute(uri: "/txs/\(first.hash.hex)", method: .get) { response in
                XCTAssertEqual(self.json(response.body)["status"] as? String, "pending")
            }
            try await client.execute(uri: "/txs/\(SHA256.hash([1]).hex)", method: .get) { response in
                XCTAssertEqual(response.status, .notFound)
                XCTAssertEqual(self.json(response.body)["status"] as? String, "unknown")
            }
        }
    }

    func testEachRejectionHasItsCodeAndStatus() async throws {
        try await app().test(.router) { client in
            var badSignature = self.transfer(nonce: 0)
            badSignature.amount = 11
            var (status, body) = try await self.post(client, ["tx": Hex.encode(badSignature.canonicalBytes)])
            XCTAssertEqual(status, .unprocessableContent)
            XCTAssertEqual(self.errorCode(body), "bad_signature")

            (status, body) = try await self.post(client, ["tx": Hex.encode(self.transfer(nonce: 0, chain: "other").canonicalBytes)])
            XCTAssertEqual(self.errorCode(body), "wrong_chain_id")

            (status, body) = try await self.post(client, ["tx": Hex.encode(self.transfer(nonce: 0, amount: 5_000).canonicalBytes)])
            XCTAssertEqual(self.errorCode(body), "insufficient_balance")

            (status, body) = try await self.post(client, ["tx": "zz"])
            XCTAssertEqual(status, .badRequest)
            XCTAssertEqual(self.errorCode(body), "malformed")

            try await client.execute(uri: "/txs", method: .post, headers: [.contentType: "application/json"],
                                     body: ByteBuffer(string: "{not json")) { response in
                XCTAssertEqual(response.status, .badRequest)
                XCTAssertEqual(self.errorCode(response.body), "malformed")
            }
        }
    }

    func testBatchResultsPerTransactionAndBatchBound() async throws {
        try await app().test(.router) { client in
            let good = self.transfer(nonce: 0)
            var bad = self.transfer(nonce: 1)
            bad.fee = 2
            let (status, body) = try await self.post(client, ["txs": [Hex.encode(good.canonicalBytes), Hex.encode(bad.canonicalBytes)]])
            XCTAssertEqual(status, .ok)
            let results = self.json(body)["results"] as? [[String: Any]] ?? []
            XCTAssertEqual(results.count, 2)
            XCTAssertNil(results[0]["error"])
            XCTAssertEqual((results[1]["error"] as? [String: Any])?["code"] as? String, "bad_signature")
            let (tooMany, tooManyBody) = try await self.post(client, ["txs": Array(repeating: Hex.encode(good.canonicalBytes), count: 4)])
            XCTAssertEqual(tooMany, .contentTooLarge)
            XCTAssertEqual(self.errorCode(tooManyBody), "too_large")
        }
    }

    func testOversizeBodyIsRefused() async throws {
        try await app(maxBody: 2048).test(.router) { client in
            try await client.execute(uri: "/txs", method: .post, headers: [.contentType: "application/json"],
                                     body: ByteBuffer(repeating: UInt8(ascii: "a"), count: 10_000)) { response in
                XCTAssertEqual(response.status, .contentTooLarge)
                XCTAssertEqual(self.errorCode(response.body), "too_large")
            }
        }
    }

    func testAccountsValidatorsGenesisEventsMetrics() async throws {
        try await app().test(.router) { client in
            let address = Address(publicKey: self.keys[0].publicKey)
            try await client.execute(uri: "/accounts/\(address.bech32m)", method: .get) { response in
                XCTAssertEqual(self.json(response.body)["balance"] as? String, "1000")
                XCTAssertEqual(self.json(response.body)["nonce"] as? String, "0")
            }
            try await client.execute(uri: "/accounts/tally1notanaddress", method: .get) { response in
                XCTAssertEqual(response.status, .badRequest)
            }
            try await client.execute(uri: "/validators", method: .get) { response in
                let list = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [[String: Any]]
                XCTAssertEqual(list?.count, 4)
                XCTAssertEqual(list?[2]["address"] as? String, "127.0.0.1:7802")
            }
            try await client.execute(uri: "/genesis", method: .get) { response in
                XCTAssertEqual(try Genesis(json: Data(response.body.readableBytesView)), self.genesis)
            }
            try await client.execute(uri: "/blocks/latest", method: .get) { response in
                XCTAssertEqual(response.status, .notFound)
            }
            try await client.execute(uri: "/blocks/abc", method: .get) { response in
                XCTAssertEqual(response.status, .badRequest)
            }
            try await client.execute(uri: "/events", method: .get) { response in
                XCTAssertEqual(response.headers[.contentType], "text/event-stream")
                // A block's events, in order: the block, then each transaction.
                let body = String(buffer: response.body)
                XCTAssertTrue(body.hasPrefix("event: block\ndata: {\"hash\""))
                XCTAssertEqual(body.components(separatedBy: "event: tx\n").count, 3)
                XCTAssertTrue(body.hasSuffix("\"index\":1}\n\n"))
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                XCTAssertEqual(String(buffer: response.body), "tally_height 0\n")
            }
        }
    }

    /// A page the node cannot read whole is a 503, never a short (or empty) page that
    /// would read as the end of the account's history.
    func testAccountHistoryOverADamagedIndexIsUnavailableNotShort() async throws {
        let node = LedgerOnlyNode(genesis: genesis)
        await node.append((1...3).map { AccountTransactionsTests.block(height: UInt64($0), count: 3) })
        await node.damageHistory()
        let carol = AccountTransactionsTests.carol.bech32m
        try await app(node: node).test(.router) { client in
            try await client.execute(uri: "/accounts/\(carol)/txs", method: .get) { response in
                XCTAssertEqual(response.status, .serviceUnavailable)
                let error = self.json(response.body)["error"] as? [String: Any]
                XCTAssertEqual(error?["code"] as? String, "history_unavailable")
            }
        }
    }

    func testAccountTransactionsPagesNewestFirstAndRefusesBadLimitAndCursor() async throws {
        let node = LedgerOnlyNode(genesis: genesis)
        await node.append((1...3).map { AccountTransactionsTests.block(height: UInt64($0), count: 3) })
        let carol = AccountTransactionsTests.carol.bech32m
        try await app(node: node).test(.router) { client in
            // carol receives transactions 0 and 2 of each block: 6, newest first.
            var seen: [String] = []
            var next: String? = nil
            repeat {
                let query = next.map { "&before=\($0)" } ?? ""
                try await client.execute(uri: "/accounts/\(carol)/txs?limit=4\(query)", method: .get) { response in
                    XCTAssertEqual(response.status, .ok)
                    let object = self.json(response.body)
                    XCTAssertEqual(object["address"] as? String, carol)
                    XCTAssertEqual(object["indexed_from_height"] as? String, "1")
                    let items = object["transactions"] as? [[String: Any]] ?? []
                    seen += items.map { "\($0["height"] as? String ?? "?"):\($0["index"] as? Int ?? -1)" }
                    XCTAssertEqual(items.first?["to"] as? String, carol)
                    XCTAssertEqual(items.first?["amount"] as? String, items.first?["height"] as? String)
                    next = object["next"] as? String
                    if next == nil { XCTAssertTrue(object["next"] is NSNull, "next is null on the last page") }
                }
            } while next != nil && seen.count < 100
            XCTAssertEqual(seen, ["3:2", "3:0", "2:2", "2:0", "1:2", "1:0"])
            try await client.execute(uri: "/accounts/\(carol)/txs", method: .get) { response in
                XCTAssertEqual((self.json(response.body)["transactions"] as? [Any])?.count, 6, "default limit covers all six")
            }
            let max = HTTPAPI.maxAccountTransactionsPage
            for bad in ["limit=0", "limit=\(max + 1)", "limit=-1", "limit=+5", "limit=abc", "limit=", "before=3", "before=3:",
                        "before=x:1", "before=1:2:3", "before=18446744073709551616:0"] {
                try await client.execute(uri: "/accounts/\(carol)/txs?\(bad)", method: .get) { response in
                    XCTAssertEqual(response.status, .badRequest, bad)
                    XCTAssertEqual(self.errorCode(response.body), "malformed", bad)
                    XCTAssertNotNil((self.json(response.body)["error"] as? [String: Any])?["message"] as? String, bad)
                }
            }
            try await client.execute(uri: "/accounts/\(carol)/txs?limit=\(max)", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
            }
            try await client.execute(uri: "/accounts/tally1notanaddress/txs", method: .get) { response in
                XCTAssertEqual(response.status, .badRequest)
                XCTAssertEqual(self.errorCode(response.body), "malformed")
            }
        }
    }
}
