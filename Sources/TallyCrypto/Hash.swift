import COpenSSL
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A 32-byte SHA-256 digest. Value type; compares and hashes by its bytes.
public struct Hash: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let byteCount = 32
    public static let zero = Hash(unchecked: [UInt8](repeating: 0, count: byteCount))

    public let bytes: [UInt8]

    /// Nil unless exactly 32 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == Hash.byteCount else { return nil }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) {
        precondition(bytes.count == Hash.byteCount, "a hash is 32 bytes")
        self.bytes = bytes
    }

    /// Nil unless 64 hex characters.
    public init?(hex: String) {
        guard let decoded = Hex.decode(hex) else { return nil }
        self.init(bytes: decoded)
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { hex }

    public static func < (lhs: Hash, rhs: Hash) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }

    /// Feeds the bytes to the hasher in one call (the derived conformance combines
    /// them one at a time); equal bytes still hash equally.
    public func hash(into hasher: inout Swift.Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }
}

/// SHA-256 through OpenSSL's EVP interface.
public enum SHA256 {
    /// SHA-256 fetched from OpenSSL's provider once. Passing `EVP_sha256()` makes
    /// every `EVP_DigestInit_ex` repeat an implicit fetch (a locked name lookup),
    /// which cost a third of our hashing time in `tally verify`'s profile. A fetched
    /// `EVP_MD` is immutable and safe to share between threads; it lives as long
    /// as the process.
    nonisolated(unsafe) static let algorithm: OpaquePointer = {
        guard let fetched = EVP_MD_fetch(nil, "SHA256", nil) else { fatalError("OpenSSL has no SHA256 implementation") }
        return fetched
    }()

    /// One-shot digest.
    public static func hash<Bytes: ByteContainer>(_ data: Bytes) -> Hash {
        data.withUnsafeBytes { hash($0) }
    }

    /// The common cases without a generic call across modules.
    public static func hash(_ data: [UInt8]) -> Hash { data.withUnsafeBytes { hash($0) } }
    public static func hash(_ data: ArraySlice<UInt8>) -> Hash { data.withUnsafeBytes { hash($0) } }

    public static func hash(_ data: UnsafeRawBufferPointer) -> Hash {
        withContext { context in
            update(context, data)
            return finish(context)
        }
    }

    /// Digest of several byte strings concatenated, without building the concatenation.
    public static func hash(parts: [[UInt8]]) -> Hash {
        withContext { context in
            for part in parts { part.withUnsafeBytes { update(context, $0) } }
            return finish(context)
        }
    }

    /// Digest of `first ‖ second`, without an array of parts.
    static func hash(_ first: [UInt8], _ second: [UInt8]) -> Hash {
        withContext { context in
            first.withUnsafeBytes { update(context, $0) }
            second.withUnsafeBytes { update(context, $0) }
            return finish(context)
        }
    }

    /// Digest of `prefix ‖ first ‖ second` (Merkle inner nodes and similar).
    static func hash(prefix: UInt8, _ first: [UInt8], _ second: [UInt8]) -> Hash {
        withContext { context in
            withUnsafeBytes(of: prefix) { update(context, $0) }
            first.withUnsafeBytes { update(context, $0) }
            second.withUnsafeBytes { update(context, $0) }
            return finish(context)
        }
    }

    /// One digest context per thread, reused by the one-shot functions above:
    /// allocating, initialising and freeing an `EVP_MD_CTX` for every digest cost
    /// more than hashing our short inputs (tally verify's profile). The context is
    /// taken out of the thread's slot while in use, so a nested digest (a
    /// `ByteContainer` that hashes inside `withUnsafeBytes`) gets its own.
    private static let contextKey: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { context in
            if let context { EVP_MD_CTX_free(OpaquePointer(context)) }
        }
        precondition(status == 0, "pthread_key_create failed")
        return key
    }()

    private static func withContext(_ body: (OpaquePointer) -> Hash) -> Hash {
        let key = contextKey
        let context: OpaquePointer
        if let cached = pthread_getspecific(key) {
            pthread_setspecific(key, nil)
            context = OpaquePointer(cached)
        } else {
            guard let fresh = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
            context = fresh
        }
        let ok = EVP_DigestInit_ex(context, SHA256.algorithm, nil)
        precondition(ok == 1, "EVP_DigestInit_ex(sha256) failed")
        let digest = body(context)
        if pthread_getspecific(key) == nil {
            pthread_setspecific(key, UnsafeRawPointer(context))
        } else {
            EVP_MD_CTX_free(context)
        }
        return digest
    }

    private static func update(_ context: OpaquePointer, _ data: UnsafeRawBufferPointer) {
        guard data.count > 0 else { return }
        let ok = EVP_DigestUpdate(context, data.baseAddress, data.count)
        precondition(ok == 1, "EVP_DigestUpdate failed")
    }

    private static func finish(_ context: OpaquePointer) -> Hash {
        var length: UInt32 = 0
        // Finalised on the stack, then copied into the hash's array in one call.
        var digest: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        let ok = withUnsafeMutableBytes(of: &digest) { raw in
            EVP_DigestFinal_ex(context, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
        }
        precondition(ok == 1 && length == 32, "EVP_DigestFinal_ex failed")
        return Hash(unchecked: withUnsafeBytes(of: digest) { Array($0) })
    }

    /// Streaming SHA-256. Owns an `EVP_MD_CTX`; not copyable, use once.
    public struct Hasher: ~Copyable {
        private let context: OpaquePointer

        public init() {
            guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
            let ok = EVP_DigestInit_ex(context, SHA256.algorithm, nil)
            precondition(ok == 1, "EVP_DigestInit_ex(sha256) failed")
            self.context = context
        }

        public mutating func update<Bytes: ByteContainer>(_ data: Bytes) {
            data.withUnsafeBytes { buffer in
                guard buffer.count > 0 else { return }
                let ok = EVP_DigestUpdate(context, buffer.baseAddress, buffer.count)
                precondition(ok == 1, "EVP_DigestUpdate failed")
            }
        }

        public consuming func finalize() -> Hash {
            var digest = [UInt8](repeating: 0, count: Hash.byteCount)
            var length: UInt32 = 0
            let ok = digest.withUnsafeMutableBufferPointer {
                EVP_DigestFinal_ex(context, $0.baseAddress, &length)
            }
            precondition(ok == 1 && length == 32, "EVP_DigestFinal_ex failed")
            return Hash(unchecked: digest)
        }

        deinit { EVP_MD_CTX_free(context) }
    }
}

/// Byte containers we hash and sign: `[UInt8]`, `ArraySlice<UInt8>`, and
/// unsafe buffers. A local protocol so TallyCrypto does not import Foundation.
public protocol ByteContainer {
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
}
extension Array: ByteContainer where Element == UInt8 {}
extension ArraySlice: ByteContainer where Element == UInt8 {}
extension UnsafeRawBufferPointer: ByteContainer {
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try body(self) }
}

extension ByteContainer {
    /// C APIs annotated nonnull still accept length 0; an empty Swift buffer has a nil
    /// base address, so substitute a valid pointer that is never read.
    func withNonNullBytes<R>(_ body: (UnsafePointer<UInt8>, Int) throws -> R) rethrows -> R {
        try withUnsafeBytes { raw in
            if let base = raw.bindMemory(to: UInt8.self).baseAddress, raw.count > 0 {
                return try body(base, raw.count)
            }
            var placeholder: UInt8 = 0
            return try withUnsafePointer(to: &placeholder) { try body($0, 0) }
        }
    }
}
