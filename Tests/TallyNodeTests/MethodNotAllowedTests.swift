import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyNode

/// A known path asked with a method it does not take answers 405 with `Allow` (the
/// methods docs/openapi.yaml declares) in the API's error shape; the router used to
/// answer 404 as if the path did not exist.
final class MethodNotAllowedTests: XCTestCase, @unchecked Sendable {
    lazy var genesis = try! Genesis(
        chainID: "tally-405", genesisTimeMs: 0,
        validators: (0..<4).map { Validator(name: "validator\($0)", publicKey: SigningKey(seed: SHA256.hash([UInt8($0)]).bytes)!.publicKey, networkAddress: "127.0.0.1:\(7800 + $0)") },
        accounts: [])

    func app() -> some ApplicationProtocol {
        let api = HTTPAPI(node: LedgerOnlyNode(genesis: genesis), maxBodyBytes: 1 << 20, maxBatchTransactions: 3, metricsText: { "" })
        return Application(router: api.router())
    }

    func errorCode(_ buffer: ByteBuffer) -> String? {
        let object = (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) as? [String: Any]
        return (object?["error"] as? [String: Any])?["code"] as? String
    }

    func testUndeclaredMethodOnAKnownPathIs405WithAllow() async throws {
        try await app().test(.router) { client in
            for (method, uri, allow) in [
                (HTTPRequest.Method.post, "/status", "GET"), (.get, "/txs", "POST"), (.delete, "/txs/\(SHA256.hash([1]).hex)", "GET"),
                (.put, "/blocks/latest", "GET"), (.patch, "/blocks/7", "GET"),
            ] {
                try await client.execute(uri: uri, method: method) { response in
                    XCTAssertEqual(response.status, .methodNotAllowed, "\(method) \(uri)")
                    XCTAssertEqual(response.headers[.allow], allow, "\(method) \(uri)")
                    XCTAssertEqual(self.errorCode(response.body), "method_not_allowed", "\(method) \(uri)")
                }
            }
            try await client.execute(uri: "/status", method: .head) { response in
                XCTAssertEqual(response.status, .methodNotAllowed)
                XCTAssertEqual(response.headers[.allow], "GET")
                XCTAssertEqual(response.body.readableBytes, 0, "a HEAD response has no body")
            }
            // Unknown paths stay 404; declared methods are served as before.
            for uri in ["/nowhere", "/blocks/1/2"] {
                try await client.execute(uri: uri, method: .post) { response in
                    XCTAssertEqual(response.status, .notFound, uri)
                    XCTAssertEqual(self.errorCode(response.body), "not_found", "an unknown route answers in the API's error shape")
                }
            }
            try await client.execute(uri: "/status", method: .get) { XCTAssertEqual($0.status, .ok) }
            try await client.execute(uri: "/blocks/9", method: .get) { XCTAssertEqual($0.status, .notFound) }
        }
    }

    /// Every path of the served document, with each method it does not declare.
    func testEveryDocumentedPathRefusesItsUndeclaredMethods() async throws {
        let document = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any])
        let paths = try XCTUnwrap(document["paths"] as? [String: [String: Any]])
        XCTAssertGreaterThan(paths.count, 5)
        let routes = paths.keys.sorted().map { template in
            (template, paths[template]!.keys.filter(DeclaredMethods.operationKeys.contains).map { $0.uppercased() }.sorted())
        }
        try await app().test(.router) { client in
            for (template, declared) in routes {
                let uri = template.replacingOccurrences(of: #"\{[^}]+\}"#, with: "1", options: .regularExpression)
                for method in [HTTPRequest.Method.get, .post, .put, .delete, .patch, .trace] where !declared.contains(method.rawValue) {
                    try await client.execute(uri: uri, method: method) { response in
                        XCTAssertEqual(response.status, .methodNotAllowed, "\(method) \(uri)")
                        XCTAssertEqual(response.headers[.allow], declared.joined(separator: ", "), "\(method) \(uri)")
                    }
                }
            }
        }
    }
}
