import Foundation
import TallyCrypto
import TallyTypes

/// Deterministic keys and values shared by the tests.
enum Fixtures {
    static func key(_ label: String) -> SigningKey {
        SigningKey(seed: SHA256.hash(Array(label.utf8)).bytes)!
    }

    /// Devnet keys: SHA-256("tally-devnet-validator-<i>") and
    /// SHA-256("tally-devnet-account-<i>"), as genesis/README.md documents.
    static func devnetValidatorKey(_ index: Int) -> SigningKey { key("tally-devnet-validator-\(index)") }
    static func devnetAccountKey(_ index: Int) -> SigningKey { key("tally-devnet-account-\(index)") }

    static let chainID = "tally-golden"

    static var validators: [Validator] {
        (0..<4).map {
            Validator(name: "validator\($0)", publicKey: devnetValidatorKey($0).publicKey, networkAddress: "127.0.0.1:\(7800 + $0)")
        }
    }

    static var genesis: Genesis {
        try! Genesis(
            chainID: chainID, genesisTimeMs: 1_767_225_600_000, validators: validators,
            accounts: [GenesisAccount(address: Address(publicKey: key("alice").publicKey), balance: 1_000_000)])
    }

    static var transaction: Transaction {
        Transaction.signed(
            by: key("alice"), chainID: chainID, genesisHash: genesis.hash, to: Address(publicKey: key("bob").publicKey),
            amount: 250_000, fee: 10, nonce: 7)
    }

    static var header: BlockHeader {
        BlockHeader(
            height: 42, view: 3, timestampMs: 1_767_225_601_234, previousHash: SHA256.hash(Array("prev".utf8)),
            transactionsRoot: Block.transactionsRoot([transaction]), stateRoot: SHA256.hash(Array("state".utf8)),
            proposer: 3, transactionCount: 1)
    }

    static var block: Block { Block(header: header, transactions: [transaction]) }

    static var certificate: CommitCertificate {
        let target = VoteTarget(phase: .commit, view: 3, height: 42, blockHash: block.hash)
        let message = target.signingBytes(chainID: chainID)
        return CommitCertificate(
            view: 3, height: 42, blockHash: block.hash,
            signatures: [0, 1, 3].map {
                CommitCertificate.Entry(validatorIndex: UInt32($0), signature: devnetValidatorKey($0).sign(message))
            })
    }
}
