import Foundation
import Hummingbird
import HummingbirdTesting
import TallyConsensus
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyNode

/// Issue 13 item 8, the node's side: the signing mark file outside the data directory,
/// and equivocation evidence at `GET /evidence`.
final class SigningSafetyTests: XCTestCase {
    func temporaryHome() throws -> NodeHome {
        let path = NSTemporaryDirectory() + "tally-signing-mark-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path + "/data", withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return NodeHome(path: path)
    }

    /// The operator's backup and restore of `data/` (README, "Backups"): the mark is
    /// not in it, so putting back an older copy leaves the newer mark in place, and it
    /// only ever rises.
    func testSigningMarkLivesOutsideTheDataDirectoryAndNeverGoesBack() throws {
        let home = try temporaryHome()
        let path = home.file(SigningMarkFile.fileName)
        let dataDirectory = home.file(NodeConfig().storage.dataDir)
        XCTAssertFalse(path.hasPrefix(dataDirectory + "/"))
        let older = SigningMark(view: 1, height: 152, phase: SignerGuard.Phase.prePrepare.rawValue)
        let newer = SigningMark(view: 1, height: 167, phase: SignerGuard.Phase.commit.rawValue)
        let file = try SigningMarkFile(path: path)
        XCTAssertNil(file.mark)
        try file.raise(to: older)
        let backup = dataDirectory + ".backup"
        try FileManager.default.copyItem(atPath: dataDirectory, toPath: backup)
        try file.raise(to: newer)
        try file.raise(to: older)
        try FileManager.default.removeItem(atPath: dataDirectory)
        try FileManager.default.moveItem(atPath: backup, toPath: dataDirectory)
        XCTAssertEqual(try SigningMarkFile(path: path).mark, newer, "a lower mark or a restored data directory moved it back")
    }

    /// The mark is written while the journal record is (issue 16: one fsync wait
    /// fewer per persist), and is durable when the call returns: the journal write
    /// below sees the new mark on disk before it finishes (written one after the other,
    /// it never would: the wait times out), and a mark that does not rise writes
    /// nothing and runs the journal write alone.
    func testMarkIsWrittenWhileTheJournalIsAndDurableWhenBothReturn() throws {
        let home = try temporaryHome()
        let path = home.file(SigningMarkFile.fileName)
        let file = try SigningMarkFile(path: path)
        let durableWrite = DurableWrite(sleepMs: { _ in }, onRetry: { _, _ in })
        let mark = SigningMark(view: 3, height: 40, phase: SignerGuard.Phase.prepare.rawValue)
        var journalSawMark = false
        try file.raise(to: mark, durableWrite: durableWrite) { () throws(DurableWrite.GaveUp) in
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline, !journalSawMark {
                journalSawMark = (try? SigningMarkFile(path: path).mark) == mark
                if !journalSawMark { usleep(1_000) }
            }
        }
        XCTAssertTrue(journalSawMark, "the mark was not written while the journal write ran")
        XCTAssertEqual(try SigningMarkFile(path: path).mark, mark)
        XCTAssertEqual(file.mark, mark)

        var journalWrites = 0
        try file.raise(to: SigningMark(view: 3, height: 39, phase: 0), durableWrite: durableWrite) { () throws(DurableWrite.GaveUp) in
            journalWrites += 1
        }
        XCTAssertEqual(journalWrites, 1)
        XCTAssertEqual(try SigningMarkFile(path: path).mark, mark, "a lower mark was written")
    }

    /// A journal failure is reported even though the mark was written beside it.
    func testJournalFailureAlongsideTheMarkIsReported() throws {
        let file = try SigningMarkFile(path: try temporaryHome().file(SigningMarkFile.fileName))
        let durableWrite = DurableWrite(sleepMs: { _ in }, onRetry: { _, _ in })
        XCTAssertThrowsError(
            try file.raise(to: SigningMark(view: 1, height: 1, phase: 1), durableWrite: durableWrite) { () throws(DurableWrite.GaveUp) in
                throw DurableWrite.GaveUp(description: "journal")
            }
        ) { XCTAssertEqual(($0 as? DurableWrite.GaveUp)?.description, "journal") }
    }

    /// A damaged mark is never taken as "no mark": the node refuses to start.
    func testDamagedSigningMarkRefusesToStart() throws {
        let home = try temporaryHome()
        let path = home.file(SigningMarkFile.fileName)
        try SigningMarkFile(path: path).raise(to: SigningMark(view: 2, height: 9, phase: 1))
        var bytes = try XCTUnwrap(FileManager.default.contents(atPath: path))
        bytes[bytes.count - 6] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try SigningMarkFile(path: path)) { error in
            XCTAssertTrue(error is SigningMarkFile.Damaged, "\(error)")
        }
    }

    func testEvidenceRouteListsBothSignedStatements() async throws {
        let validators = (0..<4).map {
            Validator(name: "validator\($0)", publicKey: SigningKey(seed: SHA256.hash([UInt8($0)]).bytes)!.publicKey,
                      networkAddress: "127.0.0.1:\(7800 + $0)")
        }
        let genesis = try Genesis(chainID: "tally-evidence", genesisTimeMs: 0, validators: validators,
            accounts: [GenesisAccount(address: Address(publicKey: validators[0].publicKey), balance: 1)])
        let signature = try XCTUnwrap(Signature(bytes: [UInt8](repeating: 7, count: 64)))
        let evidence = EquivocationEvidence(
            validator: 2, kind: .prepare, view: 1 << 40, height: 153,
            first: .init(blockHash: SHA256.hash([1]), stateRoot: nil, signature: signature),
            second: .init(blockHash: SHA256.hash([2]), stateRoot: nil, signature: signature), tick: 0)
        let api = HTTPAPI(node: EvidenceNode(base: LedgerOnlyNode(genesis: genesis), evidence: [evidence]),
                          maxBodyBytes: 1 << 20, maxBatchTransactions: 3, metricsText: { "" })
        try await Application(router: api.router()).test(.router) { client in
            try await client.execute(uri: "/evidence", method: .get) { response in
                XCTAssertEqual(response.status, .ok)
                let list = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as? [[String: Any]])
                XCTAssertEqual(list.count, 1)
                XCTAssertEqual(list[0]["validator"] as? Int, 2)
                XCTAssertEqual(list[0]["validator_name"] as? String, "validator2")
                XCTAssertEqual(list[0]["kind"] as? String, "prepare")
                XCTAssertEqual(list[0]["view"] as? String, "\(1 << 40)")
                XCTAssertEqual(list[0]["height"] as? String, "153")
                XCTAssertEqual((list[0]["first"] as? [String: Any])?["block_hash"] as? String, SHA256.hash([1]).hex)
                XCTAssertEqual((list[0]["second"] as? [String: Any])?["block_hash"] as? String, SHA256.hash([2]).hex)
                XCTAssertEqual((list[0]["second"] as? [String: Any])?["signature"] as? String, signature.hex)
            }
        }
    }
}

/// `LedgerOnlyNode` with evidence to report.
struct EvidenceNode: NodeService {
    let base: LedgerOnlyNode
    let evidence: [EquivocationEvidence]
    var genesis: Genesis { base.genesis }
    var genesisJSON: Data { base.genesisJSON }
    func status() async -> NodeStatus { await base.status() }
    func submit(_ transactions: [Transaction]) async -> [Result<Hash, SubmissionError>] { await base.submit(transactions) }
    func transactionStatus(_ hash: Hash) async -> TransactionStatus { await base.transactionStatus(hash) }
    func account(_ address: Address) async -> Account { await base.account(address) }
    func block(at height: UInt64) async -> CertifiedBlock? { await base.block(at: height) }
    func latestHeight() async -> UInt64 { await base.latestHeight() }
    func subscribe(from address: String) async -> AsyncStream<[NodeEvent]>? { await base.subscribe(from: address) }
    func equivocationEvidence() async -> [EquivocationEvidence] { evidence }
}
