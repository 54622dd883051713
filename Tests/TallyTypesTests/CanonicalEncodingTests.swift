import TallyCrypto
import TallyTypes
import XCTest

final class CanonicalEncodingTests: XCTestCase {
    func testIntegersAreLittleEndianFixedWidth() {
        var encoder = CanonicalEncoder()
        encoder.u16(0x0102)
        encoder.u32(0x0304_0506)
        encoder.u64(0x0708_090a_0b0c_0d0e)
        encoder.variable([0xaa, 0xbb])
        XCTAssertEqual(encoder.bytes, [0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08, 0x07,
                                       0x02, 0, 0, 0, 0xaa, 0xbb])
        var decoder = CanonicalDecoder(encoder.bytes)
        XCTAssertEqual(try decoder.u16("a"), 0x0102)
        XCTAssertEqual(try decoder.u32("b"), 0x0304_0506)
        XCTAssertEqual(try decoder.u64("c"), 0x0708_090a_0b0c_0d0e)
        XCTAssertEqual(try decoder.variable(max: 2, "d"), [0xaa, 0xbb])
        XCTAssertNoThrow(try decoder.finish())
    }

    func testTrailingBytesAreRejected() {
        let bytes = Fixtures.transaction.canonicalBytes + [0]
        XCTAssertThrowsError(try Transaction(canonicalBytes: bytes)) {
            XCTAssertEqual($0 as? CanonicalDecodingError, .trailingBytes(count: 1))
        }
    }

    func testEveryTruncationIsRejected() {
        let bytes = Fixtures.block.canonicalBytes
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try Block(canonicalBytes: Array(bytes[..<length])), "length \(length)")
        }
    }

    func testLengthsOverTheBoundAreRejected() {
        var transaction = Fixtures.transaction
        transaction.chainID = String(repeating: "x", count: Limits.maxChainIDBytes + 1)
        XCTAssertThrowsError(try Transaction(canonicalBytes: transaction.canonicalBytes)) {
            guard case .tooLong(field: "tx.chain_id", _, _) = $0 as? CanonicalDecodingError else { return XCTFail("\($0)") }
        }
    }

    func testForgedHugeCountDoesNotAllocate() {
        var encoder = CanonicalEncoder()
        Fixtures.header.encode(to: &encoder)
        var bytes = [UInt8]()
        var prefix = CanonicalEncoder()
        prefix.tag(.block)
        bytes = prefix.bytes + encoder.bytes + [0xff, 0xff, 0x00, 0x00]  // 65535 transactions, none present
        XCTAssertThrowsError(try Block(canonicalBytes: bytes))
    }

    func testCountMustMatchHeader() {
        var block = Fixtures.block
        block.header.transactionCount = 2
        XCTAssertThrowsError(try Block(canonicalBytes: block.canonicalBytes)) {
            guard case .invalid(field: "block.transactions", _) = $0 as? CanonicalDecodingError else { return XCTFail("\($0)") }
        }
    }

    func testWrongDomainTagIsRejected() {
        // A header's bytes are not a transaction's, even if lengths happened to fit.
        XCTAssertThrowsError(try Transaction(canonicalBytes: Fixtures.header.canonicalBytes)) {
            XCTAssertEqual($0 as? CanonicalDecodingError, .wrongTag(expected: "tally/tx/v1"))
        }
    }

    func testDomainTagsAreDistinct() {
        XCTAssertEqual(Set(DomainTag.allCases.map(\.rawValue)).count, DomainTag.allCases.count)
    }

    func testPrepareAndCommitSignaturesAreNotInterchangeable() {
        let hash = Fixtures.block.hash
        let prepare = VoteTarget(phase: .prepare, view: 1, height: 2, blockHash: hash)
        let commit = VoteTarget(phase: .commit, view: 1, height: 2, blockHash: hash)
        let key = Fixtures.devnetValidatorKey(0)
        let signature = key.sign(prepare.signingBytes(chainID: "c"))
        XCTAssertFalse(key.publicKey.isValidSignature(signature, for: commit.signingBytes(chainID: "c")))
        XCTAssertFalse(key.publicKey.isValidSignature(signature, for: prepare.signingBytes(chainID: "d")))
    }

    func testTransactionSignatureCoversEveryField() {
        let original = Fixtures.transaction
        var edits: [Transaction] = []
        var copy = original; copy.amount += 1; edits.append(copy)
        copy = original; copy.fee += 1; edits.append(copy)
        copy = original; copy.nonce += 1; edits.append(copy)
        copy = original; copy.chainID = "other"; edits.append(copy)
        copy = original; copy.recipient = Address(publicKey: Fixtures.key("carol").publicKey); edits.append(copy)
        copy = original; copy.sender = Fixtures.key("carol").publicKey; edits.append(copy)
        let genesisHash = Fixtures.genesis.hash
        XCTAssertTrue(original.hasValidSignature(genesisHash: genesisHash))
        for edited in edits { XCTAssertFalse(edited.hasValidSignature(genesisHash: genesisHash)) }
    }

    /// Issue 14: signatures covered the chain id string only, so another chain with
    /// the same id (every `tally-node testnet` defaults to `tally-testnet`) accepted them.
    func testTransactionSignatureCommitsToTheGenesisHash() throws {
        let transaction = Fixtures.transaction
        var other = Fixtures.genesis
        other.genesisTimeMs += 1
        XCTAssertEqual(other.chainID, transaction.chainID)
        XCTAssertNotEqual(other.hash, Fixtures.genesis.hash)
        XCTAssertTrue(transaction.hasValidSignature(genesisHash: Fixtures.genesis.hash))
        XCTAssertFalse(transaction.hasValidSignature(genesisHash: other.hash))
        // The genesis hash sits right after the signing tag.
        let tagBytes = 4 + DomainTag.transactionSigning.rawValue.utf8.count
        let signing = transaction.signingBytes(genesisHash: other.hash)
        XCTAssertEqual(Array(signing[tagBytes..<tagBytes + 32]), other.hash.bytes)
    }
}
