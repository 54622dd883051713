import Foundation
import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyNode

/// `BlockJSON.text` writes the block routes' JSON by hand; it must stay byte for byte
/// what the generic serialiser makes of `HTTPAPI.blockJSON` (keys sorted), which the
/// OpenAPI document, the explorer and every client read.
final class BlockJSONTests: XCTestCase {
    let validatorKeys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("block-json-v\($0)".utf8)).bytes)! }
    let sender = SigningKey(seed: SHA256.hash(Array("block-json-sender".utf8)).bytes)!

    func certified(transactions count: Int, amount: UInt64, fee: UInt64, signers: [Int], height: UInt64, view: UInt64) -> CertifiedBlock {
        let transactions = (0..<count).map {
            Transaction.signed(by: sender, chainID: "tally-json", genesisHash: SHA256.hash([9]),
                               to: Address(bytes: [UInt8](repeating: UInt8($0 % 256), count: 20))!, amount: amount, fee: fee,
                               nonce: UInt64.max - UInt64($0))
        }
        let header = BlockHeader(
            height: height, view: view, timestampMs: UInt64.max - 1, previousHash: SHA256.hash([1]),
            transactionsRoot: Block.transactionsRoot(transactions), stateRoot: SHA256.hash([2]), proposer: UInt32(view % 4),
            transactionCount: UInt32(transactions.count))
        let block = Block(header: header, transactions: transactions)
        let target = VoteTarget(phase: .commit, view: view, height: height, blockHash: block.hash)
        let signatures = signers.map {
            CommitCertificate.Entry(validatorIndex: UInt32($0), signature: validatorKeys[$0].sign(target.signingBytes(chainID: "tally-json")))
        }
        return CertifiedBlock(block: block, certificate: CommitCertificate(view: view, height: height, blockHash: block.hash, signatures: signatures))
    }

    func generic(_ certified: CertifiedBlock) throws -> [UInt8] {
        [UInt8](try JSONSerialization.data(withJSONObject: HTTPAPI.blockJSON(certified), options: [.sortedKeys]))
    }

    func testTheWrittenJSONIsTheSerialisersBytes() throws {
        let blocks = [
            certified(transactions: 0, amount: 0, fee: 0, signers: [], height: 1, view: 0),
            certified(transactions: 1, amount: 1, fee: 1, signers: [3], height: 2, view: 1),
            certified(transactions: 7, amount: UInt64.max, fee: UInt64.max, signers: [0, 2, 3], height: UInt64.max, view: UInt64.max),
            certified(transactions: 300, amount: 42_000_001, fee: 1_000, signers: [0, 1, 2, 3], height: 1_234_567, view: 12),
        ]
        for block in blocks {
            let written = Array(BlockJSON.text(block).utf8)
            XCTAssertEqual(String(decoding: written, as: UTF8.self), String(decoding: try generic(block), as: UTF8.self),
                           "block of \(block.block.transactions.count) transactions")
            XCTAssertNotNil(try? JSONSerialization.jsonObject(with: Data(written)) as? [String: Any])
        }
    }

    func testTheCommittedTransactionAnswerIsTheSerialisersBytes() throws {
        let hashes = (0..<37).map { SHA256.hash([UInt8($0)]) }
        for (index, leafCount) in [(0, 1), (0, 2), (36, 37), (17, 37)] {
            let proof = Merkle.proof(Array(hashes.prefix(leafCount)), index: index)!
            let written = Array(BlockJSON.committedText(hash: hashes[index], height: UInt64.max, index: index, blockHash: hashes[1], proof: proof).utf8)
            let object = HTTPAPI.committedJSON(hash: hashes[index], height: UInt64.max, index: index, blockHash: hashes[1], proof: proof)
            let generic = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            XCTAssertEqual(String(decoding: written, as: UTF8.self), String(decoding: generic, as: UTF8.self), "leaf \(index) of \(leafCount)")
        }
    }
}
