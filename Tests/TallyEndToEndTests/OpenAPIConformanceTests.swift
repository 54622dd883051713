import Foundation
import TallyCrypto
import TallyTypes
import XCTest

/// Schemathesis (PyPI; tools/lib.sh installs it) against a live validator of a real
/// network, with the document the node serves at /openapi.json: a fixed seed, a few
/// examples per operation and a time bound keep it short. It fails on any 5xx, any
/// response (status, content type, headers, body) the document does not describe, or
/// a request the node never answers; afterwards the node must still answer.
/// Not run: `positive_data_acceptance` (bech32m checksums, canonical transaction bytes
/// and the u64 range cannot be written in JSON Schema, so schema-valid input is
/// rightly refused with the documented 400) and `/events` (an endless stream).
final class OpenAPIConformanceTests: XCTestCase, @unchecked Sendable {
    static let seed = "1"
    static let examplesPerOperation = "10"
    static let maxSeconds = "60"

    func testSchemathesisAgainstALiveNode() async throws {
        guard let schemathesis = Self.executable("st") else {
            throw XCTSkip("schemathesis (`st`) is not installed: `pip install schemathesis` (tools/test installs it)")
        }
        let network = try LocalNetwork()
        defer { network.stop() }
        try await network.startAllConnected()
        // One committed transfer, so blocks and transactions exist to be asked about.
        let transfer = Transaction.signed(
            by: network.faucet, chainID: network.genesis.chainID, genesisHash: network.genesis.hash,
            to: Address(publicKey: SigningKey(seed: SHA256.hash([7]).bytes)!.publicKey), amount: 5, fee: 1, nonce: 0)
        let submitted = try await network.submitOne(0, transfer)
        XCTAssertEqual(submitted.status, 202)
        try await network.waitForHeight(1, on: [0])

        let api = network.api(0).absoluteString
        let report = FileManager.default.temporaryDirectory.appendingPathComponent("tally-schemathesis-\(getpid())")
        let (status, output) = try LocalNetwork.run(schemathesis, [
            "run", api + "/openapi.json", "--seed", Self.seed, "--max-examples", Self.examplesPerOperation,
            "--max-time", Self.maxSeconds, "--workers", "1", "--checks", "all",
            "--exclude-checks", "positive_data_acceptance", "--exclude-path", "/events",
            "--request-timeout", "10", "--report-dir", report.path,
        ])
        XCTAssertEqual(status, 0, "schemathesis found failures:\n\(output.suffix(20_000))")
        XCTAssertTrue(output.contains("passed"), output.suffix(4_000).description)
        let after = try await network.json(0, "status")
        XCTAssertNotNil(after["height"], "the node stopped answering after the run")
    }

    static func executable(_ name: String) -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") {
            let candidate = URL(fileURLWithPath: String(directory)).appendingPathComponent(name)
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        }
        return nil
    }
}
