import CSodium

/// An Ed25519 public key (32 bytes). Verification goes through libsodium only,
/// so every validator accepts exactly the same signatures (see DESIGN.md "One verifier").
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public let bytes: [UInt8]

    /// Nil unless exactly 32 bytes (checked before libsodium ever sees it).
    public init?(bytes: [UInt8]) {
        guard bytes.count == PublicKey.byteCount else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let decoded = Hex.decode(hex) else { return nil }
        self.init(bytes: decoded)
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }

    /// True only for a valid signature by this key over `message`.
    /// Signature length is checked by `Signature`'s initialiser; libsodium then
    /// rejects non-canonical S, small-order A and R, and non-canonical encodings.
    public func isValidSignature<Message: ByteContainer>(_ signature: Signature, for message: Message) -> Bool {
        Sodium.ready()
        return message.withNonNullBytes { msg, length in
            crypto_sign_verify_detached(signature.bytes, msg, UInt64(length), bytes) == 0
        }
    }

    /// Convenience for raw bytes: false when the signature is not exactly 64 bytes.
    public func isValidSignature<Message: ByteContainer>(bytes signatureBytes: [UInt8], for message: Message) -> Bool {
        guard let signature = Signature(bytes: signatureBytes) else { return false }
        return isValidSignature(signature, for: message)
    }
}

/// An Ed25519 signature (64 bytes).
public struct Signature: Hashable, Sendable {
    public static let byteCount = 64
    public static let zero = Signature(unchecked: [UInt8](repeating: 0, count: byteCount))
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Signature.byteCount else { return nil }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) {
        precondition(bytes.count == Signature.byteCount)
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let decoded = Hex.decode(hex) else { return nil }
        self.init(bytes: decoded)
    }

    public var hex: String { Hex.encode(bytes) }
}

/// An Ed25519 signing key held as libsodium's 64-byte secret key (seed ‖ public key),
/// zeroed when dropped.
public struct SigningKey: Sendable {
    public static let seedByteCount = 32

    private let secret: SecretBytes
    public let publicKey: PublicKey

    /// Derives the key pair from a 32-byte seed (RFC 8032 "secret key").
    public init?(seed: [UInt8]) {
        guard seed.count == SigningKey.seedByteCount else { return nil }
        Sodium.ready()
        var publicBytes = [UInt8](repeating: 0, count: Int(crypto_sign_PUBLICKEYBYTES))
        var secretBytes = [UInt8](repeating: 0, count: Int(crypto_sign_SECRETKEYBYTES))
        let result = crypto_sign_seed_keypair(&publicBytes, &secretBytes, seed)
        precondition(result == 0, "crypto_sign_seed_keypair failed")
        secret = SecretBytes(secretBytes)
        secretBytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) }
        publicKey = PublicKey(bytes: publicBytes)!
    }

    /// A fresh key from libsodium's CSPRNG.
    public static func generate() -> SigningKey {
        let seed = SecretBytes(SecureRandom.bytes(seedByteCount))
        return SigningKey(seed: seed.copyBytes())!
    }

    /// The 32-byte seed (first half of libsodium's secret key), for key files.
    public var seed: SecretBytes {
        SecretBytes(secret.withUnsafeBytes { Array($0.prefix(SigningKey.seedByteCount)) })
    }

    public func sign<Message: ByteContainer>(_ message: Message) -> Signature {
        Sodium.ready()
        var signature = [UInt8](repeating: 0, count: Signature.byteCount)
        let result = secret.withUnsafeBytes { sk in
            message.withNonNullBytes { msg, length in
                crypto_sign_detached(&signature, nil, msg, UInt64(length), sk.bindMemory(to: UInt8.self).baseAddress!)
            }
        }
        precondition(result == 0, "crypto_sign_detached failed")
        return Signature(unchecked: signature)
    }
}
