import TallyCrypto

/// Tally's canonical binary encoding.
///
/// - integers: fixed width, little-endian (`u8`, `u16`, `u32`, `u64`);
/// - variable bytes: a `u32` length, then the bytes; lists: a `u32` count, then items;
/// - fixed-size values (hashes, keys, signatures, addresses): raw bytes, no prefix;
/// - every signed or hashed structure starts with a domain tag (a length-prefixed
///   ASCII string such as `tally/tx/v1`) so bytes signed for one purpose can never be
///   replayed as another. Two hashes outside this encoder take their tag raw, without
///   a length: `tally/address/v1` (`Address`) and `tally/state-root/v1` (`StateTree`);
///   docs/SPEC.md lists which is which.
///
/// Decoding is strict: it rejects truncated input, lengths over the caller's bound,
/// and trailing bytes, so every accepted value re-encodes to exactly its input.
public struct CanonicalEncoder {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ value: UInt8) { bytes.append(value) }
    public mutating func u16(_ value: UInt16) { appendLittleEndian(value) }
    public mutating func u32(_ value: UInt32) { appendLittleEndian(value) }
    public mutating func u64(_ value: UInt64) { appendLittleEndian(value) }
    public mutating func bool(_ value: Bool) { bytes.append(value ? 1 : 0) }

    /// Raw bytes with no length: only for fixed-size fields.
    public mutating func fixed(_ value: [UInt8]) { bytes.append(contentsOf: value) }

    public mutating func variable(_ value: [UInt8]) {
        precondition(value.count <= UInt32.max)
        u32(UInt32(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func string(_ value: String) { variable(Array(value.utf8)) }

    public mutating func tag(_ domain: DomainTag) { string(domain.rawValue) }

    public mutating func count(_ value: Int) {
        precondition(value >= 0 && value <= UInt32.max)
        u32(UInt32(value))
    }

    private mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
}

public enum CanonicalDecodingError: Error, Equatable, CustomStringConvertible {
    case truncated(field: String)
    case tooLong(field: String, length: Int, max: Int)
    case trailingBytes(count: Int)
    case wrongTag(expected: String)
    case invalid(field: String, reason: String)

    public var description: String {
        switch self {
        case .truncated(let field): return "truncated at \(field)"
        case .tooLong(let field, let length, let max): return "\(field) has length \(length), over the limit \(max)"
        case .trailingBytes(let count): return "\(count) trailing bytes after the value"
        case .wrongTag(let expected): return "wrong domain tag, expected \(expected)"
        case .invalid(let field, let reason): return "invalid \(field): \(reason)"
        }
    }
}

public struct CanonicalDecoder {
    private let bytes: [UInt8]
    public private(set) var offset: Int

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        offset = 0
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func u8(_ field: String) throws(CanonicalDecodingError) -> UInt8 { try integer(field) }
    public mutating func u16(_ field: String) throws(CanonicalDecodingError) -> UInt16 { try integer(field) }
    public mutating func u32(_ field: String) throws(CanonicalDecodingError) -> UInt32 { try integer(field) }
    public mutating func u64(_ field: String) throws(CanonicalDecodingError) -> UInt64 { try integer(field) }

    public mutating func bool(_ field: String) throws(CanonicalDecodingError) -> Bool {
        switch try u8(field) {
        case 0: return false
        case 1: return true
        default: throw .invalid(field: field, reason: "boolean must be 0 or 1")
        }
    }

    public mutating func fixed(_ count: Int, _ field: String) throws(CanonicalDecodingError) -> [UInt8] {
        guard remaining >= count else { throw .truncated(field: field) }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    public mutating func variable(max: Int, _ field: String) throws(CanonicalDecodingError) -> [UInt8] {
        let length = Int(try u32(field + ".length"))
        guard length <= max else { throw .tooLong(field: field, length: length, max: max) }
        return try fixed(length, field)
    }

    public mutating func string(max: Int, _ field: String) throws(CanonicalDecodingError) -> String {
        // Same checks and errors as `variable(max:_:)`, validated from the input
        // without an intermediate array.
        let length = Int(try u32(field + ".length"))
        guard length <= max else { throw .tooLong(field: field, length: length, max: max) }
        guard remaining >= length else { throw .truncated(field: field) }
        guard let text = String(validating: bytes[offset..<offset + length], as: UTF8.self) else {
            throw .invalid(field: field, reason: "not UTF-8")
        }
        offset += length
        return text
    }

    /// A list count, bounded by `max` and by what the remaining bytes could hold
    /// (`minItemBytes` each), so a forged count cannot make us reserve gigabytes.
    public mutating func count(max: Int, minItemBytes: Int, _ field: String) throws(CanonicalDecodingError) -> Int {
        let value = Int(try u32(field + ".count"))
        guard value <= max else { throw .tooLong(field: field, length: value, max: max) }
        guard value * Swift.max(minItemBytes, 1) <= remaining else { throw .truncated(field: field) }
        return value
    }

    public mutating func tag(_ expected: DomainTag) throws(CanonicalDecodingError) {
        // Same checks and errors as `variable(max: 64, "tag")`, compared in place
        // (a tag opens every decoded value, so no copy of it is made).
        let length = Int(try u32("tag.length"))
        guard length <= 64 else { throw .tooLong(field: "tag", length: length, max: 64) }
        guard remaining >= length else { throw .truncated(field: "tag") }
        var expectedText = expected.rawValue
        let matches = expectedText.withUTF8 { utf8 in
            utf8.count == length && bytes[offset..<offset + length].elementsEqual(utf8)
        }
        guard matches else { throw .wrongTag(expected: expected.rawValue) }
        offset += length
    }

    public mutating func hash(_ field: String) throws(CanonicalDecodingError) -> Hash {
        Hash(bytes: try fixed(Hash.byteCount, field))!
    }

    public mutating func publicKey(_ field: String) throws(CanonicalDecodingError) -> PublicKey {
        PublicKey(bytes: try fixed(PublicKey.byteCount, field))!
    }

    public mutating func signature(_ field: String) throws(CanonicalDecodingError) -> Signature {
        Signature(bytes: try fixed(Signature.byteCount, field))!
    }

    public mutating func address(_ field: String) throws(CanonicalDecodingError) -> Address {
        Address(bytes: try fixed(Address.byteCount, field))!
    }

    /// Call after the last field: canonical input has nothing left over.
    public func finish() throws(CanonicalDecodingError) {
        guard remaining == 0 else { throw .trailingBytes(count: remaining) }
    }

    private mutating func integer<T: FixedWidthInteger>(_ field: String) throws(CanonicalDecodingError) -> T {
        let size = MemoryLayout<T>.size
        guard remaining >= size else { throw .truncated(field: field) }
        var value: T = 0
        for index in 0..<size { value |= T(bytes[offset + index]) << (8 * index) }
        offset += size
        return value
    }
}

/// A type with one canonical byte form.
public protocol CanonicalEncodable {
    func encode(to encoder: inout CanonicalEncoder)
}

public protocol CanonicalDecodable {
    /// Reads one value; the caller checks for trailing bytes.
    static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> Self
}

public typealias CanonicalCodable = CanonicalEncodable & CanonicalDecodable

extension CanonicalEncodable {
    public var canonicalBytes: [UInt8] {
        var encoder = CanonicalEncoder()
        encode(to: &encoder)
        return encoder.bytes
    }
}

extension CanonicalDecodable {
    /// Decodes a whole buffer: trailing bytes are an error.
    public init(canonicalBytes bytes: [UInt8]) throws(CanonicalDecodingError) {
        var decoder = CanonicalDecoder(bytes)
        self = try Self.decode(from: &decoder)
        try decoder.finish()
    }
}

/// Every domain tag in one place, so two purposes can never share one by accident.
public enum DomainTag: String, CaseIterable, Sendable {
    case transaction = "tally/tx/v1"
    /// v2 commits to the genesis hash (v1 signed only the chain id string).
    case transactionSigning = "tally/tx-sign/v2"
    case blockHeader = "tally/block-header/v1"
    case block = "tally/block/v1"
    case prepareVote = "tally/prepare/v1"
    case commitVote = "tally/commit/v1"
    case commitCertificate = "tally/commit-cert/v1"
    case genesis = "tally/genesis/v1"
    case peerHello = "tally/p2p-hello/v1"
    case peerTranscript = "tally/p2p-transcript/v1"
    case peerAuthentication = "tally/p2p-auth/v1"
    case peerRejection = "tally/p2p-reject/v1"
    // Consensus (TallyConsensus): signing bytes, then carried/stored forms.
    case prePrepare = "tally/pre-prepare/v1"
    case checkpoint = "tally/checkpoint/v1"
    case viewChange = "tally/view-change/v1"
    case newView = "tally/new-view/v1"
    case consensusMessage = "tally/consensus-message/v1"
    case consensusDurableState = "tally/consensus-durable/v1"
    /// `DurableState` with prepared blocks stored apart, by hash (`DurableState.compactBytes`).
    case consensusDurableStateCompact = "tally/consensus-durable/v2"
}

/// Chain ids compare as bytes, everywhere. Swift's `==` on strings is canonical
/// equivalence, under which "tally-K" and "tally-\u{212A}" (KELVIN SIGN) are equal while
/// their UTF-8 — what signatures cover — differs: a transaction signed for one chain
/// would pass another's check.
public enum ChainID {
    public static func same(_ first: String, _ second: String) -> Bool { first.utf8.elementsEqual(second.utf8) }
}
