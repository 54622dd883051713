import Foundation
import TallyCrypto
import TallyTypes
import XCTest
@testable import TallyWallet

/// `tally history` against the real HTTP API router in a real server.
final class HistoryTests: XCTestCase, @unchecked Sendable {
    let chain = TestChain()

    func testHistoryListsNewestFirstAndPages() async throws {
        let wallet = WalletHarness()
        let genesisFile = wallet.file("chain-genesis.json", String(decoding: chain.genesis.jsonData(), as: UTF8.self))
        let trusted = await wallet.run(["genesis", "trust", "--genesis", genesisFile])
        XCTAssertEqual(trusted.exitCode, 0, trusted.stderr)
        let node = chain.node()
        let faucet = Address(publicKey: chain.faucet.publicKey)
        let alice = Address(publicKey: SigningKey(seed: SHA256.hash(Array("alice".utf8)).bytes)!.publicKey)
        // Five transfers faucet → alice, one block each, then one other → faucet.
        var hashes: [String] = []
        for nonce in 0..<5 {
            let transfer = Transaction.signed(by: chain.faucet, chainID: chain.genesis.chainID, genesisHash: chain.genesis.hash,
                                              to: alice, amount: UInt64(nonce + 1) * 1_000_000, fee: 1_000, nonce: UInt64(nonce))
            let admitted = await node.submit([transfer])
            XCTAssertNoThrow(try admitted[0].get())
            await node.produceBlock()
            hashes.append(transfer.hash.hex)
        }
        let incoming = Transaction.signed(by: chain.other, chainID: chain.genesis.chainID, genesisHash: chain.genesis.hash,
                                          to: faucet, amount: 7, fee: 1_000, nonce: 0)
        let admitted = await node.submit([incoming])
        XCTAssertNoThrow(try admitted[0].get())
        await node.produceBlock()

        let sent = hashes
        try await withServer(node) { url in
            let first = await wallet.run(["history", alice.bech32m, "--node", url, "--limit", "2", "--json"])
            XCTAssertEqual(first.exitCode, 0, first.stderr)
            let firstItems = first.json["transactions"] as? [[String: Any]] ?? []
            XCTAssertEqual(firstItems.map { $0["hash"] as? String }, [sent[4], sent[3]])
            XCTAssertEqual(firstItems.first?["direction"] as? String, "received")
            XCTAssertEqual(firstItems.first?["amount"] as? String, "5.000000")
            XCTAssertEqual(firstItems.first?["height"] as? String, "5")
            XCTAssertEqual(first.json["next"] as? String, "4:0")
            XCTAssertEqual(first.json["indexed_from_height"] as? String, "1")

            let second = await wallet.run(["history", alice.bech32m, "--node", url, "--limit", "2", "--before", "4:0", "--json"])
            XCTAssertEqual((second.json["transactions"] as? [[String: Any]])?.map { $0["hash"] as? String }, [sent[2], sent[1]])
            let last = await wallet.run(["history", alice.bech32m, "--node", url, "--limit", "2", "--before", "2:0", "--json"])
            XCTAssertEqual((last.json["transactions"] as? [[String: Any]])?.map { $0["hash"] as? String }, [sent[0]])
            XCTAssertTrue(last.json["next"] is NSNull, "\(last.json)")

            // The faucet: received from other (newest), then its five sends.
            let text = await wallet.run(["history", faucet.bech32m, "--node", url, "--limit", "3"])
            XCTAssertEqual(text.exitCode, 0, text.stderr)
            let lines = text.stdout.split(separator: "\n").map(String.init)
            XCTAssertEqual(lines.count, 5, text.stdout)
            XCTAssertTrue(lines[1].hasPrefix("  6:0  \(incoming.hash.hex)  received 0.000007 TALLY from "), lines[1])
            XCTAssertTrue(lines[2].contains("sent 5.000000 TALLY to \(alice.bech32m)"), lines[2])
            XCTAssertEqual(lines[4], "older: tally history \(faucet.bech32m) --before 4:0 --limit 3")

            let unseen = Address(publicKey: SigningKey(seed: SHA256.hash([9]).bytes)!.publicKey)
            let empty = await wallet.run(["history", unseen.bech32m, "--node", url, "--json"])
            XCTAssertEqual(empty.exitCode, 0, empty.stderr)
            XCTAssertEqual((empty.json["transactions"] as? [Any])?.count, 0)
        }
    }

    func testHistoryArgumentsAreChecked() async throws {
        let wallet = WalletHarness()
        let address = "tally1q3kjzmpe5e6wqqyyv08423w9e095ksxev2mp3g"
        for arguments in [["history", address, "--limit", "0"], ["history", address, "--limit", "101"],
                          ["history", address, "--before", "5"], ["history", address, "--before", "+1:2"],
                          ["history", "tally1q3kjzmpe5e6wqqyyv08423w9e095ksxev2mp3h"]] {
            let outcome = await wallet.run(arguments)
            XCTAssertEqual(outcome.exitCode, 64, "\(arguments): \(outcome.stderr)")
        }
        // No pin: exit 2, as the other chain commands.
        let unpinned = await wallet.run(["history", address, "--node", "http://127.0.0.1:1"])
        XCTAssertEqual(unpinned.exitCode, 2, unpinned.stderr)
    }

    /// A node whose list names another account's transaction is an unusable answer (exit 4).
    func testAListOfAnotherAccountIsRefused() throws {
        let alice = Address(publicKey: chain.faucet.publicKey)
        let bob = Address(publicKey: chain.other.publicKey)
        let item: [String: Any] = ["hash": String(repeating: "ab", count: 32), "height": "3", "index": 0, "from": bob.bech32m,
                                   "to": bob.bech32m, "amount": "1", "fee": "1", "nonce": "0"]
        let node = NodeClient(baseURL: "http://node")
        XCTAssertThrowsError(try History.parse(["address": alice.bech32m, "transactions": [item], "next": NSNull(),
                                                "indexed_from_height": "1"], address: alice, limit: 10, node: node)) {
            XCTAssertEqual(($0 as? WalletError)?.exitCode, .nodeUnreachable)
        }
        var older = item
        older["from"] = alice.bech32m
        var newer = older
        newer["height"] = "4"
        XCTAssertThrowsError(try History.parse(["address": alice.bech32m, "transactions": [older, newer], "next": NSNull(),
                                                "indexed_from_height": "1"], address: alice, limit: 10, node: node), "oldest first")
        XCTAssertNoThrow(try History.parse(["address": alice.bech32m, "transactions": [newer, older], "next": "3:0",
                                            "indexed_from_height": "1"], address: alice, limit: 10, node: node))
    }
}
