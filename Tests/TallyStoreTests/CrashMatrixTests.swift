import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting

/// Crash at every file operation (each write, truncate, fsync, create, rename,
/// remove and directory fsync) of each durable write path, under every crash
/// outcome (lose, keep or tear what was not fsynced), then reboot and reopen:
/// nothing acknowledged is lost and nothing half-written is served.
final class CrashMatrixTests: XCTestCase {
    /// Runs `action` with a crash at operation 1, 2, … until it completes without
    /// reaching the crash point, for each outcome; `check` inspects the rebooted file
    /// system. Returns the number of crash points of the path.
    @discardableResult
    func crashMatrix(
        _ name: String,
        setup: (SimulatedFileSystem) throws -> Void,
        action: (SimulatedFileSystem) throws -> Void,
        check: (SimulatedFileSystem, _ acknowledged: Bool, _ crashPoint: Int, _ outcome: SimulatedFileSystem.CrashOutcome) throws -> Void,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> Int {
        var points = 0
        for outcome in SimulatedFileSystem.CrashOutcome.allCases {
            var point = 1
            while true {
                let fileSystem = SimulatedFileSystem()
                try setup(fileSystem)
                fileSystem.crash(afterOperations: point)
                var acknowledged = false
                do {
                    try action(fileSystem)
                    acknowledged = true
                } catch {
                    XCTAssertTrue(fileSystem.hasCrashed, "\(name): failed without a crash: \(error)", file: file, line: line)
                }
                if !fileSystem.hasCrashed {
                    points = point - 1
                    break
                }
                fileSystem.restart(outcome)
                try check(fileSystem, acknowledged, point, outcome)
                point += 1
                XCTAssertLessThan(point, 100, "\(name): the path never completes", file: file, line: line)
                if point >= 100 { break }
            }
        }
        XCTAssertGreaterThan(points, 0, "\(name): no crash point reached", file: file, line: line)
        print("crash matrix: \(name): \(points) crash points × \(SimulatedFileSystem.CrashOutcome.allCases.count) outcomes")
        return points
    }

    /// Reopens and checks the chain is exactly blocks 1…tip with tip in `allowed`,
    /// then that the store accepts the next block and keeps it.
    func checkChain(_ fileSystem: SimulatedFileSystem, allowed: ClosedRange<UInt64>, options: BlockStore.Options = .default,
                    context: String) throws {
        let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        XCTAssertTrue(allowed.contains(store.tipHeight), "\(context): tip \(store.tipHeight) not in \(allowed)")
        XCTAssertEqual(try readAll(store), Blocks.chain(Int(store.tipHeight)), context)
        let next = store.tipHeight + 1
        try store.append(Blocks.make(height: next))
        let again = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
        XCTAssertEqual(again.tipHeight, next, context)
        XCTAssertEqual(try again.block(at: next), Blocks.make(height: next), context)
    }

    func testAppendIntoTheCurrentSegment() throws {
        try crashMatrix(
            "append a block",
            setup: { fileSystem in
                let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
                for block in Blocks.chain(3) { try store.append(block) }
            },
            action: { fileSystem in
                let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
                try store.append(Blocks.make(height: 4))
            },
            check: { fileSystem, acknowledged, point, outcome in
                try self.checkChain(fileSystem, allowed: acknowledged ? 4...4 : 3...4, context: "crash \(point) \(outcome)")
            })
    }

    func testAppendThatStartsANewSegment() throws {
        let existing = 4
        let recordBytes = RecordFormat.headerBytes + Blocks.make(height: 1).canonicalBytes.count
        let options = BlockStore.Options(maxSegmentBytes: existing * recordBytes + recordBytes / 2)
        try crashMatrix(
            "append a block that starts a new segment",
            setup: { fileSystem in
                let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
                for block in Blocks.chain(existing) { try store.append(block) }
                // The next record must not fit: it opens segment 2.
                let used = store.location(at: UInt64(existing))!
                precondition(used.segment == 1 && used.offset == (existing - 1) * recordBytes)
            },
            action: { fileSystem in
                let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem, options: options)
                try store.append(Blocks.make(height: UInt64(existing + 1)))
                precondition(store.location(at: UInt64(existing + 1))!.segment == 2)
            },
            check: { fileSystem, acknowledged, point, outcome in
                let low = UInt64(acknowledged ? existing + 1 : existing)
                try self.checkChain(fileSystem, allowed: low...UInt64(existing + 1), options: options, context: "crash \(point) \(outcome)")
            })
    }

    func testCreatingAStore() throws {
        try crashMatrix(
            "create an empty store",
            setup: { _ in },
            action: { fileSystem in _ = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem) },
            check: { fileSystem, _, point, outcome in
                try self.checkChain(fileSystem, allowed: 0...0, context: "crash \(point) \(outcome)")
            })
    }

    func testRecoveringATornTail() throws {
        try crashMatrix(
            "recover a torn tail (truncate, fsync, rewrite the index)",
            setup: { fileSystem in
                let store = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem)
                for block in Blocks.chain(3) { try store.append(block) }
                store.close()
                let segment = "/n/blocks/segment-00000001.tblk"
                let torn = RecordFormat.encode(height: 4, payload: Blocks.make(height: 4).canonicalBytes).prefix(60)
                fileSystem.setContents(segment, fileSystem.contents(segment)! + torn)
            },
            action: { fileSystem in _ = try BlockStore.open(dataDirectory: "/n", fileSystem: fileSystem) },
            check: { fileSystem, _, point, outcome in
                try self.checkChain(fileSystem, allowed: 3...3, context: "crash \(point) \(outcome)")
            })
    }

    func testWritingDurableState() throws {
        let old = Array("signed: view 3 height 9 commit".utf8)
        let new = Array("signed: view 4 height 10 prepare, with a longer record".utf8)
        try crashMatrix(
            "write signer/consensus state",
            setup: { fileSystem in
                try fileSystem.createDirectory("/n")
                try DurableStateFile(path: "/n/signer-state", fileSystem: fileSystem).write(old)
            },
            action: { fileSystem in try DurableStateFile(path: "/n/signer-state", fileSystem: fileSystem).write(new) },
            check: { fileSystem, acknowledged, point, outcome in
                let file = DurableStateFile(path: "/n/signer-state", fileSystem: fileSystem)
                let read = try file.read()
                if acknowledged {
                    XCTAssertEqual(read, new, "crash \(point) \(outcome)")
                } else {
                    XCTAssertTrue(read == old || read == new, "crash \(point) \(outcome): read \(String(describing: read))")
                }
                try file.write(new + [1])
                XCTAssertEqual(try file.read(), new + [1])
            })
    }

    /// Runs the writes of `states` on `store`, counting those acknowledged.
    func writeAll(_ store: ConsensusStateStore, _ states: [[UInt8]], acknowledged: inout Int) throws {
        for state in states {
            try JournalFixture.write(store, state)
            acknowledged += 1
        }
    }

    /// After a crash during the writes of `states[1...]` (state 0 durable before):
    /// the state read back is the last acknowledged one or the one being written,
    /// every block it refers to reads back byte-identical (checked by
    /// `JournalFixture.open`), and a further write survives a reopen.
    /// After the open, the file is valid records then zeros only (none without
    /// preallocation, at most `preallocationBytes` with it).
    func checkConsensusJournal(
        _ fileSystem: SimulatedFileSystem, states: [[UInt8]], acknowledgedWrites: Int, compactionBytes: Int,
        preallocationBytes: Int = 0, context: String
    ) throws {
        typealias F = JournalFixture
        let (store, state) = try F.open(
            fileSystem, compactionBytes: compactionBytes, preallocationBytes: preallocationBytes, context: context)
        let allowed = states[acknowledgedWrites...].prefix(2)
        XCTAssertTrue(allowed.contains { $0 == state }, "\(context): read \(String(describing: state)), allowed \(Array(allowed))")
        if let bytes = fileSystem.contents(F.journalPath) {  // (none yet after a crash mid-upgrade)
            let recordsEnd = F.recordBoundaries(bytes).last!
            XCTAssertTrue(bytes[recordsEnd...].allSatisfy { $0 == 0 }, "\(context): only zeros after the records")
            XCTAssertLessThanOrEqual(bytes.count - recordsEnd, preallocationBytes, "\(context): zeros after the records")
        }
        let further = F.state(200, [4, 50, 51])
        try F.write(store, further)
        let (reopened, again) = try F.open(
            fileSystem, compactionBytes: compactionBytes, preallocationBytes: preallocationBytes,
            context: context + ", after a further write")
        XCTAssertEqual(again, further, context)
        XCTAssertNil(try reopened.readBlock(F.hash(99)), context)
        XCTAssertFalse(fileSystem.fileExists(F.journalPath + ".tmp"), "\(context): temporary journal left")
    }

    /// The normal persist: one record appended and fsynced per write, some adding
    /// blocks, some not.
    func testWritingTheConsensusJournal() throws {
        typealias F = JournalFixture
        let states = [F.state(2, [2, 3]), F.state(3, [2, 3, 4]), F.state(4, [3, 4]), F.state(5, [4, 5, 6])]
        var acknowledgedWrites = 0
        let points = try crashMatrix(
            "append consensus journal records",
            setup: { fileSystem in
                acknowledgedWrites = 0
                let (store, _) = try F.open(fileSystem)
                try F.write(store, F.state(1, [1, 2]))
                try F.write(store, states[0])
            },
            action: { fileSystem in
                let (store, state) = try F.open(fileSystem)
                XCTAssertEqual(state, states[0])
                try self.writeAll(store, Array(states.dropFirst()), acknowledged: &acknowledgedWrites)
            },
            check: { fileSystem, acknowledged, point, outcome in
                if acknowledged { XCTAssertEqual(acknowledgedWrites, 3) }
                try self.checkConsensusJournal(
                    fileSystem, states: states, acknowledgedWrites: acknowledgedWrites,
                    compactionBytes: ConsensusStateStore.defaultCompactionBytes, context: "crash \(point) \(outcome)")
            })
        XCTAssertEqual(points, 1 + 3 * 2, "the fsync at open, then a write and an fsync per persist")
    }

    /// The normal persist with 64 bytes of preallocation: records of no new block fit
    /// in the zeros (written over them, fdatasynced), records with a block or past the
    /// zeros left extend the file (record and 64 zeros in one write, fsynced).
    func testWritingThePreallocatedConsensusJournal() throws {
        typealias F = JournalFixture
        let preallocationBytes = 64
        // Set up: state 1 (compaction), state 2 (a new block: extends). Then: fits,
        // extends past the 19 zeros left, extends with a new block, fits.
        let states = [F.state(2, [2, 3]), F.state(3, [2, 3]), F.state(4, [2, 3]), F.state(5, [3, 4]), F.state(6, [3, 4])]
        var acknowledgedWrites = 0
        var kinds: [String] = []
        let points = try crashMatrix(
            "append consensus journal records over preallocated zeros",
            setup: { fileSystem in
                acknowledgedWrites = 0
                kinds = []
                let (store, _) = try F.open(fileSystem, preallocationBytes: preallocationBytes)
                try F.write(store, F.state(1, [1, 2]))
                try F.write(store, states[0])
            },
            action: { fileSystem in
                let (store, state) = try F.open(fileSystem, preallocationBytes: preallocationBytes)
                XCTAssertEqual(state, states[0])
                for next in states.dropFirst() {
                    let sizeBefore = fileSystem.contents(F.journalPath)!.count
                    try self.writeAll(store, [next], acknowledged: &acknowledgedWrites)
                    let bytes = fileSystem.contents(F.journalPath)!
                    let recordsEnd = F.recordBoundaries(bytes).last!
                    kinds.append(bytes.count == sizeBefore ? "fits" : bytes.count == recordsEnd + preallocationBytes ? "extends" : "wrong")
                }
            },
            check: { fileSystem, acknowledged, point, outcome in
                if acknowledged { XCTAssertEqual(acknowledgedWrites, 4) }
                try self.checkConsensusJournal(
                    fileSystem, states: states, acknowledgedWrites: acknowledgedWrites,
                    compactionBytes: ConsensusStateStore.defaultCompactionBytes, preallocationBytes: preallocationBytes,
                    context: "crash \(point) \(outcome)")
            })
        XCTAssertEqual(points, 1 + 4 * 2, "the fsync at open, then a write and an fsync or fdatasync per persist")
        XCTAssertEqual(kinds, ["fits", "extends", "extends", "fits"], "the last complete run")
    }

    /// Opening a preallocated journal whose last record was torn over its zeros: the
    /// cut (truncate, fsync), then a persist.
    func testRecoveringATornJournalRecordInPreallocatedSpace() throws {
        typealias F = JournalFixture
        let states = [F.state(2, [2, 3]), F.state(3, [3, 4])]
        let points = try crashMatrix(
            "recover a torn consensus journal record over preallocated zeros",
            setup: { fileSystem in
                let (store, _) = try F.open(fileSystem, preallocationBytes: 1024)
                for state in [F.state(1, [1, 2])] + states { try F.write(store, state) }
                let bytes = fileSystem.contents(F.journalPath)!
                let boundaries = F.recordBoundaries(bytes)
                precondition(boundaries.count == 4 && bytes.count > boundaries[3], "record 3 over preallocated zeros")
                let torn = boundaries[2] + (boundaries[3] - boundaries[2]) / 2
                fileSystem.setContents(F.journalPath, Array(bytes[..<torn]) + [UInt8](repeating: 0, count: bytes.count - torn))
            },
            action: { fileSystem in
                let (_, state) = try F.open(fileSystem, preallocationBytes: 1024)
                XCTAssertEqual(state, states[0])
            },
            check: { fileSystem, _, point, outcome in
                // Cut or not yet, the state is the one before the torn record, only.
                try self.checkConsensusJournal(
                    fileSystem, states: [states[0]], acknowledgedWrites: 0,
                    compactionBytes: ConsensusStateStore.defaultCompactionBytes, preallocationBytes: 1024,
                    context: "crash \(point) \(outcome)")
            })
        XCTAssertEqual(points, 2, "truncate, fsync")
    }

    /// A persist that compacts the journal first (temporary file, fsync, rename,
    /// directory fsync), then one appended after it.
    func testCompactingTheConsensusJournal() throws {
        try compactTheConsensusJournal(preallocationBytes: 0)
    }

    /// The same with preallocation: the compacted journal is its record and 64 zeros,
    /// and the append after it goes over them.
    func testCompactingThePreallocatedConsensusJournal() throws {
        try compactTheConsensusJournal(preallocationBytes: 64)
    }

    func compactTheConsensusJournal(preallocationBytes: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        typealias F = JournalFixture
        let compactionBytes = 1
        var states: [[UInt8]] = []
        var acknowledgedWrites = 0
        func open(_ fileSystem: SimulatedFileSystem) throws -> (store: ConsensusStateStore, state: [UInt8]?) {
            try F.open(fileSystem, compactionBytes: compactionBytes, preallocationBytes: preallocationBytes)
        }
        let points = try crashMatrix(
            "compact the consensus journal (preallocation \(preallocationBytes))",
            setup: { fileSystem in
                acknowledgedWrites = 0
                let (store, _) = try open(fileSystem)
                // Append until the journal is twice its first (compacted) record.
                var version: UInt8 = 1
                repeat {
                    try F.write(store, F.state(version, [version, version + 1]))
                    version += 1
                    precondition(version < 20, "the journal never reached its compaction bound")
                } while !store.shouldCompact
                states = [try store.readState()!, F.state(version, [version, version + 1]), F.state(version + 1, [version + 1])]
            },
            action: { fileSystem in
                let (store, state) = try open(fileSystem)
                XCTAssertEqual(state, states[0])
                XCTAssertTrue(store.shouldCompact, "a reopened journal keeps its compaction bound")
                try self.writeAll(store, [states[1]], acknowledged: &acknowledgedWrites)
                let bytes = fileSystem.contents(F.journalPath)!
                let recordBytes = try XCTUnwrap(ConsensusStateStore.decodeRecord(bytes, at: 0)?.byteCount)
                XCTAssertEqual(recordBytes + preallocationBytes, bytes.count, "compacted to one record (and the zeros)")
                XCTAssertTrue(bytes[recordBytes...].allSatisfy { $0 == 0 })
                XCTAssertNil(try store.readBlock(F.hash(1)), "unreferenced block dropped")
                try self.writeAll(store, [states[2]], acknowledged: &acknowledgedWrites)
                if preallocationBytes > 0 {
                    XCTAssertEqual(fileSystem.contents(F.journalPath)!.count, bytes.count, "the append fits in the zeros")
                }
            },
            check: { fileSystem, acknowledged, point, outcome in
                if acknowledged { XCTAssertEqual(acknowledgedWrites, 2) }
                try self.checkConsensusJournal(
                    fileSystem, states: states, acknowledgedWrites: acknowledgedWrites, compactionBytes: compactionBytes,
                    preallocationBytes: preallocationBytes, context: "crash \(point) \(outcome)")
            }, file: file, line: line)
        XCTAssertEqual(
            points, 1 + 5 + 2, "the fsync at open, compaction (create, write, fsync, rename, directory fsync), then an append",
            file: file, line: line)
    }

    /// The first persist on a data directory of the previous layout (a state file and
    /// one file per block, with a crash leftover of each kind): the journal is written
    /// by compaction, then the old files are removed.
    func testUpgradingToTheConsensusJournal() throws {
        try upgradeToTheConsensusJournal(preallocationBytes: 0)
    }

    /// The same with preallocation: the journal written by the upgrade is its record
    /// and 64 zeros; the append after it goes over them.
    func testUpgradingToThePreallocatedConsensusJournal() throws {
        try upgradeToTheConsensusJournal(preallocationBytes: 64)
    }

    func upgradeToTheConsensusJournal(preallocationBytes: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        typealias F = JournalFixture
        let legacy = F.state(1, [1, 2, 3])
        let states = [legacy, F.state(2, [2, 3, 4]), F.state(3, [3, 4])]
        var acknowledgedWrites = 0
        let points = try crashMatrix(
            "upgrade consensus state files to the journal (preallocation \(preallocationBytes))",
            setup: { fileSystem in
                acknowledgedWrites = 0
                try F.writeLegacy(fileSystem, state: legacy, extraBlocks: [9])
                fileSystem.setContents(F.legacyStatePath + ".tmp", Array("half a replace".utf8))
            },
            action: { fileSystem in
                let (store, state) = try F.open(fileSystem, preallocationBytes: preallocationBytes)
                XCTAssertEqual(state, legacy, "the previous layout is read as it is")
                XCTAssertEqual(try store.readBlock(F.hash(9)), F.blockBytes(F.hash(9)))
                try self.writeAll(store, [states[1]], acknowledged: &acknowledgedWrites)
                XCTAssertEqual(try fileSystem.listDirectory("/n/state"), ["consensus.journal", "prepared"], "old files gone")
                XCTAssertEqual(try fileSystem.listDirectory(F.legacyBlocksDirectory), [])
                let size = fileSystem.contents(F.journalPath)!.count
                try self.writeAll(store, [states[2]], acknowledged: &acknowledgedWrites)
                if preallocationBytes > 0 {
                    XCTAssertEqual(fileSystem.contents(F.journalPath)!.count, size, "the append fits in the zeros")
                }
            },
            check: { fileSystem, acknowledged, point, outcome in
                if acknowledged { XCTAssertEqual(acknowledgedWrites, 2) }
                let context = "crash \(point) \(outcome)"
                try self.checkConsensusJournal(
                    fileSystem, states: states, acknowledgedWrites: acknowledgedWrites,
                    compactionBytes: ConsensusStateStore.defaultCompactionBytes, preallocationBytes: preallocationBytes,
                    context: context)
                XCTAssertEqual(try fileSystem.listDirectory("/n/state"), ["consensus.journal", "prepared"], context)
                XCTAssertEqual(try fileSystem.listDirectory(F.legacyBlocksDirectory), [], context)
            }, file: file, line: line)
        // Compaction 5, removing the state file, its temporary and 4 block files 6, an append 2.
        XCTAssertEqual(points, 5 + 6 + 2, file: file, line: line)
    }

    func testWritingTheFirstDurableState() throws {
        let new = Array("first state".utf8)
        try crashMatrix(
            "write the first signer/consensus state",
            setup: { fileSystem in try fileSystem.createDirectory("/n") },
            action: { fileSystem in try DurableStateFile(path: "/n/consensus-state", fileSystem: fileSystem).write(new) },
            check: { fileSystem, acknowledged, point, outcome in
                let read = try DurableStateFile(path: "/n/consensus-state", fileSystem: fileSystem).read()
                if acknowledged { XCTAssertEqual(read, new) } else {
                    XCTAssertTrue(read == nil || read == new, "crash \(point) \(outcome)")
                }
            })
    }

    func testWritingASnapshot() throws {
        let (genesis, ledger) = SnapshotTests.ledgerWithHistory()
        let base = Ledger(genesis: genesis)
        var middle = base
        middle.apply([], proposer: 1)
        try crashMatrix(
            "write a snapshot (and drop the oldest)",
            setup: { fileSystem in
                let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem, retained: 2)
                try snapshots.write(Snapshot(ledger: base, blockHash: genesis.hash))
                try snapshots.write(Snapshot(ledger: middle, blockHash: SHA256.hash([1])))
            },
            action: { fileSystem in
                let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem, retained: 2)
                try snapshots.write(Snapshot(ledger: ledger, blockHash: SHA256.hash([3])))
            },
            check: { fileSystem, acknowledged, point, outcome in
                let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem, retained: 2)
                XCTAssertFalse(try fileSystem.listDirectory("/n/snapshots").contains { $0.hasSuffix(".tmp") })
                let loaded = try XCTUnwrap(snapshots.loadLatest(genesis: genesis), "crash \(point) \(outcome)")
                if acknowledged {
                    XCTAssertEqual(loaded.snapshot.height, 3)
                } else {
                    XCTAssertTrue([1, 3].contains(loaded.snapshot.height), "crash \(point) \(outcome)")
                }
                let expected = loaded.snapshot.height == 3 ? ledger.stateRoot : middle.stateRoot
                XCTAssertEqual(loaded.ledger.stateRoot, expected, "crash \(point) \(outcome)")
            })
    }
}
