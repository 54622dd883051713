import Foundation
import TallyCrypto
@testable import TallyTypes
import XCTest

final class GenesisTests: XCTestCase {
    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }
    static var devnetURL: URL { repository.appendingPathComponent("genesis/devnet.json") }

    /// The devnet: 4 validators on 127.0.0.1:7800-7803 and 8 funded accounts, every key
    /// derived from a public, well-known seed (insecure by design).
    static func expectedDevnet() throws -> Genesis {
        let validators = (0..<4).map {
            Validator(name: "validator\($0)", publicKey: Fixtures.devnetValidatorKey($0).publicKey,
                      networkAddress: "127.0.0.1:\(7800 + $0)")
        }
        let accounts = (0..<8).map {
            GenesisAccount(address: Address(publicKey: Fixtures.devnetAccountKey($0).publicKey), balance: 1_000_000_000_000)
        }
        var genesis = try Genesis(chainID: "tally-devnet", genesisTimeMs: 1_767_225_600_000, validators: validators, accounts: accounts)
        genesis.comment = "INSECURE DEVNET: every key here derives from a public seed (see genesis/README.md). Never use it for real value."
        return genesis
    }

    func testDevnetFileIsTheDocumentedDerivation() throws {
        if ProcessInfo.processInfo.environment["TALLY_WRITE_DEVNET"] == "1" {
            try Self.expectedDevnet().jsonData().write(to: Self.devnetURL)
        }
        let loaded = try Genesis.load(path: Self.devnetURL.path)
        XCTAssertEqual(loaded, try Self.expectedDevnet())
        XCTAssertEqual(loaded.validators.count, 4)
        XCTAssertEqual(loaded.validators.quorum, 3)
        XCTAssertEqual(loaded.totalSupply, 8_000_000_000_000)
    }

    func testJSONRoundTripKeepsHash() throws {
        let genesis = try Self.expectedDevnet()
        let reloaded = try Genesis(json: genesis.jsonData())
        XCTAssertEqual(reloaded, genesis)
        XCTAssertEqual(reloaded.hash, genesis.hash)
    }

    private func mutated(_ edit: (inout [String: Any]) -> Void) throws -> Data {
        var object = try JSONSerialization.jsonObject(with: try Self.expectedDevnet().jsonData()) as! [String: Any]
        edit(&object)
        return try JSONSerialization.data(withJSONObject: object)
    }

    private func assertRejected(_ data: Data, mentioning field: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try Genesis(json: data), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(field), "error '\(error)' does not name '\(field)'", file: file, line: line)
        }
    }

    func testEachMalformedFieldIsNamed() throws {
        assertRejected(Data("not json".utf8), mentioning: "not valid JSON")
        assertRejected(try mutated { $0["chain_id"] = nil }, mentioning: "chain_id")
        assertRejected(try mutated { $0["chain_id"] = "" }, mutatingCheck: "chain_id")
        assertRejected(try mutated { $0["genesis_time"] = "yesterday" }, mentioning: "genesis_time")
        assertRejected(try mutated {
            var validators = $0["validators"] as! [[String: Any]]
            validators[1]["public_key"] = "abcd"
            $0["validators"] = validators
        }, mentioning: "validators[1].public_key")
        assertRejected(try mutated {
            var validators = $0["validators"] as! [[String: Any]]
            validators[2]["public_key"] = validators[0]["public_key"]
            $0["validators"] = validators
        }, mentioning: "validators[2].public_key")
        assertRejected(try mutated {
            var accounts = $0["accounts"] as! [[String: Any]]
            accounts[3]["address"] = "tally1qqqq"
            $0["accounts"] = accounts
        }, mentioning: "accounts[3].address")
        assertRejected(try mutated {
            var accounts = $0["accounts"] as! [[String: Any]]
            accounts[0]["balance"] = 5
            $0["accounts"] = accounts
        }, mentioning: "accounts[0].balance")
        assertRejected(try mutated {
            var accounts = $0["accounts"] as! [[String: Any]]
            accounts[0]["balance"] = "18446744073709551615"
            $0["accounts"] = accounts
        }, mentioning: "accounts[1].balance")
        assertRejected(try mutated {
            var consensus = $0["consensus"] as! [String: Any]
            consensus["checkpoint_interval_blocks"] = 0
            $0["consensus"] = consensus
        }, mentioning: "consensus.checkpoint_interval_blocks")
        assertRejected(try mutated { $0["validators"] = [] }, mentioning: "validators")
        for drift in [0, 3_600_001] {
            assertRejected(try mutated {
                var consensus = $0["consensus"] as! [String: Any]
                consensus["max_clock_drift_ms"] = drift
                $0["consensus"] = consensus
            }, mentioning: "consensus.max_clock_drift_ms")
        }
    }

    /// The clock drift bound is hashed, so validators with different bounds are on
    /// different chains; a genesis file written before it existed gets the default.
    func testClockDriftIsHashedAndDefaultsWhenAbsent() throws {
        let genesis = try Self.expectedDevnet()
        XCTAssertEqual(genesis.consensus.maxClockDriftMs, 10_000)
        var other = genesis
        other.consensus.maxClockDriftMs = 20_000
        XCTAssertNotEqual(other.hash, genesis.hash)
        let withoutDrift = try mutated {
            var consensus = $0["consensus"] as! [String: Any]
            XCTAssertEqual(consensus["max_clock_drift_ms"] as? Int, 10_000)
            consensus["max_clock_drift_ms"] = nil
            $0["consensus"] = consensus
        }
        XCTAssertEqual(try Genesis(json: withoutDrift).hash, genesis.hash)
    }

    private func assertRejected(_ data: Data, mutatingCheck field: String) {
        assertRejected(data, mentioning: field)
    }

    /// `consensus.min_fee` is read, hashed and checked; a file without it gets the
    /// default (and the default's hash).
    func testMinFeeIsReadHashedAndChecked() throws {
        let devnet = try Self.expectedDevnet()
        XCTAssertEqual(devnet.consensus.minFee, ConsensusParameters.defaultMinFee)
        let pricier = try Genesis(json: try mutated {
            var consensus = $0["consensus"] as! [String: Any]
            consensus["min_fee"] = 25
            $0["consensus"] = consensus
        })
        XCTAssertEqual(pricier.consensus.minFee, 25)
        XCTAssertNotEqual(pricier.hash, devnet.hash, "min_fee is part of the genesis hash")
        let implicit = try Genesis(json: try mutated {
            var consensus = $0["consensus"] as! [String: Any]
            consensus["min_fee"] = nil
            $0["consensus"] = consensus
        })
        XCTAssertEqual(implicit.hash, devnet.hash)
        assertRejected(try mutated {
            var consensus = $0["consensus"] as! [String: Any]
            consensus["min_fee"] = 0
            $0["consensus"] = consensus
        }, mentioning: "consensus.min_fee")
    }

    // MARK: Strict parsing (issue 17)

    /// The devnet file's text with one substitution (which must match exactly once).
    private func devnetText(replacing old: String, with new: String) throws -> Data {
        let text = try String(contentsOf: Self.devnetURL, encoding: .utf8)
        XCTAssertEqual(text.components(separatedBy: old).count, 2, "'\(old)' must occur once")
        return Data(text.replacingOccurrences(of: old, with: new).utf8)
    }

    func testBalancesAreDigitsOnly() throws {
        let first = "\"balance\" : \"1000000000000\"\n    },\n    {\n      \"address\" : \"tally1u889"
        for balance in ["+1000000", "-0", " 1", "1 ", "01", "1_000", "0x10", "", "18446744073709551616"] {
            assertRejected(try devnetText(replacing: first, with: first.replacingOccurrences(of: "1000000000000", with: balance)),
                           mentioning: "accounts[0].balance")
        }
        for (text, value) in [("0", UInt64(0)), ("18446744073709551615", UInt64.max)] {
            XCTAssertEqual(Genesis.parseDecimal(text), value)
        }
    }

    func testNumbersAreWholeLiterals() throws {
        for literal in ["50.0", "5e1", "5E1", "50e0", "-50", "-0", "0.5"] {
            assertRejected(try devnetText(replacing: "\"tick_ms\" : 50", with: "\"tick_ms\" : \(literal)"), mentioning: "consensus.tick_ms")
        }
        assertRejected(try devnetText(replacing: "\"tick_ms\" : 50", with: "\"tick_ms\" : 050"), mentioning: "leading zero")
        XCTAssertEqual(try Genesis(json: devnetText(replacing: "\"tick_ms\" : 50", with: "\"tick_ms\" : 51")).consensus.tickMs, 51)
    }

    func testDuplicateUnknownAndNullKeysAreRefused() throws {
        assertRejected(try devnetText(replacing: "\"chain_id\" : \"tally-devnet\",",
                                      with: "\"chain_id\" : \"tally-devnet\", \"chain_id\" : \"tally-other\","), mentioning: "chain_id")
        // Equal after unescaping is equal.
        assertRejected(try devnetText(replacing: "\"chain_id\" : \"tally-devnet\",",
                                      with: "\"chain_id\" : \"tally-devnet\", \"chain\\u005fid\" : \"tally-other\","), mentioning: "duplicate key")
        assertRejected(try devnetText(replacing: "\"tick_ms\" : 50", with: "\"tick_ms\" : 50, \"tick_ms\" : 60"),
                       mentioning: "consensus.tick_ms")
        assertRejected(try devnetText(replacing: "\"tick_ms\" : 50", with: "\"tick_ms\" : 50, \"min_fe\" : 5"),
                       mentioning: "consensus.min_fe")
        assertRejected(try devnetText(replacing: "\"chain_id\" : \"tally-devnet\",", with: "\"chain_id\" : \"tally-devnet\", \"extra\" : 1,"),
                       mentioning: "unknown key")
        assertRejected(try devnetText(replacing: "\"balance\" : \"1000000000000\"\n    },\n    {\n      \"address\" : \"tally1u889",
                                      with: "\"balance\" : \"1000000000000\", \"memo\" : \"x\"\n    },\n    {\n      \"address\" : \"tally1u889"),
                       mentioning: "accounts[0].memo")
        assertRejected(try devnetText(replacing: "\"tick_ms\" : 50", with: "\"tick_ms\" : null"), mentioning: "is null")
        assertRejected(Data([0xEF, 0xBB, 0xBF]) + (try Data(contentsOf: Self.devnetURL)), mentioning: "byte-order mark")
        assertRejected(try Data(contentsOf: Self.devnetURL) + Data("{}".utf8), mentioning: "trailing")
        assertRejected(Data("[]".utf8), mentioning: "expected an object")
        assertRejected(try devnetText(replacing: "\"tally-devnet\"", with: "\"tally-\\ud800devnet\""), mentioning: "surrogate")
        var invalidUTF8 = try devnetText(replacing: "\"tally-devnet\"", with: "\"tally-devnet~\"")
        let marker = try XCTUnwrap(invalidUTF8.range(of: Data("tally-devnet~".utf8)))
        invalidUTF8[marker.upperBound - 1] = 0xFF
        assertRejected(invalidUTF8, mentioning: "not UTF-8")
    }

    func testGenesisTimeIsExactToTheMillisecond() throws {
        let cases: [(String, UInt64?)] = [
            ("2026-01-01T00:00:00Z", 1_767_225_600_000),
            ("2026-01-01T00:00:00.5Z", 1_767_225_600_500),
            ("2026-01-01T00:00:00.05Z", 1_767_225_600_050),
            ("2026-01-01T00:00:00.234Z", 1_767_225_600_234),
            ("1970-01-01T00:00:00Z", 0),
            ("2028-02-29T23:59:59.999Z", 1_835_481_599_999),
            ("9999-12-31T23:59:59.999Z", Genesis.maxGenesisTimeMs),
            ("2026-01-01T00:00:00.0005Z", nil),  // sub-millisecond: would be dropped
            ("2026-01-01T00:00:00.2345Z", nil),
            ("2026-01-01T00:00:00.Z", nil),
            ("2026-01-01T00:00:00+00:00", nil),
            ("2026-01-01T01:00:00+01:00", nil),
            ("2026-01-01t00:00:00z", nil),
            ("2026-01-01 00:00:00Z", nil),
            ("2026-02-29T00:00:00Z", nil),
            ("2026-04-31T00:00:00Z", nil),
            ("2026-13-01T00:00:00Z", nil),
            ("2026-01-01T24:00:00Z", nil),
            ("2026-06-30T23:59:60Z", nil),
            ("1969-12-31T23:59:59Z", nil),
            ("26-01-01T00:00:00Z", nil),
        ]
        for (text, expected) in cases {
            XCTAssertEqual(Genesis.parseTime(text), expected, text)
            if let expected { XCTAssertEqual(Genesis.parseTime(Genesis.formatTime(expected)), expected, text) }
        }
        XCTAssertEqual(Genesis.formatTime(1_767_225_600_050), "2026-01-01T00:00:00.050Z")
        XCTAssertEqual(Genesis.formatTime(1_767_225_600_000), "2026-01-01T00:00:00Z")
        var random = SplitMix64(seed: 17)
        for _ in 0..<2000 {
            let milliseconds = random.next() % (Genesis.maxGenesisTimeMs + 1)
            XCTAssertEqual(Genesis.parseTime(Genesis.formatTime(milliseconds)), milliseconds)
        }
        // Foundation agrees on whole seconds.
        let formatter = ISO8601DateFormatter()
        for _ in 0..<200 {
            let seconds = random.next() % 4_000_000_000
            XCTAssertEqual(Genesis.formatTime(seconds * 1000), formatter.string(from: Date(timeIntervalSince1970: Double(seconds))))
        }
        assertRejected(try devnetText(replacing: "2026-01-01T00:00:00Z", with: "2026-01-01T00:00:00.0005Z"), mentioning: "genesis_time")
    }

    /// The rule as genesis/README.md and docs/SPEC.md state it: 1-64 bytes, each 0x21-0x7E.
    func testChainIDIsVisibleASCII() throws {
        for bad in ["", "tally devnet", "tally\tdevnet", "tally-\u{212A}", "tally-é", "tally\u{7F}", String(repeating: "a", count: 65)] {
            XCTAssertThrowsError(try Genesis(chainID: bad, genesisTimeMs: 0, validators: DevnetKeys.validators(), accounts: []), bad) {
                XCTAssertTrue("\($0)".contains("chain_id"))
            }
        }
        for good in ["!", "~", "tally-devnet", String(repeating: "a", count: 64), "A:b/c.d_e"] {
            XCTAssertNoThrow(try Genesis(chainID: good, genesisTimeMs: 0, validators: DevnetKeys.validators(), accounts: []), good)
        }
    }
}
