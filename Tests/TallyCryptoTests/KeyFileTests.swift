import Foundation
import TallyCrypto
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
        XCTAssertThrowsError(try hugeMemory.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .malformed("kdf.memlimit")) }
        var version = file
        version.version = 2
        XCTAssertThrowsError(try version.open(passphrase: "pw")) { XCTAssertEqual($0 as? KeyFile.Error, .unsupported("version 2")) }
        XCTAssertThrowsError(try KeyFile.decode(Data("{}".utf8))) { error in
            guard case .malformed = error as? KeyFile.Error else { return XCTFail("\(error)") }
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
