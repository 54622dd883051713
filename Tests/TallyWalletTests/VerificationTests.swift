import TallyCrypto
import TallyTypes
import XCTest
@testable import TallyWallet

/// `Verification` on certified blocks built by the test node, then altered.
final class VerificationTests: XCTestCase {
    let chain = TestChain()

    func committedBlock(transactions count: Int) async throws -> CertifiedBlock {
        let node = chain.node()
        let recipient = Address(publicKey: chain.other.publicKey)
        let genesisHash = chain.genesis.hash
        let transactions = (0..<UInt64(count)).map {
            Transaction.signed(
                by: chain.faucet, chainID: chain.genesis.chainID, genesisHash: genesisHash, to: recipient, amount: 1 + $0, fee: 1,
                nonce: $0)
        }
        let admitted = await node.submit(transactions)
        XCTAssertTrue(admitted.allSatisfy { (try? $0.get()) != nil })
        let height = await node.produceBlock()
        XCTAssertEqual(height, 1)
        let block = await node.block(at: 1)
        return try XCTUnwrap(block)
    }

    func testGenuineBlockAndEveryInclusionProofCheck() async throws {
        let certified = try await committedBlock(transactions: 5)
        XCTAssertEqual(try Verification.check(certified, height: 1, genesis: chain.genesis), 3)
        let hashes = certified.block.transactions.map(\.hash)
        for index in hashes.indices {
            let proof = try XCTUnwrap(Merkle.proof(hashes, index: index))
            XCTAssertNoThrow(try Verification.checkInclusion(of: hashes[index], index: index, proof: proof, in: certified))
            let other = (index + 1) % hashes.count
            XCTAssertThrowsError(try Verification.checkInclusion(of: hashes[other], index: index, proof: proof, in: certified))
            let wrongCount = InclusionProof(index: proof.index, leafCount: proof.leafCount + 1, path: proof.path)
            XCTAssertThrowsError(try Verification.checkInclusion(of: hashes[index], index: index, proof: wrongCount, in: certified))
        }
    }

    func testAlteredBlocksFail() async throws {
        let certified = try await committedBlock(transactions: 2)
        func failure(_ block: CertifiedBlock, height: UInt64 = 1, genesis: Genesis? = nil) -> String {
            do {
                try Verification.check(block, height: height, genesis: genesis ?? chain.genesis)
                return "accepted"
            } catch { return (error as? WalletError)?.message ?? "\(error)" }
        }
        var swapped = certified
        swapped.block.transactions.reverse()
        XCTAssertTrue(failure(swapped).contains("do not hash to its transactions_root"))
        var otherHeader = certified
        otherHeader.block.header.timestampMs += 1
        XCTAssertTrue(failure(otherHeader).contains("certificate is for block"))
        XCTAssertTrue(failure(certified, height: 2).contains("the node sent height 1"))
        var duplicated = certified
        duplicated.certificate.signatures.insert(duplicated.certificate.signatures[0], at: 1)
        XCTAssertTrue(failure(duplicated).contains("repeats or is out of order"))
        let stranger = TestChain(salt: "stranger").genesis
        XCTAssertTrue(failure(certified, genesis: stranger).contains("signature of validator 0 is invalid"))
    }
}
