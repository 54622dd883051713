import CSodium

/// libsodium must be initialised once before use; `sodium_init` is thread-safe
/// and idempotent, so every entry point calls `Sodium.ready()`.
enum Sodium {
    private static let initialised: Bool = sodium_init() >= 0

    static func ready() {
        precondition(initialised, "sodium_init failed: libsodium cannot be used")
    }
}

/// Cryptographically secure random bytes from libsodium (`randombytes_buf`).
public enum SecureRandom {
    public static func bytes(_ count: Int) -> [UInt8] {
        Sodium.ready()
        var out = [UInt8](repeating: 0, count: count)
        if count > 0 { out.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, $0.count) } }
        return out
    }
}

/// Secret bytes that are zeroed with `sodium_memzero` when the last copy is dropped.
/// A class so the bytes live in exactly one heap buffer we can wipe.
public final class SecretBytes: @unchecked Sendable {
    private var storage: [UInt8]

    public init(_ bytes: [UInt8]) { storage = bytes }

    public var count: Int { storage.count }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try storage.withUnsafeBytes(body)
    }

    /// A copy the caller must not keep longer than needed (e.g. to encrypt a key file).
    public func copyBytes() -> [UInt8] { storage }

    deinit {
        if !storage.isEmpty { storage.withUnsafeMutableBytes { sodium_memzero($0.baseAddress!, $0.count) } }
    }
}
