import Foundation
import TallyCrypto
import TallyLogTesting
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting

final class DurableStateFileTests: XCTestCase {
    func testRoundTripOnDisk() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = DurableStateFile(path: directory + "/signer-state")
        XCTAssertNil(try file.read())
        try file.write([1, 2, 3])
        XCTAssertEqual(try file.read(), [1, 2, 3])
        try file.write([])
        XCTAssertEqual(try file.read(), [])
        try file.write(Array(repeating: 9, count: 10_000))
        XCTAssertEqual(try DurableStateFile(path: directory + "/signer-state").read(), Array(repeating: 9, count: 10_000))
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/signer-state.tmp"))
    }

    func testDamageIsReportedNotTakenAsEmpty() throws {
        let fileSystem = SimulatedFileSystem()
        try fileSystem.createDirectory("/n")
        let file = DurableStateFile(path: "/n/consensus-state", fileSystem: fileSystem)
        try file.write(Array("view 7, prepared 12".utf8))
        let good = try XCTUnwrap(fileSystem.contents("/n/consensus-state"))
        for position in [0, 5, 9, 14, good.count - 1] {
            var bad = good
            bad[position] ^= 0x20
            fileSystem.setContents("/n/consensus-state", bad)
            XCTAssertThrowsError(try file.read(), "byte \(position)") {
                guard case .corrupt = $0 as? StoreError else { return XCTFail("\($0)") }
            }
        }
        fileSystem.setContents("/n/consensus-state", Array(good.prefix(10)))
        XCTAssertThrowsError(try file.read())
        fileSystem.setContents("/n/consensus-state", [])
        XCTAssertThrowsError(try file.read())
    }

    func testGoldenBytes() {
        XCTAssertEqual(
            Hex.encode(DurableStateFile.encode([0x01, 0x02])),
            "54445552" + "01000000" + "02000000" + "0102" + Hex.encode(withUnsafeBytes(of: CRC32C.checksum(Hex.decode("544455520100000002000000" + "0102")!).littleEndian, Array.init)))
    }
}

final class SnapshotTests: XCTestCase {
    /// A ledger with genesis accounts and a few blocks of real transfers, some to
    /// new accounts.
    static func ledgerWithHistory() -> (Genesis, Ledger) {
        let keys = (0..<6).map(DevnetKeys.accountKey)
        let genesis = try! Genesis(
            chainID: "snapshot-test", genesisTimeMs: 0, validators: DevnetKeys.validators(),
            accounts: keys.prefix(4).map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: 1_000_000) })
        var ledger = Ledger(genesis: genesis)
        for round in 0..<3 {
            let transactions = (0..<4).map { sender in
                VerifiedTransaction(Transaction.signed(
                    by: keys[sender], chainID: "snapshot-test", genesisHash: ledger.genesisHash,
                    to: Address(publicKey: keys[(sender + round + 1) % 6].publicKey),
                    amount: UInt64(100 * (round + 1)), fee: 2, nonce: UInt64(round)), genesisHash: ledger.genesisHash)!
            }
            let execution = ledger.apply(transactions, proposer: round % 4)
            precondition(execution.allApplied)
        }
        return (genesis, ledger)
    }

    func testSnapshotRestoresTheSameLedger() throws {
        let (genesis, ledger) = SnapshotTests.ledgerWithHistory()
        let fileSystem = SimulatedFileSystem()
        let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem)
        XCTAssertNil(try snapshots.loadLatest(genesis: genesis))
        try snapshots.write(Snapshot(ledger: ledger, blockHash: SHA256.hash([1])))
        let (snapshot, restored) = try XCTUnwrap(snapshots.loadLatest(genesis: genesis))
        XCTAssertEqual(snapshot.height, 3)
        XCTAssertEqual(snapshot.blockHash, SHA256.hash([1]))
        XCTAssertEqual(restored.height, ledger.height)
        XCTAssertEqual(restored.stateRoot, ledger.stateRoot)
        XCTAssertEqual(restored.accountCount, ledger.accountCount)
        XCTAssertEqual(restored.allAccounts.map(\.address), ledger.allAccounts.map(\.address))
        XCTAssertEqual(restored.allAccounts.map(\.account), ledger.allAccounts.map(\.account))
    }

    func testKeepsTheNewestAndSkipsADamagedOne() throws {
        let (genesis, ledger) = SnapshotTests.ledgerWithHistory()
        let capture = LogCapture()
        let fileSystem = SimulatedFileSystem()
        let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem, retained: 2, logger: capture.logger())
        let base = Ledger(genesis: genesis)
        try snapshots.write(Snapshot(ledger: base, blockHash: genesis.hash))
        try snapshots.write(Snapshot(ledger: ledger, blockHash: SHA256.hash([3])))
        var later = ledger
        later.apply([], proposer: 0)
        try snapshots.write(Snapshot(ledger: later, blockHash: SHA256.hash([4])))
        XCTAssertEqual(try snapshots.heights(), [4, 3])

        var damaged = try XCTUnwrap(fileSystem.contents(snapshots.path(height: 4)))
        damaged[100] ^= 1
        fileSystem.setContents(snapshots.path(height: 4), damaged)
        let (snapshot, restored) = try XCTUnwrap(snapshots.loadLatest(genesis: genesis))
        XCTAssertEqual(snapshot.height, 3)
        XCTAssertEqual(restored.stateRoot, ledger.stateRoot)
        XCTAssertTrue(capture.lines.contains { $0.level == .warning && $0.message.contains("damaged snapshot") })
    }

    func testRestoreRejectsInconsistentAccounts() throws {
        let (genesis, ledger) = SnapshotTests.ledgerWithHistory()
        var accounts = ledger.allAccounts
        accounts[1].account.balance += 1
        XCTAssertThrowsError(try Ledger(genesis: genesis, height: 3, accounts: accounts)) {
            XCTAssertEqual($0 as? Ledger.RestoreError, .supplyMismatch(expected: genesis.totalSupply, found: genesis.totalSupply + 1))
        }
        accounts = ledger.allAccounts
        accounts[2].address = accounts[0].address
        XCTAssertThrowsError(try Ledger(genesis: genesis, height: 3, accounts: accounts)) {
            XCTAssertEqual($0 as? Ledger.RestoreError, .duplicateAddress(index: 2))
        }
        // Balances moved between accounts keep the supply but not the root.
        accounts = ledger.allAccounts
        accounts[0].account.balance -= 5
        accounts[1].account.balance += 5
        let snapshot = Snapshot(height: 3, stateRoot: ledger.stateRoot, blockHash: .zero, accounts: accounts)
        XCTAssertThrowsError(try snapshot.restore(genesis: genesis))
    }
}

final class DataLayoutTests: XCTestCase {
    func testStateFilesLiveUnderState() throws {
        let fileSystem = SimulatedFileSystem()
        let signer = try DataLayout.stateFile("/n", name: DataLayout.signerStateName, fileSystem: fileSystem)
        try signer.write([7])
        XCTAssertEqual(fileSystem.contents("/n/state/signer").map { Array($0[12..<13]) }, [7])
        let consensus = try DataLayout.stateFile("/n", name: DataLayout.consensusStateName, fileSystem: fileSystem)
        XCTAssertNil(try consensus.read())
        XCTAssertEqual(try DataLayout.stateFile("/n", name: "signer", fileSystem: fileSystem).read(), [7])
    }
}
