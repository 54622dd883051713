import Foundation
import XCTest

/// Runs the built `tally-bench generate-chain` and `tally verify` binaries end to end.
final class VerifyCommandTests: XCTestCase {
    /// The build products directory (where the test bundle and the executables are).
    static let productsDirectory: URL = {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ]
        for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("tally").path) {
            return candidate
        }
        return candidates[0]
    }()

    struct Outcome {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    func run(_ executable: String, _ arguments: [String]) throws -> Outcome {
        let process = Process()
        process.executableURL = VerifyCommandTests.productsDirectory.appendingPathComponent(executable)
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(
            status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }

    func json(_ text: String) throws -> [String: Any] {
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "--json prints exactly one report: \(text)")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
    }

    func testGenerateThenVerifyValidTamperedAndUnusable() throws {
        let home = NSTemporaryDirectory() + "tally-cli-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: home) }
        let generated = try run("tally-bench", ["generate-chain", "--output", home, "--blocks", "6", "--txs-per-block", "20", "--seed", "3"])
        XCTAssertEqual(generated.status, 0, generated.stderr)

        let valid = try run("tally", ["verify", "--home", home, "--json"])
        XCTAssertEqual(valid.status, 0, valid.stdout + valid.stderr)
        let report = try json(valid.stdout)
        XCTAssertEqual(report["valid"] as? Bool, true)
        XCTAssertEqual(report["blocks"] as? Int, 6)
        XCTAssertEqual(report["transactions"] as? Int, 120)
        XCTAssertTrue(report["first_bad_height"] is NSNull)
        XCTAssertEqual(report["verified_height"] as? Int, 6)
        XCTAssertEqual(valid.stderr, "", "no progress with --json")

        let human = try run("tally", ["verify", "--data", home + "/data", "--genesis", home + "/genesis.json"])
        XCTAssertEqual(human.status, 0)
        XCTAssertTrue(human.stdout.contains("chain valid: 6 blocks"), human.stdout)
        XCTAssertTrue(human.stdout.contains("120 transactions"), human.stdout)

        // Flip one bit in the fourth record: invalid chain, exit 1, named height.
        let segment = home + "/data/blocks/segment-00000001.tblk"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
        let recordBytes = bytes.count / 6
        bytes[3 * recordBytes + recordBytes / 2] ^= 0x04
        try bytes.write(to: URL(fileURLWithPath: segment))
        let invalid = try run("tally", ["verify", "--home", home, "--json"])
        XCTAssertEqual(invalid.status, 1, invalid.stdout + invalid.stderr)
        let bad = try json(invalid.stdout)
        XCTAssertEqual(bad["valid"] as? Bool, false)
        XCTAssertEqual(bad["first_bad_height"] as? Int, 4)
        XCTAssertEqual(bad["verified_height"] as? Int, 3)
        XCTAssertEqual(bad["reason_code"] as? String, "storage_damaged")
        XCTAssertTrue((bad["reason"] as? String ?? "").contains("checksum"), "\(bad)")
        let invalidHuman = try run("tally", ["verify", "--home", home])
        XCTAssertEqual(invalidHuman.status, 1)
        XCTAssertTrue(invalidHuman.stdout.contains("INVALID at height 4"), invalidHuman.stdout)

        // Unusable input: exit 2.
        let noGenesis = try run("tally", ["verify", "--data", home + "/data", "--genesis", home + "/missing.json", "--json"])
        XCTAssertEqual(noGenesis.status, 2)
        XCTAssertNotNil(try json(noGenesis.stdout)["error"])
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: home + "/broken.json"))
        XCTAssertEqual(try run("tally", ["verify", "--data", home + "/data", "--genesis", home + "/broken.json"]).status, 2)
        XCTAssertEqual(try run("tally", ["verify", "--data", home + "/nowhere", "--genesis", home + "/genesis.json"]).status, 2)

        // Bad usage: ArgumentParser's 64.
        XCTAssertEqual(try run("tally", ["verify", "--data", home + "/data"]).status, 64)
        let help = try run("tally", ["verify", "--help"])
        XCTAssertTrue(help.stdout.contains("EXIT CODES"), help.stdout)
    }
}
