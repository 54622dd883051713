import Foundation
import TallyCrypto

/// The key files of a wallet: `$TALLY_HOME/keys/NAME.json` (default `~/.tally`),
/// each a TallyCrypto `KeyFile` written atomically with mode 0600, in a 0700
/// directory. Names are 1-64 characters from [A-Za-z0-9_-].
struct KeyStore {
    static let maxNameLength = 64
    static let directoryMode: mode_t = 0o700
    /// A key file is about 500 bytes; anything far bigger is not one.
    static let maxKeyFileBytes = KeyFile.maxFileBytes

    let directory: String

    init(home: String) {
        directory = (home as NSString).appendingPathComponent("keys")
    }

    static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= maxNameLength
            && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_" || $0 == "-") }
    }

    static func checkName(_ name: String) throws(WalletError) {
        guard isValidName(name) else {
            throw .usage("key name '\(name)' is invalid: use 1-\(maxNameLength) characters from A-Z a-z 0-9 _ -")
        }
    }

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent("\(name).json") }

    func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: path(name)) }

    func load(_ name: String) throws(WalletError) -> KeyFile {
        guard exists(name) else { throw .key("no key named '\(name)' in \(directory) (see `tally keys list`)") }
        return try KeyStore.loadFile(path(name))
    }

    /// Reads any key file, e.g. one given with `--key-file` or `keys import --file`;
    /// the address it states must be the one its public key gives.
    static func loadFile(_ path: String) throws(WalletError) -> KeyFile {
        guard let data = BoundedRead.contents(of: path, maxBytes: maxKeyFileBytes) else {
            throw .input("cannot read the key file \(path)")
        }
        guard data.count <= maxKeyFileBytes else { throw .input("\(path) is not a key file (over \(maxKeyFileBytes) bytes)") }
        let file: KeyFile
        do { file = try KeyFile.decode(data) } catch { throw .input("\(path): \(error)") }
        guard let publicKey = PublicKey(hex: file.publicKey) else { throw .input("\(path): malformed public_key") }
        guard Address(publicKey: publicKey).bech32m == file.address else {
            throw .input("\(path): its address does not belong to its public key")
        }
        return file
    }

    /// Opens a key file with a passphrase; a wrong one is a key error.
    static func unlock(_ file: KeyFile, passphrase: String, label: String) throws(WalletError) -> SigningKey {
        do { return try file.open(passphrase: passphrase) } catch {
            switch error {
            case .wrongPassphrase: throw .key("wrong passphrase for key \(label)")
            default: throw .input("key \(label): \(error)")
            }
        }
    }

    /// Called between the early "exists" check and the write; tests put a file there
    /// to show the write itself refuses to replace one.
    var beforeCreate: () -> Void = {}

    /// Writes a new key file; never replaces one, even one that appears after the
    /// early check (two `keys new NAME` at once): `KeyFile.create` links it into place.
    func add(_ name: String, _ file: KeyFile) throws(WalletError) {
        try prepareDirectory()
        let taken = WalletError.key("a key named '\(name)' already exists; delete it first or choose another name")
        guard !exists(name) else { throw taken }
        beforeCreate()
        do { try file.create(path: path(name)) } catch {
            if case .exists = error { throw taken }
            throw .input("cannot write \(path(name)): \(error)")
        }
    }

    func delete(_ name: String) throws(WalletError) {
        do { try FileManager.default.removeItem(atPath: path(name)) } catch {
            throw .input("cannot delete \(path(name)): \(error.localizedDescription)")
        }
        try? AtomicFile.syncDirectory(directory)
    }

    /// Names and files, sorted by name; unreadable files are reported, not fatal.
    func list() -> (keys: [(name: String, file: KeyFile)], problems: [String]) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return ([], []) }
        var keys: [(String, KeyFile)] = []
        var problems: [String] = []
        for entry in entries.sorted() where entry.hasSuffix(".json") {
            let name = String(entry.dropLast(".json".count))
            guard KeyStore.isValidName(name) else { continue }
            do { keys.append((name, try KeyStore.loadFile(path(name)))) } catch { problems.append(error.message) }
        }
        return (keys, problems)
    }

    /// Creates `home/keys` with mode 0700 (and tightens it if it is looser).
    func prepareDirectory() throws(WalletError) {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true,
                attributes: [.posixPermissions: Int(KeyStore.directoryMode)])
        } catch { throw .input("cannot create \(directory): \(error.localizedDescription)") }
        var info = stat()
        if stat(directory, &info) == 0, info.st_mode & 0o077 != 0 { chmod(directory, KeyStore.directoryMode) }
    }
}
