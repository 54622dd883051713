import CSodium

/// An ephemeral X25519 key pair for libsodium's `crypto_kx` key exchange, used once
/// per peer connection and then dropped (its secret half is zeroed with it).
public struct KeyExchangeKeyPair: Sendable {
    public static let publicKeyByteCount = Int(crypto_kx_PUBLICKEYBYTES)
    public static let seedByteCount = Int(crypto_kx_SEEDBYTES)

    public let publicKey: [UInt8]
    private let secretKey: SecretBytes

    /// A fresh key pair from libsodium's CSPRNG.
    public static func generate() -> KeyExchangeKeyPair {
        Sodium.ready()
        var publicBytes = [UInt8](repeating: 0, count: publicKeyByteCount)
        var secretBytes = [UInt8](repeating: 0, count: Int(crypto_kx_SECRETKEYBYTES))
        let result = crypto_kx_keypair(&publicBytes, &secretBytes)
        precondition(result == 0, "crypto_kx_keypair failed")
        defer { secretBytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) } }
        return KeyExchangeKeyPair(publicKey: publicBytes, secretKey: SecretBytes(secretBytes))
    }

    /// A deterministic key pair from a 32-byte seed: for golden-byte tests only;
    /// real connections use `generate()`.
    public init?(seed: [UInt8]) {
        guard seed.count == KeyExchangeKeyPair.seedByteCount else { return nil }
        Sodium.ready()
        var publicBytes = [UInt8](repeating: 0, count: KeyExchangeKeyPair.publicKeyByteCount)
        var secretBytes = [UInt8](repeating: 0, count: Int(crypto_kx_SECRETKEYBYTES))
        let result = crypto_kx_seed_keypair(&publicBytes, &secretBytes, seed)
        precondition(result == 0, "crypto_kx_seed_keypair failed")
        defer { secretBytes.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) } }
        self.init(publicKey: publicBytes, secretKey: SecretBytes(secretBytes))
    }

    private init(publicKey: [UInt8], secretKey: SecretBytes) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// Which side of the exchange this key pair is: `crypto_kx` gives the client's
    /// transmit key to the server's receive key and vice versa.
    public enum Role: Sendable {
        case client
        case server
    }

    /// The two 32-byte session keys (`receive`, `transmit`) shared with the holder of
    /// `peerPublicKey`. Nil when the peer key is malformed or of small order (libsodium
    /// refuses an all-zero shared secret), which a caller treats as a failed handshake.
    public func sessionKeys(role: Role, peerPublicKey: [UInt8]) -> (receive: SecretBytes, transmit: SecretBytes)? {
        guard peerPublicKey.count == KeyExchangeKeyPair.publicKeyByteCount else { return nil }
        Sodium.ready()
        var receive = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        var transmit = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        defer {
            receive.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) }
            transmit.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) }
        }
        let result = secretKey.withUnsafeBytes { secret -> Int32 in
            let sk = secret.bindMemory(to: UInt8.self).baseAddress!
            switch role {
            case .client: return crypto_kx_client_session_keys(&receive, &transmit, publicKey, sk, peerPublicKey)
            case .server: return crypto_kx_server_session_keys(&receive, &transmit, publicKey, sk, peerPublicKey)
            }
        }
        guard result == 0 else { return nil }
        return (SecretBytes(receive), SecretBytes(transmit))
    }
}
