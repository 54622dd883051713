import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore

/// docs/SPEC.md's byte examples are what the code produces: each example is marked
/// `<!-- example: NAME -->` and followed by a fenced block of hex (whitespace is
/// ignored), compared with the value computed here from the golden vectors' inputs.
final class SpecExamplesTests: XCTestCase {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    func computed() throws -> [String: String] {
        let goldenURL = Self.repository.appendingPathComponent("Tests/TallyTypesTests/Golden/golden.json")
        var values = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: goldenURL))
        let genesis = try Genesis(json: Data(try XCTUnwrap(values["genesis.json"]).utf8))
        let publicKey = try XCTUnwrap(PublicKey(hex: values["address.public_key"]!))
        values["address.preimage"] = Hex.encode(Array("tally/address/v1".utf8) + publicKey.bytes)
        values["address.bytes"] = Hex.encode(Address(publicKey: publicKey).bytes)
        let account = genesis.accounts[0]
        let leaf = StateTree.leafHash(address: account.address, balance: account.balance, nonce: 0)
        values["state.leaf_preimage"] = "00" + Hex.encode(account.address.bytes) + Hex.encode(le(account.balance)) + Hex.encode(le(0))
        values["state.leaf"] = leaf.hex
        values["state.root_preimage"] = Hex.encode(Array("tally/state-root/v1".utf8)) + Hex.encode(le(1)) + leaf.hex
        values["state.genesis_root"] = Ledger(genesis: genesis).stateRoot.hex
        let certified = try CertifiedBlock(canonicalBytes: try XCTUnwrap(Hex.decode(values["certified_block.canonical"]!)))
        let transactionHash = certified.block.transactions[0].hash
        values["transactions_root.one"] = Merkle.root([transactionHash]).hex
        let record = RecordFormat.encode(height: certified.block.height, payload: certified.canonicalBytes)
        values["segment.record_header"] = Hex.encode(Array(record.prefix(RecordFormat.headerBytes)))
        return values
    }

    private func le(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }

    /// Examples SPEC.md must show (so the check cannot pass on an empty file).
    static let required = [
        "transaction.canonical", "transaction.signing_bytes", "transaction.hash", "block_header.canonical",
        "block_header.hash", "vote.commit.signing_bytes", "commit_certificate.canonical", "genesis.canonical",
        "genesis.hash", "address.preimage", "address.bytes", "state.leaf_preimage", "state.leaf", "state.root_preimage",
        "state.genesis_root", "transactions_root.one", "segment.record_header",
    ]

    func testEveryExampleInSpecIsWhatTheCodeProduces() throws {
        let values = try computed()
        if ProcessInfo.processInfo.environment["TALLY_PRINT_SPEC_EXAMPLES"] == "1" {
            for name in values.keys.sorted() { print("SPEC \(name) = \(values[name]!)") }
        }
        let text = try String(contentsOf: Self.repository.appendingPathComponent("docs/SPEC.md"), encoding: .utf8)
        var shown: Set<String> = []
        let parts = text.components(separatedBy: "<!-- example: ").dropFirst()
        for part in parts {
            let name = String(part.prefix { $0 != " " })
            let afterFence = try XCTUnwrap(part.components(separatedBy: "```").dropFirst().first, "\(name): no fenced block")
            let body = afterFence.drop { $0 != "\n" }
            let hex = body.filter { !$0.isWhitespace }
            XCTAssertEqual(hex, values[name], "SPEC.md example \(name)")
            shown.insert(name)
        }
        XCTAssertEqual(Set(Self.required).subtracting(shown), [], "examples SPEC.md must show")
    }
}
