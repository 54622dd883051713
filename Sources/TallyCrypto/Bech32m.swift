/// Bech32m (BIP-350) encoding: a human-readable prefix, the separator `1`, 5-bit
/// data and a 6-character checksum that catches any mistyped character.
public enum Bech32m {
    public enum DecodeError: Error, Equatable, CustomStringConvertible {
        case mixedCase, invalidLength, invalidCharacter, noSeparator, emptyPrefix
        case badChecksum, invalidPadding

        public var description: String {
            switch self {
            case .mixedCase: return "mixes upper and lower case"
            case .invalidLength: return "has an invalid length"
            case .invalidCharacter: return "contains a character that is not bech32"
            case .noSeparator: return "has no '1' separator"
            case .emptyPrefix: return "has an empty human-readable prefix"
            case .badChecksum: return "has a bad checksum (mistyped?)"
            case .invalidPadding: return "has invalid padding bits"
            }
        }
    }

    static let charset = Array("qpzry9x8gf2tvdw0s3jn54khce6mua7l".utf8)
    static let checksumConstant: UInt32 = 0x2bc8_30a3
    /// BIP-173's limit; our addresses are far shorter.
    static let maxLength = 90

    private static let reverseCharset: [Int8] = {
        var table = [Int8](repeating: -1, count: 128)
        for (index, char) in charset.enumerated() { table[Int(char)] = Int8(index) }
        return table
    }()

    static func polymod(_ values: [UInt8]) -> UInt32 {
        let generator: [UInt32] = [0x3b6a_57b2, 0x2650_8e6d, 0x1ea1_19fa, 0x3d42_33dd, 0x2a14_62b3]
        var checksum: UInt32 = 1
        for value in values {
            let top = checksum >> 25
            checksum = (checksum & 0x1ff_ffff) << 5 ^ UInt32(value)
            for bit in 0..<5 where (top >> UInt32(bit)) & 1 == 1 {
                checksum ^= generator[bit]
            }
        }
        return checksum
    }

    static func expand(_ prefix: [UInt8]) -> [UInt8] {
        prefix.map { $0 >> 5 } + [0] + prefix.map { $0 & 31 }
    }

    /// Encodes 5-bit values (each < 32) under a lowercase prefix.
    public static func encode(prefix: String, values: [UInt8]) -> String {
        let hrp = Array(prefix.lowercased().utf8)
        let polymodValue = polymod(expand(hrp) + values + [0, 0, 0, 0, 0, 0]) ^ checksumConstant
        let checksum = (0..<6).map { UInt8((polymodValue >> UInt32(5 * (5 - $0))) & 31) }
        let body = (values + checksum).map { charset[Int($0)] }
        return String(decoding: hrp + [UInt8(ascii: "1")] + body, as: UTF8.self)
    }

    /// Decodes a bech32m string into its lowercase prefix and 5-bit values.
    public static func decode(_ text: String) throws(DecodeError) -> (prefix: String, values: [UInt8]) {
        let bytes = Array(text.utf8)
        guard bytes.count <= maxLength else { throw .invalidLength }
        guard bytes.allSatisfy({ $0 >= 33 && $0 <= 126 }) else { throw .invalidCharacter }
        let hasLower = bytes.contains { $0 >= UInt8(ascii: "a") && $0 <= UInt8(ascii: "z") }
        let hasUpper = bytes.contains { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") }
        guard !(hasLower && hasUpper) else { throw .mixedCase }
        let lower = bytes.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
        guard let separator = lower.lastIndex(of: UInt8(ascii: "1")) else { throw .noSeparator }
        guard separator >= 1 else { throw .emptyPrefix }
        guard lower.count - separator - 1 >= 6 else { throw .invalidLength }
        let hrp = Array(lower[..<separator])
        var values: [UInt8] = []
        for char in lower[(separator + 1)...] {
            let value = reverseCharset[Int(char)]
            guard value >= 0 else { throw .invalidCharacter }
            values.append(UInt8(value))
        }
        guard polymod(expand(hrp) + values) == checksumConstant else { throw .badChecksum }
        return (String(decoding: hrp, as: UTF8.self), Array(values.dropLast(6)))
    }

    /// Regroups bits (8 → 5 to encode, 5 → 8 to decode), as BIP-173's `convertbits`.
    public static func convertBits(_ data: [UInt8], from: Int, to: Int, pad: Bool) -> [UInt8]? {
        var accumulator = 0
        var bits = 0
        var out: [UInt8] = []
        let maxValue = (1 << to) - 1
        for value in data {
            guard Int(value) >> from == 0 else { return nil }
            accumulator = (accumulator << from) | Int(value)
            bits += from
            while bits >= to {
                bits -= to
                out.append(UInt8((accumulator >> bits) & maxValue))
            }
        }
        if pad {
            if bits > 0 { out.append(UInt8((accumulator << (to - bits)) & maxValue)) }
        } else if bits >= from || (accumulator << (to - bits)) & maxValue != 0 {
            return nil
        }
        return out
    }
}
