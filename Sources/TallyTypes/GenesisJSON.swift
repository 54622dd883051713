import Foundation

/// The strict reading of a genesis file that runs before `JSONDecoder` does: the
/// genesis hash depends on every value, so text that two readers could take
/// differently is refused rather than guessed at. Foundation's decoder alone takes
/// `50.0` and `5e1` as the integer 50, keeps the first of two equal keys, ignores
/// unknown keys (a mistyped `min_fee` would silently become the default) and maps
/// `null` to "absent". The grammar accepted (docs/SPEC.md, "Genesis JSON"):
/// - RFC 8259 JSON in UTF-8, without a byte-order mark, one object at the top;
/// - within each object no key twice (compared after unescaping) and only the keys
///   of the genesis format (`allowedKeys`);
/// - every number a whole decimal literal without sign, fraction or exponent
///   (`0` or `[1-9][0-9]*`); no `null`;
/// - nesting at most `maxDepth` deep.
enum GenesisJSON {
    /// The format nests three deep (top object, `validators`/`accounts`, their entries).
    static let maxDepth = 3

    /// Keys allowed at a path shape (array indices written `[]`); nil: not an object.
    static func allowedKeys(_ shape: String) -> Set<String>? {
        switch shape {
        case "": ["chain_id", "genesis_time", "comment", "validators", "accounts", "consensus"]
        case "validators[]": ["name", "public_key", "address"]
        case "accounts[]": ["address", "balance"]
        case "consensus": Set(ConsensusParameters.CodingKeys.allCases.map(\.stringValue))
        default: nil
        }
    }

    static func check(_ data: Data) throws(Genesis.Error) {
        var scanner = Scanner(bytes: Array(data))
        try scanner.document()
    }

    struct Scanner {
        let bytes: [UInt8]
        var offset = 0
        /// Field names from the top, for error messages ("accounts[3].balance").
        var path: [String] = []
        var shape: [String] = []

        init(bytes: [UInt8]) { self.bytes = bytes }

        var field: String {
            path.reduce("") { text, part in part.hasPrefix("[") || text.isEmpty ? text + part : text + "." + part }
        }

        func notJSON(_ reason: String) -> Genesis.Error { .unreadable("not valid JSON: \(reason) at byte \(offset)") }
        func refused(_ reason: String) -> Genesis.Error { .malformed(field: field.isEmpty ? "(top level)" : field, reason: reason) }

        mutating func document() throws(Genesis.Error) {
            guard Self.isUTF8(bytes) else { throw .unreadable("not valid JSON: not UTF-8") }
            guard !bytes.starts(with: [0xEF, 0xBB, 0xBF]) else { throw .unreadable("not valid JSON: starts with a byte-order mark") }
            skipWhitespace()
            guard peek == UInt8(ascii: "{") else { throw notJSON("expected an object") }
            try value(depth: 1)
            skipWhitespace()
            guard offset == bytes.count else { throw notJSON("trailing characters") }
        }

        /// Validated in place: a genesis file may be large, and a `String` of it would be a second copy.
        static func isUTF8(_ bytes: [UInt8]) -> Bool {
            var iterator = bytes.makeIterator()
            var parser = Unicode.UTF8.ForwardParser()
            while true {
                switch parser.parseScalar(from: &iterator) {
                case .valid: continue
                case .emptyInput: return true
                case .error: return false
                }
            }
        }

        var peek: UInt8? { offset < bytes.count ? bytes[offset] : nil }

        mutating func skipWhitespace() {
            while let byte = peek, byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D { offset += 1 }
        }

        mutating func expect(_ character: Unicode.Scalar) throws(Genesis.Error) {
            skipWhitespace()
            guard peek == UInt8(ascii: character) else { throw notJSON("expected '\(character)'") }
            offset += 1
        }

        mutating func value(depth: Int) throws(Genesis.Error) {
            skipWhitespace()
            guard let byte = peek else { throw notJSON("unexpected end") }
            switch byte {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                guard depth <= GenesisJSON.maxDepth else { throw refused("nested deeper than the genesis format") }
                if byte == UInt8(ascii: "{") { try object(depth: depth) } else { try array(depth: depth) }
            case UInt8(ascii: "\""): _ = try string()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"):
                try literal("null")
                throw refused("is null (leave an optional field out instead)")
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try number()
            default: throw notJSON("unexpected character")
            }
        }

        mutating func object(depth: Int) throws(Genesis.Error) {
            let allowed = GenesisJSON.allowedKeys(shape.joined(separator: "."))
            offset += 1
            var seen = Set<[UInt8]>()
            skipWhitespace()
            if peek == UInt8(ascii: "}") {
                offset += 1
                return
            }
            while true {
                skipWhitespace()
                guard peek == UInt8(ascii: "\"") else { throw notJSON("expected a key") }
                let key = try string()
                let name = String(decoding: key, as: UTF8.self)
                path.append(name)
                shape.append(name)
                guard seen.insert(key).inserted else { throw refused("duplicate key") }
                guard let allowed, allowed.contains(name) else { throw refused("unknown key") }
                try expect(":")
                try value(depth: depth + 1)
                path.removeLast()
                shape.removeLast()
                skipWhitespace()
                guard let next = peek else { throw notJSON("unexpected end") }
                offset += 1
                if next == UInt8(ascii: "}") { return }
                guard next == UInt8(ascii: ",") else { throw notJSON("expected ',' or '}'") }
            }
        }

        mutating func array(depth: Int) throws(Genesis.Error) {
            offset += 1
            skipWhitespace()
            if peek == UInt8(ascii: "]") {
                offset += 1
                return
            }
            var index = 0
            while true {
                path.append("[\(index)]")
                if let last = shape.popLast() { shape.append(last + "[]") }
                try value(depth: depth + 1)
                path.removeLast()
                if let last = shape.popLast() { shape.append(String(last.dropLast(2))) }
                index += 1
                skipWhitespace()
                guard let next = peek else { throw notJSON("unexpected end") }
                offset += 1
                if next == UInt8(ascii: "]") { return }
                guard next == UInt8(ascii: ",") else { throw notJSON("expected ',' or ']'") }
            }
        }

        mutating func literal(_ word: String) throws(Genesis.Error) {
            let expected = Array(word.utf8)
            guard bytes.count - offset >= expected.count, Array(bytes[offset..<offset + expected.count]) == expected else {
                throw notJSON("unexpected character")
            }
            offset += expected.count
        }

        /// RFC 8259's number grammar; of it only whole literals without a sign are taken.
        mutating func number() throws(Genesis.Error) {
            let start = offset
            func digits() -> Int {
                let from = offset
                while let byte = peek, byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") { offset += 1 }
                return offset - from
            }
            if peek == UInt8(ascii: "-") { offset += 1 }
            let integerStart = offset
            let integerDigits = digits()
            guard integerDigits >= 1 else { throw notJSON("malformed number") }
            guard bytes[integerStart] != UInt8(ascii: "0") || integerDigits == 1 else { throw notJSON("number with a leading zero") }
            var whole = bytes[start] != UInt8(ascii: "-")
            if peek == UInt8(ascii: ".") {
                offset += 1
                guard digits() >= 1 else { throw notJSON("malformed number") }
                whole = false
            }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                offset += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { offset += 1 }
                guard digits() >= 1 else { throw notJSON("malformed number") }
                whole = false
            }
            guard whole else { throw refused("expected a whole number without sign, fraction or exponent") }
        }

        /// A string's value as UTF-8 bytes, escapes resolved.
        mutating func string() throws(Genesis.Error) -> [UInt8] {
            offset += 1
            var value: [UInt8] = []
            while true {
                guard let byte = peek else { throw notJSON("unterminated string") }
                offset += 1
                switch byte {
                case UInt8(ascii: "\""): return value
                case 0x00..<0x20: throw notJSON("control character in a string")
                case UInt8(ascii: "\\"): try escape(into: &value)
                default: value.append(byte)
                }
            }
        }

        mutating func escape(into value: inout [UInt8]) throws(Genesis.Error) {
            guard let byte = peek else { throw notJSON("unterminated string") }
            offset += 1
            let simple: [UInt8: UInt8] = [
                UInt8(ascii: "\""): 0x22, UInt8(ascii: "\\"): 0x5C, UInt8(ascii: "/"): 0x2F, UInt8(ascii: "b"): 0x08,
                UInt8(ascii: "f"): 0x0C, UInt8(ascii: "n"): 0x0A, UInt8(ascii: "r"): 0x0D, UInt8(ascii: "t"): 0x09,
            ]
            if let replacement = simple[byte] {
                value.append(replacement)
                return
            }
            guard byte == UInt8(ascii: "u") else { throw notJSON("unknown escape") }
            var scalar = try hex4()
            if (0xD800...0xDBFF).contains(scalar) {
                guard bytes.count - offset >= 2, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u") else {
                    throw notJSON("unpaired surrogate escape")
                }
                offset += 2
                let low = try hex4()
                guard (0xDC00...0xDFFF).contains(low) else { throw notJSON("unpaired surrogate escape") }
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if (0xDC00...0xDFFF).contains(scalar) {
                throw notJSON("unpaired surrogate escape")
            }
            value.append(contentsOf: Array(String(Character(Unicode.Scalar(scalar)!)).utf8))
        }

        mutating func hex4() throws(Genesis.Error) -> UInt32 {
            guard bytes.count - offset >= 4 else { throw notJSON("short \\u escape") }
            var result: UInt32 = 0
            for _ in 0..<4 {
                guard let digit = Character(Unicode.Scalar(bytes[offset])).hexDigitValue else { throw notJSON("bad \\u escape") }
                result = result << 4 | UInt32(digit)
                offset += 1
            }
            return result
        }
    }
}

// MARK: Exact values

extension Genesis {
    /// A balance: a decimal string of digits only, no sign, no leading zero (but "0"
    /// itself), at most `UInt64.max`. Swift's `UInt64(_:)` alone also takes "+5".
    static func parseDecimal(_ text: String) -> UInt64? {
        let digits = Array(text.utf8)
        guard !digits.isEmpty, digits.count <= 20, digits.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              digits[0] != UInt8(ascii: "0") || digits.count == 1
        else { return nil }
        return UInt64(text)
    }

    /// `YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z`, UTC, from 1970 on, parsed exactly: at most
    /// three fraction digits (the genesis time is whole milliseconds, so a fourth
    /// digit could only be dropped), no leap second, no offset other than `Z`.
    static func parseTime(_ text: String) -> UInt64? {
        let bytes = Array(text.utf8)
        guard bytes.count == 20 || (22...24).contains(bytes.count), bytes.last == UInt8(ascii: "Z") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                guard bytes[index] >= UInt8(ascii: "0") && bytes[index] <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(bytes[index] - UInt8(ascii: "0"))
            }
            return value
        }
        let separators: [(Int, Unicode.Scalar)] = [(4, "-"), (7, "-"), (10, "T"), (13, ":"), (16, ":")]
        guard separators.allSatisfy({ bytes[$0.0] == UInt8(ascii: $0.1) }),
              let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var milliseconds = 0
        if bytes.count > 20 {
            guard bytes[19] == UInt8(ascii: "."), let fraction = number(20..<bytes.count - 1) else { return nil }
            let digits = bytes.count - 21
            milliseconds = fraction * [100, 10, 1][digits - 1]
        }
        guard year >= 1970, (1...12).contains(month), day >= 1, day <= daysInMonth(month, year: year),
              hour <= 23, minute <= 59, second <= 59
        else { return nil }
        let days = daysSinceEpoch(year: year, month: month, day: day)
        let seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
        return UInt64(seconds) * 1000 + UInt64(milliseconds)
    }

    /// The inverse of `parseTime`: whole seconds without a fraction, else three digits.
    static func formatTime(_ milliseconds: UInt64) -> String {
        let totalSeconds = Int(milliseconds / 1000)
        let days = totalSeconds / 86_400
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        let secondOfDay = totalSeconds % 86_400
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        var text = "\(year)-\(two(month))-\(two(day))T\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60))"
        let fraction = Int(milliseconds % 1000)
        if fraction != 0 { text += "." + String(String(fraction + 1000).dropFirst()) }
        return text + "Z"
    }

    static func daysInMonth(_ month: Int, year: Int) -> Int {
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
        return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
    }

    /// Days from 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's
    /// `days_from_civil`), for years from 1970.
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = shiftedYear / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// The inverse of `daysSinceEpoch` (`civil_from_days`), for days ≥ 0.
    static func civilDate(daysSinceEpoch days: Int) -> (year: Int, month: Int, day: Int) {
        let shifted = days + 719_468
        let era = shifted / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
