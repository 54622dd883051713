import Foundation
import NIOCore
import NIOPosix
import TallyCrypto
import TallyTypes
import XCTest
@testable import TallyWallet

/// The wallet against the real HTTP API router in a real server, backed by a node
/// that commits real certified blocks.
final class SendTests: XCTestCase, @unchecked Sendable {
    let chain = TestChain()

    /// A wallet with the faucet imported (key file + password file), a new key `alice`
    /// and, unless `pinned` is false, the test chain's genesis pinned from a local file.
    func fundedWallet(pinned: Bool = true) async throws -> (wallet: WalletHarness, password: String, faucetKeyFile: String, alice: String) {
        let wallet = WalletHarness()
        if pinned {
            let genesisFile = wallet.file("chain-genesis.json", String(decoding: chain.genesis.jsonData(), as: UTF8.self))
            let trusted = await wallet.run(["genesis", "trust", "--genesis", genesisFile])
            XCTAssertEqual(trusted.exitCode, 0, trusted.stderr)
        }
        let password = wallet.file("faucet.password", "faucet pw\n")
        let faucetKeyFile = wallet.home + "/faucet.key"
        try KeyFile.seal(chain.faucet, passphrase: "faucet pw", cost: .light).write(path: faucetKeyFile)
        let imported = await wallet.run(["keys", "import", "faucet", "--file", faucetKeyFile, "--password-file", password])
        XCTAssertEqual(imported.exitCode, 0, imported.stderr)
        let alice = await wallet.run(["keys", "new", "alice", "--password-file", wallet.file("alice.password", "alice pw"), "--json"])
        return (wallet, password, faucetKeyFile, try XCTUnwrap(alice.json["address"] as? String))
    }

    var faucetAddress: String { Address(publicKey: chain.faucet.publicKey).bech32m }

    func testSendWaitsVerifiesAndBalancesMoveByAmountAndFee() async throws {
        let (wallet, password, _, alice) = try await fundedWallet()
        let node = chain.node()
        try await withServer(node) { url in
            let sent = try await whileProducingBlocks(node) {
                await wallet.run(["send", "--node", url, "--from", "faucet", "--to", alice, "--amount", "1.5", "--fee", "0.25",
                                  "--password-file", password, "--json"])
            }
            XCTAssertEqual(sent.exitCode, 0, sent.stderr)
            XCTAssertEqual(sent.json["status"] as? String, "committed")
            XCTAssertEqual(sent.json["height"] as? String, "1")
            XCTAssertEqual(sent.json["amount"] as? String, "1.500000")
            XCTAssertEqual(sent.json["fee"] as? String, "0.250000")
            let hash = try XCTUnwrap(sent.json["hash"] as? String)
            XCTAssertFalse(sent.stderr.contains("pinned"), sent.stderr)

            let aliceBalance = await wallet.run(["balance", "alice", "--node", url, "--json"])
            XCTAssertEqual(aliceBalance.json["balance"] as? String, "1.500000")
            XCTAssertEqual(aliceBalance.json["nonce"] as? String, "0")
            XCTAssertEqual(aliceBalance.json["address"] as? String, alice)
            let faucetBalance = await wallet.run(["balance", self.faucetAddress, "--node", url, "--json"])
            XCTAssertEqual(faucetBalance.json["balance"] as? String, Amount.format(TestChain.initialFaucetBalance - 1_750_000))
            XCTAssertEqual(faucetBalance.json["nonce"] as? String, "1")

            let fresh = Address(publicKey: SigningKey(seed: SHA256.hash([7]).bytes)!.publicKey).bech32m
            let unseen = await wallet.run(["balance", fresh, "--node", url, "--json"])
            XCTAssertEqual(unseen.json["balance"] as? String, "0.000000")
            XCTAssertEqual(unseen.json["nonce"] as? String, "0")
            let ambiguous = await wallet.run(["balance", "--node", url])
            XCTAssertEqual(ambiguous.exitCode, 64)
            XCTAssertTrue(ambiguous.stderr.contains("name a key (alice, faucet)"), ambiguous.stderr)

            let tx = await wallet.run(["tx", hash, "--node", url, "--json"])
            XCTAssertEqual(tx.exitCode, 0, tx.stderr)
            XCTAssertEqual(tx.json["status"] as? String, "committed")
            XCTAssertEqual(tx.json["height"] as? String, "1")
            XCTAssertEqual(tx.json["verified"] as? Bool, true)
            XCTAssertEqual(tx.json["hash"] as? String, hash)

            let block = await wallet.run(["block", "1", "--node", url, "--json"])
            XCTAssertEqual(block.exitCode, 0, block.stderr)
            XCTAssertEqual(block.json["height"] as? String, "1")
            XCTAssertEqual(block.json["previous_hash"] as? String, self.chain.genesis.hash.hex)
            XCTAssertEqual((block.json["transactions"] as? [[String: Any]])?.map { $0["hash"] as? String }, [hash])
            XCTAssertEqual(block.json["signers"] as? [String], ["0", "1", "2"])
            let latest = await wallet.run(["block", "--node", url, "--json"])
            XCTAssertEqual(latest.json["hash"] as? String, block.json["hash"] as? String)

            let status = await wallet.run(["status", "--node", url, "--json"])
            XCTAssertEqual(status.json["chain_id"] as? String, "tally-wallet-test")
            XCTAssertEqual(status.json["height"] as? String, "1")
            XCTAssertEqual(status.json["view"] as? String, "0")
            XCTAssertEqual(status.json["mempool_size"] as? String, "0")
            XCTAssertEqual(status.json["genesis_hash"] as? String, self.chain.genesis.hash.hex)
            XCTAssertEqual(status.json["genesis_trusted"] as? Bool, true)
            XCTAssertEqual(status.json["trusted_genesis"] as? String, wallet.home + "/genesis.json")
            XCTAssertFalse(status.stderr.contains("note:"), status.stderr)

            let humanStatus = await wallet.run(["status", "--node", url])
            XCTAssertTrue(humanStatus.stdout.contains("height:      1"), humanStatus.stdout)
            XCTAssertTrue(humanStatus.stdout.contains("validator:   validator1"), humanStatus.stdout)
            XCTAssertTrue(humanStatus.stdout.contains("genesis:     \(self.chain.genesis.hash.hex) (matches \(wallet.home)/genesis.json)"),
                          humanStatus.stdout)
            let humanTx = await wallet.run(["tx", hash, "--node", url])
            XCTAssertTrue(humanTx.stdout.contains("committed at height 1, index 0"), humanTx.stdout)
            XCTAssertTrue(humanTx.stdout.contains("amount: 1.500000 TALLY, fee 0.250000, nonce 0"), humanTx.stdout)
            let humanBlock = await wallet.run(["block", "1", "--node", url])
            XCTAssertTrue(humanBlock.stdout.hasPrefix("block 1  "), humanBlock.stdout)
            XCTAssertTrue(humanBlock.stdout.contains(hash), humanBlock.stdout)

            let humanSend = try await whileProducingBlocks(node) {
                await wallet.run(["send", "--node", url, "--from", "faucet", "--to", alice, "--amount", "2",
                                  "--password-file", password])
            }
            XCTAssertEqual(humanSend.exitCode, 0, humanSend.stderr)
            XCTAssertTrue(humanSend.stdout.contains("committed"), humanSend.stdout)
            XCTAssertTrue(humanSend.stdout.contains("certificate of 3 of 4 validators"), humanSend.stdout)
            let after = await wallet.run(["balance", "alice", "--node", url])
            XCTAssertTrue(after.stdout.contains("3.500000 TALLY"), after.stdout)
            let defaultFee = try Amount.parse(Send.defaultFee)
            let faucetAfter = await wallet.run(["balance", "faucet", "--node", url, "--json"])
            XCTAssertEqual(faucetAfter.json["balance"] as? String,
                           Amount.format(TestChain.initialFaucetBalance - 1_750_000 - 2_000_000 - defaultFee))
        }
    }

    /// The form tools/testnet uses: `tally --node URL send --key-file F --password-file P … --async`.
    func testAsyncSendWithKeyFileAndRootNodeOption() async throws {
        let (wallet, password, faucetKeyFile, alice) = try await fundedWallet()
        let node = chain.node()
        try await withServer(node) { url in
            let sent = await wallet.run(["--node", url, "send", "--key-file", faucetKeyFile, "--password-file", password,
                                         "--to", alice, "--amount", "1", "--async", "--json"])
            XCTAssertEqual(sent.exitCode, 0, sent.stderr)
            XCTAssertEqual(sent.json["status"] as? String, "pending")
            XCTAssertTrue(sent.json["height"] is NSNull)
            let hash = try XCTUnwrap(sent.json["hash"] as? String)
            let pending = await wallet.run(["tx", hash, "--json"], environment: ["TALLY_NODE": url])
            XCTAssertEqual(pending.json["status"] as? String, "pending")
            let produced = await node.produceBlock()
            XCTAssertEqual(produced, 1)
            let committed = await wallet.run(["tx", hash, "--json"], environment: ["TALLY_NODE": url])
            XCTAssertEqual(committed.json["status"] as? String, "committed")
            XCTAssertEqual(committed.json["height"] as? String, "1")
        }
    }

    func testFailuresHaveTheirMessageAndCodeAndChangeNothing() async throws {
        let (wallet, password, _, alice) = try await fundedWallet()
        let node = chain.node()
        try await withServer(node) { url in
            let faucetPassword = password
            func send(_ extra: [String], password file: String? = nil) async -> Outcome {
                await wallet.run(["send", "--node", url, "--from", "faucet", "--password-file", file ?? faucetPassword,
                                  "--timeout", "1", "--json"] + extra)
            }
            let wrongPassphrase = await send(["--to", alice, "--amount", "1"], password: wallet.file("bad", "bad"))
            XCTAssertEqual(wrongPassphrase.exitCode, 6)
            XCTAssertTrue(wrongPassphrase.stderr.contains("wrong passphrase"), wrongPassphrase.stderr)

            var typo = Array(alice)
            typo[typo.count - 3] = typo[typo.count - 3] == "q" ? "p" : "q"
            let badAddress = await send(["--to", String(typo), "--amount", "1"])
            XCTAssertEqual(badAddress.exitCode, 64)
            XCTAssertTrue(badAddress.stderr.contains("not a Tally address"), badAddress.stderr)

            let tooMuch = await send(["--to", alice, "--amount", "2000000"])
            XCTAssertEqual(tooMuch.exitCode, 3)
            XCTAssertEqual(tooMuch.errorJSON["code"] as? String, "insufficient_balance")
            XCTAssertTrue(tooMuch.stderr.contains("rejected"), tooMuch.stderr)

            do { let outcome = await send(["--to", alice, "--amount", "0"]); XCTAssertEqual(outcome.exitCode, 64, outcome.stderr) }
            do { let outcome = await send(["--to", alice, "--amount", "1.0000001"]); XCTAssertEqual(outcome.exitCode, 64, outcome.stderr) }

            let unknownKey = await wallet.run(["send", "--node", url, "--from", "nobody", "--to", alice, "--amount", "1"])
            XCTAssertEqual(unknownKey.exitCode, 6)

            // Nothing reached the mempool or the ledger.
            let status = await wallet.run(["status", "--node", url, "--json"])
            XCTAssertEqual(status.json["mempool_size"] as? String, "0")
            XCTAssertEqual(status.json["height"] as? String, "0")
            let balance = await wallet.run(["balance", "faucet", "--node", url, "--json"])
            XCTAssertEqual(balance.json["balance"] as? String, Amount.format(TestChain.initialFaucetBalance))
            XCTAssertEqual(balance.json["nonce"] as? String, "0")

            // No block producer: the wait times out with exit 5 and the hash.
            let timedOut = await send(["--to", alice, "--amount", "1"])
            XCTAssertEqual(timedOut.exitCode, 5, timedOut.stderr)
            XCTAssertTrue(timedOut.stderr.contains("timed out after 1 s"), timedOut.stderr)
            XCTAssertNotNil(timedOut.json["hash"] as? String)
            // A second send while that one is pending takes the next nonce (it times
            // out as well: nothing produces blocks here).
            let second = await send(["--to", alice, "--amount", "2"])
            XCTAssertEqual(second.exitCode, 5, second.stderr)
            XCTAssertNotEqual(second.json["hash"] as? String, timedOut.json["hash"] as? String)

            let unknownTx = await wallet.run(["tx", String(repeating: "ab", count: 32), "--node", url, "--json"])
            XCTAssertEqual(unknownTx.exitCode, 7)
            XCTAssertEqual(unknownTx.json["status"] as? String, "unknown")
            let noBlock = await wallet.run(["block", "99", "--node", url])
            XCTAssertEqual(noBlock.exitCode, 7)
            do { let outcome = await wallet.run(["tx", "xyz", "--node", url]); XCTAssertEqual(outcome.exitCode, 64, outcome.stderr) }
            do { let outcome = await wallet.run(["block", "0", "--node", url]); XCTAssertEqual(outcome.exitCode, 64, outcome.stderr) }
        }
    }

    func testNodeDown() async throws {
        let (wallet, password, _, alice) = try await fundedWallet()
        let port = try await closedPort()
        let url = "http://127.0.0.1:\(port)"
        let sent = await wallet.run(["send", "--node", url, "--from", "faucet", "--to", alice, "--amount", "1",
                                     "--password-file", password, "--json"])
        XCTAssertEqual(sent.exitCode, 4)
        XCTAssertTrue(sent.stderr.contains("cannot reach the node at \(url)"), sent.stderr)
        XCTAssertEqual(sent.errorJSON["exit_code"] as? String, "4")
        do { let outcome = await wallet.run(["status", "--node", url]); XCTAssertEqual(outcome.exitCode, 4, outcome.stderr) }
        do { let outcome = await wallet.run(["balance", "alice", "--node", url]); XCTAssertEqual(outcome.exitCode, 4, outcome.stderr) }
        XCTAssertEqual(try Genesis.load(path: wallet.home + "/genesis.json"), chain.genesis, "pin unchanged")
        do { let outcome = await wallet.run(["status", "--node", "ftp://example"]); XCTAssertEqual(outcome.exitCode, 64, outcome.stderr) }
    }

    /// A node that forges certificates or proofs is caught: exit 1, never "committed".
    func testForgedCertificatesAndProofsFailVerification() async throws {
        let (wallet, password, _, alice) = try await fundedWallet()
        let reasons: [(Forgery, String)] = [
            (.certificateForAnotherChain, "certificate signature of validator 0 is invalid"),
            (.certificateBelowQuorum, "below the quorum of 3"),
            (.proofWithAnotherPath, "does not lead to block 1's transactions_root"),
        ]
        for (forgery, reason) in reasons {
            let node = chain.node()
            await node.setForgery(forgery, minimumBlockTransactions: 2)
            try await withServer(node) { url in
                // Two transactions in one block, so another leaf's audit path exists.
                let first = Transaction.signed(by: self.chain.other, chainID: self.chain.genesis.chainID,
                                               genesisHash: self.chain.genesis.hash, to: Address(publicKey: self.chain.faucet.publicKey),
                                               amount: 1, fee: 1, nonce: 0)
                let admitted = await node.submit([first])
                XCTAssertNotNil(try? admitted[0].get())
                let sent = try await whileProducingBlocks(node) {
                    await wallet.run(["send", "--node", url, "--from", "faucet", "--to", alice, "--amount", "1",
                                      "--password-file", password, "--json"])
                }
                XCTAssertEqual(sent.exitCode, 1, "\(forgery): \(sent.stderr)")
                XCTAssertTrue(sent.stderr.contains("verification failed"), sent.stderr)
                XCTAssertTrue(sent.stderr.contains(reason), "\(forgery): \(sent.stderr)")
                XCTAssertNil(sent.json["status"])
                let block = await wallet.run(["block", "1", "--node", url])
                XCTAssertEqual(block.exitCode, forgery == .proofWithAnotherPath ? 0 : 1, "\(forgery)")
            }
        }
    }

    /// Issue 14: `send` against a chain it had not pinned pinned the genesis the node
    /// served and trusted it in the same run, so a lying first node (here: one of a
    /// chain of its own, whose validators it holds) could fake a confirmed transfer.
    /// Now nothing is pinned, nothing is signed or submitted, and it is exit 2.
    func testSendWithoutAPinNeitherPinsNorConfirms() async throws {
        let (wallet, _, _, alice) = try await fundedWallet(pinned: false)
        let liar = TestChain(chainID: "tally-wallet-test", salt: "liar")
        let node = liar.node()
        let faucetKey = try KeyFile.seal(liar.faucet, passphrase: "liar pw", cost: .light)
        try faucetKey.write(path: wallet.home + "/liar.key")
        try await withServer(node) { url in
            let sent = try await whileProducingBlocks(node) {
                await wallet.run(["send", "--node", url, "--key-file", wallet.home + "/liar.key", "--to", alice, "--amount", "1",
                                  "--password-file", wallet.file("liar.password", "liar pw"), "--timeout", "5", "--json"])
            }
            XCTAssertEqual(sent.exitCode, 2, sent.stderr)
            XCTAssertNil(sent.json["status"], sent.stdout)
            XCTAssertFalse(sent.stdout.contains("committed"), sent.stdout)
            XCTAssertEqual(sent.errorJSON["exit_code"] as? String, "2")
            XCTAssertEqual(sent.json["genesis_hash"] as? String, liar.genesis.hash.hex)
            XCTAssertTrue(sent.stderr.contains("no genesis is pinned"), sent.stderr)
            XCTAssertTrue(sent.stderr.contains("tally genesis trust --hash \(liar.genesis.hash.hex)"), sent.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/genesis.json"), "nothing pinned")
            let produced = await node.latestHeight()
            XCTAssertEqual(produced, 0, "nothing was submitted")
            // The other commands that verify stop the same way, and pin nothing either.
            for command in [["balance", "alice"], ["tx", String(repeating: "ab", count: 32)], ["block", "1"]] {
                let outcome = await wallet.run(command + ["--node", url])
                XCTAssertEqual(outcome.exitCode, 2, "\(command): \(outcome.stderr)")
                XCTAssertTrue(outcome.stderr.contains("no genesis is pinned"), outcome.stderr)
            }
            // Also with the faucet's own key: refused before the passphrase is asked for.
            let input = ScriptedInput(terminal: true, secrets: ["faucet pw"])
            let named = await wallet.run(["send", "--node", url, "--from", "faucet", "--to", alice, "--amount", "1"], input: input)
            XCTAssertEqual(named.exitCode, 2, named.stderr)
            XCTAssertEqual(input.prompts, [])
            XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/genesis.json"), "nothing pinned")
        }
    }

    func testGenesisIsPinnedOnlyByGenesisTrustAndAnotherChainIsRefused() async throws {
        let wallet = WalletHarness()
        let other = TestChain(chainID: "tally-other", salt: "other")
        let hash = chain.genesis.hash.hex
        try await withServer(chain.node()) { url in
            // status shows the node's genesis without a pin, and pins nothing.
            let first = await wallet.run(["status", "--node", url, "--json"])
            XCTAssertEqual(first.exitCode, 0, first.stderr)
            XCTAssertEqual(first.json["genesis_hash"] as? String, hash)
            XCTAssertEqual(first.json["genesis_trusted"] as? Bool, false)
            XCTAssertTrue(first.json["trusted_genesis"] is NSNull)
            let human = await wallet.run(["status", "--node", url])
            XCTAssertTrue(human.stdout.contains("genesis:     \(hash) (NOT PINNED"), human.stdout)
            XCTAssertTrue(human.stdout.contains("tally genesis trust --hash \(hash)"), human.stdout)
            XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/genesis.json"), "status pins nothing")
            let noPin = await wallet.run(["genesis", "show", "--json"])
            XCTAssertEqual(noPin.exitCode, 2, noPin.stderr)

            // trust --hash with another hash: exit 1, nothing pinned.
            let wrongHash = await wallet.run(["genesis", "trust", "--node", url, "--hash", other.genesis.hash.hex, "--json"])
            XCTAssertEqual(wrongHash.exitCode, 1, wrongHash.stderr)
            XCTAssertTrue(wrongHash.stderr.contains("nothing was pinned"), wrongHash.stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: wallet.home + "/genesis.json"))
            do { let outcome = await wallet.run(["genesis", "trust", "--node", url, "--hash", "xyz"]); XCTAssertEqual(outcome.exitCode, 64) }

            let trusted = await wallet.run(["genesis", "trust", "--node", url, "--hash", hash.uppercased(), "--json"])
            XCTAssertEqual(trusted.exitCode, 0, trusted.stderr)
            XCTAssertEqual(trusted.json["genesis_hash"] as? String, hash)
            XCTAssertEqual(trusted.json["chain_id"] as? String, "tally-wallet-test")
            XCTAssertEqual(trusted.json["changed"] as? Bool, true)
            XCTAssertEqual(trusted.json["source"] as? String, url)
            XCTAssertEqual(try Genesis.load(path: wallet.home + "/genesis.json"), self.chain.genesis)
            let again = await wallet.run(["genesis", "trust", "--node", url, "--json"])
            XCTAssertEqual(again.json["changed"] as? Bool, false, again.stderr)
            let shown = await wallet.run(["genesis", "show", "--json"])
            XCTAssertEqual(shown.json["genesis_hash"] as? String, hash)
            let status = await wallet.run(["status", "--node", url, "--json"])
            XCTAssertEqual(status.json["genesis_trusted"] as? Bool, true)
        }
        let otherGenesisFile = wallet.file("other.json", String(decoding: other.genesis.jsonData(), as: UTF8.self))
        try await withServer(other.node()) { url in
            let refused = await wallet.run(["status", "--node", url, "--json"])
            XCTAssertEqual(refused.exitCode, 1)
            XCTAssertTrue(refused.stderr.contains("'tally-other'"), refused.stderr)
            XCTAssertEqual(refused.json["genesis_hash"] as? String, other.genesis.hash.hex)
            XCTAssertEqual(refused.json["trusted_genesis_hash"] as? String, hash)
            XCTAssertEqual(try Genesis.load(path: wallet.home + "/genesis.json"), self.chain.genesis, "pin unchanged")
            // Trusting another chain's node needs --replace.
            let switching = await wallet.run(["genesis", "trust", "--node", url])
            XCTAssertEqual(switching.exitCode, 1, switching.stderr)
            XCTAssertTrue(switching.stderr.contains("--replace"), switching.stderr)
            XCTAssertEqual(try Genesis.load(path: wallet.home + "/genesis.json"), self.chain.genesis, "pin unchanged")
            // --genesis FILE is trusted for the run and pins nothing.
            let overridden = await wallet.run(["status", "--node", url, "--genesis", otherGenesisFile, "--json"])
            XCTAssertEqual(overridden.exitCode, 0, overridden.stderr)
            XCTAssertEqual(overridden.json["chain_id"] as? String, "tally-other")
            XCTAssertEqual(overridden.json["trusted_genesis"] as? String, otherGenesisFile)
            XCTAssertEqual(try Genesis.load(path: wallet.home + "/genesis.json"), self.chain.genesis, "pin unchanged")
            do { let outcome = await wallet.run(["status", "--node", url, "--genesis", wallet.home + "/missing.json"]); XCTAssertEqual(outcome.exitCode, 2, outcome.stderr) }
            let replaced = await wallet.run(["genesis", "trust", "--genesis", otherGenesisFile, "--replace", "--json"])
            XCTAssertEqual(replaced.exitCode, 0, replaced.stderr)
            XCTAssertEqual(try Genesis.load(path: wallet.home + "/genesis.json"), other.genesis)
            let nowOk = await wallet.run(["status", "--node", url, "--json"])
            XCTAssertEqual(nowOk.exitCode, 0, nowOk.stderr)
        }
    }

    /// A port nothing listens on: bind one, then close it.
    func closedPort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress!.port!
        try await channel.close()
        return port
    }
}
