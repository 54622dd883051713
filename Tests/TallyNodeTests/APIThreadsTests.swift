import Foundation
import Hummingbird
import Logging
import NIOConcurrencyHelpers
import NIOCore
import TallyCrypto
@testable import TallyNode
import TallyTypes
import XCTest

/// A node that records the nice value of the thread each `/status` call runs on.
final class NiceRecordingNode: EmptyChainNode, @unchecked Sendable {
    let genesis: Genesis
    let genesisJSON: Data
    let statusCallerNice = NIOLockedValueBox<[Int]>([])

    init(genesis: Genesis) {
        self.genesis = genesis
        genesisJSON = genesis.jsonData()
    }

    func status() async -> NodeStatus {
        statusCallerNice.withLockedValue { $0.append(APIThreads.currentThreadNice()) }
        return emptyStatus
    }
}

/// The API's threads sit below consensus in OS priority (issue 14: a flood of API
/// connections must not take the cores from the replica).
final class APIThreadsTests: XCTestCase {
    let genesis = try! Genesis(
        chainID: "tally-api-threads", genesisTimeMs: 0,
        validators: (0..<4).map {
            Validator(
                name: "validator\($0)", publicKey: SigningKey(seed: SHA256.hash([UInt8($0)]).bytes)!.publicKey,
                networkAddress: "127.0.0.1:\(7800 + $0)")
        },
        accounts: [])

    /// The API's listening loop and its request handlers (here the node's `/status`, called
    /// from the handler's task) run at the base nice value plus the increment. Without the
    /// executor preference (`OnAPIThreads`) the handler runs on the shared cooperative pool
    /// at the base value; without `eventLoopGroup` the server runs on NIO's singleton loops.
    func testTheAPIsLoopsAndHandlersRunAtTheLowerPriority() async throws {
        let base = APIThreads.currentThreadNice()
        XCTAssertLessThanOrEqual(base, 16, "the test process must be able to lower its threads' priority by 3")
        let threads = try await APIThreads.start(threadCount: 2, niceIncrement: 3)
        XCTAssertEqual(threads.threadNiceValues, [base + 3, base + 3])
        XCTAssertEqual(APIThreads.currentThreadNice(), base, "the caller's own thread keeps its priority")

        let node = NiceRecordingNode(genesis: genesis)
        let api = HTTPAPI(node: node, maxBodyBytes: 1 << 20, maxBatchTransactions: 10, limits: HTTPLimits(), metricsText: { "" })
        let (listening, sink) = AsyncStream<(port: Int, loopNice: Int)>.makeStream()
        let app = api.application(
            host: "127.0.0.1", port: 0, logger: Logger(label: "test"), eventLoopGroup: threads.group
        ) { channel in
            let loopNice = (try? await channel.eventLoop.submit { APIThreads.currentThreadNice() }.get()) ?? -100
            sink.yield((channel.localAddress?.port ?? 0, loopNice))
        }
        let server = Task { try await OnAPIThreads(app, threads: threads).run() }
        var iterator = listening.makeAsyncIterator()
        let started = await iterator.next()
        let server0 = try XCTUnwrap(started)
        XCTAssertEqual(server0.loopNice, base + 3, "the listening loop is one of the API's threads")

        for _ in 0..<4 {
            let client = try RawClient(port: server0.port)
            client.send("GET /status HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            let answer = client.read(for: 5)
            client.close()
            XCTAssertTrue(answer.text.hasPrefix("HTTP/1.1 200"), answer.text)
        }
        XCTAssertEqual(node.statusCallerNice.withLockedValue { $0 }, [Int](repeating: base + 3, count: 4))
        server.cancel()
        _ = await server.result
        try await threads.shutdown()
    }

    /// An increment of 0 leaves the threads at the caller's priority.
    func testZeroIncrementKeepsThePriority() async throws {
        let base = APIThreads.currentThreadNice()
        let threads = try await APIThreads.start(threadCount: 1, niceIncrement: 0)
        XCTAssertEqual(threads.threadNiceValues, [base])
        try await threads.shutdown()
    }
}
