import Foundation
import TallyCrypto
import TallyTypes
import XCTest

final class ManualRunFigures: XCTestCase, @unchecked Sendable {
    func testPrintFigures() async throws {
        guard ProcessInfo.processInfo.environment["TALLY_MANUAL_RUN"] == "1" else { return }
        let network = try LocalNetwork()
        defer { network.stop() }
        try network.startAll()
        try await network.waitUntil("up", seconds: 60) {
            for n in 0..<4 { guard let s = try? await network.json(n, "status"), (s["peers_connected"] as? Int ?? 0) >= 3 else { return false } }
            return true
        }
        var nonce: UInt64 = 0
        func batch(_ count: Int) -> [Transaction] {
            (0..<count).map { _ in
                defer { nonce += 1 }
                return Transaction.signed(by: network.faucet, chainID: network.genesis.chainID,
                    to: Address(publicKey: SigningKey(seed: SHA256.hash(Array("m\(nonce % 500)".utf8)).bytes)!.publicKey), amount: 3, fee: 1, nonce: nonce)
            }
        }
        let faucet = Address(publicKey: network.faucet.publicKey).bech32m
        func waitNonce(_ nodes: [Int]) async throws {
            let want = String(nonce)
            try await network.waitUntil("nonce \(want)", seconds: 120) {
                for n in nodes { guard (try? await network.json(n, "accounts/\(faucet)"))?["nonce"] as? String == want else { return false } }
                return true
            }
        }
        var clock = ContinuousClock.now
        for _ in 0..<10 { _ = try await network.submit(0, batch(500)); try await waitNonce([0]) }
        try await waitNonce([0, 1, 2, 3])
        print("FIGURE 5000 txs committed on all 4 in \(ContinuousClock.now - clock); height \(await network.height(0)!)")
        network.kill(0)
        clock = ContinuousClock.now
        _ = try await network.submit(1, batch(100))
        try await waitNonce([1, 2, 3])
        let status = try await network.json(1, "status")
        print("FIGURE after kill -9 of primary: commit resumed in \(ContinuousClock.now - clock); view \(status["view"]!) height \(status["height"]!)")
        try network.start(0)
        for _ in 0..<10 { _ = try await network.submit(1, batch(500)); try await waitNonce([1]) }
        do { try await waitNonce([0, 1, 2, 3]) } catch {
            for n in 0..<4 { print("FIGURE node\(n) status \((try? await network.json(n, "status")) ?? [:]) faucet \(((try? await network.json(n, "accounts/\(faucet)")) ?? [:])["nonce"] ?? "-")") }
            for n in 0..<4 { print("FIGURE LOG node\(n)\n" + network.log(n).split(separator: "\n").suffix(15).joined(separator: "\n")) }
            throw error
        }
        let tip = await network.height(1)!
        network.terminate(3)
        _ = try LocalNetwork.run(LocalNetwork.binary("tally-node"), ["unsafe-reset-all", "--home", network.home(3), "--yes"])
        clock = ContinuousClock.now
        try network.start(3)
        try await network.waitForHeight(tip, on: [3], seconds: 300)
        print("FIGURE wiped validator synced \(tip) blocks from height 1 in \(ContinuousClock.now - clock)")
        let (_, metrics) = try await network.request(1, "metrics")
        print("FIGURE metrics node1:\n" + String(decoding: metrics, as: UTF8.self).split(separator: "\n").filter { $0.hasPrefix("tally_view") || $0.hasPrefix("tally_height") || $0.hasPrefix("tally_blocks") || $0.hasPrefix("tally_transactions_committed") }.joined(separator: "\n"))
    }
}
