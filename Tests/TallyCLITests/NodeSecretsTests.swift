import Foundation
import XCTest

/// `tally-node start`'s passphrase sources, on the built binary: an owner-only file
/// (else exit 2 naming it and its mode), or $TALLY_NODE_PASSWORD, which must be gone
/// from /proc/PID/environ once read.
final class NodeSecretsTests: XCTestCase {
    var directory: String!
    var basePort = 0

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "tally-secrets-" + UUID().uuidString
        basePort = Int.random(in: 20_000...40_000)
        let made = try run(["testnet", "--validators", "1", "--output", directory, "--base-port", "\(basePort)"])
        XCTAssertEqual(made.status, 0, made.stderr)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: directory) }

    var home: String { directory + "/node0" }

    func run(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
        let process = Process()
        process.executableURL = VerifyCommandTests.productsDirectory.appendingPathComponent("tally-node")
        process.arguments = arguments
        let err = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = err
        try process.run()
        // A node that wrongly starts would never exit: stop it.
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 60, execute: watchdog)
        defer { watchdog.cancel() }
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stderr, as: UTF8.self))
    }

    func testPassphraseFileOthersCanReadStopsTheStartWithExit2() throws {
        let passwordFile = home + "/validator.password"
        XCTAssertEqual(try FileManager.default.attributesOfItem(atPath: passwordFile)[.posixPermissions] as? Int, 0o600,
                       "`tally-node testnet` writes the passphrase owner-only")
        XCTAssertEqual(chmod(passwordFile, 0o644), 0)
        let started = try run(["start", "--home", home])
        XCTAssertEqual(started.status, 2, started.stderr)
        XCTAssertTrue(started.stderr.contains(passwordFile) && started.stderr.contains("644"), started.stderr)
    }

    func testEnvironmentPassphraseLeavesProcEnviron() throws {
        let passphrase = try String(contentsOfFile: home + "/validator.password", encoding: .utf8)
            .trimmingCharacters(in: .newlines)
        // Without key_password_file the node reads $TALLY_NODE_PASSWORD.
        let configPath = home + "/config.toml"
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("key_password_file") }
        try config.joined(separator: "\n").write(toFile: configPath, atomically: true, encoding: .utf8)

        let process = Process()
        process.executableURL = VerifyCommandTests.productsDirectory.appendingPathComponent("tally-node")
        process.arguments = ["start", "--home", home]
        process.environment = ProcessInfo.processInfo.environment.merging(["TALLY_NODE_PASSWORD": passphrase]) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        let environ = "/proc/\(process.processIdentifier)/environ"
        let deadline = Date().addingTimeInterval(60)
        var visible = true
        var named = true
        while Date() < deadline && process.isRunning {
            guard let bytes = FileManager.default.contents(atPath: environ) else { break }
            let variables = String(decoding: bytes, as: UTF8.self)
            visible = variables.contains(passphrase)
            named = variables.contains("TALLY_NODE_PASSWORD=")
            if !visible && !named { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        XCTAssertTrue(process.isRunning, "the node opened its key from the environment and runs")
        XCTAssertFalse(visible, "the passphrase is still readable in \(environ)")
        XCTAssertFalse(named, "the value is wiped but its entry TALLY_NODE_PASSWORD= is still in \(environ)")
    }
}
