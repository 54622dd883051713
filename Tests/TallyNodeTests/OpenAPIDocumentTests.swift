import Foundation
import Hummingbird
import HummingbirdTesting
import TallyTypes
import XCTest

@testable import TallyNode

/// docs/openapi.yaml, the JSON the node serves at /openapi.json (a generated Swift
/// string, `tools/gen-openapi`) and the router agree.
final class OpenAPIDocumentTests: XCTestCase {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func served() throws -> NSDictionary {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? NSDictionary)
    }

    /// The YAML parsed by PyYAML (what tools/gen-openapi uses), as JSON.
    func yamlAsJSON() throws -> NSDictionary {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "python3", "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout)",
            Self.repository.appendingPathComponent("docs/openapi.yaml").path,
        ]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = Pipe()
        do { try process.run() } catch { throw XCTSkip("python3 is not available to read the YAML: \(error)") }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw XCTSkip("python3 with PyYAML is not available to read the YAML") }
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? NSDictionary)
    }

    func testServedJSONIsTheYAMLsContent() throws {
        XCTAssertEqual(try served(), try yamlAsJSON(), "docs/openapi.yaml changed: run tools/gen-openapi")
    }

    func testDocumentsEveryRouteOfTheAPI() throws {
        let paths = try XCTUnwrap(try served()["paths"] as? [String: Any])
        let documented = Set(paths.keys)
        XCTAssertEqual(try served()["openapi"] as? String, "3.1.0")
        // Every route the router serves (Hummingbird's `:name` is OpenAPI's `{name}`).
        let routes = [
            "/status", "/txs", "/txs/{hash}", "/accounts/{address}", "/accounts/{address}/txs", "/blocks/latest", "/blocks/{height}", "/validators",
            "/genesis", "/events", "/evidence", "/metrics", "/openapi.json",
            "/", "/explorer", "/explorer/explorer.css", "/explorer/explorer.js",
        ]
        XCTAssertEqual(documented, Set(routes))
        let source = try String(
            contentsOf: Self.repository.appendingPathComponent("Sources/TallyNode/HTTPAPI.swift"), encoding: .utf8)
        let registered = source.components(separatedBy: "router.").dropFirst().compactMap { call -> String? in
            guard call.hasPrefix("get(\"") || call.hasPrefix("post(\"") else { return nil }
            let path = call.drop { $0 != "\"" }.dropFirst().prefix { $0 != "\"" }
            return path.replacingOccurrences(of: ":hash", with: "{hash}").replacingOccurrences(of: ":address", with: "{address}")
                .replacingOccurrences(of: ":height", with: "{height}")
        }
        XCTAssertEqual(Set(registered).subtracting(documented), [], "routes missing from docs/openapi.yaml")
    }

    func testNodeServesTheDocument() async throws {
        let genesis = try Genesis.load(path: Self.repository.appendingPathComponent("genesis/devnet.json").path)
        let api = HTTPAPI(node: LedgerOnlyNode(genesis: genesis), maxBodyBytes: 1 << 20, maxBatchTransactions: 3, metricsText: { "" })
        let expected = OpenAPIDocument.json
        try await Application(router: api.router()).test(.router) { client in
            try await client.execute(uri: "/openapi.json", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                XCTAssertEqual(response.headers[.contentType], "application/json")
                let body = try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? NSDictionary
                XCTAssertEqual(body, try JSONSerialization.jsonObject(with: Data(expected.utf8)) as? NSDictionary)
            }
        }
    }
}
