import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import TallyCrypto
import TallyLedger
import TallyNetwork
import TallyTypes

/// The node's HTTP API (docs/API.md): routes only; every decision is the
/// `NodeService`'s. JSON numbers wider than 31 bits are strings.
public struct HTTPAPI: Sendable {
    public let node: any NodeService
    public let maxBodyBytes: Int
    public let maxBatchTransactions: Int
    public let metricsText: @Sendable () -> String
    public let limits: HTTPLimits
    /// What the limits refused, cut or closed (also `tally_http_limited_total`).
    public let statistics: HTTPStatistics
    let rateLimiter: RequestRateLimiter
    let subscriberSlots: SlotsPerAddress
    /// Account-history pages in progress (`HTTPLimits.maxConcurrentHistoryReads`).
    let historyReads: ConcurrencySlots

    public init(
        node: any NodeService, maxBodyBytes: Int, maxBatchTransactions: Int, limits: HTTPLimits = HTTPLimits(),
        statistics: HTTPStatistics = HTTPStatistics(), metricsText: @escaping @Sendable () -> String
    ) {
        self.node = node
        self.maxBodyBytes = maxBodyBytes
        self.maxBatchTransactions = maxBatchTransactions
        self.metricsText = metricsText
        self.limits = limits
        self.statistics = statistics
        rateLimiter = RequestRateLimiter(limits: limits)
        subscriberSlots = SlotsPerAddress(limit: limits.maxEventSubscribersPerAddress)
        historyReads = ConcurrencySlots(limits.maxConcurrentHistoryReads)
    }

    public func router() -> Router<APIRequestContext> {
        let router = Router(context: APIRequestContext.self)
        router.get("/status") { _, _ in try await self.status() }
        router.post("/txs") { request, context in
            try await self.limited(.submit, context) { try await self.submit(request) }
        }
        router.get("/txs/:hash") { _, context in
            try await self.limited(.query, context) { try await self.transaction(context.parameters.get("hash") ?? "") }
        }
        router.get("/accounts/:address") { _, context in try await self.account(context.parameters.get("address") ?? "") }
        router.get("/accounts/:address/txs") { request, context in
            try await self.limited(.query, context) {
                try await self.accountTransactions(context.parameters.get("address") ?? "", request.uri.queryParameters)
            }
        }
        router.get("/blocks/latest") { request, context in
            try await self.limited(.query, context) { try await self.block(nil, request) }
        }
        router.get("/blocks/:height") { request, context in
            try await self.limited(.query, context) {
                guard let height = UInt64(context.parameters.get("height") ?? "") else {
                    return try Self.error(.badRequest, "malformed", "height must be a decimal integer")
                }
                return try await self.block(height, request)
            }
        }
        router.get("/validators") { _, _ in try self.validators() }
        router.get("/evidence") { _, context in
            try await self.limited(.query, context) {
                try Self.json(EquivocationReporter.json(await self.node.equivocationEvidence(), validators: self.node.genesis.validators))
            }
        }
        router.get("/genesis") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(bytes: self.node.genesisJSON)))
        }
        router.get("/events") { _, context in try await self.events(from: addressKey(context.remoteAddress)) }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        // The block explorer (explorer/, embedded by tools/gen-explorer): static and
        // cheap, so not rate-limited.
        router.get("/") { request, _ in Self.explorerAsset(ExplorerAssets.html, request) }
        router.get("/explorer") { request, _ in Self.explorerAsset(ExplorerAssets.html, request) }
        router.get("/explorer/explorer.css") { request, _ in Self.explorerAsset(ExplorerAssets.css, request) }
        router.get("/explorer/explorer.js") { request, _ in Self.explorerAsset(ExplorerAssets.javascript, request) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: .init(byteBuffer: ByteBuffer(string: self.metricsText())))
        }
        // Last, so it wraps only requests no route took: 405 for a declared path's other methods.
        router.add(middleware: MethodNotAllowedMiddleware(declared: .api))
        return router
    }

    /// The API as a Hummingbird application with the connection limits in force: at
    /// most `maxConnections` served at once (shared fairly among addresses, else one
    /// more is answered 503 and closed by `HTTPConnectionGuard`; Hummingbird stops accepting only past
    /// `maxRefusingConnections` more, being refused), the idle timeout (Hummingbird's),
    /// and per connection the per-address cap and the header, body and write deadlines.
    /// `eventLoopGroup`: the API's own loops (`APIThreads.group` in the node); nil: NIO's
    /// shared singleton.
    public func application(
        host: String, port: Int, logger: Logger, eventLoopGroup: (any EventLoopGroup)? = nil,
        onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
    ) -> Application<RouterResponder<APIRequestContext>> {
        // Shared by every connection (the handler list below is built per connection).
        let connections = SlotsPerAddress(limit: limits.maxConnectionsPerAddress)
        let served = ServedConnections(limit: limits.maxConnections)
        let refusals = RateLimitedLogger(
            logger: logger, maxLinesPerInterval: HTTPLimits.refusalLogLinesPerInterval, intervalMs: HTTPLimits.refusalLogIntervalMs)
        let limits = self.limits
        let statistics = self.statistics
        return Application(
            router: router(),
            server: .http1(configuration: .init(
                additionalChannelHandlers: [
                    HTTPConnectionGuardInstaller(
                        limits: limits, connections: connections, served: served, statistics: statistics, refusals: refusals),
                ],
                idleTimeout: .seconds(Int64(limits.idleTimeoutSeconds)))),
            configuration: .init(
                address: .hostname(host, port: port), serverName: "tally-node",
                availableConnectionsDelegate: MaximumAvailableConnections(
                    limits.maxConnections + HTTPLimits.maxRefusingConnections, logger: logger)),
            onServerRunning: { channel in
                // First in the listening pipeline, before NIO's accept back-off swallows
                // accept errors (out of descriptors): they are counted and logged, and
                // the listener pauses a second (`AcceptErrorCounter`).
                try? await channel.eventLoop.submit {
                    let counter = AcceptErrorCounter { error in
                        let total = statistics.count(.acceptError)
                        // Bounded logging: a descriptor shortage repeats every second.
                        if total <= 10 || total.isMultiple(of: 1_000) {
                            logger.error("cannot accept an API connection; retrying in 1 s", metadata: [
                                "error": "\(error)", "total": "\(total)",
                            ])
                        }
                    }
                    try channel.pipeline.syncOperations.addHandler(counter, position: .first)
                }.get()
                await onServerRunning(channel)
            },
            eventLoopGroupProvider: eventLoopGroup.map { .shared($0) } ?? .singleton,
            logger: logger)
    }

    /// Answers 429 `rate_limited` when the client's address is over its rate for
    /// `routeClass`, else `respond`.
    func limited(
        _ routeClass: RequestRateLimiter.RouteClass, _ context: APIRequestContext, _ respond: () async throws -> Response
    ) async throws -> Response {
        guard rateLimiter.allow(routeClass, addressKey(context.remoteAddress)) else {
            statistics.count(.rateLimited)
            let rate = rateLimiter.rates[routeClass]!.perSecond
            var response = try Self.error(
                .tooManyRequests, "rate_limited", "over \(Int(rate)) requests a second from this address; retry later")
            response.headers[.retryAfter] = "1"
            return response
        }
        return try await respond()
    }

    // MARK: Routes

    func status() async throws -> Response {
        let status = await node.status()
        var object: [String: Any] = [
            "chain_id": status.chainID, "height": String(status.height), "latest_block_hash": status.latestBlockHash.hex,
            "view": String(status.view), "primary": status.primary, "catching_up": status.catchingUp,
            "peers_connected": status.peersConnected, "mempool_size": status.mempoolSize,
        ]
        object["validator_index"] = status.validatorIndex ?? NSNull()
        object["validator_name"] = status.validatorName ?? NSNull()
        return try Self.json(object)
    }

    func submit(_ request: Request) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes {
            return try Self.error(.contentTooLarge, "too_large", "request body of \(length) bytes is over the limit of \(maxBodyBytes)")
        }
        let body: ByteBuffer
        do { body = try await request.body.collect(upTo: maxBodyBytes) } catch is NIOTooManyBytesError {
            return try Self.error(.contentTooLarge, "too_large", "request body is over the limit of \(maxBodyBytes) bytes")
        }
        let bytes = Array(body.readableBytesView)
        let isBinary = request.headers[.contentType]?.hasPrefix("application/octet-stream") ?? false
        let parsed: (transactions: [Transaction], batch: Bool)
        switch isBinary ? Self.parseBinary(bytes) : Self.parseJSON(bytes, maxBatch: maxBatchTransactions) {
        case .success(let value): parsed = value
        case .failure(let failure):
            return try Self.error(failure.tooLarge ? .contentTooLarge : .badRequest, failure.tooLarge ? "too_large" : "malformed", failure.message)
        }
        let results = await node.submit(parsed.transactions)
        if !parsed.batch {
            switch results[0] {
            case .success(let hash): return try Self.json(["hash": hash.hex], status: .accepted)
            case .failure(let error): return try Self.error(Self.status(for: error), error.code, error.message)
            }
        }
        let items: [[String: Any]] = zip(parsed.transactions, results).map { transaction, result in
            switch result {
            case .success(let hash): return ["hash": hash.hex]
            case .failure(let error):
                return ["hash": transaction.hash.hex, "error": ["code": error.code, "message": error.message]]
            }
        }
        return try Self.json(["results": items])
    }

    func transaction(_ text: String) async throws -> Response {
        guard let hash = Hash(hex: text) else { return try Self.error(.badRequest, "malformed", "transaction hash must be 64 hex characters") }
        switch await node.transactionStatus(hash) {
        case .pending: return try Self.json(["hash": hash.hex, "status": "pending"])
        case .unknown: return try Self.json(["hash": hash.hex, "status": "unknown"], status: .notFound)
        case .committed(let height, let index, let blockHash, let proof):
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(
                string: BlockJSON.committedText(hash: hash, height: height, index: index, blockHash: blockHash, proof: proof))))
        }
    }

    /// The committed answer of `GET /txs/{hash}` as a JSON object (written by
    /// `BlockJSON.committedText`, which must give the same bytes).
    static func committedJSON(hash: Hash, height: UInt64, index: Int, blockHash: Hash, proof: InclusionProof) -> [String: Any] {
        ["hash": hash.hex, "status": "committed", "height": String(height), "index": index, "block_hash": blockHash.hex,
         "proof": ["index": String(proof.index), "leaf_count": String(proof.leafCount), "path": proof.path.map(\.hex)]]
    }

    func account(_ text: String) async throws -> Response {
        let address: Address
        do { address = try Address(bech32m: text) } catch {
            return try Self.error(.badRequest, "malformed", "\(error)")
        }
        // A node that knows it is behind would hand out a stale nonce and balance as if
        // current (a wallet signing with it is rejected by every up-to-date validator).
        let status = await node.status()
        if status.catchingUp {
            return try Self.error(
                .serviceUnavailable, "catching_up",
                "this node is catching up with the network (at height \(status.height)); retry shortly or ask another node")
        }
        let account = await node.account(address)
        let pending = await node.pendingNonce(address)
        return try Self.json([
            "address": address.bech32m, "balance": String(account.balance), "nonce": String(account.nonce),
            "pending_nonce": String(pending),
        ])
    }

    /// Largest `limit` of `/accounts/{address}/txs` (each entry may read its own block).
    public static let maxAccountTransactionsPage = AccountTransactions.maxPageTransactions

    func accountTransactions(_ text: String, _ query: Parameters) async throws -> Response {
        let address: Address
        do { address = try Address(bech32m: text) } catch {
            return try Self.error(.badRequest, "malformed", "\(error)")
        }
        var limit = AccountTransactions.defaultPageTransactions
        if let given = query.get("limit") {
            guard given.utf8.count <= 4, given.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let value = Int(given),
                  value >= 1, value <= Self.maxAccountTransactionsPage
            else {
                return try Self.error(.badRequest, "malformed", "limit must be an integer 1…\(Self.maxAccountTransactionsPage)")
            }
            limit = value
        }
        var before: TransactionPosition?
        if let given = query.get("before") {
            guard let cursor = TransactionPosition(cursor: given) else {
                return try Self.error(.badRequest, "malformed", "before must be <height>:<index> (decimal), as `next` gives it")
            }
            before = cursor
        }
        // After the cheap checks: only a well-formed request can take a slot.
        guard historyReads.tryAcquire() else {
            statistics.count(.historyReadRefused)
            return try Self.error(
                .serviceUnavailable, "too_many_reads",
                "over \(limits.maxConcurrentHistoryReads) account histories are being read; retry shortly")
        }
        defer { historyReads.release() }
        let page: AccountTransactionsPage
        do { page = try await node.accountTransactions(address, before: before, limit: limit) } catch {
            statistics.count(.historyUnavailable)
            return try Self.error(
                .serviceUnavailable, "history_unavailable",
                "this node's account index is damaged (it is rebuilt at its next start); ask another node")
        }
        var object: [String: Any] = [
            "address": address.bech32m, "indexed_from_height": String(page.indexedFromHeight),
            "transactions": page.entries.map { entry -> [String: Any] in
                var item = Self.transactionJSON(entry.transaction)
                item["height"] = String(entry.position.height)
                item["index"] = Int(entry.position.index)
                return item
            },
        ]
        object["next"] = page.next.map { $0.description } ?? NSNull()
        return try Self.json(object)
    }

    func block(_ requested: UInt64?, _ request: Request) async throws -> Response {
        let height: UInt64
        if let requested { height = requested } else { height = await node.latestHeight() }
        guard height > 0, let certified = await node.block(at: height) else {
            return try Self.error(.notFound, "not_found", height == 0 ? "no block committed yet" : "no block at height \(height)")
        }
        if request.headers[.accept]?.contains("application/octet-stream") ?? false {
            return Response(status: .ok, headers: [.contentType: "application/octet-stream"],
                            body: .init(byteBuffer: ByteBuffer(bytes: certified.canonicalBytes)))
        }
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(string: BlockJSON.text(certified))))
    }

    func validators() throws -> Response {
        let list: [[String: Any]] = node.genesis.validators.validators.enumerated().map {
            ["index": $0.offset, "name": $0.element.name, "public_key": $0.element.publicKey.hex, "address": $0.element.networkAddress]
        }
        return try Self.json(list)
    }

    func events(from address: String) async throws -> Response {
        guard subscriberSlots.take(address) else {
            statistics.count(.subscriberRefused)
            return try Self.error(
                .serviceUnavailable, "too_many_subscribers",
                "over \(subscriberSlots.limit) event streams from this address; close one and retry")
        }
        guard let stream = await node.subscribe(from: address) else {
            subscriberSlots.release(address)
            return try Self.error(.serviceUnavailable, "too_many_subscribers", "too many event subscribers; retry later")
        }
        let slots = subscriberSlots
        // One write per block, not per event (a full block has 4,000 `tx` events). The
        // address's slot is held until the stream ends or its connection fails (a
        // client that stops reading is cut by the write timeout).
        let body = ResponseBody { writer in
            defer { slots.release(address) }
            for await events in stream {
                try await writer.write(ByteBuffer(string: events.map(Self.serverSentEvent).joined()))
                if case .block(let height, _, _) = events.first { node.eventsSent(height: height) }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    /// What the explorer's page may do: its own script and style only (no inline
    /// script, no other origin), fetch and `/events` from this node only, no framing.
    static let explorerContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        + "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    /// One of the explorer's files; 304 when the browser has this version (`no-cache`:
    /// it revalidates each time, so a node upgrade shows at once).
    static func explorerAsset(_ asset: ExplorerAssets.Asset, _ request: Request) -> Response {
        let headers: HTTPFields = [
            .contentType: asset.contentType, .eTag: asset.etag, .cacheControl: "no-cache",
            .contentSecurityPolicy: explorerContentSecurityPolicy, .xContentTypeOptions: "nosniff",
            HTTPFields.Element.Name("Referrer-Policy")!: "no-referrer",
        ]
        if let known = request.headers[.ifNoneMatch], known.split(separator: ",").contains(where: {
            $0.trimmingCharacters(in: .whitespaces) == asset.etag
        }) {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: asset.body)))
    }

    // MARK: Encoding

    /// One server-sent event. The JSON is written directly (the same bytes
    /// `JSONSerialization` with sorted keys gives: hex, digits and fixed keys need no
    /// escaping); at a thousand transactions a second the generic serialiser was a
    /// tenth of a validator's CPU.
    static func serverSentEvent(_ event: NodeEvent) -> String {
        switch event {
        case .block(let height, let hash, let count):
            return "event: block\ndata: {\"hash\":\"\(hash.hex)\",\"height\":\"\(height)\",\"transactions\":\(count)}\n\n"
        case .transaction(let hash, let height, let index):
            return "event: tx\ndata: {\"hash\":\"\(hash.hex)\",\"height\":\"\(height)\",\"index\":\(index)}\n\n"
        }
    }

    /// The block as a JSON object: what the API's block routes answer (written by
    /// `BlockJSON.text`, which must give the same bytes) and the explorer's test vector.
    static func blockJSON(_ certified: CertifiedBlock) -> [String: Any] {
        let header = certified.block.header
        return [
            "height": String(header.height), "hash": header.hash.hex, "previous_hash": header.previousHash.hex,
            "view": String(header.view), "timestamp_ms": String(header.timestampMs), "proposer": Int(header.proposer),
            "transactions_root": header.transactionsRoot.hex, "state_root": header.stateRoot.hex,
            "transactions": certified.block.transactions.map(transactionJSON),
            "certificate": [
                "view": String(certified.certificate.view), "height": String(certified.certificate.height),
                "block_hash": certified.certificate.blockHash.hex,
                "signatures": certified.certificate.signatures.map {
                    ["validator_index": Int($0.validatorIndex), "signature": $0.signature.hex] as [String: Any]
                },
            ] as [String: Any],
        ]
    }

    static func transactionJSON(_ transaction: Transaction) -> [String: Any] {
        ["hash": transaction.hash.hex, "from": transaction.senderAddress.bech32m, "to": transaction.recipient.bech32m,
         "amount": String(transaction.amount), "fee": String(transaction.fee), "nonce": String(transaction.nonce)]
    }

    struct ParseFailure: Error {
        let message: String
        var tooLarge = false
    }

    static func parseBinary(_ bytes: [UInt8]) -> Result<([Transaction], Bool), ParseFailure> {
        do { return .success(([try Transaction(canonicalBytes: bytes)], false)) } catch {
            return .failure(ParseFailure(message: "body is not a canonical transaction: \(error)"))
        }
    }

    static func parseJSON(_ bytes: [UInt8], maxBatch: Int) -> Result<([Transaction], Bool), ParseFailure> {
        guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            return .failure(ParseFailure(message: "body must be a JSON object {\"tx\": hex} or {\"txs\": [hex, …]}"))
        }
        let texts: [Any]
        let batch: Bool
        if let one = object["tx"] {
            texts = [one]
            batch = false
        } else if let many = object["txs"] as? [Any] {
            guard !many.isEmpty else { return .failure(ParseFailure(message: "\"txs\" is empty")) }
            guard many.count <= maxBatch else {
                return .failure(ParseFailure(message: "batch of \(many.count) is over the limit of \(maxBatch)", tooLarge: true))
            }
            texts = many
            batch = true
        } else {
            return .failure(ParseFailure(message: "body must have \"tx\" (hex) or \"txs\" (array of hex)"))
        }
        var transactions: [Transaction] = []
        transactions.reserveCapacity(texts.count)
        for (index, text) in texts.enumerated() {
            let label = batch ? "txs[\(index)]" : "tx"
            guard let hex = text as? String, let raw = Hex.decode(hex) else {
                return .failure(ParseFailure(message: "\(label) must be a hex string"))
            }
            do { transactions.append(try Transaction(canonicalBytes: raw)) } catch {
                return .failure(ParseFailure(message: "\(label) is not a canonical transaction: \(error)"))
            }
        }
        return .success((transactions, batch))
    }

    static func status(for error: SubmissionError) -> HTTPResponse.Status {
        switch error {
        case .malformed: return .badRequest
        case .rejected(let reason):
            switch reason {
            case .staleNonce, .duplicate, .nonceTaken: return .conflict
            case .full, .senderFull: return .serviceUnavailable
            default: return .unprocessableContent
            }
        }
    }

    static func json(_ object: Any, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ status: HTTPResponse.Status, _ code: String, _ message: String) throws -> Response {
        try json(["error": ["code": code, "message": message]], status: status)
    }
}
