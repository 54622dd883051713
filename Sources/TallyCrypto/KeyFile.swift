import CSodium
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// An encrypted Ed25519 key file (JSON):
///
/// ```json
/// { "version": 1, "public_key": "<hex>", "address": "tally1…",
///   "kdf": { "algorithm": "argon2id13", "opslimit": "3", "memlimit": "268435456", "salt": "<hex 16>" },
///   "cipher": { "algorithm": "xchacha20poly1305-ietf", "nonce": "<hex 24>" },
///   "ciphertext": "<hex: 32-byte seed + 16-byte tag>" }
/// ```
///
/// The passphrase is stretched with Argon2id (`crypto_pwhash`) into a 32-byte key
/// that seals the seed with XChaCha20-Poly1305. Everything but the ciphertext is
/// bound as associated data (`associatedData`), so editing the KDF parameters, the
/// salt or the public key makes decryption fail instead of yielding another key.
public struct KeyFile: Codable, Equatable, Sendable {
    public struct KDF: Codable, Equatable, Sendable {
        public var algorithm: String
        public var opslimit: String
        public var memlimit: String
        public var salt: String
    }

    public struct Cipher: Codable, Equatable, Sendable {
        public var algorithm: String
        public var nonce: String
    }

    /// Argon2id cost. The default is libsodium's MODERATE (3 passes, 256 MiB): a key
    /// file is unlocked once per command or node start, so ~0.5-1 s is acceptable and
    /// it makes offline guessing four times dearer in memory than INTERACTIVE.
    /// Tests use `.light`.
    public struct Cost: Equatable, Sendable {
        public var opsLimit: UInt64
        public var memLimitBytes: UInt64

        public static let moderate = Cost(
            opsLimit: UInt64(crypto_pwhash_OPSLIMIT_MODERATE), memLimitBytes: UInt64(crypto_pwhash_MEMLIMIT_MODERATE))
        public static let interactive = Cost(
            opsLimit: UInt64(crypto_pwhash_OPSLIMIT_INTERACTIVE), memLimitBytes: UInt64(crypto_pwhash_MEMLIMIT_INTERACTIVE))
        /// Minimum libsodium allows; for tests only.
        public static let light = Cost(
            opsLimit: UInt64(crypto_pwhash_OPSLIMIT_MIN), memLimitBytes: UInt64(crypto_pwhash_MEMLIMIT_MIN))
    }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible {
        case wrongPassphrase
        case malformed(String)
        case unsupported(String)
        /// The file asks for an Argon2 cost outside `acceptedOpsLimit` / `acceptedMemLimitBytes`;
        /// refused before the KDF runs (the parameters are only authenticated after it).
        case kdfCostOutOfBounds(field: String, value: String, minimum: UInt64, maximum: UInt64)
        case io(String)
        /// `create(path:)` found a file (or anything) under the name; it was left as it was.
        case exists(String)

        public var description: String {
            switch self {
            case .wrongPassphrase: return "wrong passphrase (or the key file was altered)"
            case .malformed(let field): return "malformed key file: \(field)"
            case .unsupported(let what): return "unsupported key file: \(what)"
            case .kdfCostOutOfBounds(let field, let value, let minimum, let maximum):
                return "key file asks for \(field) \(value), outside the accepted \(minimum)...\(maximum); "
                    + "refused before running Argon2 (re-encrypt the key with a standard cost)"
            case .io(let message): return "key file I/O failed: \(message)"
            case .exists(let path): return "\(path) already exists; it was not replaced"
            }
        }
    }

    static let kdfAlgorithm = "argon2id13"
    static let cipherAlgorithm = "xchacha20poly1305-ietf"
    /// Argon2 costs a file may ask for. A file's parameters are authenticated only
    /// after the KDF ran, so a hostile file could otherwise make us allocate 4 GiB and
    /// run 64 passes before anything is checked. The maximum is 4x MODERATE in memory
    /// (SENSITIVE's 1 GiB) and ~3x in passes; the minimum is libsodium's (used by tests).
    public static let acceptedOpsLimit: ClosedRange<UInt64> = UInt64(crypto_pwhash_OPSLIMIT_MIN)...10
    public static let acceptedMemLimitBytes: ClosedRange<UInt64> = UInt64(crypto_pwhash_MEMLIMIT_MIN)...(1 << 30)
    /// A key file is about 500 bytes; reading stops past this many.
    public static let maxFileBytes = 64 * 1024

    public var version: Int
    public var publicKey: String
    public var address: String
    public var kdf: KDF
    public var cipher: Cipher
    public var ciphertext: String

    enum CodingKeys: String, CodingKey {
        case version, address, kdf, cipher, ciphertext
        case publicKey = "public_key"
    }

    /// Encrypts `key`'s seed under `passphrase`.
    public static func seal(_ key: SigningKey, passphrase: String, cost: Cost = .moderate) throws(Error) -> KeyFile {
        var bytes = Array(passphrase.utf8)
        defer { zero(&bytes) }
        return try seal(key, passphrase: bytes, cost: cost)
    }

    /// Encrypts `key`'s seed under `passphrase` (UTF-8 bytes; the caller zeroes them).
    public static func seal(_ key: SigningKey, passphrase: [UInt8], cost: Cost = .moderate) throws(Error) -> KeyFile {
        precondition(acceptedOpsLimit.contains(cost.opsLimit) && acceptedMemLimitBytes.contains(cost.memLimitBytes),
                     "sealing with a cost no key file may ask for")
        Sodium.ready()
        let salt = SecureRandom.bytes(Int(crypto_pwhash_SALTBYTES))
        let nonce = SecureRandom.bytes(Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES))
        var file = KeyFile(
            version: 1, publicKey: key.publicKey.hex, address: Address(publicKey: key.publicKey).bech32m,
            kdf: KDF(algorithm: kdfAlgorithm, opslimit: String(cost.opsLimit), memlimit: String(cost.memLimitBytes),
                     salt: Hex.encode(salt)),
            cipher: Cipher(algorithm: cipherAlgorithm, nonce: Hex.encode(nonce)),
            ciphertext: "")
        let secretKey = try deriveKey(passphrase: passphrase, salt: salt, cost: cost)
        let seed = key.seed
        var sealed = [UInt8](repeating: 0, count: seed.count + Int(crypto_aead_xchacha20poly1305_ietf_ABYTES))
        var sealedLength: UInt64 = 0
        let additional = file.associatedData
        let result = seed.withUnsafeBytes { message in
            secretKey.withUnsafeBytes { keyBytes in
                crypto_aead_xchacha20poly1305_ietf_encrypt(
                    &sealed, &sealedLength, message.bindMemory(to: UInt8.self).baseAddress!, UInt64(message.count),
                    additional, UInt64(additional.count), nil, nonce, keyBytes.bindMemory(to: UInt8.self).baseAddress!)
            }
        }
        precondition(result == 0 && Int(sealedLength) == sealed.count, "XChaCha20-Poly1305 encryption failed")
        file.ciphertext = Hex.encode(sealed)
        return file
    }

    /// Decrypts the seed. A wrong passphrase or any edit to the file gives
    /// `.wrongPassphrase`, never another key.
    public func open(passphrase: String) throws(Error) -> SigningKey {
        var bytes = Array(passphrase.utf8)
        defer { KeyFile.zero(&bytes) }
        return try open(passphrase: bytes)
    }

    /// As `open(passphrase:)`, from the passphrase's UTF-8 bytes: a caller that never
    /// makes a `String` of it can zero every copy (`KeyFile.zero`).
    public func open(passphrase: [UInt8]) throws(Error) -> SigningKey {
        guard version == 1 else { throw .unsupported("version \(version)") }
        guard kdf.algorithm == KeyFile.kdfAlgorithm else { throw .unsupported("kdf \(kdf.algorithm)") }
        guard cipher.algorithm == KeyFile.cipherAlgorithm else { throw .unsupported("cipher \(cipher.algorithm)") }
        let ops = try KeyFile.checkedCost(kdf.opslimit, field: "kdf.opslimit", accepted: KeyFile.acceptedOpsLimit)
        let mem = try KeyFile.checkedCost(kdf.memlimit, field: "kdf.memlimit", accepted: KeyFile.acceptedMemLimitBytes)
        guard let salt = Hex.decode(kdf.salt), salt.count == Int(crypto_pwhash_SALTBYTES) else { throw .malformed("kdf.salt") }
        guard let nonce = Hex.decode(cipher.nonce), nonce.count == Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
        else { throw .malformed("cipher.nonce") }
        let tagBytes = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)
        guard let sealed = Hex.decode(ciphertext), sealed.count == SigningKey.seedByteCount + tagBytes
        else { throw .malformed("ciphertext") }
        guard let expectedPublicKey = PublicKey(hex: publicKey) else { throw .malformed("public_key") }

        let secretKey = try KeyFile.deriveKey(passphrase: passphrase, salt: salt, cost: Cost(opsLimit: ops, memLimitBytes: mem))
        var seed = [UInt8](repeating: 0, count: SigningKey.seedByteCount)
        defer { seed.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) } }
        var seedLength: UInt64 = 0
        let additional = associatedData
        let result = secretKey.withUnsafeBytes { keyBytes in
            crypto_aead_xchacha20poly1305_ietf_decrypt(
                &seed, &seedLength, nil, sealed, UInt64(sealed.count), additional, UInt64(additional.count),
                nonce, keyBytes.bindMemory(to: UInt8.self).baseAddress!)
        }
        guard result == 0, Int(seedLength) == SigningKey.seedByteCount else { throw .wrongPassphrase }
        let key = SigningKey(seed: seed)!
        // The public key is authenticated as associated data; this only guards against
        // a bug on our side.
        precondition(key.publicKey == expectedPublicKey, "authenticated key file decrypted to another key")
        return key
    }

    /// Parses a cost field; one out of `accepted` is refused (it could be any size).
    static func checkedCost(_ text: String, field: String, accepted: ClosedRange<UInt64>) throws(Error) -> UInt64 {
        guard text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }), !text.isEmpty else {
            throw .malformed(field)
        }
        guard let value = UInt64(text), accepted.contains(value) else {
            let shown = text.count <= 24 ? text : String(text.prefix(24)) + "..."
            throw .kdfCostOutOfBounds(field: field, value: shown, minimum: accepted.lowerBound, maximum: accepted.upperBound)
        }
        return value
    }

    /// Everything in the file except the ciphertext, in a fixed order.
    var associatedData: [UInt8] {
        Array("tally-keyfile|\(version)|\(publicKey)|\(address)|\(kdf.algorithm)|\(kdf.opslimit)|\(kdf.memlimit)|\(kdf.salt)|\(cipher.algorithm)|\(cipher.nonce)".utf8)
    }

    /// Overwrites a secret's bytes with zeros (`sodium_memzero`: not optimised away).
    public static func zero(_ bytes: inout [UInt8]) {
        bytes.withUnsafeMutableBytes { if let base = $0.baseAddress { sodium_memzero(base, $0.count) } }
    }

    static func deriveKey(passphrase: [UInt8], salt: [UInt8], cost: Cost) throws(Error) -> SecretBytes {
        var key = [UInt8](repeating: 0, count: Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES))
        let result = crypto_pwhash(
            &key, UInt64(key.count), passphrase, UInt64(passphrase.count), salt,
            cost.opsLimit, Int(cost.memLimitBytes), crypto_pwhash_ALG_ARGON2ID13)
        guard result == 0 else { throw .io("crypto_pwhash could not allocate \(cost.memLimitBytes) bytes") }
        let secret = SecretBytes(key)
        key.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) }
        return secret
    }

    // MARK: Files

    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try! encoder.encode(self)
    }

    public static func decode(_ data: Data) throws(Error) -> KeyFile {
        do { return try JSONDecoder().decode(KeyFile.self, from: data) } catch {
            throw .malformed("not a Tally key file (\(error))")
        }
    }

    public static func load(path: String) throws(Error) -> KeyFile {
        try decode(readFile(path: path))
    }

    /// Reads at most `maxFileBytes` (+1 to tell a too-big file): a huge or sparse file
    /// given as a key file costs no allocation of its size.
    public static func readFile(path: String) throws(Error) -> Data {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw .io("cannot read \(path)") }
        defer { try? handle.close() }
        let data: Data
        do { data = try handle.read(upToCount: maxFileBytes + 1) ?? Data() } catch { throw .io("cannot read \(path): \(error)") }
        guard data.count <= maxFileBytes else { throw .malformed("not a Tally key file (over \(maxFileBytes) bytes)") }
        return data
    }

    /// Writes the file atomically with mode 0600 (see `AtomicFile`), replacing any file
    /// at `path`. For a name that must not be taken already, use `create(path:)`.
    public func write(path: String) throws(Error) {
        do { try AtomicFile.write(encoded(), to: path, mode: 0o600) } catch { throw .io("\(error)") }
    }

    /// Writes the file under `path` only if nothing has that name, atomically, mode 0600:
    /// the whole file is written and fsynced under a unique temporary name, then
    /// link(2)ed into place, which fails with EEXIST if the name is taken, even by a
    /// file that appeared a moment ago (two `keys new` racing for one name). So the
    /// final name never shows a partly written file, and an existing key is never replaced.
    public func create(path: String) throws(Error) {
        let temporary = "\(path).tmp-\(getpid())-\(Hex.encode(SecureRandom.bytes(8)))"
        let fd = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw .io("create \(temporary): \(String(cString: strerror(errno)))") }
        defer { unlink(temporary) }
        do {
            defer { close(fd) }
            // open() applies the umask; fchmod makes the mode exactly 0600.
            guard fchmod(fd, 0o600) == 0 else { throw KeyFile.Error.io("chmod \(temporary): \(String(cString: strerror(errno)))") }
            try KeyFile.writeAll(encoded(), to: fd, path: temporary)
            guard fsync(fd) == 0 else { throw KeyFile.Error.io("fsync \(temporary): \(String(cString: strerror(errno)))") }
        }
        guard link(temporary, path) == 0 else {
            let code = errno
            if code == EEXIST { throw .exists(path) }
            throw .io("link \(path): \(String(cString: strerror(code)))")
        }
        unlink(temporary)
        let directory = (path as NSString).deletingLastPathComponent
        do { try AtomicFile.syncDirectory(directory.isEmpty ? "." : directory) } catch { throw .io("\(error)") }
    }

    private static func writeAll(_ data: Data, to fd: Int32, path: String) throws(Error) {
        var failure: Int32 = 0
        data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                offset += written
            }
        }
        guard failure == 0 else { throw .io("write \(path): \(String(cString: strerror(failure)))") }
    }
}
