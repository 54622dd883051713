import Foundation
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting

/// The read-only view other threads use while the store's owner appends.
final class BlockReaderTests: XCTestCase {
    func testReaderSeesEachBlockOnceDurableAcrossSegments() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(
            dataDirectory: "/n", fileSystem: fileSystem, options: BlockStore.Options(maxSegmentBytes: 2000))
        let reader = store.reader
        XCTAssertEqual(reader.tipHeight, 0)
        XCTAssertNil(try reader.block(at: 1))
        let blocks = Blocks.chain(12)
        for block in blocks {
            try store.append(block)
            XCTAssertEqual(reader.tipHeight, block.block.height)
        }
        XCTAssertGreaterThan(store.location(at: 12)!.segment, 3, "the test must span segments")
        for block in blocks { XCTAssertEqual(try reader.block(at: block.block.height), block) }
        XCTAssertNil(try reader.block(at: 0))
        XCTAssertNil(try reader.block(at: 13))
        // A reopened store's reader knows every block already stored.
        store.close()
        let reopened = try BlockStore.open(
            dataDirectory: "/n", fileSystem: fileSystem, options: BlockStore.Options(maxSegmentBytes: 2000))
        XCTAssertEqual(reopened.reader.tipHeight, 12)
        XCTAssertEqual(try reopened.reader.block(at: 7), blocks[6])
    }

    func testAFailedAppendIsNeverVisible() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        try store.append(Blocks.make(height: 1))
        fileSystem.crash(afterOperations: 2)  // the record is written, its fsync fails
        XCTAssertThrowsError(try store.append(Blocks.make(height: 2)))
        XCTAssertEqual(store.reader.tipHeight, 1, "a block that is not durable must not be served")
        XCTAssertNil(try store.reader.block(at: 2))
    }

    /// Damage made after the store opened is reported on read, by the store and by its
    /// reader alike (two read paths over one file), and the blocks around it still read.
    func testDamageSinceOpenIsReportedByTheStoreAndTheReader() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
        for block in Blocks.chain(3) { try store.append(block) }
        let segment = "/n/blocks/segment-00000001.tblk"
        var bytes = try XCTUnwrap(fileSystem.contents(segment))
        bytes[store.location(at: 2)!.offset + 30] ^= 1
        fileSystem.setContents(segment, bytes)
        let reads: [(String, (UInt64) throws -> CertifiedBlock?)] = [
            ("store", { try store.block(at: $0) }), ("reader", { try store.reader.block(at: $0) }),
        ]
        for (path, read) in reads {
            XCTAssertThrowsError(try read(2), path) {
                guard case .corrupt(let corruption) = $0 as? StoreError else { return XCTFail("\(path): \($0)") }
                XCTAssertEqual(corruption.height, 2, path)
            }
            XCTAssertEqual(try read(3), Blocks.make(height: 3), path)
        }
    }

    /// Readers on other threads while the owner appends: every read is a whole,
    /// correct block at or below the tip it saw.
    func testConcurrentReadsDuringAppends() throws {
        let directory = NSTemporaryDirectory() + "tally-reader-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try BlockStore.open(dataDirectory: directory, options: BlockStore.Options(maxSegmentBytes: 4000))
        let blocks = Blocks.chain(60)
        let reader = store.reader
        let failures = LockedCounter()
        let done = LockedFlag()
        let readers = DispatchGroup()
        for worker in 0..<3 {
            DispatchQueue.global().async(group: readers) {
                var height = UInt64(worker + 1)
                while !done.value {
                    let tip = reader.tipHeight
                    if tip > 0 {
                        height = height % tip + 1
                        if (try? reader.block(at: height)) != blocks[Int(height - 1)] { failures.increment() }
                    }
                }
            }
        }
        for block in blocks { try store.append(block) }
        done.set()
        readers.wait()
        XCTAssertEqual(failures.value, 0)
        XCTAssertEqual(reader.tipHeight, 60)
    }
}

private final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { lock.withLock { count += 1 } }
    var value: Int { lock.withLock { count } }
}

private final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() { lock.withLock { flag = true } }
    var value: Bool { lock.withLock { flag } }
}
