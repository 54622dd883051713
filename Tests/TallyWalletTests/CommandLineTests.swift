import ArgumentParser
import XCTest
@testable import TallyWallet

final class CommandLineTests: XCTestCase {
    func testHelpDocumentsExitCodes() async {
        let wallet = WalletHarness()
        for command in [["send"], ["status"], ["balance"], ["tx"], ["block"], ["history"], ["keys"], ["keys", "new"],
                        ["genesis", "trust"], ["genesis", "show"]] {
            let outcome = await wallet.run(command + ["--help"])
            XCTAssertEqual(outcome.exitCode, 0, command.joined(separator: " "))
            XCTAssertTrue(outcome.stderr.contains("3 transaction rejected by the node"), "\(command): \(outcome.stderr)")
            XCTAssertTrue(outcome.stderr.contains("64 usage"), "\(command)")
        }
    }

    func testWalletCommandNames() {
        XCTAssertEqual(WalletCommands.all.map { $0._commandName }, ["keys", "genesis", "status", "balance", "send", "tx", "block", "history"])
    }

    func testSendArgumentValidation() throws {
        let address = "tally1q3kjzmpe5e6wqqyyv08423w9e095ksxev2mp3g"
        XCTAssertNoThrow(try TestRoot.parseAsRoot(["send", "--from", "a", "--to", address, "--amount", "1.5"]))
        XCTAssertNoThrow(try TestRoot.parseAsRoot(["--node", "http://h:1", "send", "--key-file", "f", "--to", address, "--amount", "1"]))
        for arguments in [
            ["send", "--to", address, "--amount", "1"],
            ["send", "--from", "a", "--key-file", "f", "--to", address, "--amount", "1"],
            ["send", "--from", "a", "--to", "tally1q3kjzmpe5e6wqqyyv08423w9e095ksxev2mp3h", "--amount", "1"],
            ["send", "--from", "a", "--to", address, "--amount", "1", "--fee", "x"],
            ["send", "--from", "a", "--to", address, "--amount", "18446744073709.551615", "--fee", "0.000001"],
            ["send", "--from", "a", "--to", address, "--amount", "1", "--timeout", "0"],
            ["balance", "tally1notanaddress"],
        ] {
            XCTAssertThrowsError(try TestRoot.parseAsRoot(arguments), "\(arguments)") {
                XCTAssertEqual(TestRoot.exitCode(for: $0).rawValue, 64)
            }
        }
        let parsed = try XCTUnwrap(try TestRoot.parseAsRoot(["send", "--from", "a", "--to", address, "--amount", "1"]) as? Send)
        XCTAssertEqual(parsed.fee, Send.defaultFee)
        XCTAssertEqual(parsed.timeout, 30)
    }

    func testCompletionScripts() {
        let bash = TestRoot.completionScript(for: .bash)
        XCTAssertTrue(bash.contains("keys"))
        XCTAssertTrue(bash.contains("--amount"))
        XCTAssertTrue(TestRoot.completionScript(for: .zsh).contains("send"))
        XCTAssertTrue(TestRoot.completionScript(for: .fish).contains("balance"))
    }
}
