import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyVerify

final class EncodedBlockTests: XCTestCase {
    func testDecodesLikeCertifiedBlockAndFindsEachTransaction() throws {
        for certified in Fixture.blocks.prefix(3) {
            let payload = certified.canonicalBytes
            let (decoded, encoded) = try EncodedBlock.decode(payload)
            XCTAssertEqual(decoded, certified)
            XCTAssertEqual(encoded.transactionRanges.count, certified.block.transactions.count)
            for (transaction, range) in zip(certified.block.transactions, encoded.transactionRanges) {
                XCTAssertEqual(Array(payload[range]), transaction.canonicalBytes)
                XCTAssertEqual(SHA256.hash(payload[range]), transaction.hash)
                XCTAssertEqual(
                    EncodedBlock.signingBytes(payload: payload, transaction: range, genesisHash: Fixture.genesis.hash),
                    transaction.signingBytes(genesisHash: Fixture.genesis.hash))
            }
        }
    }

    func testRejectsWhatCertifiedBlockRejectsWithTheSameError() {
        let payload = Fixture.blocks[0].canonicalBytes
        var wrongCount = payload
        // The header's transaction count field sits just before the list count.
        let headerEnd = Fixture.blocks[0].block.header.canonicalBytes.count + EncodedBlock.encodedTag(.block).count
        wrongCount[headerEnd - 4] ^= 1
        for bad in [Array(payload.dropLast(3)), payload + [0], wrongCount, Array(payload.dropFirst())] {
            var expected: CanonicalDecodingError?
            do { _ = try CertifiedBlock(canonicalBytes: bad) } catch { expected = error }
            XCTAssertNotNil(expected)
            XCTAssertThrowsError(try EncodedBlock.decode(bad)) { XCTAssertEqual($0 as? CanonicalDecodingError, expected) }
        }
    }
}
