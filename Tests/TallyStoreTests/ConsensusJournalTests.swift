import Foundation
import TallyCrypto
import XCTest

@testable import TallyStore
import TallyStoreTesting

/// Synthetic consensus states for the journal: a state names the blocks it refers
/// to (by small ids), so any state read back can be checked against its blocks.
enum JournalFixture {
    static let dataDirectory = "/n"
    static let journalPath = "/n/state/consensus.journal"
    static let legacyStatePath = "/n/state/consensus"
    static let legacyBlocksDirectory = "/n/state/prepared"

    static func hash(_ id: UInt8) -> Hash { SHA256.hash(Array("prepared block \(id)".utf8)) }

    /// Deterministic bytes of varying length per block.
    static func blockBytes(_ hash: Hash) -> [UInt8] {
        Array("block ".utf8) + hash.bytes + [UInt8](repeating: hash.bytes[0], count: 40 + Int(hash.bytes[1]))
    }

    /// State `version` referring to the blocks `ids`: [version, id count, ids…, text].
    static func state(_ version: UInt8, _ ids: [UInt8]) -> [UInt8] {
        [version, UInt8(ids.count)] + ids + Array("consensus state \(version)".utf8)
    }

    static func referenced(_ state: [UInt8]) -> Set<Hash> {
        Set(state[2..<2 + Int(state[1])].map(hash))
    }

    /// `preallocationBytes` is 0 unless a test is about preallocation: the journal
    /// file is then exactly its records, byte for byte.
    static func store(
        _ fileSystem: any FileSystem, compactionBytes: Int = ConsensusStateStore.defaultCompactionBytes,
        preallocationBytes: Int = 0
    ) throws -> ConsensusStateStore {
        try DataLayout.consensusStateStore(
            dataDirectory, fileSystem: fileSystem, compactionBytes: compactionBytes, preallocationBytes: preallocationBytes)
    }

    /// Opens as the node does: reads the state, checks every block it refers to reads
    /// back byte-identical, then `retainOnly`.
    static func open(
        _ fileSystem: any FileSystem, compactionBytes: Int = ConsensusStateStore.defaultCompactionBytes,
        preallocationBytes: Int = 0, context: String = "", file: StaticString = #filePath, line: UInt = #line
    ) throws -> (store: ConsensusStateStore, state: [UInt8]?) {
        let opened = try store(fileSystem, compactionBytes: compactionBytes, preallocationBytes: preallocationBytes)
        let state = try opened.readState()
        let referenced = state.map(referenced) ?? []
        for hash in referenced {
            XCTAssertEqual(try opened.readBlock(hash), blockBytes(hash), "\(context): block \(hash.hex)", file: file, line: line)
        }
        try opened.retainOnly(referenced)
        return (opened, state)
    }

    static func write(_ store: ConsensusStateStore, _ state: [UInt8]) throws {
        try store.write(state: state, referenced: referenced(state), blockBytes: blockBytes)
    }

    /// Writes the previous layout's files: the state as a `DurableStateFile` and each
    /// block it refers to (plus `extraBlocks`) as a DurableStateFile-framed block file.
    static func writeLegacy(_ fileSystem: SimulatedFileSystem, state: [UInt8], extraBlocks: [UInt8] = []) throws {
        try fileSystem.createDirectory(legacyBlocksDirectory)
        try DurableStateFile(path: legacyStatePath, fileSystem: fileSystem).write(state)
        for hash in referenced(state).union(extraBlocks.map(hash)) {
            fileSystem.setContents(legacyBlocksDirectory + "/" + hash.hex + ".blk", DurableStateFile.encode(blockBytes(hash)))
        }
    }

    /// Offsets where each record of a journal starts, and its end.
    static func recordBoundaries(_ bytes: [UInt8]) -> [Int] {
        var offsets = [0]
        while let record = ConsensusStateStore.decodeRecord(bytes, at: offsets.last!) {
            offsets.append(offsets.last! + record.byteCount)
        }
        return offsets
    }
}

final class ConsensusJournalTests: XCTestCase {
    typealias F = JournalFixture

    // MARK: Record format

    func testRecordEncodingGoldenBytes() throws {
        let hash = try XCTUnwrap(Hash(bytes: Array(0..<32)))
        let (record, blocks) = ConsensusStateStore.encodeRecord(sequence: 7, blocks: [(hash, [0xAA, 0xBB, 0xCC])], state: [0x01, 0x02])
        // magic "TJNL" | sequence 7 | length 45 | block count 1 | hash | size 3 | bytes | state | CRC-32C
        // (checksum computed independently of CRC32C.swift).
        let golden = "544a4e4c" + "0700000000000000" + "2d000000" + "01000000"
            + "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f" + "03000000" + "aabbcc" + "0102" + "b5365fe1"
        XCTAssertEqual(record.map { String(format: "%02x", $0) }.joined(), golden)
        XCTAssertEqual(blocks.count, 1)
        XCTAssertEqual(blocks.first?.hash, hash)
        XCTAssertEqual(blocks.first?.offset, 56)
        XCTAssertEqual(blocks.first?.size, 3)

        let decoded = try XCTUnwrap(ConsensusStateStore.decodeRecord([0xEE] + record, at: 1))
        XCTAssertEqual(decoded.sequence, 7)
        XCTAssertEqual(decoded.byteCount, 65)
        XCTAssertEqual(decoded.state, [0x01, 0x02])
        XCTAssertEqual(decoded.blocks.map(\.hash), [hash])
        XCTAssertEqual(decoded.blocks.map(\.offset), [56])
        XCTAssertEqual(decoded.blocks.map(\.size), [3])
        // Any single flipped byte or a short read makes the record invalid.
        for index in record.indices {
            var damaged = record
            damaged[index] ^= 0x40
            XCTAssertNil(ConsensusStateStore.decodeRecord(damaged, at: 0), "byte \(index) flipped")
        }
        XCTAssertNil(ConsensusStateStore.decodeRecord(Array(record.dropLast()), at: 0))
    }

    // MARK: Append path

    func testEachWriteAppendsOneRecordWithOnlyNewBlocks() throws {
        let fileSystem = SimulatedFileSystem()
        let (store, initial) = try F.open(fileSystem)
        XCTAssertNil(initial)
        XCTAssertFalse(fileSystem.fileExists(F.journalPath))
        try F.write(store, F.state(1, [1, 2]))
        let afterFirst = try XCTUnwrap(fileSystem.contents(F.journalPath))

        let before = fileSystem.operations
        try F.write(store, F.state(2, [2, 3]))
        XCTAssertEqual(fileSystem.operations - before, 2, "one write and one fsync per persist")
        let expected = ConsensusStateStore.encodeRecord(
            sequence: 2, blocks: [(F.hash(3), F.blockBytes(F.hash(3)))], state: F.state(2, [2, 3])).record
        XCTAssertEqual(fileSystem.contents(F.journalPath), afterFirst + expected, "block 2 is not written again")

        try F.write(store, F.state(3, [2, 3]))
        let noBlocks = ConsensusStateStore.encodeRecord(sequence: 3, blocks: [], state: F.state(3, [2, 3])).record
        XCTAssertEqual(fileSystem.contents(F.journalPath), afterFirst + expected + noBlocks)
        XCTAssertEqual(try store.readState(), F.state(3, [2, 3]))
        XCTAssertNil(try store.readBlock(F.hash(99)))

        let (reopened, state) = try F.open(fileSystem)
        XCTAssertEqual(state, F.state(3, [2, 3]))
        try F.write(reopened, F.state(4, [3, 4]))
        XCTAssertEqual(try F.open(fileSystem).state, F.state(4, [3, 4]))
    }

    // MARK: Torn tails and damage

    /// Three records; returns the journal bytes and the record boundaries.
    /// (With `preallocationBytes`, zeros follow the records.)
    func journalWithThreeRecords(_ fileSystem: SimulatedFileSystem, preallocationBytes: Int = 0)
        throws -> (bytes: [UInt8], boundaries: [Int]) {
        let (store, _) = try F.open(fileSystem, preallocationBytes: preallocationBytes)
        try F.write(store, F.state(1, [1, 2]))
        try F.write(store, F.state(2, [2, 3]))
        try F.write(store, F.state(3, [3, 4]))
        let bytes = try XCTUnwrap(fileSystem.contents(F.journalPath))
        let boundaries = F.recordBoundaries(bytes)
        XCTAssertEqual(boundaries.count, 4)
        if preallocationBytes == 0 { XCTAssertEqual(boundaries.last, bytes.count) }
        XCTAssertTrue(bytes[boundaries.last!...].allSatisfy { $0 == 0 })
        return (bytes, boundaries)
    }

    func testTornLastRecordIsCutAtEveryLength() throws {
        let (bytes, boundaries) = try journalWithThreeRecords(SimulatedFileSystem())
        for cut in boundaries[2] + 1..<boundaries[3] {
            let fileSystem = SimulatedFileSystem()
            try fileSystem.createDirectory("/n/state")
            fileSystem.setContents(F.journalPath, Array(bytes.prefix(cut)))
            let (store, state) = try F.open(fileSystem, context: "cut at \(cut)")
            XCTAssertEqual(state, F.state(2, [2, 3]), "cut at \(cut)")
            XCTAssertEqual(fileSystem.contents(F.journalPath), Array(bytes.prefix(boundaries[2])), "cut at \(cut): file cut back")
            try F.write(store, F.state(5, [3, 5]))
            XCTAssertEqual(try F.open(fileSystem).state, F.state(5, [3, 5]), "cut at \(cut)")
        }
    }

    func testGarbageAfterTheLastRecordIsCut() throws {
        let (bytes, boundaries) = try journalWithThreeRecords(SimulatedFileSystem())
        let lastRecord = Array(bytes[boundaries[2]..<boundaries[3]])
        var forgedHeader = lastRecord
        forgedHeader[4] &+= 1  // the next sequence, but the checksum no longer matches
        let zeros = [UInt8](repeating: 0, count: 300)
        let garbages: [(String, [UInt8])] = [
            ("a header alone", Array(forgedHeader.prefix(ConsensusStateStore.headerBytes))),
            ("a record with a wrong checksum", forgedHeader),
            ("a copy of an older record", Array(bytes[boundaries[1]..<boundaries[2]])),
            ("one byte", [0x54]),
            // Non-zero bytes in what looks like preallocated space are not that space.
            ("a header over zeros", Array(forgedHeader.prefix(ConsensusStateStore.headerBytes)) + zeros),
            ("zeros, then one byte", zeros + [0x01]),
            ("zeros, then a copy of an older record", zeros + Array(bytes[boundaries[1]..<boundaries[2]])),
        ]
        for (name, garbage) in garbages {
            let fileSystem = SimulatedFileSystem()
            try fileSystem.createDirectory("/n/state")
            fileSystem.setContents(F.journalPath, bytes + garbage)
            let (store, state) = try F.open(fileSystem, context: name)
            XCTAssertEqual(state, F.state(3, [3, 4]), name)
            XCTAssertEqual(fileSystem.contents(F.journalPath), bytes, "\(name): file cut back")
            try F.write(store, F.state(5, [4, 5]))
            XCTAssertEqual(try F.open(fileSystem).state, F.state(5, [4, 5]), name)
        }
    }

    /// Zeros after the last record are preallocated space: kept as they are (not cut,
    /// nothing written at open), and the next record goes over them.
    func testZerosAfterTheLastRecordAreKept() throws {
        let (bytes, boundaries) = try journalWithThreeRecords(SimulatedFileSystem())
        for zeroCount in [1, 3, ConsensusStateStore.headerBytes, 300] {
            let fileSystem = SimulatedFileSystem()
            try fileSystem.createDirectory("/n/state")
            let journal = bytes + [UInt8](repeating: 0, count: zeroCount)
            fileSystem.setContents(F.journalPath, journal)
            let recording = RecordingFileSystem(fileSystem)
            let (store, state) = try F.open(recording, context: "\(zeroCount) zeros")
            XCTAssertEqual(state, F.state(3, [3, 4]), "\(zeroCount) zeros")
            XCTAssertEqual(recording.log, ["fsync \(Self.journalName)"], "\(zeroCount) zeros: nothing written at open")
            XCTAssertEqual(fileSystem.contents(F.journalPath), journal, "\(zeroCount) zeros: not cut")
            // A record with no new block fits in 300 zeros: written over them.
            try F.write(store, F.state(5, [3, 4]))
            let record = ConsensusStateStore.encodeRecord(sequence: 4, blocks: [], state: F.state(5, [3, 4])).record
            let expected = zeroCount >= record.count
                ? bytes + record + [UInt8](repeating: 0, count: zeroCount - record.count) : bytes + record
            XCTAssertEqual(fileSystem.contents(F.journalPath), expected, "\(zeroCount) zeros")
            XCTAssertEqual(try F.open(fileSystem).state, F.state(5, [3, 4]), "\(zeroCount) zeros")
            XCTAssertEqual(F.recordBoundaries(fileSystem.contents(F.journalPath)!).count, boundaries.count + 1)
        }
    }

    func assertCorrupt(_ bytes: [UInt8], offset: Int, _ context: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fileSystem = SimulatedFileSystem()
        try fileSystem.createDirectory("/n/state")
        fileSystem.setContents(F.journalPath, bytes)
        XCTAssertThrowsError(try F.store(fileSystem), context, file: file, line: line) { error in
            guard case .corrupt(let corruption) = error as? StoreError else {
                return XCTFail("\(context): \(error) is not .corrupt", file: file, line: line)
            }
            XCTAssertEqual(corruption.file, F.journalPath, context, file: file, line: line)
            XCTAssertEqual(corruption.offset, offset, context, file: file, line: line)
        }
        XCTAssertEqual(fileSystem.contents(F.journalPath), bytes, "\(context): a damaged journal is never cut", file: file, line: line)
    }

    func testDamageBeforeAValidRecordIsCorrupt() throws {
        let (bytes, boundaries) = try journalWithThreeRecords(SimulatedFileSystem())
        // Every byte of the middle record: the third is valid after it.
        for index in boundaries[1]..<boundaries[2] {
            var damaged = bytes
            damaged[index] ^= 0x01
            try assertCorrupt(damaged, offset: boundaries[1], "byte \(index) of record 2 flipped")
        }
        // The middle record gone whole: the third skips a sequence.
        try assertCorrupt(Array(bytes[..<boundaries[1]] + bytes[boundaries[2]...]), offset: boundaries[1], "record 2 missing")
        // The middle record torn, the third after it.
        try assertCorrupt(
            Array(bytes[..<(boundaries[1] + 30)] + bytes[boundaries[2]...]), offset: boundaries[1], "record 2 cut short")
    }

    func testInvalidFirstRecordIsCorrupt() throws {
        let (bytes, boundaries) = try journalWithThreeRecords(SimulatedFileSystem())
        for index in [0, 4, 12, 16, 40, boundaries[1] - 1] {
            var damaged = bytes
            damaged[index] ^= 0x80
            try assertCorrupt(damaged, offset: 0, "byte \(index) of record 1 flipped")
        }
        // Alone (nothing valid after it), the first record is still not a torn tail:
        // the journal gets its name only after it is fsynced.
        var alone = Array(bytes[..<boundaries[1]])
        alone[20] ^= 0x01
        try assertCorrupt(alone, offset: 0, "only record damaged")
        try assertCorrupt(Array(bytes[..<(boundaries[1] / 2)]), offset: 0, "only record cut short")
        try assertCorrupt([], offset: 0, "empty journal")
    }

    // MARK: Compaction

    func testUnreferencedBlocksDisappearAtCompaction() throws {
        let fileSystem = SimulatedFileSystem()
        let compactionBytes = 1
        let (store, _) = try F.open(fileSystem, compactionBytes: compactionBytes)
        try F.write(store, F.state(1, [1, 2]))  // the first record: written by compaction
        // Append until the journal is twice its first record.
        var version: UInt8 = 2
        repeat {
            XCTAssertLessThan(version, 20)
            try F.write(store, F.state(version, [version, version + 1]))
            version += 1
            // Until compaction, the journal still holds block 1 (nothing refers to it).
            XCTAssertEqual(try store.readBlock(F.hash(1)), F.blockBytes(F.hash(1)))
            XCTAssertEqual(ConsensusStateStore.decodeRecord(fileSystem.contents(F.journalPath)!, at: 0)?.sequence, 1)
        } while !store.shouldCompact
        try F.write(store, F.state(version, [version, version + 1]))  // compacts
        let bytes = try XCTUnwrap(fileSystem.contents(F.journalPath))
        let only = try XCTUnwrap(ConsensusStateStore.decodeRecord(bytes, at: 0))
        XCTAssertEqual(only.byteCount, bytes.count, "one record after compaction")
        XCTAssertEqual(only.sequence, UInt64(version))
        XCTAssertEqual(Set(only.blocks.map(\.hash)), [F.hash(version), F.hash(version + 1)])
        XCTAssertFalse(fileSystem.fileExists(F.journalPath + ".tmp"))
        XCTAssertEqual(try store.readBlock(F.hash(version + 1)), F.blockBytes(F.hash(version + 1)))
        for gone: UInt8 in 1..<version {
            XCTAssertNil(try store.readBlock(F.hash(gone)), "block \(gone)")
            XCTAssertNil(try F.open(fileSystem, compactionBytes: compactionBytes).store.readBlock(F.hash(gone)), "block \(gone) after reopen")
        }
        let (reopened, state) = try F.open(fileSystem, compactionBytes: compactionBytes)
        XCTAssertEqual(state, F.state(version, [version, version + 1]))
        try F.write(reopened, F.state(50, [version + 1, 50]))
        XCTAssertEqual(try F.open(fileSystem, compactionBytes: compactionBytes).state, F.state(50, [version + 1, 50]))
    }

    /// 200 writes over a sliding window of blocks: the journal compacts again and
    /// again, stays bounded, and serves exactly what the state refers to after
    /// each compaction. `reopenEvery` restarts the store between writes (the bound
    /// must hold across restarts too). With `preallocationBytes`, the file is the
    /// records then only zeros, at most that many past the bound.
    func runManyWrites(compactionBytes: Int, reopenEvery: Int, preallocationBytes: Int = 0) throws {
        let fileSystem = SimulatedFileSystem()
        func open(_ context: String) throws -> (store: ConsensusStateStore, state: [UInt8]?) {
            try F.open(fileSystem, compactionBytes: compactionBytes, preallocationBytes: preallocationBytes, context: context)
        }
        var store = try open("start").store
        let states = (0..<200).map { index in
            // Windows of 2–4 blocks; some writes add blocks, some only drop or keep.
            let first = UInt8(index / 3)
            return F.state(UInt8(truncatingIfNeeded: index), Array(first...first + UInt8(index % 3) + 1))
        }
        // The bound: compaction starts at max(compactionBytes, 2 × the compacted
        // journal); one record may come on top.
        func compactedSize(_ state: [UInt8]) -> Int {
            let blocks = ConsensusStateStore.sorted(F.referenced(state)).map { ($0, F.blockBytes($0)) }
            return ConsensusStateStore.encodeRecord(sequence: 0, blocks: blocks, state: state).record.count
        }
        let largest = states.map(compactedSize).max()!
        let bound = max(compactionBytes, 2 * largest) + largest
        var compactions = 0
        var largestJournal = 0
        for (index, state) in states.enumerated() {
            if index % reopenEvery == 0 { store = try open("write \(index)").store }
            try F.write(store, state)
            let bytes = try XCTUnwrap(fileSystem.contents(F.journalPath))
            largestJournal = max(largestJournal, bytes.count)
            XCTAssertLessThanOrEqual(bytes.count, bound + preallocationBytes, "write \(index)")
            let recordsEnd = F.recordBoundaries(bytes).last!
            XCTAssertLessThanOrEqual(recordsEnd, bound, "write \(index)")
            XCTAssertTrue(bytes[recordsEnd...].allSatisfy { $0 == 0 }, "write \(index): only zeros after the records")
            XCTAssertLessThanOrEqual(bytes.count - recordsEnd, preallocationBytes, "write \(index)")
            let referenced = F.referenced(state)
            for hash in referenced { XCTAssertEqual(try store.readBlock(hash), F.blockBytes(hash), "write \(index)") }
            if ConsensusStateStore.decodeRecord(bytes, at: 0)?.sequence == UInt64(index + 1) {
                compactions += 1
                for id in UInt8(0)...70 where !referenced.contains(F.hash(id)) {
                    XCTAssertNil(try store.readBlock(F.hash(id)), "write \(index): block \(id) after compaction")
                }
            }
        }
        XCTAssertGreaterThanOrEqual(compactions, 20, "the journal must compact repeatedly")
        let (_, last) = try open("end")
        XCTAssertEqual(last, states.last)
        print("journal: 200 writes, compactionBytes \(compactionBytes), preallocationBytes \(preallocationBytes), "
            + "reopen every \(reopenEvery): \(compactions) compactions, largest journal \(largestJournal) bytes "
            + "(bound \(bound) + \(preallocationBytes))")
    }

    /// Regression (issue 14): a compaction that failed after opening its temporary file
    /// (the rename, say) kept that descriptor open, and each retry of the node's durable
    /// write leaked another, under the very descriptor shortage that made it fail. Now
    /// the temporary is closed and the retry compacts.
    func testFailedCompactionClosesItsTemporaryAndTheRetryCompacts() throws {
        let simulated = SimulatedFileSystem()
        let fileSystem = FaultyFileSystem(base: simulated)
        let (store, _) = try F.open(fileSystem, compactionBytes: 1)
        try F.write(store, F.state(1, [1, 2]))  // the first record: written by compaction
        var version: UInt8 = 2
        while !store.shouldCompact {
            XCTAssertLessThan(version, 20)
            try F.write(store, F.state(version, [version]))
            version += 1
        }
        let openBefore = fileSystem.openFiles
        fileSystem.failNext(1) { operation in
            if case .rename = operation { return true }
            return false
        }
        let state = F.state(version, [version, version + 1])
        XCTAssertThrowsError(try F.write(store, state))
        XCTAssertEqual(fileSystem.openFiles, openBefore, "the failed compaction's temporary file is closed")
        try F.write(store, state)  // the node's retry
        XCTAssertEqual(fileSystem.openFiles, openBefore, "the new journal replaced the old one")
        let only = try XCTUnwrap(ConsensusStateStore.decodeRecord(try XCTUnwrap(simulated.contents(F.journalPath)), at: 0))
        XCTAssertEqual(only.sequence, UInt64(version), "the retry compacted")
        let (reopened, read) = try F.open(fileSystem, compactionBytes: 1)
        XCTAssertEqual(read, state)
        _ = reopened
    }

    func testRepeatedCompactionStaysBounded() throws {
        try runManyWrites(compactionBytes: 1, reopenEvery: 1000)
        try runManyWrites(compactionBytes: 1500, reopenEvery: 1000)
    }

    func testRepeatedCompactionStaysBoundedAcrossRestarts() throws {
        try runManyWrites(compactionBytes: 1, reopenEvery: 1)
        try runManyWrites(compactionBytes: 1500, reopenEvery: 3)
    }

    func testRepeatedCompactionWithPreallocationStaysBounded() throws {
        try runManyWrites(compactionBytes: 1, reopenEvery: 1000, preallocationBytes: 64)
        try runManyWrites(compactionBytes: 1500, reopenEvery: 1000, preallocationBytes: 256)
        try runManyWrites(compactionBytes: 1, reopenEvery: 1, preallocationBytes: 64)
        try runManyWrites(compactionBytes: 1500, reopenEvery: 3, preallocationBytes: 4096)
    }

    /// Open fsyncs the journal before the state is used: a process crash (no reboot)
    /// between a persist's write and its fsync leaves that record readable from the
    /// page cache only, and the replica must not act on a state a power failure can
    /// still take back. (The simulation's crashes are reboots, so this is checked on
    /// the calls made.)
    func testOpenMakesWhatItReadDurable() throws {
        let simulated = SimulatedFileSystem()
        let (store, _) = try F.open(simulated)
        try F.write(store, F.state(1, [1, 2]))
        simulated.crash(afterOperations: 2)  // the next persist's write happens, its fsync does not
        XCTAssertThrowsError(try F.write(store, F.state(2, [2, 3])))
        simulated.restart(.keepUnsynced)
        let recording = RecordingFileSystem(simulated)
        let (_, state) = try F.open(recording)
        XCTAssertEqual(state, F.state(2, [2, 3]))
        XCTAssertEqual(recording.log, ["fsync \(Self.journalName)"])
    }

    // MARK: Preallocation

    static let journalName = "consensus.journal"
    static func zeros(_ count: Int) -> [UInt8] { [UInt8](repeating: 0, count: count) }

    static func record(_ sequence: UInt64, _ state: [UInt8], newBlocks: [UInt8]) -> [UInt8] {
        let hashes = ConsensusStateStore.sorted(Set(newBlocks.map(F.hash)))
        return ConsensusStateStore.encodeRecord(sequence: sequence, blocks: hashes.map { ($0, F.blockBytes($0)) }, state: state).record
    }

    func testCompactionWritesTheRecordAndThePreallocationInOneWrite() throws {
        let simulated = SimulatedFileSystem()
        let fileSystem = RecordingFileSystem(simulated)
        let (store, _) = try F.open(fileSystem, preallocationBytes: 256)
        try F.write(store, F.state(1, [1, 2]))
        let first = Self.record(1, F.state(1, [1, 2]), newBlocks: [1, 2])
        XCTAssertEqual(simulated.contents(F.journalPath), first + Self.zeros(256))
        XCTAssertEqual(fileSystem.log, [
            "create consensus.journal.tmp", "write \(first.count + 256) at 0 to consensus.journal.tmp",
            "fsync consensus.journal.tmp", "rename consensus.journal.tmp to consensus.journal", "fsync directory /n/state",
        ])
    }

    func testWriteThatFitsOverwritesZerosAndKeepsTheSize() throws {
        let simulated = SimulatedFileSystem()
        let fileSystem = RecordingFileSystem(simulated)
        let (store, _) = try F.open(fileSystem, preallocationBytes: 256)
        try F.write(store, F.state(1, [1, 2]))
        let first = Self.record(1, F.state(1, [1, 2]), newBlocks: [1, 2])
        fileSystem.clearLog()
        try F.write(store, F.state(2, [1, 2]))
        let second = Self.record(2, F.state(2, [1, 2]), newBlocks: [])
        XCTAssertLessThan(second.count, 256)
        XCTAssertEqual(simulated.contents(F.journalPath), first + second + Self.zeros(256 - second.count), "size unchanged")
        XCTAssertEqual(fileSystem.log, ["write \(second.count) at \(first.count) to \(Self.journalName)", "fdatasync \(Self.journalName)"])
        // A record that exactly fills the rest still fits.
        let rest = 256 - second.count
        let filler = F.state(3, [1, 2]) + Array(repeating: 0x7A, count: rest - Self.record(3, F.state(3, [1, 2]), newBlocks: []).count)
        let third = Self.record(3, filler, newBlocks: [])
        XCTAssertEqual(third.count, rest)
        fileSystem.clearLog()
        try F.write(store, filler)
        XCTAssertEqual(simulated.contents(F.journalPath), first + second + third, "size unchanged")
        XCTAssertEqual(fileSystem.log, ["write \(rest) at \(first.count + second.count) to \(Self.journalName)", "fdatasync \(Self.journalName)"])
        XCTAssertEqual(try F.open(simulated).state, filler)
    }

    func testWriteThatDoesNotFitExtendsByRecordAndPreallocation() throws {
        let simulated = SimulatedFileSystem()
        let fileSystem = RecordingFileSystem(simulated)
        let preallocation = 64
        let (store, _) = try F.open(fileSystem, preallocationBytes: preallocation)
        try F.write(store, F.state(1, [1, 2]))
        var expected = Self.record(1, F.state(1, [1, 2]), newBlocks: [1, 2])
        // A new block: more than the zeros. Then one that fits, then one that no
        // longer fits in what is left: each extension is the record plus 64 zeros,
        // written at the end of the records (over any zeros left) and fsynced.
        let writes: [(state: [UInt8], newBlocks: [UInt8], fits: Bool)] = [
            (F.state(2, [2, 3]), [3], false), (F.state(3, [2, 3]), [], true), (F.state(4, [2, 3]), [], false),
            (F.state(5, [2, 3]), [], true),
        ]
        for (index, write) in writes.enumerated() {
            let record = Self.record(UInt64(index + 2), write.state, newBlocks: write.newBlocks)
            let sizeBefore = simulated.contents(F.journalPath)!.count
            fileSystem.clearLog()
            try F.write(store, write.state)
            let bytes = try XCTUnwrap(simulated.contents(F.journalPath))
            XCTAssertEqual(Array(bytes.prefix(expected.count + record.count)), expected + record, "write \(index)")
            if write.fits {
                XCTAssertEqual(bytes.count, sizeBefore, "write \(index): size unchanged")
                XCTAssertEqual(fileSystem.log, ["write \(record.count) at \(expected.count) to \(Self.journalName)", "fdatasync \(Self.journalName)"])
            } else {
                XCTAssertGreaterThan(expected.count + record.count, sizeBefore, "write \(index) does not fit")
                XCTAssertEqual(bytes.count, expected.count + record.count + preallocation, "write \(index): record + preallocation")
                XCTAssertEqual(fileSystem.log, [
                    "write \(record.count + preallocation) at \(expected.count) to \(Self.journalName)", "fsync \(Self.journalName)",
                ])
            }
            expected += record
            XCTAssertTrue(bytes[expected.count...].allSatisfy { $0 == 0 }, "write \(index): zeros after the records")
        }
        XCTAssertEqual(try F.open(simulated).state, F.state(5, [2, 3]))
    }

    func testReopenKeepsThePreallocatedZeros() throws {
        let simulated = SimulatedFileSystem()
        let (store, _) = try F.open(simulated, preallocationBytes: 2048)
        for version: UInt8 in 1...4 { try F.write(store, F.state(version, [version, version + 1])) }
        let bytes = try XCTUnwrap(simulated.contents(F.journalPath))
        let recordsEnd = F.recordBoundaries(bytes).last!
        XCTAssertEqual(F.recordBoundaries(bytes).count, 5)
        XCTAssertGreaterThan(bytes.count, recordsEnd, "records 2 to 4 went over the zeros")
        XCTAssertEqual(bytes.count, Self.record(1, F.state(1, [1, 2]), newBlocks: [1, 2]).count + 2048, "no extension")
        let fileSystem = RecordingFileSystem(simulated)
        let (reopened, state) = try F.open(fileSystem, preallocationBytes: 2048)
        XCTAssertEqual(state, F.state(4, [4, 5]))
        XCTAssertEqual(fileSystem.log, ["fsync \(Self.journalName)"], "nothing written at open")
        XCTAssertEqual(simulated.contents(F.journalPath), bytes, "zeros kept")
        fileSystem.clearLog()
        // The next record goes over the kept zeros.
        try F.write(reopened, F.state(5, [4, 5]))
        let record = Self.record(5, F.state(5, [4, 5]), newBlocks: [])
        XCTAssertEqual(fileSystem.log, ["write \(record.count) at \(recordsEnd) to \(Self.journalName)", "fdatasync \(Self.journalName)"])
        XCTAssertEqual(simulated.contents(F.journalPath), Array(bytes[..<recordsEnd]) + record + Array(bytes[(recordsEnd + record.count)...]))
        // Opened without preallocation, the zeros are still just space.
        XCTAssertEqual(try F.open(simulated).state, F.state(5, [4, 5]))
        XCTAssertEqual(simulated.contents(F.journalPath)?.count, bytes.count)
    }

    /// A persist torn while overwriting preallocated zeros leaves part of a record,
    /// then zeros: a torn tail, cut (zeros too) and fsynced.
    func testTornRecordInPreallocatedSpaceIsCut() throws {
        let (bytes, boundaries) = try journalWithThreeRecords(SimulatedFileSystem(), preallocationBytes: 4096)
        XCTAssertGreaterThan(bytes.count, boundaries[3], "the records went over preallocated zeros")
        var cuts = 0
        for cut in boundaries[2] + 1..<boundaries[3] where bytes[cut..<boundaries[3]].contains(where: { $0 != 0 }) {
            cuts += 1
            let fileSystem = SimulatedFileSystem()
            try fileSystem.createDirectory("/n/state")
            fileSystem.setContents(F.journalPath, Array(bytes.prefix(cut)) + Self.zeros(bytes.count - cut))
            let recording = RecordingFileSystem(fileSystem)
            let (store, state) = try F.open(recording, preallocationBytes: 4096, context: "cut at \(cut)")
            XCTAssertEqual(state, F.state(2, [2, 3]), "cut at \(cut)")
            XCTAssertEqual(fileSystem.contents(F.journalPath), Array(bytes.prefix(boundaries[2])), "cut at \(cut): file cut back")
            XCTAssertEqual(
                recording.log, ["truncate \(Self.journalName) to \(boundaries[2])", "fsync \(Self.journalName)"], "cut at \(cut)")
            try F.write(store, F.state(5, [3, 5]))
            let record = Self.record(3, F.state(5, [3, 5]), newBlocks: [5])
            XCTAssertEqual(fileSystem.contents(F.journalPath), Array(bytes.prefix(boundaries[2])) + record + Self.zeros(4096), "cut at \(cut)")
            XCTAssertEqual(try F.open(fileSystem).state, F.state(5, [3, 5]), "cut at \(cut)")
        }
        XCTAssertGreaterThan(cuts, (boundaries[3] - boundaries[2]) * 9 / 10)
    }

    func testDamageBeforePreallocatedZerosIsCorrupt() throws {
        let (bytes, boundaries) = try journalWithThreeRecords(SimulatedFileSystem(), preallocationBytes: 4096)
        for index in boundaries[1]..<boundaries[2] {
            var damaged = bytes
            damaged[index] ^= 0x01
            try assertCorrupt(damaged, offset: boundaries[1], "byte \(index) of record 2 flipped, zeros after")
        }
        try assertCorrupt(
            Array(bytes[..<boundaries[1]] + bytes[boundaries[2]...]), offset: boundaries[1], "record 2 missing, zeros after")
        // Record 3 after a stretch of zeros: it was never written there (records follow
        // each other), so record 3's place was zeroed: damage, not preallocated space.
        try assertCorrupt(
            Array(bytes[..<boundaries[2]]) + Self.zeros(40) + Array(bytes[boundaries[2]...]), offset: boundaries[2],
            "zeros where record 3 was")
    }

    func testDefaultPreallocation() throws {
        XCTAssertEqual(ConsensusStateStore.defaultPreallocationBytes, 4 << 20)
        let fileSystem = SimulatedFileSystem()
        let store = try DataLayout.consensusStateStore(F.dataDirectory, fileSystem: fileSystem)
        try F.write(store, F.state(1, [1, 2]))
        let first = Self.record(1, F.state(1, [1, 2]), newBlocks: [1, 2])
        let bytes = try XCTUnwrap(fileSystem.contents(F.journalPath))
        XCTAssertEqual(bytes.count, first.count + (4 << 20))
        XCTAssertTrue(bytes[first.count...].allSatisfy { $0 == 0 })
        try F.write(store, F.state(2, [2, 3]))
        XCTAssertEqual(fileSystem.contents(F.journalPath)?.count, bytes.count, "fits in the preallocation")
        XCTAssertEqual(try DataLayout.consensusStateStore(F.dataDirectory, fileSystem: fileSystem).readState(), F.state(2, [2, 3]))
    }

    /// On a real file system (fdatasync included): writes over the zeros, extensions,
    /// a reopen that keeps the zeros.
    func testPreallocatedJournalOnDisk() throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/state/" + DataLayout.consensusJournalName
        var store = try DataLayout.consensusStateStore(directory, preallocationBytes: 128)
        for version: UInt8 in 1...6 {
            try F.write(store, F.state(version, [version / 2, version / 2 + 1]))
            let bytes = Array(try XCTUnwrap(FileManager.default.contents(atPath: path)))
            let recordsEnd = F.recordBoundaries(bytes).last!
            XCTAssertEqual(F.recordBoundaries(bytes).count, Int(version) + 1)
            XCTAssertTrue(bytes[recordsEnd...].allSatisfy { $0 == 0 }, "write \(version)")
            XCTAssertLessThanOrEqual(bytes.count - recordsEnd, 128, "write \(version)")
            if version % 2 == 0 {
                store = try DataLayout.consensusStateStore(directory, preallocationBytes: 128)
                XCTAssertEqual(try store.readState(), F.state(version, [version / 2, version / 2 + 1]))
                XCTAssertEqual(Array(try XCTUnwrap(FileManager.default.contents(atPath: path))), bytes, "kept at open")
            }
        }
        XCTAssertEqual(try store.readBlock(F.hash(4)), F.blockBytes(F.hash(4)))
    }

    // MARK: Upgrade from the previous layout

    func testJournalWinsOverLeftoverLegacyFiles() throws {
        let fileSystem = SimulatedFileSystem()
        let (store, _) = try F.open(fileSystem)
        try F.write(store, F.state(2, [2, 3]))
        // A crash during an upgrade can leave both.
        try F.writeLegacy(fileSystem, state: F.state(1, [1, 2]))
        fileSystem.setContents(F.legacyStatePath + ".tmp", [1, 2, 3])
        let (_, state) = try F.open(fileSystem)
        XCTAssertEqual(state, F.state(2, [2, 3]))
        XCTAssertEqual(try fileSystem.listDirectory("/n/state"), ["consensus.journal", "prepared"])
        XCTAssertEqual(try fileSystem.listDirectory(F.legacyBlocksDirectory), [])
    }
}

/// Forwards to a `SimulatedFileSystem` and logs every mutating call (file names
/// only, an open file named by its current name), to tell an fdatasync from an
/// fsync: the simulation treats both alike. One thread.
final class RecordingFileSystem: FileSystem, @unchecked Sendable {
    let base: SimulatedFileSystem
    private(set) var log: [String] = []
    private var openFiles: [RecordingFile] = []

    init(_ base: SimulatedFileSystem) { self.base = base }

    func record(_ entry: String) { log.append(entry) }
    func clearLog() { log = [] }
    static func name(_ path: String) -> String { String(path.split(separator: "/").last ?? "") }

    func createDirectory(_ path: String) throws(FileSystemError) { try base.createDirectory(path) }
    func listDirectory(_ path: String) throws(FileSystemError) -> [String] { try base.listDirectory(path) }
    func fileExists(_ path: String) -> Bool { base.fileExists(path) }

    func open(_ path: String, mode: FileOpenMode) throws(FileSystemError) -> any StoreFile {
        if mode == .create && !base.fileExists(path) { record("create \(Self.name(path))") }
        let file = RecordingFile(try base.open(path, mode: mode), name: Self.name(path), fileSystem: self)
        openFiles.append(file)
        return file
    }

    func rename(_ source: String, to destination: String) throws(FileSystemError) {
        record("rename \(Self.name(source)) to \(Self.name(destination))")
        try base.rename(source, to: destination)
        for file in openFiles where file.name == Self.name(destination) { file.name = "(replaced)" }
        for file in openFiles where file.name == Self.name(source) { file.name = Self.name(destination) }
    }

    func remove(_ path: String) throws(FileSystemError) {
        record("remove \(Self.name(path))")
        try base.remove(path)
    }

    func syncDirectory(_ path: String) throws(FileSystemError) {
        record("fsync directory \(path)")
        try base.syncDirectory(path)
    }
}

final class RecordingFile: StoreFile {
    let file: any StoreFile
    var name: String
    unowned let fileSystem: RecordingFileSystem

    init(_ file: any StoreFile, name: String, fileSystem: RecordingFileSystem) {
        self.file = file
        self.name = name
        self.fileSystem = fileSystem
    }

    func size() throws(FileSystemError) -> Int { try file.size() }
    func read(at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] { try file.read(at: offset, count: count) }

    func write(_ bytes: [UInt8], at offset: Int) throws(FileSystemError) {
        fileSystem.record("write \(bytes.count) at \(offset) to \(name)")
        try file.write(bytes, at: offset)
    }

    func truncate(to size: Int) throws(FileSystemError) {
        fileSystem.record("truncate \(name) to \(size)")
        try file.truncate(to: size)
    }

    func sync() throws(FileSystemError) {
        fileSystem.record("fsync \(name)")
        try file.sync()
    }

    func syncData() throws(FileSystemError) {
        fileSystem.record("fdatasync \(name)")
        try file.syncData()
    }

    func close() { file.close() }
}
