import Foundation
import TallyCrypto
import XCTest
@testable import TallyWallet

final class KeysTests: XCTestCase {
    func testNewListShowExportDelete() async throws {
        let wallet = WalletHarness()
        let password = wallet.file("pw", "correct horse\n")
        let created = await wallet.run(["keys", "new", "alice", "--password-file", password, "--json"])
        XCTAssertEqual(created.exitCode, 0, created.stderr)
        let address = try XCTUnwrap(created.json["address"] as? String)
        let publicKey = try XCTUnwrap(created.json["public_key"] as? String)
        XCTAssertEqual(Address(publicKey: PublicKey(hex: publicKey)!).bech32m, address)

        let keyPath = wallet.home + "/keys/alice.json"
        let fileMode = try FileManager.default.attributesOfItem(atPath: keyPath)[.posixPermissions] as? Int
        let directoryMode = try FileManager.default.attributesOfItem(atPath: wallet.home + "/keys")[.posixPermissions] as? Int
        XCTAssertEqual(fileMode, 0o600)
        XCTAssertEqual(directoryMode, 0o700)
        XCTAssertEqual(try KeyFile.load(path: keyPath).kdf.opslimit, String(KeyFile.Cost.light.opsLimit))

        let shown = await wallet.run(["keys", "show", "alice", "--json"])
        XCTAssertEqual(shown.json["address"] as? String, address)
        XCTAssertEqual(shown.json["public_key"] as? String, publicKey)
        let human = await wallet.run(["keys", "show", "alice"])
        XCTAssertTrue(human.stdout.contains("address:    \(address)"), human.stdout)

        _ = await wallet.run(["keys", "new", "bob", "--password-file", password])
        _ = wallet.file("keys/broken.json", "{not a key file")
        let listed = await wallet.run(["keys", "list", "--json"])
        let names = (listed.json["keys"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
        XCTAssertEqual(names, ["alice", "bob"])
        XCTAssertTrue(listed.stderr.contains("warning: skipped") && listed.stderr.contains("broken.json"), listed.stderr)
        try FileManager.default.removeItem(atPath: wallet.home + "/keys/broken.json")

        let exported = await wallet.run(["keys", "export", "alice"])
        XCTAssertEqual(try KeyFile.decode(Data(exported.stdout.utf8)), try KeyFile.load(path: keyPath))
        XCTAssertFalse(exported.stdout.contains("seed"))

        let wrong = await wallet.run(["keys", "export", "alice", "--unsafe-seed", "--password-file", wallet.file("bad", "nope")])
        XCTAssertEqual(wrong.exitCode, 6)
        XCTAssertTrue(wrong.stderr.contains("wrong passphrase"), wrong.stderr)
        let seed = await wallet.run(["keys", "export", "alice", "--unsafe-seed", "--password-file", password, "--json"])
        let seedBytes = try XCTUnwrap(Hex.decode(seed.json["seed"] as? String ?? ""))
        XCTAssertEqual(SigningKey(seed: seedBytes)?.publicKey.hex, publicKey)

        let declined = await wallet.run(["keys", "delete", "alice"], input: ScriptedInput(lines: ["bob"]))
        XCTAssertEqual(declined.exitCode, 6)
        XCTAssertTrue(FileManager.default.fileExists(atPath: keyPath))
        let confirmed = await wallet.run(["keys", "delete", "alice"], input: ScriptedInput(lines: ["alice"]))
        XCTAssertEqual(confirmed.exitCode, 0, confirmed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: keyPath))
        let forced = await wallet.run(["keys", "delete", "bob", "--yes", "--json"])
        XCTAssertEqual(forced.json["deleted"] as? Bool, true)
        let empty = await wallet.run(["keys", "list", "--json"])
        XCTAssertEqual((empty.json["keys"] as? [Any])?.count, 0)
    }

    func testKeyErrorsAndBadNames() async throws {
        let wallet = WalletHarness()
        let password = wallet.file("pw", "pw")
        do { let outcome = await wallet.run(["keys", "new", "carol", "--password-file", password]); XCTAssertEqual(outcome.exitCode, 0, outcome.stderr) }
        let before = try Data(contentsOf: URL(fileURLWithPath: wallet.home + "/keys/carol.json"))
        let again = await wallet.run(["keys", "new", "carol", "--password-file", password, "--json"])
        XCTAssertEqual(again.exitCode, 6)
        XCTAssertEqual(again.errorJSON["exit_code"] as? String, "6")
        XCTAssertTrue(again.stderr.contains("already exists"))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: wallet.home + "/keys/carol.json")), before)

        let unknown = await wallet.run(["keys", "show", "dave"])
        XCTAssertEqual(unknown.exitCode, 6)
        XCTAssertTrue(unknown.stderr.contains("no key named 'dave'"), unknown.stderr)
        for bad in ["../etc", "a b", String(repeating: "x", count: 65), "é"] {
            let outcome = await wallet.run(["keys", "new", bad, "--password-file", password])
            XCTAssertEqual(outcome.exitCode, 64, bad)
        }
        let missing = await wallet.run(["keys", "new", "erin", "--password-file", wallet.home + "/nonexistent"])
        XCTAssertEqual(missing.exitCode, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/keys/erin.json"))
    }

    func testPassphraseSources() async throws {
        let wallet = WalletHarness()
        // Terminal: asked twice without echo; a mismatch writes nothing.
        let mismatch = ScriptedInput(terminal: true, secrets: ["one", "two"])
        let refused = await wallet.run(["keys", "new", "t1"], input: mismatch)
        XCTAssertEqual(refused.exitCode, 6)
        XCTAssertEqual(mismatch.prompts.count, 2)
        XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/keys/t1.json"))
        let terminal = ScriptedInput(terminal: true, secrets: ["same", "same"])
        do { let outcome = await wallet.run(["keys", "new", "t1"], input: terminal); XCTAssertEqual(outcome.exitCode, 0, outcome.stderr) }
        XCTAssertEqual(terminal.prompts, ["New passphrase for key 't1': ", "Repeat the passphrase: "])
        XCTAssertNoThrow(try KeyFile.load(path: wallet.home + "/keys/t1.json").open(passphrase: "same"))

        // Not a terminal: one line of stdin.
        do { let outcome = await wallet.run(["keys", "new", "t2"], input: ScriptedInput(lines: ["piped"])); XCTAssertEqual(outcome.exitCode, 0, outcome.stderr) }
        XCTAssertNoThrow(try KeyFile.load(path: wallet.home + "/keys/t2.json").open(passphrase: "piped"))
        do { let outcome = await wallet.run(["keys", "new", "t3"], input: ScriptedInput(lines: [])); XCTAssertEqual(outcome.exitCode, 2, outcome.stderr) }
        do { let outcome = await wallet.run(["keys", "new", "t3"], input: ScriptedInput(lines: [""])); XCTAssertEqual(outcome.exitCode, 6, outcome.stderr) }

        // $TALLY_PASSWORD comes before stdin; --password-file before both.
        let fromEnvironment = await wallet.run(["keys", "new", "t4"], input: ScriptedInput(lines: ["stdin"]),
                                              environment: ["TALLY_PASSWORD": "env"])
        XCTAssertEqual(fromEnvironment.exitCode, 0)
        XCTAssertNoThrow(try KeyFile.load(path: wallet.home + "/keys/t4.json").open(passphrase: "env"))
        let file = wallet.file("pw", "file\r\nsecond line")
        do { let outcome = await wallet.run(["keys", "new", "t5", "--password-file", file], environment: ["TALLY_PASSWORD": "env"]); XCTAssertEqual(outcome.exitCode, 0, outcome.stderr) }
        XCTAssertNoThrow(try KeyFile.load(path: wallet.home + "/keys/t5.json").open(passphrase: "file"))
    }

    func testImportKeyFileAndSeed() async throws {
        let wallet = WalletHarness()
        let faucet = SigningKey(seed: SHA256.hash(Array("import".utf8)).bytes)!
        let faucetFile = try KeyFile.seal(faucet, passphrase: "faucet pw", cost: .light)
        let faucetPath = wallet.home + "/faucet.key"
        try faucetFile.write(path: faucetPath)
        let faucetAddress = Address(publicKey: faucet.publicKey).bech32m

        let wrong = await wallet.run(["keys", "import", "faucet", "--file", faucetPath, "--password-file", wallet.file("bad", "bad")])
        XCTAssertEqual(wrong.exitCode, 6)
        XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/keys/faucet.json"))
        let imported = await wallet.run(["keys", "import", "faucet", "--file", faucetPath, "--password-file", wallet.file("pw", "faucet pw\n"), "--json"])
        XCTAssertEqual(imported.exitCode, 0, imported.stderr)
        XCTAssertEqual(imported.json["address"] as? String, faucetAddress)
        XCTAssertEqual(try KeyFile.load(path: wallet.home + "/keys/faucet.json"), faucetFile, "kept as is")

        let seedHex = Hex.encode(SHA256.hash(Array("seed".utf8)).bytes)
        let expected = Address(publicKey: SigningKey(seed: Hex.decode(seedHex)!)!.publicKey).bech32m
        let piped = await wallet.run(["keys", "import", "s1", "--seed-hex", "--json"], input: ScriptedInput(lines: [seedHex, "new pw"]))
        XCTAssertEqual(piped.json["address"] as? String, expected, piped.stderr)
        XCTAssertNoThrow(try KeyFile.load(path: wallet.home + "/keys/s1.json").open(passphrase: "new pw"))
        let prompted = ScriptedInput(terminal: true, secrets: [seedHex.uppercased(), "p", "p"])
        do { let outcome = await wallet.run(["keys", "import", "s2", "--seed-hex"], input: prompted); XCTAssertEqual(outcome.exitCode, 0, outcome.stderr) }
        XCTAssertEqual(prompted.prompts.first, "Seed (64 hex characters): ")
        let fromFile = await wallet.run(["keys", "import", "s3", "--seed-file", wallet.file("seed", seedHex + "\n"),
                                         "--password-file", wallet.file("pw3", "x"), "--json"])
        XCTAssertEqual(fromFile.json["address"] as? String, expected)
        let shortSeed = await wallet.run(["keys", "import", "s4", "--seed-hex"], input: ScriptedInput(lines: ["abcd", "x"]))
        XCTAssertEqual(shortSeed.exitCode, 2)
        do { let outcome = await wallet.run(["keys", "import", "s5", "--file", faucetPath, "--seed-hex"]); XCTAssertEqual(outcome.exitCode, 64, outcome.stderr) }
        do { let outcome = await wallet.run(["keys", "import", "s5"]); XCTAssertEqual(outcome.exitCode, 64, outcome.stderr) }
    }

    /// Issue 14: two `keys new NAME` at once could overwrite a key. A key file that
    /// appears between the "exists" check and the write is not replaced.
    func testKeyAppearingAfterTheCheckIsNotReplaced() throws {
        let wallet = WalletHarness()
        var store = KeyStore(home: wallet.home)
        let first = try KeyFile.seal(SigningKey.generate(), passphrase: "first", cost: .light)
        let second = try KeyFile.seal(SigningKey.generate(), passphrase: "second", cost: .light)
        let path = store.path("alice")
        store.beforeCreate = { try! first.write(path: path) }
        XCTAssertThrowsError(try store.add("alice", second)) { error in
            XCTAssertEqual((error as? WalletError)?.exitCode, .keyError)
            XCTAssertTrue("\(error)".contains("already exists"), "\(error)")
        }
        XCTAssertEqual(try KeyFile.load(path: path), first)
        XCTAssertNoThrow(try KeyFile.load(path: path).open(passphrase: "first"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: store.directory), ["alice.json"], "no temp file left")
    }

    func testCreateNeverReplacesAndLeavesNoPartialFile() throws {
        let wallet = WalletHarness()
        let path = wallet.home + "/k.json"
        let first = try KeyFile.seal(SigningKey.generate(), passphrase: "a", cost: .light)
        try first.create(path: path)
        XCTAssertEqual((try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        let second = try KeyFile.seal(SigningKey.generate(), passphrase: "b", cost: .light)
        XCTAssertThrowsError(try second.create(path: path)) { XCTAssertEqual($0 as? KeyFile.Error, .exists(path)) }
        XCTAssertEqual(try KeyFile.load(path: path), first)
        // A dangling symlink under the name counts as taken too (link(2) does not follow it).
        let link = wallet.home + "/l.json"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: wallet.home + "/elsewhere.json")
        XCTAssertThrowsError(try second.create(path: link)) { XCTAssertEqual($0 as? KeyFile.Error, .exists(link)) }
        XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/elsewhere.json"))
        let names = try FileManager.default.contentsOfDirectory(atPath: wallet.home).sorted()
        XCTAssertEqual(names, ["k.json", "l.json"], "no temp files left")
    }

    /// Many creates of one name at once: exactly one wins and its key is the one on disk.
    func testConcurrentCreatesOfOneNameHaveOneWinner() throws {
        let wallet = WalletHarness()
        let home = wallet.home
        let store = KeyStore(home: home)
        try store.prepareDirectory()
        let files = try (0..<8).map { try KeyFile.seal(SigningKey.generate(), passphrase: "p\($0)", cost: .light) }
        let winners = Winners()
        DispatchQueue.concurrentPerform(iterations: files.count) { index in
            if (try? KeyStore(home: home).add("race", files[index])) != nil { winners.add(index) }
        }
        XCTAssertEqual(winners.all.count, 1)
        XCTAssertEqual(try KeyFile.load(path: store.path("race")), files[try XCTUnwrap(winners.all.first)])
    }
}

private final class Winners: @unchecked Sendable {
    private let lock = NSLock()
    private var indices: [Int] = []
    func add(_ index: Int) { lock.withLock { indices.append(index) } }
    var all: [Int] { lock.withLock { indices } }
}
