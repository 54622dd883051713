import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import TallyCrypto
import TallyTypes

/// The HTTP API of the testbed's validators, as a client sees it.
extension Testbed {
    public func request(_ index: Int, _ path: String, method: String = "GET", body: Data? = nil, contentType: String = "application/json",
                        accept: String? = nil) async throws -> (status: Int, body: Data) {
        var request = URLRequest(url: api(index).appendingPathComponent(path))
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = requestTimeoutSeconds
        if body != nil { request.setValue(contentType, forHTTPHeaderField: "Content-Type") }
        if let accept { request.setValue(accept, forHTTPHeaderField: "Accept") }
        let (data, response) = try await session.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, data)
    }

    public func json(_ index: Int, _ path: String) async throws -> [String: Any] {
        let (_, body) = try await request(index, path)
        return (try JSONSerialization.jsonObject(with: body) as? [String: Any]) ?? [:]
    }

    public func status(_ index: Int) async -> (height: UInt64, view: UInt64)? {
        guard let status = try? await json(index, "status"),
            let height = (status["height"] as? String).flatMap(UInt64.init),
            let view = (status["view"] as? String).flatMap(UInt64.init)
        else { return nil }
        return (height, view)
    }

    /// The primary validator `index` believes in (its `/status`), or nil.
    public func primary(_ index: Int) async -> Int? {
        guard let status = try? await json(index, "status") else { return nil }
        if let number = status["primary"] as? Int { return number }
        return (status["primary"] as? String).flatMap(Int.init)
    }

    public func height(_ index: Int) async -> UInt64? { await status(index)?.height }

    /// `/status` as one line, for failure reports.
    public func statusLine(_ index: Int) async -> String {
        guard let status = try? await json(index, "status") else { return "node\(index) down" }
        let fields = ["height", "view", "primary", "catching_up", "peers_connected", "mempool_size"]
        return "node\(index) " + fields.map { "\($0)=\(status[$0].map { "\($0)" } ?? "?")" }.joined(separator: " ")
    }

    public func account(_ index: Int, _ address: Address) async -> (balance: UInt64, nonce: UInt64)? {
        guard let account = try? await json(index, "accounts/\(address.bech32m)"),
            let balance = (account["balance"] as? String).flatMap(UInt64.init),
            let nonce = (account["nonce"] as? String).flatMap(UInt64.init)
        else { return nil }
        return (balance, nonce)
    }

    /// Submits a batch; returns how many the node admitted (duplicates count as admitted).
    public func submit(_ index: Int, _ transactions: [Transaction]) async -> Int {
        guard let body = try? JSONSerialization.data(withJSONObject: ["txs": transactions.map { Hex.encode($0.canonicalBytes) }]),
            let (_, data) = try? await request(index, "txs", method: "POST", body: body),
            let response = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let results = response["results"] as? [[String: Any]]
        else { return 0 }
        return results.filter { result in
            guard let error = result["error"] as? [String: Any] else { return true }
            return error["code"] as? String == "duplicate"
        }.count
    }

    /// The height the node says `hash` is committed at, or nil.
    public func committedHeight(_ index: Int, _ hash: Hash) async -> UInt64? {
        guard let answer = try? await json(index, "txs/\(hash.hex)"), answer["status"] as? String == "committed" else { return nil }
        return (answer["height"] as? String).flatMap(UInt64.init)
    }

    /// Polls until every validator answers `/status`, or throws after `seconds`.
    public func waitUntilUp(seconds: Double = 120) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            var up = 0
            for node in 0..<validators where await status(node) != nil { up += 1 }
            if up == validators { return }
            try await Task.sleep(for: .milliseconds(250))
        }
        throw TestbedError("validators did not come up in \(Int(seconds)) s; logs in \(directory.path)")
    }
}
