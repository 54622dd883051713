import Foundation
import Logging
import XCTest

@testable import TallyNode

final class JSONLogHandlerTests: XCTestCase {
    final class Lines: @unchecked Sendable {
        var lines: [Data] = []
        let lock = NSLock()
        func append(_ line: Data) { lock.lock(); lines.append(line); lock.unlock() }
    }

    func testEachEntryIsOneJSONObjectPerLineWithItsMetadata() throws {
        let output = Lines()
        var logger = Logger(label: "tally.test") { JSONLogHandler(label: $0, write: output.append) }
        logger[metadataKey: "home"] = "/tmp/h"
        logger.notice("view \"changed\"\nnext", metadata: ["view": "3"])
        logger.debug("below the level")
        XCTAssertEqual(output.lines.count, 1)
        let line = try XCTUnwrap(output.lines.first)
        XCTAssertEqual(line.last, 0x0a)
        XCTAssertEqual(line.filter { $0 == 0x0a }.count, 1, "one line per entry, even with a newline in the message")
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: line) as? [String: Any])
        XCTAssertEqual(object["level"] as? String, "notice")
        XCTAssertEqual(object["logger"] as? String, "tally.test")
        XCTAssertEqual(object["message"] as? String, "view \"changed\"\nnext")
        XCTAssertEqual(object["view"] as? String, "3")
        XCTAssertEqual(object["home"] as? String, "/tmp/h")
        XCTAssertNotNil(ISO8601DateFormatter().date(from: (object["ts"] as? String ?? "").replacingOccurrences(of: #"\.\d+"#, with: "", options: .regularExpression)))
    }
}
