import Foundation
import TallyCrypto
import XCTest

@testable import TallyNode

/// The `/events` JSON is written by hand for speed: it must stay byte for byte what
/// `JSONSerialization` with sorted keys wrote before.
final class EventEncodingTests: XCTestCase {
    func testServerSentEventsMatchJSONSerialization() throws {
        let hash = Hash(bytes: (0..<32).map { UInt8($0 * 7 & 0xff) })!
        let cases: [(NodeEvent, String, [String: Any])] = [
            (.block(height: 1 << 40, hash: hash, transactionCount: 4000), "block",
             ["height": String(UInt64(1) << 40), "hash": hash.hex, "transactions": 4000]),
            (.block(height: 1, hash: hash, transactionCount: 0), "block", ["height": "1", "hash": hash.hex, "transactions": 0]),
            (.transaction(hash: hash, height: 7, index: 3999), "tx", ["hash": hash.hex, "height": "7", "index": 3999]),
        ]
        for (event, name, object) in cases {
            let json = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            XCTAssertEqual(HTTPAPI.serverSentEvent(event), "event: \(name)\ndata: \(String(decoding: json, as: UTF8.self))\n\n")
        }
    }
}
