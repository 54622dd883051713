import Foundation
import TallyCrypto
import TallyLedger
import TallyStore
import TallyTestbed
import TallyTypes
import TallyVerify

/// One end-of-run property, PASS or FAIL with the evidence.
struct CheckResult {
    let name: String
    let passed: Bool
    let detail: String
}

/// The checks that read the stopped validators' data directories.
enum ChainChecks {
    /// Every block in a data directory, in height order.
    static func readChain(dataDirectory: String) throws -> [CertifiedBlock] {
        var reader = try ChainReader(dataDirectory: dataDirectory)
        var blocks: [CertifiedBlock] = []
        while let record = try reader.next() { blocks.append(try record.decode()) }
        return blocks
    }

    /// Every pair of validators has identical blocks at every height both have.
    static func agreement(_ chains: [Int: [CertifiedBlock]]) -> CheckResult {
        let nodes = chains.keys.sorted()
        var disagreements: [String] = []
        for (position, first) in nodes.enumerated() {
            for second in nodes[(position + 1)...] {
                let a = chains[first]!, b = chains[second]!
                for height in 0..<min(a.count, b.count) where a[height].block.hash != b[height].block.hash {
                    disagreements.append("node\(first)/node\(second) at height \(height + 1)")
                    break
                }
            }
        }
        let heights = nodes.map { "node\($0)=\(chains[$0]!.count)" }.joined(separator: " ")
        return CheckResult(
            name: "identical blocks on every pair of honest validators", passed: disagreements.isEmpty,
            detail: disagreements.isEmpty ? "heights \(heights)" : "disagree: " + disagreements.joined(separator: ", "))
    }

    /// `tally verify` on every data directory (the nodes must be stopped).
    static func verify(cluster: Testbed) -> CheckResult {
        var failures: [String] = []
        for node in 0..<cluster.validators {
            do {
                let result = try runProcess(
                    cluster.binaries.appendingPathComponent("tally"), ["verify", "--home", cluster.home(node), "--json"])
                if result.status != 0 { failures.append("node\(node): exit \(result.status) \(result.output.prefix(400))") }
            } catch { failures.append("node\(node): \(error)") }
        }
        return CheckResult(
            name: "tally verify on every data directory", passed: failures.isEmpty,
            detail: failures.isEmpty ? "\(cluster.validators) valid" : failures.joined(separator: "; "))
    }

    /// Replays the chain from genesis; every acknowledged transaction is in it exactly
    /// once (at the height a node reported), and the balances add up to the supply.
    static func replay(chain: [CertifiedBlock], genesis: Genesis, acknowledged: [Hash: UInt64]) -> (ledger: Ledger?, results: [CheckResult]) {
        var verifier = ChainVerifier(genesis: genesis)
        var occurrences: [Hash: [UInt64]] = [:]
        for certified in chain {
            do { try verifier.verifyNext(certified) } catch {
                return (nil, [CheckResult(name: "replay of the longest chain", passed: false, detail: "\(error)")])
            }
            for transaction in certified.block.transactions { occurrences[transaction.hash, default: []].append(certified.block.height) }
        }
        var missing = 0, repeated = 0, misplaced = 0
        for (hash, height) in acknowledged {
            let found = occurrences[hash] ?? []
            if found.isEmpty { missing += 1 } else if found.count > 1 { repeated += 1 } else if found[0] != height { misplaced += 1 }
        }
        let duplicatesAnywhere = occurrences.values.filter { $0.count > 1 }.count
        let ledger = verifier.ledger
        let exactlyOnce = CheckResult(
            name: "every acknowledged transaction in the chain exactly once",
            passed: missing == 0 && repeated == 0 && misplaced == 0 && duplicatesAnywhere == 0,
            detail: "\(acknowledged.count) acknowledged; missing \(missing), repeated \(repeated), at another height \(misplaced); "
                + "\(occurrences.count) distinct transactions in \(chain.count) blocks, \(duplicatesAnywhere) duplicated")
        let supply = CheckResult(
            name: "total supply conserved (replayed ledger)", passed: ledger.balanceSum == genesis.totalSupply,
            detail: "sum of \(ledger.accountCount) balances \(ledger.balanceSum), genesis supply \(genesis.totalSupply)")
        return (ledger, [exactlyOnce, supply])
    }
}
