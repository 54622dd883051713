import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore

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

    /// The consensus state with its prepared blocks apart: the state read back after
    /// any crash is the old or the new one, every block it refers to is there intact,
    /// and leftovers are removed at open.
    func testWritingConsensusStateWithBlockFiles() throws {
        func hash(_ byte: UInt8) -> Hash { Hash(bytes: [UInt8](repeating: byte, count: 32))! }
        func blockBytes(_ hash: Hash) -> [UInt8] { Array("block \(hash.hex)".utf8) + [UInt8](repeating: hash.bytes[0], count: 300) }
        let references: [[UInt8]: Set<Hash>] = [[1]: [hash(1), hash(2)], [2]: [hash(2), hash(3), hash(4)]]
        func store(_ fileSystem: SimulatedFileSystem) throws -> ConsensusStateStore {
            try DataLayout.consensusStateStore("/n", fileSystem: fileSystem)
        }
        func open(_ fileSystem: SimulatedFileSystem) throws -> (ConsensusStateStore, [UInt8]?) {
            let opened = try store(fileSystem)
            let state = try opened.readState()
            let referenced = state.map { references[$0]! } ?? []
            for hash in referenced { XCTAssertEqual(try opened.readBlock(hash), blockBytes(hash)) }
            try opened.retainOnly(referenced)
            XCTAssertEqual(
                Set(try fileSystem.listDirectory(opened.blocksDirectory)), Set(referenced.map(ConsensusStateStore.fileName)))
            return (opened, state)
        }
        try crashMatrix(
            "write consensus state and prepared blocks",
            setup: { fileSystem in
                let (opened, _) = try open(fileSystem)
                try opened.write(state: [1], referenced: references[[1]]!, blockBytes: blockBytes)
            },
            action: { fileSystem in
                let (opened, _) = try open(fileSystem)
                try opened.write(state: [2], referenced: references[[2]]!, blockBytes: blockBytes)
            },
            check: { fileSystem, acknowledged, point, outcome in
                let (opened, state) = try open(fileSystem)
                if acknowledged {
                    XCTAssertEqual(state, [2], "crash \(point) \(outcome)")
                } else {
                    XCTAssertTrue(state == [1] || state == [2], "crash \(point) \(outcome): \(String(describing: state))")
                }
                try opened.write(state: [1], referenced: references[[1]]!, blockBytes: blockBytes)
                XCTAssertEqual(try open(fileSystem).1, [1])
            })
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
