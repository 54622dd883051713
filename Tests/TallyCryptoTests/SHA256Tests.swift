import TallyCrypto
import XCTest

final class SHA256Tests: XCTestCase {
    /// NIST CAVP byte-oriented vectors. `Len` is in bits; `Len = 0` writes `Msg = 00`
    /// for the empty message.
    private func runCAVP(_ name: String) throws -> Int {
        let text = String(decoding: try Vectors.data(name), as: UTF8.self)
        var length = -1
        var message: [UInt8] = []
        var checked = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { continue }
            switch parts[0] {
            case "Len": length = Int(parts[1])!
            case "Msg": message = length == 0 ? [] : hex(parts[1])
            case "MD":
                XCTAssertEqual(message.count * 8, length, "\(name): message length")
                XCTAssertEqual(SHA256.hash(message).hex, parts[1], "\(name) Len=\(length)")
                checked += 1
            default: break
            }
        }
        return checked
    }

    func testNISTShortMessages() throws {
        XCTAssertEqual(try runCAVP("SHA256ShortMsg.rsp"), 65)
    }

    func testNISTLongMessages() throws {
        XCTAssertEqual(try runCAVP("SHA256LongMsg.rsp"), 64)
    }

    func testStreamingEqualsOneShotAtEverySplit() {
        let message = (0..<300).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let expected = SHA256.hash(message)
        for split in stride(from: 0, through: message.count, by: 13) {
            var hasher = SHA256.Hasher()
            hasher.update(Array(message[..<split]))
            hasher.update(message[split...])
            let digest = hasher.finalize()
            XCTAssertEqual(digest, expected, "split at \(split)")
        }
        XCTAssertEqual(SHA256.hash(parts: [Array(message[..<100]), Array(message[100...])]), expected)
    }

    func testHashHexRoundTripAndValidation() {
        let digest = SHA256.hash(Array("abc".utf8))
        XCTAssertEqual(digest.hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(Hash(hex: digest.hex), digest)
        XCTAssertNil(Hash(hex: "ab"))
        XCTAssertNil(Hash(hex: String(repeating: "zz", count: 32)))
        XCTAssertNil(Hash(bytes: [UInt8](repeating: 0, count: 31)))
    }
}
