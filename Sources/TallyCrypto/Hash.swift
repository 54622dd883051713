import COpenSSL

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
        var hasher = Hasher()
        hasher.update(data)
        return hasher.finalize()
    }

    /// Digest of several byte strings concatenated, without building the concatenation.
    public static func hash(parts: [[UInt8]]) -> Hash {
        var hasher = Hasher()
        for part in parts { hasher.update(part) }
        return hasher.finalize()
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
