import Foundation
import TallyCrypto
import TallyTypes
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
}
