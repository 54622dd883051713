import Foundation
import TallyCrypto
import TallyTypes
import XCTest

/// Crashes, restarts, a wiped validator, then `tally verify` on every data
/// directory. One network for the whole story, as an operator would live it.
final class FaultTests: XCTestCase, @unchecked Sendable {
    var nonce: UInt64 = 0

    func transfers(_ network: LocalNetwork, count: Int) -> [Transaction] {
        (0..<count).map { _ in
            defer { nonce += 1 }
            let recipient = Address(publicKey: SigningKey(seed: SHA256.hash(Array("r\(nonce)".utf8)).bytes)!.publicKey)
            return Transaction.signed(by: network.faucet, chainID: network.genesis.chainID, genesisHash: network.genesis.hash, to: recipient, amount: 7, fee: 1, nonce: nonce)
        }
    }

    /// Submits and waits until the faucet's nonce reached `nonce` on `nodes`.
    func submitAndCommit(_ network: LocalNetwork, via node: Int, count: Int, on nodes: [Int], seconds: Double = 60) async throws {
        let response = try await network.submitBatch(node, transfers(network, count: count))
        let results = response["results"] as? [[String: Any]] ?? []
        XCTAssertTrue(results.allSatisfy { $0["error"] == nil }, "\(response)")
        try await network.waitForFaucetNonce(nonce, on: nodes, seconds: seconds)
    }

    /// Four validators started and answering.
    func startedNetwork() async throws -> LocalNetwork {
        let network = try LocalNetwork()
        try network.startAll()
        try await network.waitUntil("validators up", seconds: 60) {
            for node in 0..<4 { guard await network.height(node) != nil else { return false } }
            return true
        }
        return network
    }

    func testCrashViewChangeCatchUpWipeAndVerify() async throws {
        let network = try await startedNetwork()
        defer { network.stop() }
        try await submitAndCommit(network, via: 0, count: 5, on: [0, 1, 2, 3])

        // 1. kill -9 the primary of view 0: a view change, then commits continue.
        network.kill(0)
        try await submitAndCommit(network, via: 1, count: 5, on: [1, 2, 3])
        let status = try await network.json(1, "status")
        // A missing or malformed field fails too (not only "0").
        let view = try XCTUnwrap((status["view"] as? String).flatMap { UInt64($0) }, "no view in /status")
        XCTAssertGreaterThan(view, 0, "a view change must have replaced the dead primary")

        // 2. The old primary restarts and catches up by block sync.
        try network.start(0)
        try await submitAndCommit(network, via: 2, count: 3, on: [0, 1, 2, 3])

        // 3. kill -9 a backup, keep committing without it, restart it: it catches up.
        network.kill(2)
        try await submitAndCommit(network, via: 3, count: 4, on: [0, 1, 3])
        try network.start(2)
        let tip = await network.height(1)!
        try await network.waitForHeight(tip, on: [2])

        // 4. Wipe a validator (unsafe-reset-all) and restart: it syncs from height 1.
        network.terminate(3)
        let reset = try LocalNetwork.run(LocalNetwork.binary("tally-node"), ["unsafe-reset-all", "--home", network.home(3), "--yes"])
        XCTAssertEqual(reset.status, 0, reset.output)
        try network.start(3)
        // Regression: on an idle chain the wiped node must still reach the tip (it
        // once synced only up to the last checkpoint and waited for new traffic).
        let idleTip = await network.height(1)!
        try await network.waitForHeight(idleTip, on: [3])
        try await submitAndCommit(network, via: 1, count: 2, on: [0, 1, 2, 3])

        // 5. Identical blocks everywhere, and `tally verify` passes on every data directory.
        let height = await network.height(1)!
        for h in 1...height {
            var hashes = Set<Hash>()
            for node in 0..<4 { if let block = try await network.block(node, h) { hashes.insert(block.block.hash) } }
            XCTAssertEqual(hashes.count, 1, "validators disagree at height \(h)")
        }
        for node in 0..<4 { network.terminate(node) }
        for node in 0..<4 {
            let verify = try LocalNetwork.run(LocalNetwork.binary("tally"), ["verify", "--home", network.home(node), "--json"])
            XCTAssertEqual(verify.status, 0, "node\(node): \(verify.output)")
            XCTAssertTrue(verify.output.contains("\"valid\":true") || verify.output.contains("\"valid\" : true"), verify.output)
        }
    }

    /// Issue 13 item 5, as reproduced with tools/testnet: the view-0 primary is killed,
    /// three transfers commit in view 1, then every validator restarts and nothing is
    /// sent. The old primary must learn from its peers that it is behind and fetch the
    /// blocks with no new traffic (it stayed at its height for good), and then serve a
    /// current nonce: a transfer sent through it commits everywhere.
    func testValidatorRestartedBehindCatchesUpOnAQuietChain() async throws {
        let network = try await startedNetwork()
        defer { network.stop() }
        try await submitAndCommit(network, via: 0, count: 1, on: [0, 1, 2, 3])
        network.kill(0)
        try await submitAndCommit(network, via: 2, count: 3, on: [1, 2, 3])
        let behind = await network.height(0)
        XCTAssertNil(behind, "node0 is down")
        for node in 1..<4 { network.kill(node) }
        try network.startAll()
        var tip: UInt64 = 0
        try await network.waitUntil("node1 up", seconds: 60) {
            tip = await network.height(1) ?? 0
            return tip > 0
        }
        try await network.waitForFaucetNonce(nonce, on: [0], seconds: 30)
        try await network.waitForHeight(tip, on: [0])
        let status = try await network.json(0, "status")
        XCTAssertEqual(status["catching_up"] as? Bool, false, "\(status)")
        // Issue 17: each restarted node still lists the faucet's whole history (its
        // persisted account index; node0's includes the blocks it caught up on).
        let faucet = Address(publicKey: network.faucet.publicKey).bech32m
        for node in 0..<4 {
            let page = try await network.json(node, "accounts/\(faucet)/txs")
            XCTAssertEqual(page["indexed_from_height"] as? String, "1", "node\(node): \(page)")
            let nonces = (page["transactions"] as? [[String: Any]] ?? []).compactMap { $0["nonce"] as? String }
            XCTAssertEqual(nonces, (0..<nonce).reversed().map(String.init), "node\(node): the faucet's transfers, newest first")
        }
        try await submitAndCommit(network, via: 0, count: 1, on: [0, 1, 2, 3])
    }

    /// Issue 13 item 8, as reproduced: a copy of the view-0 primary's data directory is
    /// taken, more blocks commit on its proposals, it is killed and the others paused,
    /// the copy is put back and it is restarted and sent a transfer. Before the fix it
    /// signed a second PRE-PREPARE for a height it had proposed already (its peers,
    /// resumed, held the two: equivocation). Now the signing mark outside data/ and the
    /// start-up quarantine hold it back; it must still rejoin and commit after that.
    func testValidatorRestoredFromAnOlderDataDirectoryDoesNotSignAgain() async throws {
        let network = try await startedNetwork()
        defer { network.stop() }
        try await submitAndCommit(network, via: 0, count: 1, on: [0, 1, 2, 3])
        let copy = network.dataDirectory(0) + ".copy"
        network.signal(0, SIGSTOP)
        try FileManager.default.copyItem(atPath: network.dataDirectory(0), toPath: copy)
        network.signal(0, SIGCONT)
        for _ in 0..<3 { try await submitAndCommit(network, via: 0, count: 1, on: [0, 1, 2, 3]) }
        network.kill(0)
        for node in 1..<4 { network.signal(node, SIGSTOP) }
        try FileManager.default.removeItem(atPath: network.dataDirectory(0))
        try FileManager.default.moveItem(atPath: copy, toPath: network.dataDirectory(0))
        try network.start(0)
        try await network.waitUntil("node0 up", seconds: 60) { await network.height(0) != nil }
        let restoredHeight = await network.height(0)
        XCTAssertEqual(restoredHeight, 1)
        // What the restored node would propose at height 2: the faucet's nonce 1 again, to someone else.
        let recipient = Address(publicKey: SigningKey(seed: SHA256.hash(Array("restored".utf8)).bytes)!.publicKey)
        let again = Transaction.signed(by: network.faucet, chainID: network.genesis.chainID, genesisHash: network.genesis.hash, to: recipient, amount: 3, fee: 1, nonce: 1)
        _ = try await network.submitBatch(0, [again])
        try await Task.sleep(for: .seconds(2))
        for node in 1..<4 { network.signal(node, SIGCONT) }
        try await network.waitForHeight(4, on: [0], seconds: 60)
        try await Task.sleep(for: .seconds(2))
        for node in 1..<4 {
            let (status, body) = try await network.request(node, "evidence")
            XCTAssertEqual(status, 200)
            let evidence = try JSONSerialization.jsonObject(with: body) as? [[String: Any]]
            XCTAssertEqual(evidence?.count, 0, "node\(node) holds conflicting statements of node0: \(evidence ?? [])")
        }
        XCTAssertTrue(network.log(0).contains("consensus journal is behind the signing mark"), "no start-up warning")
        // It rejoins: transfers sent through it commit everywhere, and it serves current nonces.
        try await submitAndCommit(network, via: 0, count: 1, on: [0, 1, 2, 3])
        try await submitAndCommit(network, via: 1, count: 1, on: [0, 1, 2, 3])
        let status = try await network.json(0, "status")
        XCTAssertEqual(status["catching_up"] as? Bool, false, "\(status)")
        for height in 1...UInt64(6) {
            var hashes: Set<Hash> = []
            for node in 0..<4 { if let block = try await network.block(node, height) { hashes.insert(block.block.hash) } }
            XCTAssertEqual(hashes.count, 1, "fork at height \(height)")
        }
    }
}

