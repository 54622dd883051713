import Foundation
import TallyCrypto
import XCTest

/// Locates `../shared/vectors` (or `$TALLY_VECTORS`). A missing vector file fails
/// the test: a skipped vector check would hide a broken verifier.
enum Vectors {
    static var directory: URL {
        if let path = ProcessInfo.processInfo.environment["TALLY_VECTORS"], !path.isEmpty {
            return URL(fileURLWithPath: path)
        }
        // Tests/TallyCryptoTests/Vectors.swift → repository → ../shared/vectors
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/vectors")
    }

    static func data(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> Data {
        let url = directory.appendingPathComponent(name)
        guard let data = FileManager.default.contents(atPath: url.path) else {
            XCTFail("test vector \(url.path) is missing; set TALLY_VECTORS to the vectors directory", file: file, line: line)
            throw CocoaError(.fileNoSuchFile)
        }
        return data
    }

    static func json(_ name: String) throws -> Any {
        try JSONSerialization.jsonObject(with: data(name))
    }
}

func hex(_ text: String) -> [UInt8] {
    guard let bytes = Hex.decode(text) else { fatalError("bad hex in test vector: \(text.prefix(20))") }
    return bytes
}
