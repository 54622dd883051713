import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat
import TallyTestbed

/// The bench's own HTTP paths over AsyncHTTPClient: large pre-encoded batches, the
/// Prometheus metrics, and a timed restart.
extension Testbed {
    func apiString(_ index: Int) -> String { api(index).absoluteString }

    func get(_ client: HTTPClient, _ index: Int, _ path: String) async throws -> Data {
        let response = try await client.execute(HTTPClientRequest(url: apiString(index) + path), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 16 << 20)
        return Data(buffer: body)
    }

    func status(_ client: HTTPClient, _ index: Int) async throws -> [String: Any] {
        (try JSONSerialization.jsonObject(with: try await get(client, index, "/status")) as? [String: Any]) ?? [:]
    }

    func height(_ client: HTTPClient, _ index: Int) async throws -> UInt64 {
        UInt64(try await status(client, index)["height"] as? String ?? "") ?? 0
    }

    /// A Prometheus counter or gauge without labels.
    func metric(_ client: HTTPClient, _ index: Int, _ name: String) async -> Double? {
        guard let data = try? await get(client, index, "/metrics") else { return nil }
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.split(separator: " ").last ?? "")
        }
        return nil
    }

    func waitUntilConnected(_ client: HTTPClient, seconds: Double = 60) async throws {
        let deadline = monotonicSeconds() + seconds
        while monotonicSeconds() < deadline {
            var ready = true
            for index in 0..<validators {
                let peers = (try? await status(client, index))?["peers_connected"] as? Int
                if peers != validators - 1 { ready = false; break }
            }
            if ready { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw BenchError("validators did not connect within \(Int(seconds)) s (logs in \(directory.path))")
    }

    /// Posts a batch; returns the rejected hashes with their error codes.
    func submit(_ client: HTTPClient, _ index: Int, _ batch: [Workload.Signed]) async throws -> [String: String] {
        var body = "{\"txs\":["
        body.reserveCapacity(batch.count * 300)
        for (position, tx) in batch.enumerated() {
            if position > 0 { body += "," }
            body += "\""
            body += tx.hex
            body += "\""
        }
        body += "]}"
        var request = HTTPClientRequest(url: apiString(index) + "/txs")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: body))
        let response = try await client.execute(request, timeout: .seconds(60))
        let data = Data(buffer: try await response.body.collect(upTo: 16 << 20))
        guard response.status == .ok,
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any],
            let results = object["results"] as? [[String: Any]]
        else {
            // The whole batch was refused (e.g. 503): every transaction is rejected with that code.
            let code = ((try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["error"] as? [String: Any])?["code"] as? String
            return Dictionary(batch.map { ($0.hash, code ?? "http_\(response.status.code)") }, uniquingKeysWith: { a, _ in a })
        }
        var rejected: [String: String] = [:]
        for entry in results {
            guard let error = entry["error"] as? [String: Any], let hash = entry["hash"] as? String else { continue }
            rejected[hash] = error["code"] as? String ?? "unknown"
        }
        return rejected
    }

    /// Stops validator `index`, starts it again and returns the seconds until its API
    /// answers at `untilHeight` or above (restart loads the snapshot, then catches up).
    func restart(_ index: Int, client: HTTPClient, untilHeight: UInt64) async throws -> Double {
        terminate(index, graceSeconds: 5)
        let start = monotonicSeconds()
        try self.start(index)
        while monotonicSeconds() - start < 120 {
            if let height = try? await height(client, index), height >= untilHeight { return monotonicSeconds() - start }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        throw BenchError("validator \(index) did not come back within 120 s")
    }
}
