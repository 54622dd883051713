import Foundation
import TallyCrypto
import TallyLogTesting
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting

final class BlockStoreTests: XCTestCase {
    func testAppendReadAndReopenOnDisk() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let blocks = Blocks.chain(10)
        let store = try BlockStore.open(dataDirectory: directory)
        XCTAssertEqual(store.tipHeight, 0)
        for block in blocks { try store.append(block) }
        XCTAssertEqual(store.tipHeight, 10)
        XCTAssertEqual(try store.block(at: 4), blocks[3])
        XCTAssertNil(try store.block(at: 11))
        XCTAssertNil(try store.block(at: 0))
        store.close()

        let reopened = try BlockStore.open(dataDirectory: directory)
        XCTAssertEqual(reopened.tipHeight, 10)
        XCTAssertEqual(try readAll(reopened), blocks)
        try reopened.append(Blocks.make(height: 11))
        XCTAssertEqual(try reopened.block(at: 11), Blocks.make(height: 11))
    }

    func testAppendRejectsAnythingButTheNextHeight() throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: SimulatedFileSystem())
        XCTAssertThrowsError(try store.append(Blocks.make(height: 2))) {
            XCTAssertEqual($0 as? StoreError, .notNextHeight(expected: 1, found: 2))
        }
        try store.append(Blocks.make(height: 1))
        XCTAssertThrowsError(try store.append(Blocks.make(height: 1)))
        XCTAssertEqual(store.tipHeight, 1)
    }

    func testSegmentsRollAndReadBackAcrossThem() throws {
        let fileSystem = SimulatedFileSystem()
        let options = BlockStore.Options(maxSegmentBytes: 2000)
        let blocks = Blocks.chain(12)
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        for block in blocks { try store.append(block) }
        let segments = try fileSystem.listDirectory("/n/blocks").filter { $0.hasPrefix("segment-") }
        XCTAssertGreaterThan(segments.count, 3)
        let reopened = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        XCTAssertEqual(try readAll(reopened), blocks)
        XCTAssertEqual(reopened.location(at: 12)?.segment, segments.count)
    }

    /// Regression (issue 14): out of file descriptors when a block needed a new
    /// segment, the store latched the failure, so every retry of the node's durable
    /// write failed too and the node stopped. Nothing was written: the retry appends
    /// the block, the store goes on, and a reopen reads every block.
    func testFailedSegmentOpenIsRetriedAndTheStoreGoesOn() throws {
        let fileSystem = FaultyFileSystem(base: SimulatedFileSystem())
        let options = BlockStore.Options(maxSegmentBytes: 2000)
        let blocks = Blocks.chain(12)
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        try store.append(blocks[0])
        fileSystem.failNext(1) { operation in
            guard case .open(let path, .create) = operation else { return false }
            return path.hasPrefix("/n/blocks/segment-")
        }
        var failed = 0
        for block in blocks.dropFirst() {
            do { try store.append(block) } catch {
                failed += 1
                XCTAssertEqual(store.tipHeight, block.block.height - 1, "a failed append stores nothing")
                try store.append(block)  // the node's retry
            }
        }
        XCTAssertEqual(failed, 1, "the roll to the second segment failed once")
        XCTAssertEqual(store.tipHeight, 12)
        XCTAssertEqual(try readAll(store), blocks)
        let reopened = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        XCTAssertEqual(try readAll(reopened), blocks)
        XCTAssertGreaterThan(reopened.location(at: 12)?.segment ?? 0, 1)
    }

    func testIndexIsRebuiltWhenMissingOrWrong() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        for block in Blocks.chain(5) { try store.append(block) }
        store.close()
        let good = try XCTUnwrap(fileSystem.contents("/n/blocks/index"))
        XCTAssertEqual(good.count, BlockIndex.headerBytes + 5 * BlockIndex.entryBytes)

        try fileSystem.remove("/n/blocks/index")
        let capture = LogCapture()
        _ = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, logger: capture.logger())
        XCTAssertEqual(fileSystem.contents("/n/blocks/index"), good)
        XCTAssertTrue(capture.lines.contains { $0.message.contains("rebuilding the block index") })

        var wrong = good
        wrong[BlockIndex.headerBytes + 2 * BlockIndex.entryBytes + 9] ^= 0x40
        fileSystem.setContents("/n/blocks/index", wrong)
        let again = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        XCTAssertEqual(fileSystem.contents("/n/blocks/index"), good)
        XCTAssertEqual(try readAll(again), Blocks.chain(5))

        fileSystem.setContents("/n/blocks/index", Array(good.prefix(good.count - 10)))
        _ = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        XCTAssertEqual(fileSystem.contents("/n/blocks/index"), good)
    }

    /// A crash mid-append leaves a prefix of the last record (or zeros where the
    /// file grew): recovery truncates it, logs it, and the store carries on.
    func testTornTailIsTruncatedAndLogged() throws {
        for cut in [1, 7, RecordFormat.headerBytes, RecordFormat.headerBytes + 40] {
            let fileSystem = SimulatedFileSystem()
            let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
            for block in Blocks.chain(4) { try store.append(block) }
            let segment = "/n/blocks/segment-00000001.tblk"
            let complete = try XCTUnwrap(fileSystem.contents(segment))
            let fifth = RecordFormat.encode(height: 5, payload: Blocks.make(height: 5).canonicalBytes)
            fileSystem.setContents(segment, complete + fifth.prefix(cut))

            let capture = LogCapture()
            let reopened = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, logger: capture.logger())
            XCTAssertEqual(reopened.tipHeight, 4, "cut \(cut)")
            XCTAssertEqual(fileSystem.contents(segment), complete)
            let warning = try XCTUnwrap(capture.lines.first { $0.level == .warning })
            XCTAssertTrue(warning.message.contains("torn"))
            XCTAssertEqual(warning.metadata["height"], "5")
            try reopened.append(Blocks.make(height: 5))
            XCTAssertEqual(try readAll(reopened), Blocks.chain(5))
        }
    }

    func testZeroFilledTailIsATornWrite() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        for block in Blocks.chain(3) { try store.append(block) }
        let segment = "/n/blocks/segment-00000001.tblk"
        let complete = try XCTUnwrap(fileSystem.contents(segment))
        fileSystem.setContents(segment, complete + [UInt8](repeating: 0, count: 300))
        let reopened = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        XCTAssertEqual(reopened.tipHeight, 3)
        XCTAssertEqual(fileSystem.contents(segment), complete)
    }

    private func expectCorruption(
        _ fileSystem: SimulatedFileSystem, height: UInt64, file: String, reason: String,
        line: UInt = #line
    ) {
        XCTAssertThrowsError(try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem), line: line) { error in
            guard case .corrupt(let corruption) = error as? StoreError else {
                return XCTFail("expected corruption, got \(error)", line: line)
            }
            XCTAssertEqual(corruption.height, height, line: line)
            XCTAssertTrue(corruption.file.hasSuffix(file), "\(corruption.file)", line: line)
            XCTAssertTrue(corruption.reason.contains(reason), corruption.reason, line: line)
        }
    }

    func testFlippedBitInTheMiddleRefusesToOpen() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        for block in Blocks.chain(6) { try store.append(block) }
        let segment = "/n/blocks/segment-00000001.tblk"
        var bytes = try XCTUnwrap(fileSystem.contents(segment))
        let third = try XCTUnwrap(store.location(at: 3))
        bytes[third.offset + RecordFormat.headerBytes + 50] ^= 0x08
        fileSystem.setContents(segment, bytes)
        expectCorruption(fileSystem, height: 3, file: "segment-00000001.tblk", reason: "checksum mismatch")
        // Nothing was truncated or rewritten.
        XCTAssertEqual(fileSystem.contents(segment), bytes)
    }

    func testFlippedBitInARecordLengthRefusesToOpen() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        for block in Blocks.chain(6) { try store.append(block) }
        let segment = "/n/blocks/segment-00000001.tblk"
        var bytes = try XCTUnwrap(fileSystem.contents(segment))
        let fifth = try XCTUnwrap(store.location(at: 5))
        bytes[fifth.offset + 5] ^= 0x10  // length field: now runs past the end of the file
        fileSystem.setContents(segment, bytes)
        expectCorruption(fileSystem, height: 5, file: "segment-00000001.tblk", reason: "cut short")
    }

    func testTruncatedMiddleSegmentRefusesToOpen() throws {
        let fileSystem = SimulatedFileSystem()
        let options = BlockStore.Options(maxSegmentBytes: 2000)
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        for block in Blocks.chain(12) { try store.append(block) }
        let first = "/n/blocks/segment-00000001.tblk"
        let bytes = try XCTUnwrap(fileSystem.contents(first))
        let lastInFirst = (1...12).last { store.location(at: UInt64($0))?.segment == 1 }!
        fileSystem.setContents(first, Array(bytes.prefix(bytes.count - 30)))
        expectCorruption(fileSystem, height: UInt64(lastInFirst), file: "segment-00000001.tblk", reason: "cut short")
    }

    func testMissingSegmentRefusesToOpen() throws {
        let fileSystem = SimulatedFileSystem()
        let options = BlockStore.Options(maxSegmentBytes: 2000)
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        for block in Blocks.chain(12) { try store.append(block) }
        let firstInSecond = (1...12).first { store.location(at: UInt64($0))?.segment == 2 }!
        try fileSystem.remove("/n/blocks/segment-00000002.tblk")
        expectCorruption(fileSystem, height: UInt64(firstInSecond), file: "segment-00000002.tblk", reason: "missing")
    }

    func testRecordOutOfOrderRefusesToOpen() throws {
        let fileSystem = SimulatedFileSystem()
        try fileSystem.createDirectory("/n/blocks")
        let heights: [UInt64] = [1, 2, 4, 3, 5]
        let bytes = heights.flatMap { RecordFormat.encode(height: $0, payload: Blocks.make(height: $0).canonicalBytes) }
        fileSystem.setContents("/n/blocks/segment-00000001.tblk", bytes)
        expectCorruption(fileSystem, height: 3, file: "segment-00000001.tblk", reason: "missing or out of order")
    }

    func testRecordFormatGoldenBytes() {
        let record = RecordFormat.encode(height: 7, payload: [0xAA, 0xBB, 0xCC])
        XCTAssertEqual(Hex.encode(record.prefix(16)), "5442 4c4b 0300 0000 0700 0000 0000 0000".replacingOccurrences(of: " ", with: ""))
        XCTAssertEqual(record.count, RecordFormat.headerBytes + 3)
        XCTAssertEqual(Array(record.suffix(3)), [0xAA, 0xBB, 0xCC])
        // CRC-32C check value from RFC 3720 (iSCSI): "123456789" → 0xE3069283.
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
    }
}

final class FormatGoldenTests: XCTestCase {
    func testIndexEntryBytes() {
        let entry = BlockIndex.entry(RecordLocation(segment: 2, offset: 0x0102, length: 0x30, height: 9))
        let body = "0900000000000000" + "02000000" + "0201000000000000" + "30000000"
        XCTAssertEqual(Hex.encode(entry.prefix(24)), body)
        XCTAssertEqual(Array(entry.suffix(4)), withUnsafeBytes(of: CRC32C.checksum(Hex.decode(body)!).littleEndian, Array.init))
        XCTAssertEqual(Hex.encode(BlockIndex.encode([]).prefix(8)), "54494458" + "01000000")
    }

    func testSnapshotBytes() throws {
        let address = try XCTUnwrap(Address(bytes: [UInt8](repeating: 0xAB, count: 20)))
        let snapshot = Snapshot(
            height: 16, stateRoot: Hash(bytes: [UInt8](repeating: 1, count: 32))!, blockHash: Hash(bytes: [UInt8](repeating: 2, count: 32))!,
            accounts: [(address, Account(balance: 5, nonce: 3))])
        let bytes = snapshot.encode()
        let body = "54534e50" + "01000000" + "1000000000000000" + String(repeating: "01", count: 32)
            + String(repeating: "02", count: 32) + "0100000000000000" + String(repeating: "ab", count: 20)
            + "0500000000000000" + "0300000000000000"
        XCTAssertEqual(Hex.encode(bytes.dropLast(4)), body)
        XCTAssertEqual(Array(bytes.suffix(4)), withUnsafeBytes(of: CRC32C.checksum(Hex.decode(body)!).littleEndian, Array.init))
        guard case .success(let decoded) = Snapshot.decode(bytes) else { return XCTFail("does not decode") }
        XCTAssertEqual(decoded.height, 16)
        XCTAssertEqual(decoded.accounts.map(\.address), [address])
        XCTAssertEqual(decoded.accounts.map(\.account), [Account(balance: 5, nonce: 3)])
    }
}
