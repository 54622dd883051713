import TallyCrypto
import XCTest

/// Vectors transcribed from BIP-350 ("Test vectors for Bech32m" and "Test vectors
/// for v0-v16 native segregated witness addresses").
final class Bech32mTests: XCTestCase {
    func testValidBech32mStrings() throws {
        let valid = [
            "A1LQFN3A",
            "a1lqfn3a",
            "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
            "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
            "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
            "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
            "?1v759aa",
        ]
        for text in valid {
            let decoded = try Bech32m.decode(text)
            // Re-encoding gives the lowercase form back.
            XCTAssertEqual(Bech32m.encode(prefix: decoded.prefix, values: decoded.values), text.lowercased(), text)
        }
    }

    func testInvalidBech32mStrings() {
        let invalid = [
            "\u{20}1xj0phk",  // HRP character out of range
            "\u{7F}1g6xzxy",  // HRP character out of range
            "\u{80}1vctc34",  // HRP character out of range
            "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",  // too long
            "qyrz8wqd2c9m",  // no separator
            "1qyrz8wqd2c9m",  // empty HRP
            "y1b0jsk6g",  // invalid data character
            "lt1igcx5c0",  // invalid data character
            "in1muywd",  // too short checksum
            "mm1crxm3i",  // invalid character in checksum
            "au1s5cgom",  // invalid character in checksum
            "M1VUXWEZ",  // checksum calculated with uppercase form of HRP
            "16plkw9",  // empty HRP
            "1p2gdwpf",  // empty HRP
        ]
        for text in invalid {
            XCTAssertThrowsError(try Bech32m.decode(text), text.debugDescription)
        }
    }

    /// Segwit v1+ addresses use bech32m: witness version in the first 5-bit value,
    /// the program in the rest. Checks our 5↔8 bit conversion with real data.
    func testSegwitV1PlusAddresses() throws {
        let vectors: [(String, String)] = [
            ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
             "5128751e76e8199196d454941c45d1b3a323f1433bd6751e76e8199196d454941c45d1b3a323f1433bd6"),
            ("BC1SW50QGDZ25J", "6002751e"),
            ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "5210751e76e8199196d454941c45d1b3a323"),
            ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",
             "5120000000c4a5cad46221b2a187905e5266362b99d5e91c6ce24d165dab93e86433"),
            ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
             "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"),
        ]
        for (address, scriptPubKey) in vectors {
            let decoded = try Bech32m.decode(address)
            let version = decoded.values[0]
            let program = try XCTUnwrap(Bech32m.convertBits(Array(decoded.values.dropFirst()), from: 5, to: 8, pad: false))
            let script = [UInt8(0x50) + version, UInt8(program.count)] + program
            XCTAssertEqual(Hex.encode(script), scriptPubKey, address)
        }
        // Bech32 (not m) checksums must fail: BIP-350's "Bech32 instead of Bech32m".
        XCTAssertThrowsError(try Bech32m.decode("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd"))
    }

    func testAddressRoundTripAndTypoDetection() throws {
        let key = SigningKey(seed: [UInt8](repeating: 42, count: 32))!
        let address = Address(publicKey: key.publicKey)
        let text = address.bech32m
        XCTAssertTrue(text.hasPrefix("tally1"))
        XCTAssertEqual(try Address(bech32m: text), address)
        XCTAssertEqual(try Address(bech32m: text.uppercased()), address)
        // Every single-character substitution is caught by the checksum.
        let characters = Array(text)
        let alphabet = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l")
        for position in 6..<characters.count {
            for replacement in alphabet where replacement != characters[position] {
                var mutated = characters
                mutated[position] = replacement
                XCTAssertThrowsError(try Address(bech32m: String(mutated)), "typo at \(position)")
            }
        }
        let otherPrefix = Bech32m.encode(prefix: "cosmos", values: Bech32m.convertBits(address.bytes, from: 8, to: 5, pad: true)!)
        XCTAssertThrowsError(try Address(bech32m: otherPrefix)) { error in
            XCTAssertEqual(error as? Address.ParseError, .wrongPrefix("cosmos"))
        }
        let short = Bech32m.encode(prefix: "tally", values: Bech32m.convertBits([1, 2, 3], from: 8, to: 5, pad: true)!)
        XCTAssertThrowsError(try Address(bech32m: short)) { error in
            XCTAssertEqual(error as? Address.ParseError, .wrongLength(3))
        }
    }
}
