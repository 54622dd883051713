import Foundation
import TallyCrypto
import TallyNode
import XCTest

/// An unattended node's passphrase: an owner-only file, or an environment variable
/// that is gone once read.
final class PassphraseTests: XCTestCase {
    var directory: String!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("tally-pass-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    func file(_ text: String, mode: mode_t) throws -> String {
        let path = directory + "/validator.password"
        try AtomicFile.write(Data(text.utf8), to: path, mode: mode)
        return path
    }

    func testOwnerOnlyFileGivesItsFirstLine() throws {
        for mode: mode_t in [0o600, 0o400] {
            XCTAssertEqual(try NodeHome.readPassphrase(file: try file("correct horse\nsecond line\n", mode: mode)),
                           Array("correct horse".utf8), "mode \(String(mode, radix: 8))")
        }
        XCTAssertEqual(try NodeHome.readPassphrase(file: try file("no newline", mode: 0o600)), Array("no newline".utf8))
    }

    func testFileOthersCanReadIsRefusedNamingItsMode() throws {
        for mode: mode_t in [0o644, 0o640, 0o604, 0o620, 0o602] {
            let path = try file("secret\n", mode: mode)
            XCTAssertThrowsError(try NodeHome.readPassphrase(file: path)) { error in
                XCTAssertEqual(error as? NodeHome.PassphraseError, .tooOpen(path: path, mode: mode))
                XCTAssertTrue("\(error)".contains(path) && "\(error)".contains(String(mode, radix: 8)), "\(error)")
            }
        }
    }

    func testMissingAndOversizeFilesAreErrors() throws {
        XCTAssertThrowsError(try NodeHome.readPassphrase(file: directory + "/absent"))
        let path = try file(String(repeating: "a", count: NodeHome.maxPassphraseFileBytes + 1), mode: 0o600)
        XCTAssertThrowsError(try NodeHome.readPassphrase(file: path)) { error in
            XCTAssertEqual(error as? NodeHome.PassphraseError, .tooLarge(path: path))
        }
    }

    func testEnvironmentPassphraseIsRemovedOnceRead() throws {
        let name = "TALLY_NODE_PASSWORD_TEST_\(getpid())"
        setenv(name, "from the environment", 1)
        XCTAssertEqual(NodeHome.takePassphraseFromEnvironment(name), Array("from the environment".utf8))
        XCTAssertNil(getenv(name), "the variable must be unset once read")
        XCTAssertNil(ProcessInfo.processInfo.environment[name])
        XCTAssertNil(NodeHome.takePassphraseFromEnvironment(name))
    }

    func testKeyFileOpensFromPassphraseBytes() throws {
        let key = SigningKey.generate()
        let sealed = try KeyFile.seal(key, passphrase: Array("bytes".utf8), cost: .light)
        XCTAssertEqual(try sealed.open(passphrase: "bytes").publicKey, key.publicKey)
        var bytes = Array("bytes".utf8)
        XCTAssertEqual(try sealed.open(passphrase: bytes).publicKey, key.publicKey)
        KeyFile.zero(&bytes)
        XCTAssertEqual(bytes, [0, 0, 0, 0, 0])
    }
}
