/// An account address: the first 20 bytes of
/// `SHA-256("tally/address/v1" ‖ public key)`, written as bech32m with the prefix
/// `tally` (e.g. `tally1…`), so a mistyped address fails its checksum.
public struct Address: Hashable, Sendable, Comparable, CustomStringConvertible {
    public static let byteCount = 20
    public static let humanReadablePrefix = "tally"
    static let domainTag = Array("tally/address/v1".utf8)

    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == Address.byteCount else { return nil }
        self.bytes = bytes
    }

    public init(publicKey: PublicKey) {
        let digest = SHA256.hash(Address.domainTag, publicKey.bytes)
        bytes = Array(digest.bytes.prefix(Address.byteCount))
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case encoding(Bech32m.DecodeError)
        case wrongPrefix(String)
        case wrongLength(Int)

        public var description: String {
            switch self {
            case .encoding(let error): return "address \(error)"
            case .wrongPrefix(let prefix): return "address prefix is '\(prefix)', expected '\(Address.humanReadablePrefix)'"
            case .wrongLength(let count): return "address holds \(count) bytes, expected \(Address.byteCount)"
            }
        }
    }

    /// Parses `tally1…`; every failure says why.
    public init(bech32m text: String) throws(ParseError) {
        let decoded: (prefix: String, values: [UInt8])
        do { decoded = try Bech32m.decode(text) } catch { throw .encoding(error) }
        guard decoded.prefix == Address.humanReadablePrefix else { throw .wrongPrefix(decoded.prefix) }
        guard let raw = Bech32m.convertBits(decoded.values, from: 5, to: 8, pad: false) else {
            throw .encoding(.invalidPadding)
        }
        guard raw.count == Address.byteCount else { throw .wrongLength(raw.count) }
        bytes = raw
    }

    public var bech32m: String {
        Bech32m.encode(
            prefix: Address.humanReadablePrefix,
            values: Bech32m.convertBits(bytes, from: 8, to: 5, pad: true)!)
    }

    public var description: String { bech32m }

    /// Hashes the 20 bytes in one call and compares them as words: the derived
    /// conformances go byte by byte, and the ledger keys its dictionaries by address.
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public static func == (lhs: Address, rhs: Address) -> Bool {
        lhs.bytes.withUnsafeBytes { left in
            rhs.bytes.withUnsafeBytes { right in
                guard left.count == Address.byteCount && right.count == Address.byteCount else {
                    return left.elementsEqual(right)
                }
                return left.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == right.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
                    && left.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == right.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
                    && left.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == right.loadUnaligned(fromByteOffset: 16, as: UInt32.self)
            }
        }
    }

    public static func < (lhs: Address, rhs: Address) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}
