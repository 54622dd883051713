import Foundation
import TallyCrypto
import TallyTypes
import XCTest

/// The wallet binary against a live 4-validator network: the newcomer's path and
/// each failure's message and exit code.
final class WalletTests: XCTestCase, @unchecked Sendable {
    var network: LocalNetwork!
    var walletHome: URL!

    func tally(_ arguments: [String], stdin: String? = nil, node: Int = 0) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = LocalNetwork.binary("tally")
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["TALLY_HOME"] = walletHome.path
        environment["TALLY_NODE"] = network.api(node).absoluteString
        environment["TALLY_INSECURE_FAST_KDF"] = "1"
        environment.removeValue(forKey: "TALLY_PASSWORD")
        process.environment = environment
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }

    func testNewcomerPathAndFailures() async throws {
        network = try LocalNetwork()
        defer { network.stop() }
        walletHome = network.directory.appendingPathComponent("wallet")
        try await network.startAllConnected()
        let faucetKey = network.directory.appendingPathComponent("faucet.key").path
        let faucetPassword = network.directory.appendingPathComponent("faucet.password").path

        // Keys.
        XCTAssertEqual(try tally(["keys", "import", "faucet", "--file", faucetKey, "--password-file", faucetPassword]).status, 0)
        XCTAssertEqual(try tally(["keys", "new", "alice"], stdin: "alice-pass\n").status, 0)
        XCTAssertEqual(try tally(["keys", "new", "bob"], stdin: "bob-pass\n").status, 0)
        let alice = json(try tally(["keys", "show", "alice", "--json"]).stdout)["address"] as! String
        let bob = json(try tally(["keys", "show", "bob", "--json"]).stdout)["address"] as! String

        // No genesis pinned yet: status shows the node's genesis hash, send refuses
        // (exit 2) and pins nothing; `genesis trust --hash` pins it explicitly.
        let genesisHash = try Genesis.load(path: network.directory.appendingPathComponent("genesis.json").path).hash.hex
        let unpinned = json(try tally(["status", "--json"]).stdout)
        XCTAssertEqual(unpinned["genesis_hash"] as? String, genesisHash)
        XCTAssertEqual(unpinned["genesis_trusted"] as? Bool, false)
        let refused = try tally(["send", "--from", "faucet", "--to", alice, "--amount", "1", "--password-file", faucetPassword, "--json"])
        XCTAssertEqual(refused.status, 2, refused.stdout + refused.stderr)
        XCTAssertTrue(refused.stderr.contains("tally genesis trust --hash \(genesisHash)"), refused.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: walletHome.appendingPathComponent("genesis.json").path))
        let trust = try tally(["genesis", "trust", "--hash", genesisHash, "--json"])
        XCTAssertEqual(trust.status, 0, trust.stdout + trust.stderr)
        XCTAssertEqual(json(trust.stdout)["changed"] as? Bool, true)

        // Fund alice from the faucet; wait for commit with certificate and proof checked.
        let fund = try tally(["send", "--from", "faucet", "--to", alice, "--amount", "100", "--fee", "0.001",
                              "--password-file", faucetPassword, "--json"])
        XCTAssertEqual(fund.status, 0, fund.stdout + fund.stderr)
        let funded = json(fund.stdout)
        XCTAssertEqual(funded["status"] as? String, "committed")
        XCTAssertNotNil(funded["height"] as? String)

        // Alice pays bob 12.5 with a fee of 0.25: balances move by exactly that.
        let send = try tally(["send", "--from", "alice", "--to", bob, "--amount", "12.5", "--fee", "0.25", "--json"], stdin: "alice-pass\n", node: 2)
        XCTAssertEqual(send.status, 0, send.stdout + send.stderr)
        let sent = json(send.stdout)
        let hash = sent["hash"] as! String
        XCTAssertEqual(json(try tally(["balance", "alice", "--json"]).stdout)["balance"] as? String, "87.250000")
        XCTAssertEqual(json(try tally(["balance", bob, "--json"]).stdout)["balance"] as? String, "12.500000")
        let tx = json(try tally(["tx", hash, "--json"], node: 3).stdout)
        XCTAssertEqual(tx["status"] as? String, "committed")
        XCTAssertEqual(tx["height"] as? String, sent["height"] as? String)

        // Several sends without waiting: each takes the next pending nonce.
        for _ in 0..<3 {
            let quick = try tally(["send", "--from", "alice", "--to", bob, "--amount", "1", "--fee", "0.25", "--async", "--json"], stdin: "alice-pass\n")
            XCTAssertEqual(quick.status, 0, quick.stdout + quick.stderr)
        }
        try await network.waitUntil("three async sends committed") {
            (try? await self.network.json(0, "accounts/\(alice)"))?["nonce"] as? String == "4"
        }
        XCTAssertEqual(json(try tally(["balance", "alice", "--json"]).stdout)["balance"] as? String, "83.500000")

        // A wrong passphrase: exit 6, nothing sent.
        let wrong = try tally(["send", "--from", "alice", "--to", bob, "--amount", "1", "--json"], stdin: "not-alice\n")
        XCTAssertEqual(wrong.status, 6, wrong.stdout + wrong.stderr)
        // A mistyped address: rejected by its checksum before anything is sent (usage).
        var typo = Array(bob)
        typo[typo.count - 1] = typo[typo.count - 1] == "q" ? "p" : "q"
        let badAddress = try tally(["send", "--from", "alice", "--to", String(typo), "--amount", "1"], stdin: "alice-pass\n")
        XCTAssertEqual(badAddress.status, 64, badAddress.stderr)
        XCTAssertTrue(badAddress.stderr.contains("checksum"), badAddress.stderr)
        // More than the balance: rejected by the node, exit 3.
        let tooMuch = try tally(["send", "--from", "alice", "--to", bob, "--amount", "1000", "--json"], stdin: "alice-pass\n")
        XCTAssertEqual(tooMuch.status, 3, tooMuch.stdout + tooMuch.stderr)
        XCTAssertTrue(tooMuch.stdout.contains("insufficient_balance"), tooMuch.stdout)
        XCTAssertEqual(json(try tally(["balance", "alice", "--json"]).stdout)["balance"] as? String, "83.500000")

        // A node that is down: exit 4.
        network.kill(1)
        let down = try tally(["status", "--json"], node: 1)
        XCTAssertEqual(down.status, 4, down.stdout + down.stderr)
    }
}
