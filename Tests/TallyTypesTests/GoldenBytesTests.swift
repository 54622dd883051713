import Foundation
import TallyCrypto
import TallyTypes
import XCTest

/// Pins every signed or hashed byte layout. `Golden/golden.json` is committed; any
/// change to the wire format changes these bytes and fails here loudly. To accept a
/// deliberate format change, run with TALLY_WRITE_GOLDEN=1 and review the diff.
final class GoldenBytesTests: XCTestCase {
    private static var goldenURL: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden/golden.json")
    }

    /// What the current code produces, by name.
    private func current() -> [String: String] {
        let transaction = Fixtures.transaction
        let block = Fixtures.block
        let certificate = Fixtures.certificate
        let genesis = Fixtures.genesis
        var values: [String: String] = [:]
        values["transaction.canonical"] = Hex.encode(transaction.canonicalBytes)
        values["transaction.signing_bytes"] = Hex.encode(transaction.signingBytes(genesisHash: genesis.hash))
        values["transaction.hash"] = transaction.hash.hex
        values["transaction.signature"] = transaction.signature.hex
        values["block_header.canonical"] = Hex.encode(block.header.canonicalBytes)
        values["block_header.hash"] = block.header.hash.hex
        values["block.canonical"] = Hex.encode(block.canonicalBytes)
        for phase in VotePhase.allCases {
            let target = VoteTarget(phase: phase, view: 3, height: 42, blockHash: block.hash)
            values["vote.\(phase).signing_bytes"] = Hex.encode(target.signingBytes(chainID: Fixtures.chainID))
        }
        values["commit_certificate.canonical"] = Hex.encode(certificate.canonicalBytes)
        values["certified_block.canonical"] = Hex.encode(CertifiedBlock(block: block, certificate: certificate).canonicalBytes)
        values["genesis.hash"] = genesis.hash.hex
        values["address.bech32m"] = Address(publicKey: Fixtures.key("alice").publicKey).bech32m
        // The inputs behind the values, so an outside verifier can recompute each one
        // (docs/SPEC.md): the genesis JSON, the keys (seed = SHA-256 of the label), and
        // the address's public key.
        values["genesis.json"] = String(decoding: genesis.jsonData(), as: UTF8.self)
        values["genesis.canonical"] = Hex.encode(genesis.canonicalBytes)
        for label in ["alice", "bob"] {
            values["key.\(label).seed"] = Hex.encode(SHA256.hash(Array(label.utf8)).bytes)
            values["key.\(label).public_key"] = Fixtures.key(label).publicKey.hex
        }
        for index in 0..<4 { values["key.validator\(index).public_key"] = Fixtures.devnetValidatorKey(index).publicKey.hex }
        values["address.public_key"] = Fixtures.key("alice").publicKey.hex
        return values
    }

    private func golden() throws -> [String: String] {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Self.goldenURL.path), "missing \(Self.goldenURL.path)")
        return try JSONDecoder().decode([String: String].self, from: data)
    }

    func testBytesMatchGoldenFile() throws {
        if ProcessInfo.processInfo.environment["TALLY_WRITE_GOLDEN"] == "1" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(current()).write(to: Self.goldenURL)
        }
        let expected = try golden()
        let actual = current()
        XCTAssertEqual(Set(expected.keys), Set(actual.keys), "golden file lists other values than the code produces")
        for (name, value) in expected {
            XCTAssertEqual(actual[name], value, "\(name) changed: the wire format is not what golden.json pins")
        }
    }

    /// Decodes the golden bytes (not freshly made ones), re-encodes them, and checks
    /// hashes and signatures against them.
    func testGoldenBytesDecodeReencodeAndVerify() throws {
        let expected = try golden()
        let transaction = try Transaction(canonicalBytes: try XCTUnwrap(Hex.decode(expected["transaction.canonical"]!)))
        XCTAssertEqual(Hex.encode(transaction.canonicalBytes), expected["transaction.canonical"])
        XCTAssertEqual(transaction.hash.hex, expected["transaction.hash"])
        let genesisHash = try XCTUnwrap(Hash(hex: expected["genesis.hash"]!))
        XCTAssertEqual(Hex.encode(transaction.signingBytes(genesisHash: genesisHash)), expected["transaction.signing_bytes"])
        XCTAssertTrue(transaction.hasValidSignature(genesisHash: genesisHash))

        // The inputs reproduce the values.
        let genesis = try Genesis(json: Data(try XCTUnwrap(expected["genesis.json"]).utf8))
        XCTAssertEqual(genesis.hash.hex, expected["genesis.hash"])
        XCTAssertEqual(SHA256.hash(try XCTUnwrap(Hex.decode(expected["genesis.canonical"]!))).hex, expected["genesis.hash"])
        let alice = try XCTUnwrap(SigningKey(seed: try XCTUnwrap(Hex.decode(expected["key.alice.seed"]!))))
        XCTAssertEqual(alice.publicKey.hex, expected["address.public_key"])
        XCTAssertEqual(Address(publicKey: try XCTUnwrap(PublicKey(hex: expected["address.public_key"]!))).bech32m,
                       expected["address.bech32m"])
        XCTAssertEqual(transaction.sender, alice.publicKey)

        let block = try Block(canonicalBytes: try XCTUnwrap(Hex.decode(expected["block.canonical"]!)))
        XCTAssertEqual(Hex.encode(block.canonicalBytes), expected["block.canonical"])
        XCTAssertEqual(block.hash.hex, expected["block_header.hash"])
        XCTAssertEqual(Block.transactionsRoot(block.transactions), block.header.transactionsRoot)

        let certified = try CertifiedBlock(canonicalBytes: try XCTUnwrap(Hex.decode(expected["certified_block.canonical"]!)))
        XCTAssertEqual(Hex.encode(certified.canonicalBytes), expected["certified_block.canonical"])
        let validators = ValidatorSet(Fixtures.validators)
        XCTAssertNoThrow(try certified.certificate.verify(
            height: 42, blockHash: certified.block.hash, validators: validators, chainID: Fixtures.chainID))
        XCTAssertThrowsError(try certified.certificate.verify(
            height: 42, blockHash: certified.block.hash, validators: validators, chainID: "another-chain"))
    }
}
