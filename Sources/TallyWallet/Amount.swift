/// Amounts in whole TALLY with a fixed precision of 6 decimals: the ledger's base
/// unit is 10^-6 TALLY, so `1.5` is 1,500,000 base units. Input accepts an integer or
/// a decimal with at most 6 digits after the point; output always shows 6 decimals.
public enum Amount {
    public static let decimals = 6
    public static let baseUnitsPerTally: UInt64 = 1_000_000

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notANumber(String)
        case tooPrecise(String)
        case overflow(String)

        public var description: String {
            switch self {
            case .notANumber(let text):
                return "'\(text)' is not an amount: use whole TALLY like 12 or 1.5 (digits, at most one '.')"
            case .tooPrecise(let text):
                return "'\(text)' has more than \(Amount.decimals) decimals; the smallest amount is 0.000001 TALLY"
            case .overflow(let text): return "'\(text)' is too large (at most \(Amount.format(.max)) TALLY)"
            }
        }
    }

    /// Parses "12", "1.5", "0.000001" into base units.
    public static func parse(_ text: String) throws(ParseError) -> UInt64 {
        let parts = text.split(separator: ".", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit) else {
            throw .notANumber(text)
        }
        var fraction = parts.count == 2 ? String(parts[1]) : ""
        guard parts.count == 1 || (!fraction.isEmpty && fraction.allSatisfy(\.isASCIIDigit)) else { throw .notANumber(text) }
        guard fraction.count <= decimals else { throw .tooPrecise(text) }
        fraction += String(repeating: "0", count: decimals - fraction.count)
        guard let units = UInt64(whole), let fractionUnits = UInt64(fraction) else { throw .overflow(text) }
        let (scaled, overflow) = units.multipliedReportingOverflow(by: baseUnitsPerTally)
        let (total, sumOverflow) = scaled.addingReportingOverflow(fractionUnits)
        guard !overflow, !sumOverflow else { throw .overflow(text) }
        return total
    }

    /// Base units as whole TALLY with exactly 6 decimals: 1500000 → "1.500000".
    public static func format(_ baseUnits: UInt64) -> String {
        let fraction = String(baseUnits % baseUnitsPerTally)
        return "\(baseUnits / baseUnitsPerTally).\(String(repeating: "0", count: decimals - fraction.count))\(fraction)"
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
