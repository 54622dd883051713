import Foundation
import TallyCrypto
import XCTest

@testable import TallyStore
import TallyStoreTesting

/// A file system that counts what is read through it and refuses (throws) any single
/// read over `maxReadBytes`, so code that would allocate a file's apparent size fails
/// the test instead of exhausting memory.
final class CountingFileSystem: FileSystem, @unchecked Sendable {
    let base: any FileSystem
    let maxReadBytes: Int
    private let lock = NSLock()
    private var read = 0
    private var largest = 0

    init(base: any FileSystem, maxReadBytes: Int) {
        self.base = base
        self.maxReadBytes = maxReadBytes
    }

    var bytesRead: Int { lock.withLock { read } }
    var largestReadBytes: Int { lock.withLock { largest } }

    func record(_ count: Int, asked: Int) {
        lock.withLock {
            read += count
            largest = max(largest, asked)
        }
    }

    func createDirectory(_ path: String) throws(FileSystemError) { try base.createDirectory(path) }
    func listDirectory(_ path: String) throws(FileSystemError) -> [String] { try base.listDirectory(path) }
    func fileExists(_ path: String) -> Bool { base.fileExists(path) }
    func open(_ path: String, mode: FileOpenMode) throws(FileSystemError) -> any StoreFile {
        CountingFile(file: try base.open(path, mode: mode), owner: self, path: path)
    }
    func rename(_ source: String, to destination: String) throws(FileSystemError) { try base.rename(source, to: destination) }
    func remove(_ path: String) throws(FileSystemError) { try base.remove(path) }
    func syncDirectory(_ path: String) throws(FileSystemError) { try base.syncDirectory(path) }

    final class CountingFile: StoreFile {
        let file: any StoreFile
        let owner: CountingFileSystem
        let path: String

        init(file: any StoreFile, owner: CountingFileSystem, path: String) {
            self.file = file
            self.owner = owner
            self.path = path
        }

        func size() throws(FileSystemError) -> Int { try file.size() }
        func read(at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] {
            owner.record(0, asked: count)
            guard count <= owner.maxReadBytes else {
                throw FileSystemError(operation: "read", path: path, reason: "test refuses a read of \(count) bytes")
            }
            let bytes = try file.read(at: offset, count: count)
            owner.record(bytes.count, asked: count)
            return bytes
        }
        func write(_ bytes: [UInt8], at offset: Int) throws(FileSystemError) { try file.write(bytes, at: offset) }
        func truncate(to size: Int) throws(FileSystemError) { try file.truncate(to: size) }
        func sync() throws(FileSystemError) { try file.sync() }
        func syncData() throws(FileSystemError) { try file.syncData() }
        func close() { file.close() }
    }
}

/// Issue 14: looking past damage for a later valid record copied and checksummed up
/// to a record's maximum length at every candidate offset (a 10 MB segment with 2,000
/// fake headers took `tally verify` 20 s) and read the whole rest of the file at once
/// (a sparse file made it allocate its apparent size). The scans are now streamed and
/// bounded; these tests assert on the work done, not on time.
final class DamageScanTests: XCTestCase {
    static let sparseBytes = 8 << 30
    /// Far below any file here: a read this big means a file was read whole.
    static let maxTestReadBytes = 1 << 20

    /// Three valid records, one damaged byte, then `fakes` headers spread over ~10 MB,
    /// each with the magic, a length reaching near the end of the file (under the
    /// record limit) and a wrong checksum.
    func craftedSegment(fakes: Int, spacing: Int) -> (bytes: [UInt8], damageOffset: Int) {
        var bytes: [UInt8] = []
        for block in Blocks.chain(3) { bytes += RecordFormat.encode(height: block.block.height, payload: block.canonicalBytes) }
        let damageOffset = bytes.count
        bytes.append(0xFF)
        let total = damageOffset + 1 + fakes * spacing
        for index in 0..<fakes {
            var fake = [UInt8](repeating: 0xA5, count: spacing)
            let start = bytes.count
            let length = min(RecordFormat.maxPayloadBytes, total - start - RecordFormat.headerBytes)
            var header: [UInt8] = []
            RecordFormat.appendLittleEndian(RecordFormat.magic, to: &header)
            RecordFormat.appendLittleEndian(UInt32(length), to: &header)
            RecordFormat.appendLittleEndian(UInt64(4 + index), to: &header)
            RecordFormat.appendLittleEndian(UInt32(0xDEAD_BEEF), to: &header)
            fake.replaceSubrange(0..<header.count, with: header)
            bytes += fake
        }
        return (bytes, damageOffset)
    }

    func testSegmentWithManyFakeHeadersIsScannedWithBoundedWork() throws {
        let fileSystem = SimulatedFileSystem()
        let (bytes, damageOffset) = craftedSegment(fakes: 2_000, spacing: 5_000)
        XCTAssertGreaterThan(bytes.count, 10_000_000)
        let segment = "/d/blocks/" + SegmentNaming.name(1)
        try fileSystem.createDirectory("/d/blocks")
        fileSystem.setContents(segment, bytes)
        let counting = CountingFileSystem(base: fileSystem, maxReadBytes: Self.maxTestReadBytes)

        var reader = try ChainReader(dataDirectory: "/d", fileSystem: counting)
        for height in 1...3 { XCTAssertEqual(try reader.next()?.height, UInt64(height)) }
        XCTAssertThrowsError(try reader.next()) { error in
            guard case .corrupt(let corruption) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(corruption.offset, damageOffset)
            XCTAssertEqual(corruption.height, 4)
            XCTAssertTrue(corruption.reason.contains("gave up looking for a valid record"), corruption.reason)
        }
        let work = reader.damageScanWork
        XCTAssertLessThanOrEqual(work.candidatesChecked, DamageScan.maxCandidates)
        XCTAssertLessThanOrEqual(work.bytesChecksummed, DamageScan.maxChecksummedBytes)
        XCTAssertLessThanOrEqual(work.largestReadBytes, DamageScan.chunkBytes)
        // Without bounds this would be ~2,000 x 5 MB checksummed on average.
        XCTAssertLessThanOrEqual(counting.bytesRead, bytes.count + DamageScan.maxChecksummedBytes + 2 * DamageScan.chunkBytes)
        XCTAssertLessThanOrEqual(counting.largestReadBytes, DamageScan.chunkBytes)

        // Opening the store refuses it (never truncates: it is not a torn tail).
        XCTAssertThrowsError(try BlockStore.open(dataDirectory: "/d", fileSystem: counting)) { error in
            guard case .corrupt = error as? StoreError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(fileSystem.contents(segment), bytes)
    }

    /// A few fake headers (within the bounds) are each checked and rejected, and a torn
    /// tail behind them is still cut as before.
    func testFewFakeHeadersInATornTailAreCheckedAndTheTailIsCut() throws {
        let fileSystem = SimulatedFileSystem()
        let (bytes, damageOffset) = craftedSegment(fakes: 8, spacing: 1_000)
        try fileSystem.createDirectory("/d/blocks")
        fileSystem.setContents("/d/blocks/" + SegmentNaming.name(1), bytes)
        var reader = try ChainReader(dataDirectory: "/d", fileSystem: fileSystem)
        guard case .record = try reader.step(), case .record = try reader.step(), case .record = try reader.step(),
              case .tornTail(let corruption) = try reader.step()
        else { return XCTFail("expected three records and a torn tail") }
        XCTAssertEqual(corruption.offset, damageOffset)
        XCTAssertEqual(reader.damageScanWork.candidatesChecked, 8)
        let store = try BlockStore.open(dataDirectory: "/d", fileSystem: fileSystem)
        XCTAssertEqual(store.tipHeight, 3)
        XCTAssertEqual(fileSystem.contents("/d/blocks/" + SegmentNaming.name(1))?.count, damageOffset)
    }

    /// A segment that is sparse and 8 GiB long after a damaged byte: read in bounded
    /// chunks, never whole; the search stops at its bound and reports damage.
    func testHugeSparseSegmentIsNotReadWhole() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let blocks = directory + "/blocks"
        try PosixFileSystem().createDirectory(blocks)
        var bytes: [UInt8] = []
        for block in Blocks.chain(2) { bytes += RecordFormat.encode(height: block.block.height, payload: block.canonicalBytes) }
        let damageOffset = bytes.count
        bytes.append(0xFF)
        let segment = try PosixFileSystem().open(blocks + "/" + SegmentNaming.name(1), mode: .create)
        try segment.write(bytes, at: 0)
        try segment.truncate(to: Self.sparseBytes)
        segment.close()
        let counting = CountingFileSystem(base: PosixFileSystem(), maxReadBytes: Self.maxTestReadBytes)

        var reader = try ChainReader(dataDirectory: directory, fileSystem: counting)
        XCTAssertEqual(reader.totalBytes, Self.sparseBytes)
        for height in 1...2 { XCTAssertEqual(try reader.next()?.height, UInt64(height)) }
        XCTAssertThrowsError(try reader.next()) { error in
            guard case .corrupt(let corruption) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(corruption.offset, damageOffset)
            XCTAssertTrue(corruption.reason.contains("searched \(DamageScan.maxScannedBytes) bytes"), corruption.reason)
        }
        XCTAssertLessThanOrEqual(counting.largestReadBytes, DamageScan.chunkBytes)
        XCTAssertLessThanOrEqual(counting.bytesRead, DamageScan.maxScannedBytes + 2 * DamageScan.chunkBytes + bytes.count)
    }

    /// The consensus journal: valid records, then a sparse 8 GiB stretch with one
    /// damaged byte. Opened in bounded reads, refused as damage, not truncated.
    func testHugeSparseJournalIsNotReadWhole() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let journalPath = directory + "/state/consensus.journal"
        do {
            let store = try DataLayout.consensusStateStore(directory, fileSystem: PosixFileSystem(), preallocationBytes: 0)
            try JournalFixture.write(store, JournalFixture.state(1, [1]))
            try JournalFixture.write(store, JournalFixture.state(2, [1, 2]))
        }
        let journal = try PosixFileSystem().open(journalPath, mode: .readWrite)
        let end = try journal.size()
        try journal.write([0x54], at: end + 4096)
        try journal.truncate(to: Self.sparseBytes)
        journal.close()
        let counting = CountingFileSystem(base: PosixFileSystem(), maxReadBytes: Self.maxTestReadBytes)

        XCTAssertThrowsError(try DataLayout.consensusStateStore(directory, fileSystem: counting, preallocationBytes: 0)) { error in
            guard case .corrupt(let corruption) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(corruption.offset, end)
            XCTAssertTrue(corruption.reason.contains("searched \(DamageScan.maxScannedBytes) bytes"), corruption.reason)
        }
        XCTAssertLessThanOrEqual(counting.largestReadBytes, DamageScan.chunkBytes)
        XCTAssertEqual(try PosixFileSystem().open(journalPath, mode: .readOnly).size(), Self.sparseBytes, "not truncated")
    }

    /// The consensus journal with many fake record headers (magic, a high sequence, a
    /// length reaching the end, a wrong checksum) after a damaged byte: bounded work.
    func testJournalWithManyFakeHeadersIsScannedWithBoundedWork() throws {
        let fileSystem = SimulatedFileSystem()
        let store = try JournalFixture.store(fileSystem)
        try JournalFixture.write(store, JournalFixture.state(1, [1]))
        var bytes = fileSystem.contents(JournalFixture.journalPath)!
        let end = bytes.count
        bytes.append(0xFF)
        let fakes = 2_000, spacing = 5_000
        let total = bytes.count + fakes * spacing
        for _ in 0..<fakes {
            var fake = [UInt8](repeating: 0xA5, count: spacing)
            var header: [UInt8] = []
            RecordFormat.appendLittleEndian(ConsensusStateStore.magic, to: &header)
            RecordFormat.appendLittleEndian(UInt64(1_000), to: &header)
            RecordFormat.appendLittleEndian(UInt32(total - bytes.count - ConsensusStateStore.headerBytes - 4), to: &header)
            fake.replaceSubrange(0..<header.count, with: header)
            bytes += fake
        }
        fileSystem.setContents(JournalFixture.journalPath, bytes)
        let counting = CountingFileSystem(base: fileSystem, maxReadBytes: Self.maxTestReadBytes)

        XCTAssertThrowsError(try JournalFixture.store(counting)) { error in
            guard case .corrupt(let corruption) = error as? StoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(corruption.offset, end)
            XCTAssertTrue(corruption.reason.contains("gave up looking for a valid record"), corruption.reason)
        }
        XCTAssertLessThanOrEqual(counting.largestReadBytes, DamageScan.chunkBytes)
        XCTAssertLessThanOrEqual(counting.bytesRead, bytes.count + DamageScan.maxChecksummedBytes + 4 * DamageScan.chunkBytes)
        XCTAssertEqual(fileSystem.contents(JournalFixture.journalPath), bytes, "not truncated")
    }

    /// A record length over the file or the record bound is rejected before any read
    /// of that length, and the rest of the file is not read whole either.
    func testJournalRecordLengthIsCheckedBeforeAllocating() throws {
        let fileSystem = SimulatedFileSystem()
        var header: [UInt8] = []
        RecordFormat.appendLittleEndian(ConsensusStateStore.magic, to: &header)
        RecordFormat.appendLittleEndian(UInt64(1), to: &header)
        RecordFormat.appendLittleEndian(UInt32.max, to: &header)
        try fileSystem.createDirectory("/n/state")
        fileSystem.setContents(JournalFixture.journalPath, header + [UInt8](repeating: 1, count: 2 * Self.maxTestReadBytes))
        let counting = CountingFileSystem(base: fileSystem, maxReadBytes: Self.maxTestReadBytes)
        XCTAssertThrowsError(try JournalFixture.store(counting)) { error in
            guard case .corrupt = error as? StoreError else { return XCTFail("\(error)") }
        }
        XCTAssertLessThanOrEqual(counting.largestReadBytes, DamageScan.chunkBytes)
    }

    /// The block index and the durable state files are read up to what they can
    /// validly hold: a sparse 8 GiB one is wrong (rebuilt / damage), not read whole.
    func testHugeSparseIndexAndStateFilesAreNotReadWhole() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let store = try BlockStore.open(dataDirectory: directory)
            for block in Blocks.chain(3) { try store.append(block) }
            store.close()
        }
        let index = try PosixFileSystem().open(directory + "/blocks/index", mode: .readWrite)
        try index.truncate(to: Self.sparseBytes)
        index.close()
        let counting = CountingFileSystem(base: PosixFileSystem(), maxReadBytes: Self.maxTestReadBytes)
        let reopened = try BlockStore.open(dataDirectory: directory, fileSystem: counting)
        XCTAssertEqual(reopened.tipHeight, 3)
        reopened.close()
        XCTAssertEqual(try PosixFileSystem().open(directory + "/blocks/index", mode: .readOnly).size(),
                       BlockIndex.headerBytes + 3 * BlockIndex.entryBytes, "rebuilt")

        let statePath = directory + "/state-file"
        // A valid state file may hold 16 MiB: reading that much is allowed, not 8 GiB.
        let stateFileSystem = CountingFileSystem(base: PosixFileSystem(), maxReadBytes: 16 + DurableStateFile.maxPayloadBytes + 1)
        let state = DurableStateFile(path: statePath, fileSystem: stateFileSystem)
        try state.write([1, 2, 3])
        let file = try PosixFileSystem().open(statePath, mode: .readWrite)
        try file.truncate(to: Self.sparseBytes)
        file.close()
        XCTAssertThrowsError(try state.read()) { error in
            guard case .corrupt = error as? StoreError else { return XCTFail("\(error)") }
        }
        XCTAssertLessThanOrEqual(counting.largestReadBytes, Self.maxTestReadBytes)
        XCTAssertLessThanOrEqual(stateFileSystem.largestReadBytes, 16 + DurableStateFile.maxPayloadBytes + 1)
    }
}
