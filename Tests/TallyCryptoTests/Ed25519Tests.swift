import TallyCrypto
import XCTest

final class Ed25519Tests: XCTestCase {
    /// RFC 8032 §7.1: key derivation, signature byte for byte, verification.
    func testRFC8032Section71() throws {
        let root = try XCTUnwrap(Vectors.json("rfc8032_ed25519_section7.1.json") as? [String: Any])
        let vectors = try XCTUnwrap(root["vectors"] as? [[String: Any]])
        XCTAssertEqual(vectors.count, 5)
        for vector in vectors {
            let name = vector["name"] as! String
            let key = try XCTUnwrap(SigningKey(seed: hex(vector["secretKey"] as! String)))
            XCTAssertEqual(key.publicKey.hex, vector["publicKey"] as! String, name)
            let message = hex(vector["message"] as! String)
            let signature = key.sign(message)
            XCTAssertEqual(signature.hex, vector["signature"] as! String, name)
            XCTAssertTrue(key.publicKey.isValidSignature(signature, for: message), name)
            var tampered = message
            tampered.append(0)
            XCTAssertFalse(key.publicKey.isValidSignature(signature, for: tampered), name)
        }
    }

    /// Wycheproof: every case gives its expected result (both file formats).
    private func runWycheproof(_ name: String, keyField: String) throws -> (valid: Int, invalid: Int) {
        let root = try XCTUnwrap(Vectors.json(name) as? [String: Any])
        var counts = (valid: 0, invalid: 0)
        for group in root["testGroups"] as! [[String: Any]] {
            let keyHex = (group[keyField] as! [String: Any])["pk"] as! String
            for test in group["tests"] as! [[String: Any]] {
                let id = test["tcId"] as! Int
                let expected = test["result"] as! String
                XCTAssertTrue(expected == "valid" || expected == "invalid", "\(name) #\(id): unexpected result \(expected)")
                let accepted: Bool
                if let key = PublicKey(hex: keyHex) {
                    accepted = key.isValidSignature(bytes: hex(test["sig"] as! String), for: hex(test["msg"] as! String))
                } else {
                    accepted = false
                }
                XCTAssertEqual(accepted, expected == "valid", "\(name) #\(id) \(test["comment"] ?? "")")
                if expected == "valid" { counts.valid += 1 } else { counts.invalid += 1 }
            }
        }
        return counts
    }

    func testWycheproofV1() throws {
        let counts = try runWycheproof("ed25519_test.json", keyField: "publicKey")
        XCTAssertEqual(counts.valid + counts.invalid, 151)
        XCTAssertEqual(counts.valid, 88)
    }

    func testWycheproofLegacy() throws {
        let counts = try runWycheproof("eddsa_test.json", keyField: "key")
        XCTAssertEqual(counts.valid + counts.invalid, 145)
    }

    /// CCTV edge cases have no expected result; pin libsodium's accept set so a
    /// library change that would make validators disagree fails here.
    func testCCTVAcceptSetIsPinned() throws {
        let vectors = try XCTUnwrap(Vectors.json("ed25519vectors.json") as? [[String: Any]])
        XCTAssertEqual(vectors.count, 914)
        var accepted: [Int] = []
        for vector in vectors {
            let message = Array((vector["msg"] as! String).utf8)
            guard let key = PublicKey(hex: vector["key"] as! String) else { continue }
            if key.isValidSignature(bytes: hex(vector["sig"] as! String), for: message) {
                accepted.append(vector["number"] as! Int)
            }
        }
        XCTAssertEqual(accepted, [
            7, 29, 50, 117, 139, 161, 182, 249, 305, 411, 425, 438, 465, 473, 481, 489, 497, 511, 525, 538, 565,
            573, 581, 589, 597, 611, 625, 638, 665, 673, 681, 689, 697, 711, 725, 738, 765, 773, 781, 789, 797,
            832, 899,
        ])
    }

    func testLengthsAreCheckedBeforeLibsodium() {
        let key = SigningKey(seed: [UInt8](repeating: 7, count: 32))!
        let message: [UInt8] = [1, 2, 3]
        let signature = key.sign(message)
        XCTAssertFalse(key.publicKey.isValidSignature(bytes: Array(signature.bytes.dropLast()), for: message))
        XCTAssertFalse(key.publicKey.isValidSignature(bytes: signature.bytes + [0], for: message))
        XCTAssertNil(PublicKey(bytes: [UInt8](repeating: 1, count: 31)))
        XCTAssertNil(PublicKey(bytes: [UInt8](repeating: 1, count: 33)))
        XCTAssertNil(SigningKey(seed: [UInt8](repeating: 1, count: 31)))
        XCTAssertNil(Signature(bytes: [UInt8](repeating: 1, count: 63)))
    }

    func testGeneratedKeysDifferAndSeedRoundTrips() {
        let first = SigningKey.generate()
        let second = SigningKey.generate()
        XCTAssertNotEqual(first.publicKey, second.publicKey)
        let restored = SigningKey(seed: first.seed.copyBytes())!
        XCTAssertEqual(restored.publicKey, first.publicKey)
        XCTAssertEqual(restored.sign([9]), first.sign([9]))
    }
}
