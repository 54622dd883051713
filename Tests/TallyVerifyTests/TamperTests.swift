import Foundation
import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyStore
import TallyStoreTesting
@testable import TallyVerify
import TallyVerifyTesting

/// One test per kind of tampering: each is found at the right height with the
/// right reason, and the blocks before it verify.
final class TamperTests: XCTestCase {
    let height: UInt64 = 6
    var index: Int { Int(height - 1) }

    func testChangedTransactionByte() throws {
        var blocks = Fixture.blocks
        let transaction = blocks[index].block.transactions[5]
        let payload = blocks[index].canonicalBytes
        let transactionBytes = transaction.canonicalBytes
        // Find the transaction inside the stored payload and flip a recipient byte.
        let start = try XCTUnwrap((0...(payload.count - transactionBytes.count)).first {
            Array(payload[$0..<$0 + transactionBytes.count]) == transactionBytes
        })
        var changed = payload
        changed[start + transactionBytes.count - 64 - 24 - 3] ^= 0x01
        blocks[index] = try CertifiedBlock(canonicalBytes: changed)
        XCTAssertNotEqual(blocks[index], Fixture.blocks[index])
        assertFailure(try Fixture.verify(blocks), height: height, code: "transactions_root_mismatch", mentioning: "Merkle root")
    }

    func testChangedAmountWithTheSignatureKept() throws {
        let blocks = Fixture.tamper(at: height) { $0.transactions[3].amount += 1 }
        assertFailure(try Fixture.verify(blocks), height: height, code: "transaction_bad_signature", mentioning: "transaction 3 has an invalid signature")
    }

    func testTransactionResignedUnderAnotherKey() throws {
        let stranger = SigningKey(seed: [UInt8](repeating: 0x42, count: 32))!
        let blocks = Fixture.tamper(at: height) { block in
            block.transactions[7].signature = stranger.sign(block.transactions[7].signingBytes(genesisHash: Fixture.genesis.hash))
        }
        assertFailure(try Fixture.verify(blocks), height: height, code: "transaction_bad_signature", mentioning: "transaction 7")
    }

    func testTransactionThatDoesNotApply() throws {
        // Validly signed by its sender, but spends more than the account holds.
        let sender = Fixture.blocks[index].block.transactions[2]
        let key = try XCTUnwrap((0..<Fixture.parameters.fundedAccounts).lazy.map(DevnetKeys.accountKey).first {
            $0.publicKey == sender.sender
        })
        let blocks = Fixture.tamper(at: height) { block in
            block.transactions[2] = Transaction.signed(
                by: key, chainID: DevnetKeys.chainID, genesisHash: Fixture.genesis.hash, to: sender.recipient, amount: Fixture.parameters.initialBalance * 2,
                fee: sender.fee, nonce: sender.nonce)
        }
        assertFailure(try Fixture.verify(blocks), height: height, code: "transaction_rejected", mentioning: "insufficient balance")
    }

    func testCertificateSignatureRemovedBelowQuorum() throws {
        var blocks = Fixture.blocks
        blocks[index].certificate.signatures = Array(blocks[index].certificate.signatures.prefix(2))
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_below_quorum", mentioning: "below the quorum of 3")
    }

    func testSameValidatorCountedTwice() throws {
        var blocks = Fixture.blocks
        let entries = blocks[index].certificate.signatures
        blocks[index].certificate.signatures = [entries[0], entries[0], entries[1]]
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_duplicate_or_unsorted", mentioning: "counted twice")
    }

    func testSignatureFromAKeyNotInGenesis() throws {
        let outsider = SigningKey(seed: [UInt8](repeating: 0x17, count: 32))!
        let block = Fixture.blocks[index]
        let vote = VoteTarget(phase: .commit, view: block.certificate.view, height: height, blockHash: block.block.hash)
        let outsiderSignature = outsider.sign(vote.signingBytes(chainID: DevnetKeys.chainID))

        // As a fifth validator index that genesis does not have…
        var blocks = Fixture.blocks
        blocks[index].certificate.signatures = Array(block.certificate.signatures.prefix(2))
            + [.init(validatorIndex: 4, signature: outsiderSignature)]
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_unknown_validator", mentioning: "not in genesis")

        // …or posing as a genesis validator.
        blocks = Fixture.blocks
        blocks[index].certificate = BlockBuilder.certificate(
            for: block.block, view: block.certificate.view,
            signatures: [
                0: BlockBuilder.commitSignature(for: block.block, view: block.certificate.view, chainID: DevnetKeys.chainID, key: Fixture.validatorKeys[0]),
                1: BlockBuilder.commitSignature(for: block.block, view: block.certificate.view, chainID: DevnetKeys.chainID, key: Fixture.validatorKeys[1]),
                2: outsiderSignature,
            ])
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_bad_signature", mentioning: "validator 2")
    }

    func testCertificateForAnotherChainID() throws {
        var blocks = Fixture.blocks
        blocks[index] = Fixture.certify(blocks[index].block, view: blocks[index].certificate.view, chainID: "tally-other")
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_bad_signature", mentioning: "invalid for this chain")
    }

    func testCertificateForAnotherView() throws {
        var blocks = Fixture.blocks
        blocks[index].certificate.view += 1
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_bad_signature", mentioning: "invalid for this chain, view")
    }

    func testCertificateForAnotherBlockHash() throws {
        var blocks = Fixture.blocks
        var other = blocks[index].block
        other.header.timestampMs += 1
        blocks[index].certificate = Fixture.certify(other, view: blocks[index].certificate.view).certificate
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_wrong_block_hash", mentioning: "certificate is for block")

        // The right hash in the field, signatures over another block's hash.
        blocks = Fixture.blocks
        var signedOther = Fixture.certify(other, view: blocks[index].certificate.view).certificate
        signedOther.blockHash = blocks[index].block.hash
        blocks[index].certificate = signedOther
        assertFailure(try Fixture.verify(blocks), height: height, code: "certificate_bad_signature", mentioning: "invalid")
    }

    func testTwoBlocksSwapped() throws {
        var blocks = Fixture.blocks
        blocks.swapAt(index, index + 1)
        assertFailure(try Fixture.verify(blocks), height: height, code: "storage_damaged", mentioning: "found one for height \(height + 1)")

        // A forger who also rewrote the frames' heights: the block's own header catches it.
        let fileSystem = SimulatedFileSystem()
        try Fixture.write(records: blocks.enumerated().map { (UInt64($0.offset + 1), $0.element.canonicalBytes) }, fileSystem: fileSystem)
        assertFailure(try Fixture.verify(fileSystem), height: height, code: "unexpected_height", mentioning: "found height \(height + 1)")
    }

    func testGap() throws {
        var blocks = Fixture.blocks
        blocks.remove(at: index)
        assertFailure(try Fixture.verify(blocks), height: height, code: "storage_damaged", mentioning: "a block is missing")
    }

    func testTruncatedFile() throws {
        let fileSystem = SimulatedFileSystem()
        try Fixture.write(Fixture.blocks, fileSystem: fileSystem)
        let path = "/chain/data/blocks/segment-00000001.tblk"
        let bytes = try XCTUnwrap(fileSystem.contents(path))
        let end = Fixture.blocks.prefix(index + 1).reduce(0) { $0 + RecordFormat.headerBytes + $1.canonicalBytes.count }
        fileSystem.setContents(path, Array(bytes.prefix(end - 100)))
        assertFailure(try Fixture.verify(fileSystem), height: height, code: "storage_damaged", mentioning: "cut short")
    }

    func testFlippedBitInARecord() throws {
        let fileSystem = SimulatedFileSystem()
        try Fixture.write(Fixture.blocks, fileSystem: fileSystem)
        let path = "/chain/data/blocks/segment-00000001.tblk"
        var bytes = try XCTUnwrap(fileSystem.contents(path))
        let start = Fixture.blocks.prefix(index).reduce(0) { $0 + RecordFormat.headerBytes + $1.canonicalBytes.count }
        bytes[start + 777] ^= 0x10
        fileSystem.setContents(path, bytes)
        assertFailure(try Fixture.verify(fileSystem), height: height, code: "storage_damaged", mentioning: "checksum mismatch")
    }

    func testWrongStateRoot() throws {
        let blocks = Fixture.tamper(at: height) { $0.header.stateRoot = SHA256.hash([0x5A]) }
        assertFailure(try Fixture.verify(blocks), height: height, code: "state_root_mismatch", mentioning: "state root mismatch")
    }

    func testBrokenPreviousHashLink() throws {
        let blocks = Fixture.tamper(at: height) { $0.header.previousHash = SHA256.hash([0x01]) }
        assertFailure(try Fixture.verify(blocks), height: height, code: "previous_hash_mismatch", mentioning: "previous-hash link")
    }

    func testUndecodableRecord() throws {
        let fileSystem = SimulatedFileSystem()
        var records = Fixture.blocks.map { ($0.block.height, $0.canonicalBytes) }
        records[index].1 = Array(records[index].1.dropLast(5))
        try Fixture.write(records: records, fileSystem: fileSystem)
        assertFailure(try Fixture.verify(fileSystem), height: height, code: "undecodable_block", mentioning: "does not decode")
    }
}
