import Foundation
import TallyCrypto
import TallyLedger
import TallyLogTesting
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting

/// Issue 14: a ledger snapshot was read whole at start-up (`file.read(count: size)`),
/// so a huge or sparse file made the node allocate its apparent size. Snapshots are
/// now bounded (`Snapshot.maxAccounts`) and read in pieces: checksummed first, then
/// decoded. A snapshot that fails is skipped with a warning that says why (the blocks
/// are replayed instead), as any damaged snapshot is.
final class SnapshotBoundsTests: XCTestCase {
    /// Far below the files here: a read this big means a snapshot was read whole.
    static let maxTestReadBytes = 1 << 20

    /// A store on disk holding a valid snapshot at height 3, and the path a crafted
    /// one at `craftedHeight` would have.
    func storeWithValidSnapshot(_ directory: String, craftedHeight: UInt64) throws -> (Genesis, Ledger, crafted: String) {
        let (genesis, ledger) = SnapshotTests.ledgerWithHistory()
        let snapshots = try SnapshotStore(dataDirectory: directory)
        try snapshots.write(Snapshot(ledger: ledger, blockHash: SHA256.hash([3])))
        return (genesis, ledger, snapshots.path(height: craftedHeight))
    }

    /// A snapshot header claiming `count` accounts at `height`, the file made sparse
    /// to exactly the size that count needs (so only the checksum can tell).
    func writeCrafted(_ path: String, height: UInt64, count: UInt64, size: Int) throws {
        var header: [UInt8] = []
        RecordFormat.appendLittleEndian(Snapshot.magic, to: &header)
        RecordFormat.appendLittleEndian(Snapshot.version, to: &header)
        RecordFormat.appendLittleEndian(height, to: &header)
        header += [UInt8](repeating: 7, count: 64)
        RecordFormat.appendLittleEndian(count, to: &header)
        let file = try PosixFileSystem().open(path, mode: .create)
        try file.write(header, at: 0)
        try file.truncate(to: size)
        file.close()
    }

    func testHugeSparseSnapshotIsSkippedNotReadWhole() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (genesis, ledger, crafted) = try storeWithValidSnapshot(directory, craftedHeight: 9)
        try writeCrafted(crafted, height: 9, count: 1, size: 8 << 30)
        let counting = CountingFileSystem(base: PosixFileSystem(), maxReadBytes: Self.maxTestReadBytes)
        let capture = LogCapture()
        let snapshots = try SnapshotStore(dataDirectory: directory, fileSystem: counting, logger: capture.logger())

        let (snapshot, restored) = try XCTUnwrap(snapshots.loadLatest(genesis: genesis))
        XCTAssertEqual(snapshot.height, 3, "the crafted snapshot is skipped, the valid one used")
        XCTAssertEqual(restored.stateRoot, ledger.stateRoot)
        XCTAssertTrue(capture.lines.contains {
            $0.level == .warning && "\($0.metadata["damage"] ?? "")".contains("over the limit")
        }, "\(capture.lines)")
        XCTAssertLessThan(counting.bytesRead, Self.maxTestReadBytes, "nothing of the huge file is read")
    }

    /// Under the size limit, a header that claims a million accounts over a sparse
    /// 36 MB: the checksum pass reads it in bounded pieces and refuses it before any
    /// account is decoded.
    func testSparseSnapshotWithAPlausibleHeaderIsReadInBoundedPieces() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (genesis, _, crafted) = try storeWithValidSnapshot(directory, craftedHeight: 9)
        let count = 1_000_000
        let size = Snapshot.maxFileBytes(maxAccounts: count)
        try writeCrafted(crafted, height: 9, count: UInt64(count), size: size)
        let counting = CountingFileSystem(base: PosixFileSystem(), maxReadBytes: Self.maxTestReadBytes)
        let capture = LogCapture()
        let snapshots = try SnapshotStore(dataDirectory: directory, fileSystem: counting, logger: capture.logger())

        XCTAssertEqual(try XCTUnwrap(snapshots.loadLatest(genesis: genesis)).snapshot.height, 3)
        XCTAssertTrue(capture.lines.contains {
            $0.level == .warning && "\($0.metadata["damage"] ?? "")".contains("checksum mismatch")
        }, "\(capture.lines)")
        XCTAssertLessThanOrEqual(counting.largestReadBytes, Snapshot.accountsPerRead * Snapshot.accountBytes)
    }

    /// The limit holds both ways: a store does not write a snapshot it could not read
    /// back, and a file over the limit is skipped with the reason.
    func testSnapshotOverTheAccountLimitIsNeitherWrittenNorRead() throws {
        let (genesis, ledger) = SnapshotTests.ledgerWithHistory()
        XCTAssertGreaterThan(ledger.accountCount, 3)
        let fileSystem = SimulatedFileSystem()
        let capture = LogCapture()
        let small = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem, maxAccounts: 3, logger: capture.logger())
        XCTAssertThrowsError(try small.write(Snapshot(ledger: ledger, blockHash: SHA256.hash([3])))) { error in
            guard case .recordTooLarge = error as? StoreError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try small.heights(), [])

        try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem).write(Snapshot(ledger: ledger, blockHash: SHA256.hash([3])))
        XCTAssertNil(try small.loadLatest(genesis: genesis))
        XCTAssertTrue(capture.lines.contains {
            $0.level == .warning && "\($0.metadata["damage"] ?? "")".contains("over the limit")
        }, "\(capture.lines)")
    }
}
