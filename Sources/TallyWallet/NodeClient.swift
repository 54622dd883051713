import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix
import NIOFoundationCompat
import NIOHTTP1

/// A thin HTTP client for the node API (docs/API.md). Every transport failure is
/// `nodeUnreachable` (exit 4); bodies are bounded per route.
struct NodeClient: Sendable {
    /// Largest JSON answer we read (status, account, transaction, error).
    static let maxJSONBytes = 1 << 20
    /// Largest genesis file we accept.
    static let maxGenesisBytes = 64 << 20
    /// Largest certified block: a full block plus a certificate of every validator.
    static let maxBlockBytes = 24 << 20
    static let requestTimeoutSeconds: Int64 = 15

    static let connectTimeoutSeconds: Int64 = 5

    /// One client for the process, never shut down (it lives as long as the
    /// command). A refused connection fails at once instead of being retried until
    /// the deadline (the wait loop of `send` retries by itself); no redirects.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(connectTimeoutSeconds))
        configuration.redirectConfiguration = .disallow
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    let baseURL: String

    struct Answer {
        var status: Int
        var body: [UInt8]

        var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }

        /// The `{"error": {"code", "message"}}` of a refusal.
        var nodeError: (code: String, message: String)? {
            guard let error = json?["error"] as? [String: Any], let code = error["code"] as? String else { return nil }
            return (code, error["message"] as? String ?? code)
        }
    }

    func get(
        _ path: String, accept: String = "application/json", maxBytes: Int = maxJSONBytes,
        timeoutSeconds: Int64 = requestTimeoutSeconds
    ) async throws(WalletError) -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.headers.add(name: "Accept", value: accept)
        return try await execute(request, maxBytes: maxBytes, timeoutSeconds: timeoutSeconds)
    }

    func postJSON(_ path: String, _ object: [String: Any]) async throws(WalletError) -> Answer {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let data = (try? JSONSerialization.data(withJSONObject: object)) ?? Data()
        request.body = .bytes(ByteBuffer(data: data))
        return try await execute(request, maxBytes: NodeClient.maxJSONBytes, timeoutSeconds: NodeClient.requestTimeoutSeconds)
    }

    private func execute(_ request: HTTPClientRequest, maxBytes: Int, timeoutSeconds: Int64) async throws(WalletError) -> Answer {
        do {
            let response = try await NodeClient.http.execute(request, timeout: .seconds(max(1, timeoutSeconds)))
            let body = try await response.body.collect(upTo: maxBytes)
            return Answer(status: Int(response.status.code), body: Array(body.readableBytesView))
        } catch is NIOTooManyBytesError {
            throw unusable("an answer to \(request.url) over \(maxBytes) bytes")
        } catch {
            throw WalletError(exitCode: .nodeUnreachable, message: "cannot reach the node at \(baseURL): \(Self.describe(error))")
        }
    }

    func unusable(_ what: String) -> WalletError {
        WalletError(exitCode: .nodeUnreachable, message: "the node at \(baseURL) gave an unusable answer: \(what)")
    }

    /// The answer's JSON object when the status is 2xx; a node error otherwise.
    func object(_ answer: Answer, _ route: String) throws(WalletError) -> [String: Any] {
        guard (200..<300).contains(answer.status) else {
            let error = answer.nodeError
            throw WalletError(exitCode: answer.status == 404 ? .notFound : .nodeUnreachable,
                              message: "\(route): \(error.map { "\($0.code): \($0.message)" } ?? "HTTP \(answer.status)")",
                              nodeCode: error?.code)
        }
        guard let object = answer.json else { throw unusable("\(route) is not a JSON object") }
        return object
    }

    static func describe(_ error: any Error) -> String {
        if let client = error as? HTTPClientError {
            if client == .deadlineExceeded || client == .readTimeout { return "no answer within \(requestTimeoutSeconds) s" }
            if client == .connectTimeout { return "no connection within \(connectTimeoutSeconds) s" }
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)).lowercased() }
        if let connection = error as? NIOConnectionError, let first = connection.connectionErrors.first {
            return describe(first.error)
        }
        return String(describing: error)
    }
}
