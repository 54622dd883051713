import ArgumentParser
import CSodium
import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes

/// Hot-path micro-benchmarks: one thread, each operation repeated for about
/// `--seconds`, reported as operations per second and nanoseconds per operation.
struct Micro: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Micro-benchmarks: encode/decode, Merkle root, verify (wrapper vs raw libsodium), state-root update.")

    @Option(name: .long, help: "Seconds per benchmark.") var seconds = 0.5
    @Option(name: .long, help: "Accounts in the ledger for the state-root benchmark.") var accounts = 100_000
    @Option(name: .long, help: ArgumentHelp("Write the JSON result here (else stdout).", valueName: "FILE")) var json: String?

    func run() throws {
        let key = DevnetKeys.accountKey(0)
        let recipient = Address(publicKey: DevnetKeys.accountKey(1).publicKey)
        // Any genesis hash: these time one transaction's encoding and signature check.
        let genesisHash = SHA256.hash(Array("tally-bench-micro".utf8))
        let transaction = Transaction.signed(
            by: key, chainID: DevnetKeys.chainID, genesisHash: genesisHash, to: recipient, amount: 10, fee: 1, nonce: 7)
        let bytes = transaction.canonicalBytes
        let signing = transaction.signingBytes(genesisHash: genesisHash)
        let publicKey = Array(key.publicKey.bytes)
        let signature = Array(transaction.signature.bytes)
        let leaves = (0..<1000).map { SHA256.hash(Array("leaf \($0)".utf8)) }

        var results: [[String: Any]] = []
        func bench(_ name: String, unit: Int = 1, _ body: () -> Void) {
            let perSecond = Self.measure(seconds: seconds, body) * Double(unit)
            benchLog(name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%12.0f ops/s %10.0f ns/op", perSecond, 1e9 / perSecond))
            results.append(["name": name, "ops_per_s": perSecond, "ns_per_op": 1e9 / perSecond])
        }
        bench("tx.encode") { precondition(transaction.canonicalBytes.count == bytes.count) }
        bench("tx.decode") { precondition((try? Transaction(canonicalBytes: bytes)) != nil) }
        bench("tx.hash") { _ = transaction.hash }
        bench("merkle.root(1000 leaves)") { _ = Merkle.root(leaves) }
        bench("verify.wrapper(PublicKey)") { precondition(key.publicKey.isValidSignature(transaction.signature, for: signing)) }
        bench("verify.raw(libsodium)") {
            precondition(crypto_sign_verify_detached(signature, signing, UInt64(signing.count), publicKey) == 0)
        }
        bench("verify.transaction(VerifiedTransaction)") { precondition(VerifiedTransaction(transaction, genesisHash: genesisHash) != nil) }
        results.append(stateRootBenchmark())
        try writeJSON(["micro": results], to: json)
    }

    /// Applies blocks of 1,000 pre-verified transfers to a ledger of `accounts`
    /// accounts; reports per-block time (state-root update dominates).
    func stateRootBenchmark() -> [String: Any] {
        let senders = (0..<1000).map { DevnetKeys.accountKey($0) }
        var genesisAccounts = senders.map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: 1_000_000_000) }
        for index in genesisAccounts.count..<max(accounts, genesisAccounts.count) {
            let digest = SHA256.hash(Array("bench-account-\(index)".utf8))
            genesisAccounts.append(GenesisAccount(address: Address(bytes: Array(digest.bytes.prefix(20)))!, balance: 1))
        }
        let genesis = try! Genesis(chainID: DevnetKeys.chainID, genesisTimeMs: 0, validators: DevnetKeys.validators(), accounts: genesisAccounts)
        var ledger = Ledger(genesis: genesis)
        let genesisHash = ledger.genesisHash
        let blocks = 10
        let prepared: [[VerifiedTransaction]] = (0..<blocks).map { height in
            senders.enumerated().map { index, key in
                let recipient = genesisAccounts[(index * 7919 + height * 104_729) % genesisAccounts.count].address
                return VerifiedTransaction(signatureAlreadyVerified: Transaction.signed(
                    by: key, chainID: DevnetKeys.chainID, genesisHash: genesisHash, to: recipient, amount: 1, fee: 1,
                    nonce: UInt64(height)))
            }
        }
        let start = monotonicSeconds()
        for block in prepared { _ = ledger.apply(block, proposer: 0) }
        let perBlock = (monotonicSeconds() - start) / Double(blocks)
        let name = "ledger.apply(1000 tx, \(accounts) accounts)"
        benchLog(name.padding(toLength: 44, withPad: " ", startingAt: 0) + String(format: "%12.1f blocks/s %8.2f ms/block", 1 / perBlock, perBlock * 1000))
        return ["name": name, "ops_per_s": 1 / perBlock, "ns_per_op": perBlock * 1e9]
    }

    /// Calls per second of `body`, run in chunks until `seconds` have passed.
    static func measure(seconds: Double, _ body: () -> Void) -> Double {
        for _ in 0..<10 { body() }  // warm up
        var count = 0
        let start = monotonicSeconds()
        var elapsed = 0.0
        repeat {
            for _ in 0..<50 { body() }
            count += 50
            elapsed = monotonicSeconds() - start
        } while elapsed < seconds
        return Double(count) / elapsed
    }
}
