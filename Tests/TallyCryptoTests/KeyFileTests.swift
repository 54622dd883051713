import Foundation
@testable import TallyCrypto
import XCTest

final class KeyFileTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-keyfile-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func testSealOpenRoundTripThroughFile() throws {
        let key = SigningKey.generate()
        let file = try KeyFile.seal(key, passphrase: "correct horse", cost: .light)
        let path = directory.appendingPathComponent("k.json").path
        try file.write(path: path)
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let loaded = try KeyFile.load(path: path)
        XCTAssertEqual(loaded, file)
        XCTAssertEqual(try loaded.open(passphrase: "correct horse").publicKey, key.publicKey)
        XCTAssertEqual(loaded.address, Address(publicKey: key.publicKey).bech32m)
        // No temp files are left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["k.json"])
    }

    func testWrongPassphraseIsAClearError() throws {
        let file = try KeyFile.seal(SigningKey.generate(), passphrase: "right", cost: .light)
        XCTAssertThrowsError(try file.open(passphrase: "wrong")) { error in
            XCTAssertEqual(error as? KeyFile.Error, .wrongPassphrase)
        }
    }

    func testEditedHeaderFailsAuthentication() throws {
        let file = try KeyFile.seal(SigningKey.generate(), passphrase: "pw", cost: .light)
        var otherKey = file
        otherKey.publicKey = SigningKey.generate().publicKey.hex
        XCTAssertThrowsError(try otherKey.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .wrongPassphrase) }
        var otherCost = file
        otherCost.kdf.opslimit = String(UInt64(otherCost.kdf.opslimit)! + 1)
        XCTAssertThrowsError(try otherCost.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .wrongPassphrase) }
        var flipped = file
        var cipher = Hex.decode(flipped.ciphertext)!
        cipher[0] ^= 1
        flipped.ciphertext = Hex.encode(cipher)
        XCTAssertThrowsError(try flipped.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .wrongPassphrase) }
    }

    func testMalformedFilesAreRejectedByField() throws {
        let file = try KeyFile.seal(SigningKey.generate(), passphrase: "pw", cost: .light)
        var badSalt = file
        badSalt.kdf.salt = "00"
        XCTAssertThrowsError(try badSalt.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .malformed("kdf.salt")) }
        var hugeMemory = file
        hugeMemory.kdf.memlimit = String(UInt64(1) << 40)
        XCTAssertThrowsError(try hugeMemory.open(passphrase: "pw")) {
            XCTAssertEqual($0 as? KeyFile.Error, .kdfCostOutOfBounds(
                field: "kdf.memlimit", value: String(UInt64(1) << 40), minimum: 8192, maximum: 1 << 30))
        }
        var notANumber = file
        notANumber.kdf.opslimit = "-1"
        XCTAssertThrowsError(try notANumber.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .malformed("kdf.opslimit")) }
        var version = file
        version.version = 2
        XCTAssertThrowsError(try version.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .unsupported("version 2")) }
        XCTAssertThrowsError(try KeyFile.decode(Data("{}".utf8))) { error in
            guard case .malformed = error as? KeyFile.Error else { return XCTFail("\(error)") }
        }
    }

    /// Issue 14: a file asking for 64 passes over 4 GiB made an import reach 4.1 GB
    /// before anything was authenticated. It is now refused before Argon2 runs.
    func testCraftedKeyFileWithHugeKDFCostIsRefusedBeforeTheKDF() throws {
        var file = try KeyFile.seal(SigningKey.generate(), passphrase: "pw", cost: .light)
        file.kdf.opslimit = "64"
        file.kdf.memlimit = String(UInt64(4) << 30)
        let path = directory.appendingPathComponent("crafted.json").path
        try file.encoded().write(to: URL(fileURLWithPath: path))
        let loaded = try KeyFile.load(path: path)
        XCTAssertThrowsError(try loaded.open(passphrase: "pw")) { error in
            XCTAssertEqual(error as? KeyFile.Error, .kdfCostOutOfBounds(field: "kdf.opslimit", value: "64", minimum: 1, maximum: 10))
            XCTAssertTrue("\(error)".contains("refused before running Argon2"), "\(error)")
        }
        file.kdf.opslimit = "3"
        XCTAssertThrowsError(try file.open(passphrase: "pw")) { error in
            XCTAssertEqual(error as? KeyFile.Error, .kdfCostOutOfBounds(
                field: "kdf.memlimit", value: String(UInt64(4) << 30), minimum: 8192, maximum: 1 << 30))
        }
    }

    /// Cheap memory but 11 passes: past the 10-pass bound (the old bound, 64, let it
    /// reach the KDF and fail authentication as a "wrong passphrase").
    func testOpsLimitPastTenIsRefused() throws {
        var file = try KeyFile.seal(SigningKey.generate(), passphrase: "pw", cost: .light)
        file.kdf.opslimit = "11"
        XCTAssertThrowsError(try file.open(passphrase: "pw")) { error in
            XCTAssertEqual(error as? KeyFile.Error, .kdfCostOutOfBounds(field: "kdf.opslimit", value: "11", minimum: 1, maximum: 10))
        }
    }

    func testCostBoundsAreInclusiveAndHaveMinimums() throws {
        let ops = KeyFile.acceptedOpsLimit
        let memory = KeyFile.acceptedMemLimitBytes
        XCTAssertEqual(try KeyFile.checkedCost("10", field: "f", accepted: ops), 10)
        XCTAssertEqual(try KeyFile.checkedCost("1", field: "f", accepted: ops), 1)
        XCTAssertEqual(try KeyFile.checkedCost("1073741824", field: "f", accepted: memory), 1 << 30)
        XCTAssertEqual(try KeyFile.checkedCost("8192", field: "f", accepted: memory), 8192)
        for (text, range) in [("0", ops), ("1073741825", memory), ("8191", memory), ("99999999999999999999999999", ops)] {
            XCTAssertThrowsError(try KeyFile.checkedCost(text, field: "f", accepted: range)) { error in
                guard case .kdfCostOutOfBounds = error as? KeyFile.Error else { return XCTFail("\(text): \(error)") }
            }
        }
        for text in ["", "3 ", "+3", "0x10", "-1"] {
            XCTAssertThrowsError(try KeyFile.checkedCost(text, field: "f", accepted: ops)) { error in
                XCTAssertEqual(error as? KeyFile.Error, .malformed("f"), text)
            }
        }
        // What we write ourselves is always within what we accept.
        for cost in [KeyFile.Cost.moderate, .interactive, .light] {
            XCTAssertTrue(ops.contains(cost.opsLimit) && memory.contains(cost.memLimitBytes))
        }
    }

    /// A sparse file far bigger than any key file is refused after reading a bounded prefix.
    func testHugeSparseKeyFileIsRefusedWithoutReadingIt() throws {
        let path = directory.appendingPathComponent("sparse.json").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        try handle.truncate(atOffset: 16 << 30)
        try handle.close()
        XCTAssertThrowsError(try KeyFile.load(path: path)) { error in
            guard case .malformed(let why) = error as? KeyFile.Error else { return XCTFail("\(error)") }
            XCTAssertTrue(why.contains("over \(KeyFile.maxFileBytes) bytes"), why)
        }
    }

    func testDefaultCostIsModerate() throws {
        XCTAssertEqual(KeyFile.Cost.moderate.memLimitBytes, 256 << 20)
        XCTAssertEqual(KeyFile.Cost.moderate.opsLimit, 3)
    }

    func testAtomicWriteReplacesWholeFile() throws {
        let path = directory.appendingPathComponent("state").path
        try AtomicFile.write(Data(repeating: 1, count: 1000), to: path)
        try AtomicFile.write(Data([2, 3]), to: path, mode: 0o600)
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data([2, 3]))
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
    }
}
