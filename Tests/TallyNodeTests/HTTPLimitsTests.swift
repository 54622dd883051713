import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Metrics
import MetricsTestKit
import NIOCore
import TallyCrypto
import TallyLedger
import TallyLogTesting
@testable import TallyNode
import TallyTypes
import XCTest

/// The parts of a node these tests do not exercise: an empty chain that takes nothing.
/// Each test node below implements only what its test is about.
protocol EmptyChainNode: NodeService {}

extension EmptyChainNode {
    var emptyStatus: NodeStatus {
        NodeStatus(chainID: genesis.chainID, height: 0, latestBlockHash: genesis.hash, view: 0, primary: 0, validatorIndex: nil,
                   validatorName: nil, catchingUp: false, peersConnected: 0, mempoolSize: 0)
    }
    func status() async -> NodeStatus { emptyStatus }
    func submit(_ transactions: [Transaction]) async -> [Result<Hash, SubmissionError>] {
        transactions.map { _ in .failure(.malformed("no")) }
    }
    func transactionStatus(_ hash: Hash) async -> TransactionStatus { .unknown }
    func account(_ address: Address) async -> Account { .empty }
    func block(at height: UInt64) async -> CertifiedBlock? { nil }
    func latestHeight() async -> UInt64 { 0 }
    func subscribe(from address: String) async -> AsyncStream<[NodeEvent]>? { nil }
}

/// A node whose first `parked` account-history reads wait until `release()`.
final class ParkedHistoryNode: EmptyChainNode, @unchecked Sendable {
    let genesis: Genesis
    let genesisJSON: Data
    private let parked: Int
    private let state = NSLock()
    private var enteredCount = 0
    private var released = false

    init(genesis: Genesis, parked: Int) {
        self.genesis = genesis
        genesisJSON = genesis.jsonData()
        self.parked = parked
    }

    var entered: Int { state.withLock { enteredCount } }
    func release() { state.withLock { released = true } }

    func accountTransactions(_ address: Address, before: TransactionPosition?, limit: Int) async -> AccountTransactionsPage {
        let parks = state.withLock { () -> Bool in
            enteredCount += 1
            return enteredCount <= parked
        }
        while parks && !state.withLock({ released }) { try? await Task.sleep(for: .milliseconds(10)) }
        return AccountTransactionsPage(entries: [], next: nil, indexedFromHeight: 1)
    }
}

/// A node whose event stream never ends: one empty block's events every 100 ms.
actor EndlessEventsNode: EmptyChainNode {
    nonisolated let genesis: Genesis
    nonisolated let genesisJSON: Data
    init(genesis: Genesis) {
        self.genesis = genesis
        genesisJSON = genesis.jsonData()
    }
    func subscribe(from address: String) -> AsyncStream<[NodeEvent]>? {
        let hash = genesis.hash
        return AsyncStream { continuation in
            let task = Task {
                while !Task.isCancelled {
                    continuation.yield([.block(height: 1, hash: hash, transactionCount: 0)])
                    try? await Task.sleep(for: .milliseconds(100))
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}

/// A node that takes `statusSeconds` to answer `/status` (a busy node).
actor SlowStatusNode: EmptyChainNode {
    nonisolated let genesis: Genesis
    nonisolated let genesisJSON: Data
    let statusSeconds: Double
    init(genesis: Genesis, statusSeconds: Double) {
        self.genesis = genesis
        genesisJSON = genesis.jsonData()
        self.statusSeconds = statusSeconds
    }
    func status() async -> NodeStatus {
        try? await Task.sleep(for: .milliseconds(Int(statusSeconds * 1000)))
        return emptyStatus
    }
}

/// A blocking TCP client on 127.0.0.1 for connection-level tests.
struct RawClient {
    let fd: Int32

    /// Connects from `source` (any 127.x.y.z is loopback on Linux: another client address).
    init(port: Int, from source: String = "127.0.0.1") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            Glibc.close(fd)
            throw POSIXError(.EADDRNOTAVAIL)
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            Glibc.close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
    }

    func send(_ text: String) {
        _ = text.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
    }

    /// Reads until the server closes or `seconds` pass: what arrived and whether it closed.
    func read(for seconds: Double, until stop: (String) -> Bool = { _ in false }) -> (text: String, closed: Bool) {
        var collected: [UInt8] = []
        let deadline = Date().addingTimeInterval(seconds)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while Date() < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, Int32(max(1, deadline.timeIntervalSinceNow * 1000)))
            if ready <= 0 { continue }
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { return (String(decoding: collected, as: UTF8.self), true) }
            collected += buffer[0..<count]
            if stop(String(decoding: collected, as: UTF8.self)) { break }
        }
        return (String(decoding: collected, as: UTF8.self), false)
    }

    func close() { Glibc.close(fd) }
}

final class HTTPLimitsTests: XCTestCase, @unchecked Sendable {
    lazy var genesis = try! Genesis(
        chainID: "tally-limits", genesisTimeMs: 0,
        validators: (0..<4).map { Validator(name: "validator\($0)", publicKey: SigningKey(seed: SHA256.hash([UInt8($0)]).bytes)!.publicKey, networkAddress: "127.0.0.1:\(7800 + $0)") },
        accounts: [])

    /// Runs the API's real server on an ephemeral port of 127.0.0.1 around `body`.
    func withServer(
        _ limits: HTTPLimits, node: (any NodeService)? = nil, metricsText: @escaping @Sendable () -> String = { "" },
        logger: Logger = Logger(label: "test"), metrics: TestMetrics? = nil, _ body: (Int, HTTPAPI) async throws -> Void
    ) async throws {
        let api = HTTPAPI(node: node ?? LedgerOnlyNode(genesis: genesis), maxBodyBytes: 1 << 20, maxBatchTransactions: 10,
                          limits: limits, statistics: HTTPStatistics(metricsFactory: metrics), metricsText: metricsText)
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = api.application(host: "127.0.0.1", port: 0, logger: logger) { channel in
            portSink.yield(channel.localAddress?.port ?? 0)
        }
        let server = Task { try await app.runService() }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        let next = await iterator.next()
        let port = try XCTUnwrap(next)
        try await body(port, api)
    }

    func statusRequest() -> String { "GET /status HTTP/1.1\r\nHost: test\r\n\r\n" }

    func testIdleConnectionIsClosedAfterTheTimeout() async throws {
        var limits = HTTPLimits()
        limits.idleTimeoutSeconds = 1
        try await withServer(limits) { port, _ in
            let client = try RawClient(port: port)
            defer { client.close() }
            let start = Date()
            let answer = client.read(for: 5)
            XCTAssertTrue(answer.closed, "an idle connection must be closed")
            XCTAssertLessThan(Date().timeIntervalSince(start), 4)
        }
    }

    func testPerAddressCapRefusesTheNextConnection() async throws {
        var limits = HTTPLimits()
        limits.maxConnectionsPerAddress = 2
        let metrics = TestMetrics()
        try await withServer(limits, metrics: metrics) { port, api in
            let first = try RawClient(port: port)
            let second = try RawClient(port: port)
            for client in [first, second] {
                client.send(statusRequest())
                XCTAssertTrue(client.read(for: 5) { $0.contains("mempool_size") }.text.hasPrefix("HTTP/1.1 200"))
            }
            let third = try RawClient(port: port)
            let refused = third.read(for: 5)
            third.close()
            XCTAssertTrue(refused.text.hasPrefix("HTTP/1.1 503"), refused.text)
            XCTAssertTrue(refused.text.contains("\"code\":\"too_many_connections\""), refused.text)
            XCTAssertTrue(refused.closed)
            XCTAssertEqual(api.statistics[.refusedPerAddress], 1)
            XCTAssertEqual(try metrics.expectCounter("tally_http_limited_total", [("reason", "too_many_connections")]).totalValue, 1)
            // A slot freed is a slot taken again.
            first.close()
            try await Task.sleep(for: .milliseconds(200))
            let fourth = try RawClient(port: port)
            fourth.send(statusRequest())
            XCTAssertTrue(fourth.read(for: 5) { $0.contains("mempool_size") }.text.hasPrefix("HTTP/1.1 200"))
            fourth.close()
            second.close()
        }
    }

    /// Issue 14 (fairness): one address holding idle connections up to its cap (and
    /// trying for more) must not take the global slots: another address still gets
    /// `/status`. With the global cap at 3 and no per-address cap, 127.0.0.1's three
    /// idle connections would hold every slot and 127.0.0.2 would wait in the backlog.
    func testIdleConnectionsFromOneAddressLeaveRoomForAnother() async throws {
        var limits = HTTPLimits()
        limits.maxConnections = 3
        limits.maxConnectionsPerAddress = 2
        let capture = LogCapture()
        try await withServer(limits, logger: capture.logger()) { port, api in
            // 127.0.0.1 tries to hold every global slot with idle connections: those
            // over its cap are refused and closed at once (not held).
            var idle: [RawClient] = []
            defer { idle.forEach { $0.close() } }
            for index in 0..<limits.maxConnections {
                let client = try RawClient(port: port)
                idle.append(client)
                if index >= limits.maxConnectionsPerAddress {
                    let refused = client.read(for: 5)
                    XCTAssertTrue(refused.text.hasPrefix("HTTP/1.1 503"), refused.text)
                    XCTAssertTrue(refused.closed)
                }
            }
            let other = try RawClient(port: port, from: "127.0.0.2")
            other.send(statusRequest())
            let answer = other.read(for: 5) { $0.contains("mempool_size") }
            other.close()
            guard answer.text.hasPrefix("HTTP/1.1 200") else { return XCTFail("another address must still be served: \(answer.text)") }
            try await Task.sleep(for: .milliseconds(200))
            // A flood of refusals is logged at a bounded rate, not one line each.
            let floods = 8
            for _ in 0..<floods {
                let over = try RawClient(port: port)
                let refused = over.read(for: 5)
                over.close()
                XCTAssertTrue(refused.text.hasPrefix("HTTP/1.1 503"), refused.text)
            }
            let expectedRefusals = limits.maxConnections - limits.maxConnectionsPerAddress + floods
            XCTAssertEqual(api.statistics[.refusedPerAddress], expectedRefusals)
            let refusalLines = capture.messages.filter { $0.contains("per-address cap") }
            XCTAssertGreaterThanOrEqual(refusalLines.count, 1)
            XCTAssertLessThanOrEqual(refusalLines.count, HTTPLimits.refusalLogLinesPerInterval)
            XCTAssertLessThan(refusalLines.count, expectedRefusals)
        }
    }

    /// Regression (issue 14): with every `max_connections` slot taken, a new connection
    /// waited in the listen backlog unanswered (the client saw a hang, then its own
    /// timeout). Now it gets 503 `server_busy` with `Retry-After` at once and is closed;
    /// each refusal is counted (`tally_http_limited_total{reason="server_busy"}`) and
    /// logged at a bounded rate, and a freed slot serves again.
    func testConnectionOverTheTotalCapIsAnswered503AndClosed() async throws {
        var limits = HTTPLimits()
        limits.maxConnections = 2
        let capture = LogCapture()
        let metrics = TestMetrics()
        try await withServer(limits, logger: capture.logger(), metrics: metrics) { port, api in
            // Two addresses hold the two slots (the per-address cap is not what refuses).
            let held = try (0..<limits.maxConnections).map { try RawClient(port: port, from: "127.0.0.\(2 + $0)") }
            defer { held.forEach { $0.close() } }
            for client in held {
                client.send(statusRequest())
                XCTAssertTrue(client.read(for: 5) { $0.contains("mempool_size") }.text.hasPrefix("HTTP/1.1 200"))
            }
            let floods = 8
            for index in 0..<floods {
                let over = try RawClient(port: port, from: "127.0.1.\(1 + index)")
                let start = Date()
                let refused = over.read(for: 5)
                over.close()
                XCTAssertTrue(refused.text.hasPrefix("HTTP/1.1 503"), "answered, not left in the backlog: \(refused.text)")
                XCTAssertTrue(refused.text.contains("\"code\":\"server_busy\""), refused.text)
                XCTAssertTrue(refused.text.contains("Retry-After: \(HTTPLimits.refusalRetryAfterSeconds)\r\n"), refused.text)
                XCTAssertTrue(refused.closed, "closed at once")
                XCTAssertLessThan(Date().timeIntervalSince(start), 2)
            }
            XCTAssertEqual(api.statistics[.refusedServerBusy], floods)
            XCTAssertEqual(api.statistics[.refusedPerAddress], 0)
            let counter = try metrics.expectCounter("tally_http_limited_total", [("reason", "server_busy")])
            XCTAssertEqual(counter.totalValue, Int64(floods))
            let lines = capture.messages.filter { $0.contains("every connection slot is taken") }
            XCTAssertGreaterThanOrEqual(lines.count, 1)
            XCTAssertLessThanOrEqual(lines.count, HTTPLimits.refusalLogLinesPerInterval)
            // A freed slot is served again.
            held[0].close()
            try await Task.sleep(for: .milliseconds(200))
            let again = try RawClient(port: port, from: "127.0.2.1")
            again.send(statusRequest())
            XCTAssertTrue(again.read(for: 5) { $0.contains("mempool_size") }.text.hasPrefix("HTTP/1.1 200"))
            again.close()
        }
    }

    /// Issue 14 (fairness under the total cap): with every slot held by one address's
    /// idle connections, a newcomer from another address is served: the heavy address's
    /// oldest connection is closed (counted as `connection_displaced`). One more from the
    /// heavy address itself displaces nobody (it would not hold fewer): 503.
    func testAFullTableMakesRoomForAnAddressHoldingFewer() async throws {
        var limits = HTTPLimits()
        limits.maxConnections = 3
        let metrics = TestMetrics()
        try await withServer(limits, metrics: metrics) { port, api in
            var heavy: [RawClient] = []
            defer { heavy.forEach { $0.close() } }
            for _ in 0..<limits.maxConnections {
                let client = try RawClient(port: port)
                client.send(statusRequest())
                XCTAssertTrue(client.read(for: 5) { $0.contains("mempool_size") }.text.hasPrefix("HTTP/1.1 200"))
                heavy.append(client)
            }
            let newcomer = try RawClient(port: port, from: "127.0.0.2")
            defer { newcomer.close() }
            newcomer.send(statusRequest())
            let answer = newcomer.read(for: 5) { $0.contains("mempool_size") }
            XCTAssertTrue(answer.text.hasPrefix("HTTP/1.1 200"), "an address holding none is served: \(answer.text)")
            XCTAssertTrue(heavy[0].read(for: 5).closed, "the heavy address's oldest connection made room")
            XCTAssertEqual(api.statistics[.displaced], 1)
            XCTAssertEqual(try metrics.expectCounter("tally_http_limited_total", [("reason", "connection_displaced")]).totalValue, 1)
            let more = try RawClient(port: port)
            let refused = more.read(for: 5)
            more.close()
            XCTAssertTrue(refused.text.contains("\"code\":\"server_busy\""), refused.text)
            heavy[1].send(statusRequest())
            XCTAssertTrue(heavy[1].read(for: 5) { $0.contains("mempool_size") }.text.hasPrefix("HTTP/1.1 200"), "the others stay")
        }
    }

    func testSlowHeaderSenderIsCut() async throws {
        var limits = HTTPLimits()
        limits.headerTimeoutSeconds = 1
        try await withServer(limits) { port, api in
            let client = try RawClient(port: port)
            defer { client.close() }
            client.send("GET /status HTTP/1.1\r\nHost: test\r\n")
            // A byte every 100 ms keeps the connection busy but never ends the head.
            let trickle = Task {
                for _ in 0..<50 {
                    client.send("X")
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            defer { trickle.cancel() }
            let start = Date()
            let answer = client.read(for: 5)
            XCTAssertTrue(answer.closed, "a slow head must be cut")
            XCTAssertLessThan(Date().timeIntervalSince(start), 4)
            XCTAssertTrue(answer.text.hasPrefix("HTTP/1.1 408"), answer.text)
            XCTAssertTrue(answer.text.contains("\"code\":\"request_timeout\""), answer.text)
            XCTAssertEqual(api.statistics[.headerTimeout], 1)
        }
    }

    func testSlowBodyIsCut() async throws {
        var limits = HTTPLimits()
        limits.bodyTimeoutSeconds = 1
        try await withServer(limits) { port, api in
            let client = try RawClient(port: port)
            defer { client.close() }
            client.send("POST /txs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"tx\":")
            let start = Date()
            let answer = client.read(for: 5)
            XCTAssertTrue(answer.closed, "a body that never completes must be cut")
            XCTAssertLessThan(Date().timeIntervalSince(start), 4)
            XCTAssertEqual(api.statistics[.bodyTimeout], 1)
        }
    }

    /// The body deadline is the client's time to send its request, not the node's
    /// time to answer it: a request read whole is answered however long the (busy)
    /// node takes, instead of being cut after the node may have acted on it.
    func testARequestReadWholeIsAnsweredPastTheBodyDeadline() async throws {
        var limits = HTTPLimits()
        limits.bodyTimeoutSeconds = 1
        try await withServer(limits, node: SlowStatusNode(genesis: genesis, statusSeconds: 2.5)) { port, api in
            let client = try RawClient(port: port)
            defer { client.close() }
            client.send(statusRequest())
            let answer = client.read(for: 8) { $0.contains("\"chain_id\"") }
            XCTAssertTrue(answer.text.hasPrefix("HTTP/1.1 200"), "a slow answer must not be cut: \(answer)")
            XCTAssertEqual(api.statistics[.bodyTimeout], 0)
        }
    }

    func testClientThatStopsReadingIsCutByTheWriteTimeout() async throws {
        var limits = HTTPLimits()
        limits.writeTimeoutSeconds = 1
        let big = String(repeating: "tally_padding 0\n", count: 4 << 20)
        try await withServer(limits, metricsText: { big }) { port, api in
            let client = try RawClient(port: port)
            defer { client.close() }
            client.send("GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
            let deadline = Date().addingTimeInterval(10)
            while api.statistics[.writeTimeout] == 0 && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
            XCTAssertEqual(api.statistics[.writeTimeout], 1, "a client that takes nothing for the write timeout is cut")
        }
    }

    func testEventSubscribersPerAddressAreCapped() async throws {
        var limits = HTTPLimits()
        limits.maxEventSubscribersPerAddress = 2
        try await withServer(limits, node: EndlessEventsNode(genesis: genesis)) { port, api in
            let request = "GET /events HTTP/1.1\r\nHost: test\r\n\r\n"
            var streams: [RawClient] = []
            for _ in 0..<2 {
                let client = try RawClient(port: port)
                client.send(request)
                XCTAssertTrue(client.read(for: 5) { $0.contains("event: block") }.text.hasPrefix("HTTP/1.1 200"))
                streams.append(client)
            }
            let third = try RawClient(port: port)
            third.send(request)
            let refused = third.read(for: 5) { $0.contains("}}") }.text
            third.close()
            XCTAssertTrue(refused.hasPrefix("HTTP/1.1 503"), refused)
            XCTAssertTrue(refused.contains("too_many_subscribers"), refused)
            XCTAssertEqual(api.statistics[.subscriberRefused], 1)
            // A stream whose client went frees its slot (at the next event written).
            streams.removeFirst().close()
            try await Task.sleep(for: .milliseconds(500))
            let again = try RawClient(port: port)
            again.send(request)
            XCTAssertTrue(again.read(for: 5) { $0.contains("event: block") }.text.hasPrefix("HTTP/1.1 200"))
            again.close()
            streams.forEach { $0.close() }
        }
    }

    func testRateLimitAnswers429() async throws {
        var limits = HTTPLimits()
        limits.submitRequestsPerSecond = 1
        limits.submitBurst = 2
        limits.queryRequestsPerSecond = 1
        limits.queryBurst = 1
        let metrics = TestMetrics()
        let api = HTTPAPI(node: LedgerOnlyNode(genesis: genesis), maxBodyBytes: 1 << 20, maxBatchTransactions: 10, limits: limits,
                          statistics: HTTPStatistics(metricsFactory: metrics), metricsText: { "" })
        try await Application(router: api.router()).test(.router) { client in
            var statuses: [HTTPResponse.Status] = []
            for _ in 0..<3 {
                try await client.execute(uri: "/txs", method: .post, headers: [.contentType: "application/json"],
                                         body: ByteBuffer(string: "{}")) { response in
                    statuses.append(response.status)
                    if response.status == .tooManyRequests {
                        XCTAssertEqual(response.headers[.retryAfter], "1")
                        let object = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                        XCTAssertEqual((object?["error"] as? [String: Any])?["code"] as? String, "rate_limited")
                    }
                }
            }
            XCTAssertEqual(statuses, [.badRequest, .badRequest, .tooManyRequests])
            // Other routes and classes have their own buckets.
            try await client.execute(uri: "/status", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/blocks/1", method: .get) { XCTAssertEqual($0.status, .notFound) }
            try await client.execute(uri: "/txs/\(SHA256.hash([1]).hex)", method: .get) { XCTAssertEqual($0.status, .tooManyRequests) }
        }
        XCTAssertEqual(api.statistics[.rateLimited], 2)
        XCTAssertEqual(try metrics.expectCounter("tally_http_limited_total", [("reason", "rate_limited")]).totalValue, 2)
    }

    func testConfigCarriesTheLimits() throws {
        var config = NodeConfig()
        config.api.maxConnectionsPerAddress = 7
        config.api.headerTimeoutSeconds = 3
        config.api.queryBurst = 9
        XCTAssertEqual(config.api.httpLimits.maxConnectionsPerAddress, 7)
        XCTAssertEqual(config.api.httpLimits.headerTimeoutSeconds, 3)
        XCTAssertEqual(config.api.httpLimits.queryBurst, 9)
        XCTAssertTrue(config.rendered().contains("max_connections_per_address = 7"))
    }

    /// Issue 17: account-history pages are read at most `maxConcurrentHistoryReads` at
    /// once, from all clients together; one more is refused with 503 `too_many_reads`
    /// at once (it never reaches the node), and a finished read frees its slot.
    func testAccountHistoryReadsBeyondTheCapAreRefused() async throws {
        var limits = HTTPLimits()
        limits.maxConcurrentHistoryReads = 2
        let node = ParkedHistoryNode(genesis: genesis, parked: 2)
        let api = HTTPAPI(node: node, maxBodyBytes: 1 << 20, maxBatchTransactions: 10, limits: limits, metricsText: { "" })
        let uri = "/accounts/\(Address(publicKey: SigningKey(seed: [UInt8](repeating: 1, count: 32))!.publicKey).bech32m)/txs"
        try await Application(router: api.router()).test(.router) { client in
            async let first = client.execute(uri: uri, method: .get) { $0.status }
            async let second = client.execute(uri: uri, method: .get) { $0.status }
            let deadline = Date().addingTimeInterval(10)
            while node.entered < 2 && Date() < deadline { try await Task.sleep(for: .milliseconds(10)) }
            XCTAssertEqual(node.entered, 2, "both reads in progress")
            try await client.execute(uri: uri, method: .get) { response in
                XCTAssertEqual(response.status, .serviceUnavailable)
                let object = try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [String: Any]
                let error = object?["error"] as? [String: Any]
                XCTAssertEqual(error?["code"] as? String, "too_many_reads")
                XCTAssertNotNil(error?["message"] as? String)
            }
            XCTAssertEqual(node.entered, 2, "the refused read never reached the node")
            XCTAssertEqual(api.statistics[.historyReadRefused], 1)
            node.release()
            let statuses = try await [first, second]
            XCTAssertEqual(statuses, [.ok, .ok])
            try await client.execute(uri: uri, method: .get) { XCTAssertEqual($0.status, .ok, "a finished read frees its slot") }
        }
    }
}

/// The open-descriptor limit: raised at start-up; running out on accept is counted
/// and survived.
final class DescriptorLimitTests: XCTestCase, @unchecked Sendable {
    func testSoftLimitIsRaisedToTheHardLimit() throws {
        let original = DescriptorLimit.soft
        defer { _ = DescriptorLimit.setSoft(original) }
        XCTAssertTrue(DescriptorLimit.setSoft(256))
        let change = DescriptorLimit.raiseToHard()
        XCTAssertEqual(change.previousSoft, 256)
        XCTAssertEqual(change.soft, change.hard == UInt64(rlim_t.max) ? change.soft : change.hard)
        XCTAssertGreaterThan(DescriptorLimit.soft, 256)
        XCTAssertEqual(DescriptorLimit.soft, change.soft)
    }

    func testRunningOutOfDescriptorsOnAcceptIsCountedAndSurvived() async throws {
        let genesis = try Genesis(
            chainID: "tally-fd", genesisTimeMs: 0,
            validators: [Validator(name: "v", publicKey: SigningKey(seed: SHA256.hash([9]).bytes)!.publicKey, networkAddress: "127.0.0.1:1")],
            accounts: [])
        let api = HTTPAPI(node: LedgerOnlyNode(genesis: genesis), maxBodyBytes: 1 << 20, maxBatchTransactions: 10, metricsText: { "" })
        let (ports, portSink) = AsyncStream<Int>.makeStream()
        let app = api.application(host: "127.0.0.1", port: 0, logger: Logger(label: "test")) { portSink.yield($0.localAddress?.port ?? 0) }
        let server = Task { try await app.runService() }
        defer { server.cancel() }
        var iterator = ports.makeAsyncIterator()
        let next = await iterator.next()
        let port = try XCTUnwrap(next)

        let original = DescriptorLimit.soft
        // A few descriptors above what is open now: clients take them, then the
        // server's accept fails with EMFILE.
        let open = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 64
        XCTAssertTrue(DescriptorLimit.setSoft(UInt64(open + 8)))
        var clients: [RawClient] = []
        while let client = try? RawClient(port: port) { clients.append(client) }
        let deadline = Date().addingTimeInterval(5)
        while api.statistics[.acceptError] == 0 && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        // While the shortage lasts, the listener tries about once a second (it spun:
        // every failed accept was retried at once).
        let errorsBefore = api.statistics[.acceptError]
        try await Task.sleep(for: .milliseconds(1_500))
        let errorsDuring = api.statistics[.acceptError] - errorsBefore
        clients.forEach { $0.close() }
        XCTAssertTrue(DescriptorLimit.setSoft(original))
        XCTAssertGreaterThan(api.statistics[.acceptError], 0, "accept failures must be counted")
        XCTAssertLessThanOrEqual(errorsDuring, 4, "about one accept attempt a second, not a retry loop")
        // The server goes on (NIO's accept back-off retries a second later).
        try await Task.sleep(for: .milliseconds(1_500))
        let client = try RawClient(port: port)
        defer { client.close() }
        client.send("GET /status HTTP/1.1\r\nHost: test\r\n\r\n")
        XCTAssertTrue(client.read(for: 5) { $0.contains("mempool_size") }.text.hasPrefix("HTTP/1.1 200"))
    }
}
