import Foundation
import TallyCrypto
import TallyLogTesting
import TallyLedger
import TallyTypes
import TallyStoreTesting
import XCTest

@testable import TallyStore

/// Issue 16: restart time grew with the ledger (4.3 s at 10^6 accounts) because a
/// snapshot held only the accounts: loading it decoded each one, built a dictionary of
/// them and rehashed every leaf and inner node of the state tree. Version 2 stores the
/// ledger's image (addresses, accounts, their address order, the tree's levels) and
/// loads it with bulk reads; these tests hold it to the ledger computed the old way.
final class SnapshotImageTests: XCTestCase {
    static let keys = (0..<6).map(DevnetKeys.accountKey)

    /// A ledger of `extra` genesis accounts (past one sampling stride) plus six devnet
    /// keys, after `blocks` blocks of transfers that create new accounts.
    static func generatedLedger(extra: Int = 3_000, blocks: Int = 3) -> (Genesis, Ledger) {
        var accounts = keys.map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: 1_000_000) }
        for index in 0..<extra {
            let address = Address(bytes: Array(SHA256.hash(Array("genesis-\(index)".utf8)).bytes.prefix(20)))!
            accounts.append(GenesisAccount(address: address, balance: UInt64(index + 1)))
        }
        let genesis = try! Genesis(chainID: "image-test", genesisTimeMs: 0, validators: DevnetKeys.validators(), accounts: accounts)
        var ledger = Ledger(genesis: genesis)
        for _ in 0..<blocks { ledger.apply(nextBlock(on: ledger, round: Int(ledger.height)), proposer: Int(ledger.height) % 4) }
        return (genesis, ledger)
    }

    /// Transfers from every devnet key to a new address and to a genesis account.
    static func nextBlock(on ledger: Ledger, round: Int) -> [VerifiedTransaction] {
        keys.indices.flatMap { sender -> [VerifiedTransaction] in
            let nonce = ledger.account(Address(publicKey: keys[sender].publicKey))!.nonce
            let fresh = Address(bytes: Array(SHA256.hash(Array("new-\(round)-\(sender)".utf8)).bytes.prefix(20)))!
            let old = Address(bytes: Array(SHA256.hash(Array("genesis-\(round * 7 + sender)".utf8)).bytes.prefix(20)))!
            return [(fresh, nonce), (old, nonce + 1)].map { recipient, nonce in
                VerifiedTransaction(signatureAlreadyVerified: Transaction.signed(
                    by: keys[sender], chainID: "image-test", genesisHash: ledger.genesisHash, to: recipient, amount: 10, fee: 2,
                    nonce: nonce))
            }
        }
    }

    /// The root of the ledger's accounts computed from scratch, leaf by leaf (the old way).
    static func rootFromScratch(_ ledger: Ledger) -> Hash {
        StateTree.rootFromScratch(ledger.allAccounts.map {
            StateTree.leafHash(address: $0.address, balance: $0.account.balance, nonce: $0.account.nonce)
        })
    }

    func assertSameLedger(_ restored: Ledger, _ original: Ledger, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(restored.height, original.height, file: file, line: line)
        XCTAssertEqual(restored.stateRoot, original.stateRoot, file: file, line: line)
        XCTAssertEqual(restored.stateRoot, Self.rootFromScratch(original), file: file, line: line)
        XCTAssertEqual(restored.allAccounts.map(\.address), original.allAccounts.map(\.address), file: file, line: line)
        XCTAssertEqual(restored.allAccounts.map(\.account), original.allAccounts.map(\.account), file: file, line: line)
        for (address, account) in original.allAccounts where restored.account(address) != account {
            return XCTFail("lookup of \(address) gives \(String(describing: restored.account(address))), not \(account)", file: file, line: line)
        }
    }

    func testRestoredImageHasTheRootComputedTheOldWayAndExecutesTheSame() throws {
        let (genesis, ledger) = Self.generatedLedger()
        XCTAssertGreaterThan(ledger.accountCount, 2 * Ledger.restoreSampledLeaves, "several leaves per sample")
        let fileSystem = SimulatedFileSystem()
        let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem)
        try snapshots.write(Snapshot(ledger: ledger, blockHash: SHA256.hash([3])))
        let (snapshot, restored) = try XCTUnwrap(snapshots.loadLatest(genesis: genesis))
        XCTAssertEqual(snapshot.formatVersion, Snapshot.version)
        assertSameLedger(restored, ledger)
        // The old restore (every account rehashed) agrees.
        assertSameLedger(try Ledger(genesis: genesis, height: ledger.height, accounts: ledger.allAccounts), ledger)
        XCTAssertNil(restored.account(Address(bytes: [UInt8](repeating: 0xEE, count: 20))!))

        // Blocks executed on the restored ledger give the same roots and accounts,
        // also after a second snapshot (sorted accounts merged with the new ones).
        var original = ledger, resumed = restored
        for round in 0..<2 {
            let block = Self.nextBlock(on: original, round: 100 + round)
            let expected = original.apply(block, proposer: 1)
            let execution = resumed.apply(block, proposer: 1)
            XCTAssertTrue(expected.allApplied)
            XCTAssertEqual(execution.stateRoot, expected.stateRoot)
            XCTAssertEqual(execution.results.count, expected.results.count)
            assertSameLedger(resumed, original)
            try snapshots.write(Snapshot(ledger: resumed, blockHash: SHA256.hash([UInt8(round)])))
            resumed = try XCTUnwrap(snapshots.loadLatest(genesis: genesis)).ledger
            assertSameLedger(resumed, original)
        }
    }

    func testGoldenBytes() throws {
        let leaf = [UInt8](repeating: 0x11, count: 32)
        let image = LedgerImage(
            addressBytes: [UInt8](repeating: 0xAB, count: 20), accounts: [Account(balance: 5, nonce: 3)], addressOrder: [0],
            treeLevels: [leaf])
        let snapshot = Snapshot(
            height: 16, stateRoot: Hash(bytes: [UInt8](repeating: 1, count: 32))!, blockHash: Hash(bytes: [UInt8](repeating: 2, count: 32))!,
            image: image)
        let bytes = snapshot.encode()
        let body = "54534e50" + "02000000" + "1000000000000000" + String(repeating: "01", count: 32)
            + String(repeating: "02", count: 32) + "0100000000000000" + String(repeating: "ab", count: 20)
            + "0500000000000000" + "0300000000000000" + "00000000" + String(repeating: "11", count: 32)
        XCTAssertEqual(Hex.encode(bytes.dropLast(4)), body)
        XCTAssertEqual(bytes.count, Snapshot.fileBytes(count: 1))
        XCTAssertEqual(Array(bytes.suffix(4)), withUnsafeBytes(of: CRC32C.checksum(Hex.decode(body)!).littleEndian, Array.init))
        guard case .success(let decoded) = Snapshot.decode(bytes) else { return XCTFail("does not decode") }
        XCTAssertEqual(decoded.height, 16)
        XCTAssertEqual(decoded.formatVersion, 2)
        XCTAssertEqual(decoded.accounts.map(\.address), [Address(bytes: [UInt8](repeating: 0xAB, count: 20))!])
        XCTAssertEqual(decoded.accounts.map(\.account), [Account(balance: 5, nonce: 3)])
    }

    /// The version-1 file a node of before this change left behind loads (slowly, the
    /// old way) and is rewritten as version 2 at the same height.
    func testVersion1SnapshotLoadsAndIsRewrittenInVersion2() throws {
        let (genesis, ledger) = Self.generatedLedger(extra: 50, blocks: 2)
        let fileSystem = SimulatedFileSystem()
        let capture = LogCapture()
        let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem, logger: capture.logger())
        let old = Snapshot(height: ledger.height, stateRoot: ledger.stateRoot, blockHash: SHA256.hash([9]), accounts: ledger.allAccounts)
        fileSystem.setContents(snapshots.path(height: ledger.height), old.encode())

        let (first, restored) = try XCTUnwrap(snapshots.loadLatest(genesis: genesis))
        XCTAssertEqual(first.formatVersion, 1)
        assertSameLedger(restored, ledger)
        let rewritten = try XCTUnwrap(fileSystem.contents(snapshots.path(height: ledger.height)))
        XCTAssertEqual(RecordFormat.readLittleEndian(UInt32.self, rewritten, 4), Snapshot.version)
        XCTAssertTrue(capture.lines.contains { $0.message.contains("rewrote a snapshot") }, "\(capture.lines)")
        let (second, again) = try XCTUnwrap(snapshots.loadLatest(genesis: genesis))
        XCTAssertEqual(second.formatVersion, Snapshot.version)
        XCTAssertEqual(second.blockHash, SHA256.hash([9]))
        assertSameLedger(again, ledger)
    }

    /// Offsets of the sections of a version-2 file of `count` accounts.
    static func orderOffset(count: Int) -> Int { Snapshot.fixedBytes + count * (Address.byteCount + 16) }
    static func treeOffset(count: Int) -> Int { orderOffset(count: count) + count * 4 }

    /// `bytes` changed by `change`, with the checksum made valid again: what only a
    /// writer bug (not disk damage) could leave.
    static func rechecksummed(_ bytes: [UInt8], _ change: (inout [UInt8]) -> Void) -> [UInt8] {
        var body = Array(bytes.dropLast(4))
        change(&body)
        RecordFormat.appendLittleEndian(CRC32C.checksum(body), to: &body)
        return body
    }

    /// A damaged version-2 snapshot is detected and skipped (the older one, or the
    /// blocks, are used): by its checksum, and with a valid checksum by the restore's
    /// checks of order and sampled tree nodes.
    func testDamagedImageIsDetectedAndNotTrusted() throws {
        let (genesis, ledger) = Self.generatedLedger()
        let count = ledger.accountCount
        let damages: [(String, String, ([UInt8]) -> [UInt8])] = [
            ("a flipped tree byte", "checksum mismatch", { bytes in
                var damaged = bytes
                damaged[Self.treeOffset(count: count) + 40] ^= 1
                return damaged
            }),
            ("a flipped balance byte", "checksum mismatch", { bytes in
                var damaged = bytes
                damaged[Snapshot.fixedBytes + count * Address.byteCount + 16 * 7] ^= 1
                return damaged
            }),
            ("a leaf that is not its account's hash", "leaf 0", { bytes in
                Self.rechecksummed(bytes) { $0[Self.treeOffset(count: count)] ^= 1 }
            }),
            ("an inner node on a sampled path", "is not the hash of its children", { bytes in
                // Level 1 starts after the leaves; node 0 is on leaf 0's path.
                Self.rechecksummed(bytes) { $0[Self.treeOffset(count: count) + count * 32] ^= 1 }
            }),
            ("two order entries swapped", "strictly increasing", { bytes in
                Self.rechecksummed(bytes) { body in
                    let offset = Self.orderOffset(count: count)
                    for byte in 0..<4 { body.swapAt(offset + byte, offset + 4 + byte) }
                }
            }),
            ("an address repeated", "strictly increasing", { bytes in
                Self.rechecksummed(bytes) { body in
                    let first = RecordFormat.readLittleEndian(UInt32.self, body, Self.orderOffset(count: count))
                    let second = RecordFormat.readLittleEndian(UInt32.self, body, Self.orderOffset(count: count) + 4)
                    for byte in 0..<20 {
                        body[Snapshot.fixedBytes + Int(second) * 20 + byte] = body[Snapshot.fixedBytes + Int(first) * 20 + byte]
                    }
                }
            }),
        ]
        for (what, reason, damage) in damages {
            let fileSystem = SimulatedFileSystem()
            let capture = LogCapture()
            let snapshots = try SnapshotStore(dataDirectory: "/n", fileSystem: fileSystem, logger: capture.logger())
            let base = Ledger(genesis: genesis)
            try snapshots.write(Snapshot(ledger: base, blockHash: genesis.hash))
            try snapshots.write(Snapshot(ledger: ledger, blockHash: SHA256.hash([3])))
            let path = snapshots.path(height: ledger.height)
            fileSystem.setContents(path, damage(try XCTUnwrap(fileSystem.contents(path))))

            let (snapshot, restored) = try XCTUnwrap(snapshots.loadLatest(genesis: genesis), what)
            XCTAssertEqual(snapshot.height, 0, "\(what): the damaged one is skipped")
            XCTAssertEqual(restored.stateRoot, base.stateRoot, what)
            XCTAssertTrue(capture.lines.contains {
                $0.level == .warning && "\($0.metadata["damage"] ?? "")".contains(reason)
            }, "\(what): \(capture.lines)")
        }
    }
}
