import Foundation
import TallyConsensus
import TallyTypes
import XCTest

@testable import TallyNode

final class ConfigTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-config-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func load(_ text: String) throws -> NodeConfig {
        let path = directory.appendingPathComponent("config.toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return try NodeConfig.load(path: path)
    }

    /// Regression (testnet): never-funded keys queued 1,000 future nonces each; the
    /// node's default window is the mempool's handful (MempoolTests covers the pool).
    func testDefaultNonceWindowIsAHandful() {
        XCTAssertEqual(NodeConfig().mempool.maxNonceGap, 16)
    }

    func testEmptyFileGivesTheDefaults() throws {
        XCTAssertEqual(try load(""), NodeConfig())
    }

    func testRenderedFileLoadsBackUnchanged() throws {
        var config = NodeConfig()
        config.api.listen = "0.0.0.0:9000"
        config.p2p.maxDialBackoffMs = 250
        config.mempool.maxPerSender = 17
        config.storage.dataDir = "elsewhere"
        config.log.format = "json"
        config.keyPasswordFile = "pass \"quoted\""
        XCTAssertEqual(try load(config.rendered()), config)
    }

    func testMissingKeysKeepTheirDefaults() throws {
        let config = try load("[mempool]\nmax_transactions = 5\n")
        var expected = NodeConfig()
        expected.mempool.maxTransactions = 5
        XCTAssertEqual(config, expected)
    }

    func testMisspeltKeysAreRejectedWithTheirPath() throws {
        XCTAssertThrowsError(try load("[api]\nlisen = \"127.0.0.1:1\"\n")) { error in
            XCTAssertTrue("\(error)".contains("unknown key \"api.lisen\""), "\(error)")
        }
        XCTAssertThrowsError(try load("keyfile = \"x\"\n")) { error in
            XCTAssertTrue("\(error)".contains("unknown key \"keyfile\""), "\(error)")
        }
        XCTAssertThrowsError(try load("[mempol]\n")) { error in
            XCTAssertTrue("\(error)".contains("unknown key \"mempol\""), "\(error)")
        }
    }

    func testValuesOutsideTheirBoundsAreRejectedByName() throws {
        XCTAssertThrowsError(try load("[p2p]\nmax_message_bytes = 1\n")) { error in
            XCTAssertTrue("\(error)".contains("p2p.max_message_bytes"), "\(error)")
        }
        XCTAssertThrowsError(try load("[api]\nlisten = \"nowhere\"\n")) { error in
            XCTAssertTrue("\(error)".contains("api.listen"), "\(error)")
        }
        XCTAssertThrowsError(try load("[api]\nthread_nice_increment = 20\n")) { error in
            XCTAssertTrue("\(error)".contains("api.thread_nice_increment"), "\(error)")
        }
        XCTAssertThrowsError(try load("[api]\nthread_nice_increment = -1\n"))
        XCTAssertEqual(try load("[api]\nthread_nice_increment = 0\n").api.threadNiceIncrement, 0)
        XCTAssertThrowsError(try load("[log]\nformat = \"xml\"\n"))
        XCTAssertThrowsError(try load("[api]\nmax_body_bytes = \"big\"\n"))
    }

    func testMempoolWindowAndLifetimeAreConfigurableAndBounded() throws {
        let config = try load("[mempool]\nmax_nonce_gap = 4\npending_lifetime_seconds = 30\n")
        XCTAssertEqual(config.mempool.limits.maxNonceGap, 4)
        XCTAssertEqual(config.mempool.limits.pendingLifetimeMs, 30_000)
        XCTAssertEqual(NodeConfig().mempool.limits.pendingLifetimeMs, 600_000)
        XCTAssertTrue(NodeConfig().rendered().contains("pending_lifetime_seconds = 600"))
        XCTAssertThrowsError(try load("[mempool]\npending_lifetime_seconds = 0\n")) { error in
            XCTAssertTrue("\(error)".contains("mempool.pending_lifetime_seconds"), "\(error)")
        }
        XCTAssertThrowsError(try load("[mempool]\nmax_nonce_gap = 1000000000\n")) { error in
            XCTAssertTrue("\(error)".contains("mempool.max_nonce_gap"), "\(error)")
        }
    }
}

/// Issue 13 item 2: no valid configuration may build a consensus message its transport
/// cannot send (an oversize NEW-VIEW was dropped and the chain halted).
final class FrameBoundTests: XCTestCase {
    func testLargestConsensusMessageIsCheckedAgainstTheFrameBound() throws {
        let genesis = try Genesis(json: Data(contentsOf: URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().appendingPathComponent("../../genesis/devnet.json").standardizedFileURL))
        let largest = ConsensusLimits.largestMessageBytes(parameters: genesis.consensus, validatorCount: genesis.validators.count)
        // A full block of the largest transactions dominates; the window's certificates do not.
        XCTAssertGreaterThan(largest, Int(genesis.consensus.maxBlockTransactions) * Limits.maxTransactionBytes)
        XCTAssertLessThan(largest, Int(genesis.consensus.maxBlockTransactions) * Limits.maxTransactionBytes + 200_000)
        XCTAssertNoThrow(try NodeStartup.checkFrameBound(genesis: genesis, maxMessageBytes: NodeConfig().p2p.maxMessageBytes))
        XCTAssertThrowsError(try NodeStartup.checkFrameBound(genesis: genesis, maxMessageBytes: largest - 1)) { error in
            XCTAssertTrue("\(error)".contains("p2p.max_message_bytes"), "\(error)")
        }
        // A genesis the format allows whose VIEW-CHANGEs could not be sent (a window of
        // 4,096 prepared certificates, each with 2f PREPAREs of 64 validators) is refused.
        var widest = genesis.consensus
        widest.checkpointIntervalBlocks = Limits.maxCheckpointIntervalBlocks
        let validators = (0..<64).map { Validator(name: "v\($0)", publicKey: DevnetKeys.validatorKey($0).publicKey, networkAddress: "127.0.0.1:\(9000 + $0)") }
        let wide = try Genesis(chainID: genesis.chainID, genesisTimeMs: genesis.genesisTimeMs, validators: validators, accounts: [], consensus: widest)
        XCTAssertGreaterThan(ConsensusLimits.largestMessageBytes(parameters: widest, validatorCount: 64), NodeConfig().p2p.maxMessageBytes)
        XCTAssertThrowsError(try NodeStartup.checkFrameBound(genesis: wide, maxMessageBytes: NodeConfig().p2p.maxMessageBytes))
    }

    func testCheckpointIntervalIsBoundedByWhatDurableStateCanHold() {
        var parameters = ConsensusParameters.default
        parameters.checkpointIntervalBlocks = Limits.maxCheckpointIntervalBlocks + 1
        XCTAssertEqual(2 * Int(Limits.maxCheckpointIntervalBlocks), ConsensusLimits.maxPreparedCertificates)
        XCTAssertThrowsError(try Genesis(
            chainID: "tally-test", genesisTimeMs: 1, validators: DevnetKeys.validators(count: 4), accounts: [], consensus: parameters))
    }
}
