import XCTest
@testable import TallyWallet

final class AmountTests: XCTestCase {
    func testParsesWholeAndDecimalTally() throws {
        XCTAssertEqual(try Amount.parse("1.5"), 1_500_000)
        XCTAssertEqual(try Amount.parse("12"), 12_000_000)
        XCTAssertEqual(try Amount.parse("0.000001"), 1)
        XCTAssertEqual(try Amount.parse("0"), 0)
        XCTAssertEqual(try Amount.parse("007.250000"), 7_250_000)
        XCTAssertEqual(try Amount.parse("18446744073709.551615"), UInt64.max)
    }

    func testRefusesMalformedTooPreciseAndOverflowingAmounts() {
        for text in ["", "abc", "1.", ".5", "-1", "+1", "1e3", "1,5", " 1", "1.2.3", "١"] {
            XCTAssertThrowsError(try Amount.parse(text), text) { XCTAssertEqual($0 as? Amount.ParseError, .notANumber(text)) }
        }
        XCTAssertThrowsError(try Amount.parse("1.0000001")) { XCTAssertEqual($0 as? Amount.ParseError, .tooPrecise("1.0000001")) }
        for text in ["18446744073709.551616", "18446744073710", "99999999999999999999999"] {
            XCTAssertThrowsError(try Amount.parse(text), text) { XCTAssertEqual($0 as? Amount.ParseError, .overflow(text)) }
        }
    }

    func testFormatsWithSixDecimals() {
        XCTAssertEqual(Amount.format(1_500_000), "1.500000")
        XCTAssertEqual(Amount.format(0), "0.000000")
        XCTAssertEqual(Amount.format(1), "0.000001")
        XCTAssertEqual(Amount.format(UInt64.max), "18446744073709.551615")
        for value: UInt64 in [0, 1, 999_999, 1_000_000, 123_456_789_012, .max] {
            XCTAssertEqual(try Amount.parse(Amount.format(value)), value)
        }
    }
}
