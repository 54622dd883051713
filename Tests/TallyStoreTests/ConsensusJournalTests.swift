import Foundation
import TallyCrypto
import XCTest

@testable import TallyStore

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

    static func store(_ fileSystem: SimulatedFileSystem, compactionBytes: Int = ConsensusStateStore.defaultCompactionBytes)
        throws -> ConsensusStateStore {
        try DataLayout.consensusStateStore(dataDirectory, fileSystem: fileSystem, compactionBytes: compactionBytes)
    }

    /// Opens as the node does: reads the state, checks every block it refers to reads
    /// back byte-identical, then `retainOnly`.
    static func open(
        _ fileSystem: SimulatedFileSystem, compactionBytes: Int = ConsensusStateStore.defaultCompactionBytes,
        context: String = "", file: StaticString = #filePath, line: UInt = #line
    ) throws -> (store: ConsensusStateStore, state: [UInt8]?) {
        let opened = try store(fileSystem, compactionBytes: compactionBytes)
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
    func journalWithThreeRecords(_ fileSystem: SimulatedFileSystem) throws -> (bytes: [UInt8], boundaries: [Int]) {
        let (store, _) = try F.open(fileSystem)
        try F.write(store, F.state(1, [1, 2]))
        try F.write(store, F.state(2, [2, 3]))
        try F.write(store, F.state(3, [3, 4]))
        let bytes = try XCTUnwrap(fileSystem.contents(F.journalPath))
        let boundaries = F.recordBoundaries(bytes)
        XCTAssertEqual(boundaries.count, 4)
        XCTAssertEqual(boundaries.last, bytes.count)
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
        let garbages: [(String, [UInt8])] = [
            ("zeros", [UInt8](repeating: 0, count: 300)),
            ("a header alone", Array(forgedHeader.prefix(ConsensusStateStore.headerBytes))),
            ("a record with a wrong checksum", forgedHeader),
            ("a copy of an older record", Array(bytes[boundaries[1]..<boundaries[2]])),
            ("one byte", [0x54]),
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
    /// must hold across restarts too).
    func runManyWrites(compactionBytes: Int, reopenEvery: Int) throws {
        let fileSystem = SimulatedFileSystem()
        var store = try F.open(fileSystem, compactionBytes: compactionBytes).store
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
            if index % reopenEvery == 0 { store = try F.open(fileSystem, compactionBytes: compactionBytes, context: "write \(index)").store }
            try F.write(store, state)
            let bytes = try XCTUnwrap(fileSystem.contents(F.journalPath))
            largestJournal = max(largestJournal, bytes.count)
            XCTAssertLessThanOrEqual(bytes.count, bound, "write \(index)")
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
        let (_, last) = try F.open(fileSystem, compactionBytes: compactionBytes)
        XCTAssertEqual(last, states.last)
        print("journal: 200 writes, compactionBytes \(compactionBytes), reopen every \(reopenEvery): "
            + "\(compactions) compactions, largest journal \(largestJournal) bytes (bound \(bound))")
    }

    func testRepeatedCompactionStaysBounded() throws {
        try runManyWrites(compactionBytes: 1, reopenEvery: 1000)
        try runManyWrites(compactionBytes: 1500, reopenEvery: 1000)
    }

    func testRepeatedCompactionStaysBoundedAcrossRestarts() throws {
        try runManyWrites(compactionBytes: 1, reopenEvery: 1)
        try runManyWrites(compactionBytes: 1500, reopenEvery: 3)
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
