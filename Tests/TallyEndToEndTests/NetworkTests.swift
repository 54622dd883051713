import Foundation
import TallyCrypto
import TallyTypes
import XCTest

final class NetworkTests: XCTestCase, @unchecked Sendable {
    /// Transfers submitted through one node are committed on all four, in identical
    /// blocks whose certificates verify against genesis.
    func testTransfersCommitIdenticallyOnAllValidators() async throws {
        let network = try LocalNetwork()
        defer { network.stop() }
        try network.startAll()
        let recipients = (0..<10).map { Address(publicKey: SigningKey(seed: SHA256.hash([UInt8($0)]).bytes)!.publicKey) }
        let transactions = recipients.enumerated().map { offset, recipient in
            Transaction.signed(by: network.faucet, chainID: network.genesis.chainID, genesisHash: network.genesis.hash, to: recipient,
                               amount: 1_000 + UInt64(offset), fee: 2, nonce: UInt64(offset))
        }
        try await network.waitUntil("all validators up", seconds: 60) {
            for node in 0..<4 { guard await network.height(node) != nil else { return false } }
            return true
        }
        let result = try await network.submitBatch(1, transactions)
        let results = result["results"] as? [[String: Any]] ?? []
        XCTAssertEqual(results.count, 10)
        XCTAssertTrue(results.allSatisfy { $0["error"] == nil }, "\(results)")
        try await network.waitUntil("all transfers committed everywhere") {
            for node in 0..<4 {
                guard let account = try? await network.json(node, "accounts/\(recipients[9].bech32m)"),
                      account["balance"] as? String == "1009" else { return false }
            }
            return true
        }
        let height = await network.height(0)!
        try await network.waitUntil("every node at height \(height)") {
            for node in 0..<4 { guard let other = await network.height(node), other >= height else { return false } }
            return true
        }
        for h in 1...height {
            var hashes = Set<Hash>()
            for node in 0..<4 {
                // Every node must serve every height: a node lacking a block is a failure, not a skip.
                guard let certified = try await network.block(node, h) else {
                    XCTFail("node\(node) serves no block at height \(h)")
                    continue
                }
                try certified.certificate.verify(height: h, blockHash: certified.block.hash,
                                                 validators: network.genesis.validators, chainID: network.genesis.chainID)
                hashes.insert(certified.block.hash)
            }
            XCTAssertEqual(hashes.count, 1, "validators disagree at height \(h)")
        }

        // A clean stop with an /events subscriber connected exits promptly and
        // cleanly (regression: the HTTP server's drain waited on the stream forever).
        let subscriber = try network.openEventStream(0)
        defer { close(subscriber) }
        XCTAssertEqual(network.terminate(0, graceSeconds: 20), 0, "node0 did not stop cleanly on SIGTERM with a subscriber:\n\(network.log(0).suffix(2000))")
    }
}
