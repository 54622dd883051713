import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyConsensus

/// Golden bytes: every signed layout and the durable state are pinned, so a change
/// to any of them is a visible, deliberate protocol change.
final class MessageTests: XCTestCase {
    let chainID = "tally-test"
    let hashA = Hash(bytes: [UInt8](repeating: 0x11, count: 32))!
    let hashB = Hash(bytes: [UInt8](repeating: 0x33, count: 32))!
    let signature = Signature(bytes: [UInt8](repeating: 0x22, count: 64))!

    var block: Block {
        let header = BlockHeader(
            height: 42, view: 7, timestampMs: 1_700_000_000_000, previousHash: hashA,
            transactionsRoot: Block.transactionsRoot([]), stateRoot: hashB, proposer: 3, transactionCount: 0)
        return Block(header: header, transactions: [])
    }

    var prePrepare: PrePrepare { PrePrepare(view: 7, block: block, signature: signature) }

    func vote(_ phase: VotePhase, validator: ValidatorIndex) -> Vote {
        Vote(target: VoteTarget(phase: phase, view: 7, height: 42, blockHash: block.hash), validator: validator, signature: signature)
    }

    var checkpointProof: CheckpointProof {
        CheckpointProof(height: 40, blockHash: hashA, stateRoot: hashB, signatures: (0..<3).map {
            CheckpointProof.Entry(validator: $0, signature: signature)
        })
    }

    var viewChange: ViewChange {
        ViewChange(
            newView: 8, validator: 2, checkpoint: checkpointProof,
            prepared: [PreparedCertificate(proposal: prePrepare.proposal, prepares: [vote(.prepare, validator: 0), vote(.prepare, validator: 1)])],
            signature: signature)
    }

    func hex(_ bytes: [UInt8]) -> String { Hex.encode(bytes) }

    func testPrePrepareSigningBytes() {
        let bytes = PrePrepare.signingBytes(chainID: chainID, view: 7, height: 42, blockHash: hashA)
        XCTAssertEqual(hex(bytes),
            "14000000" + hex(Array("tally/pre-prepare/v1".utf8)) + "0a000000" + hex(Array(chainID.utf8))
            + "0700000000000000" + "2a00000000000000" + String(repeating: "11", count: 32))
    }

    func testCheckpointSigningBytes() {
        let bytes = Checkpoint.signingBytes(chainID: chainID, height: 40, blockHash: hashA, stateRoot: hashB)
        XCTAssertEqual(hex(bytes),
            "13000000" + hex(Array("tally/checkpoint/v1".utf8)) + "0a000000" + hex(Array(chainID.utf8))
            + "2800000000000000" + String(repeating: "11", count: 32) + String(repeating: "33", count: 32))
    }

    func testViewChangeAndNewViewSigningBytes() {
        XCTAssertEqual(hex(ViewChange.signingBytes(chainID: chainID, newView: 8, validator: 2, bodyHash: hashA)),
            "14000000" + hex(Array("tally/view-change/v1".utf8)) + "0a000000" + hex(Array(chainID.utf8))
            + "0800000000000000" + "02000000" + String(repeating: "11", count: 32))
        XCTAssertEqual(hex(NewView.signingBytes(chainID: chainID, view: 8, bodyHash: hashB)),
            "11000000" + hex(Array("tally/new-view/v1".utf8)) + "0a000000" + hex(Array(chainID.utf8))
            + "0800000000000000" + String(repeating: "33", count: 32))
        // The body hash covers the checkpoint proof and every prepared certificate.
        XCTAssertEqual(viewChange.signingBytes(chainID: chainID),
                       ViewChange.signingBytes(chainID: chainID, newView: 8, validator: 2,
                                               bodyHash: ViewChange.bodyHash(checkpoint: checkpointProof, prepared: viewChange.prepared)))
        XCTAssertEqual(ViewChange.bodyHash(checkpoint: checkpointProof, prepared: viewChange.prepared).hex,
                       "837af37fb4909d13da70fa87ffa9670b8f190afe42b7f203f1a6b7b264fe9284")
    }

    /// PREPARE and COMMIT sign exactly TallyTypes' `VoteTarget` bytes, so COMMITs
    /// assemble into a `CommitCertificate` the offline verifier accepts.
    func testVotesSignVoteTargetBytes() throws {
        let keys = (0..<4).map { SigningKey(seed: [UInt8](repeating: UInt8(50 + $0), count: 32))! }
        let validators = ValidatorSet(keys.enumerated().map {
            Validator(name: "v\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:1")
        })
        let target = VoteTarget(phase: .commit, view: 7, height: 42, blockHash: hashA)
        let votes = (0..<3).map { Vote(target: target, validator: ValidatorIndex($0), signature: Ed25519Signer(key: keys[$0]).sign(target.signingBytes(chainID: chainID))) }
        let certificate = CommitCertificate(view: 7, height: 42, blockHash: hashA, signatures: votes.map {
            CommitCertificate.Entry(validatorIndex: $0.validator, signature: $0.signature)
        })
        XCTAssertNoThrow(try certificate.verify(height: 42, blockHash: hashA, validators: validators, chainID: chainID))
        let verifier = Ed25519Verifier(validators: validators)
        XCTAssertTrue(verifier.isValid(votes[0].signature, by: 0, for: target.signingBytes(chainID: chainID)))
        XCTAssertFalse(verifier.isValid(votes[0].signature, by: 0, for: target.signingBytes(chainID: "other-chain")))
    }

    func testMessageEnvelopeGoldenBytes() {
        let commit = ConsensusMessage.commit(vote(.commit, validator: 2))
        XCTAssertEqual(hex(commit.canonicalBytes),
            "1a000000" + hex(Array("tally/consensus-message/v1".utf8)) + "03" + "02" + "0700000000000000" + "2a00000000000000"
            + block.hash.hex + "02000000" + String(repeating: "22", count: 64))
        let request = ConsensusMessage.syncRequest(fromHeight: 5, toHeight: 9)
        XCTAssertEqual(hex(request.canonicalBytes),
            "1a000000" + hex(Array("tally/consensus-message/v1".utf8)) + "07" + "0500000000000000" + "0900000000000000")
    }

    func testEveryMessageKindRoundTrips() throws {
        let certified = CertifiedBlock(block: block, certificate: CommitCertificate(
            view: 7, height: 42, blockHash: block.hash,
            signatures: [CommitCertificate.Entry(validatorIndex: 1, signature: signature)]))
        let messages: [ConsensusMessage] = [
            .prePrepare(prePrepare), .prepare(vote(.prepare, validator: 1)), .commit(vote(.commit, validator: 2)),
            .checkpoint(Checkpoint(height: 40, blockHash: hashA, stateRoot: hashB, validator: 3, signature: signature)),
            .viewChange(viewChange),
            .newView(NewView(view: 8, viewChanges: [viewChange], proposals: [PrePrepare(view: 8, block: block, signature: signature).proposal], signature: signature)),
            .syncRequest(fromHeight: 1, toHeight: 64), .syncResponse([certified]), .committedTip(certified.certificate),
            .blockRequest([hashA, hashB]), .block(block),
            .status(PeerStatus(view: 9, inViewChange: true, committedHeight: 41, wantsReply: true)),
            .status(PeerStatus(view: 0, inViewChange: false, committedHeight: 0, wantsReply: false)),
        ]
        for message in messages {
            let decoded = try ConsensusMessage(canonicalBytes: message.canonicalBytes)
            XCTAssertEqual(decoded, message, message.kind)
        }
    }

    func testMalformedMessagesAreRejectedByTheDecoder() {
        var bytes = ConsensusMessage.prepare(vote(.prepare, validator: 1)).canonicalBytes
        XCTAssertThrowsError(try ConsensusMessage(canonicalBytes: bytes + [0]))  // trailing byte
        XCTAssertThrowsError(try ConsensusMessage(canonicalBytes: Array(bytes.dropLast())))  // truncated
        bytes[30] = 3  // kind 2 (prepare) carrying phase... flip the kind to commit
        XCTAssertThrowsError(try ConsensusMessage(canonicalBytes: bytes), "a prepare vote sent as a commit")
        var wrongKind = ConsensusMessage.syncRequest(fromHeight: 1, toHeight: 2).canonicalBytes
        wrongKind[30] = 99
        XCTAssertThrowsError(try ConsensusMessage(canonicalBytes: wrongKind))
    }

    func testDurableStateRoundTripsAndIsPinned() throws {
        var signerGuard = SignerGuard()
        signerGuard.record(SignerGuard.Key(view: 8, height: 41, phase: .prepare), content: hashA)
        signerGuard.record(SignerGuard.Key(view: 8, height: 41, phase: .commit), content: hashA)
        signerGuard.record(SignerGuard.Key(view: 8, height: 0, phase: .viewChange), content: hashB)
        signerGuard.record(SignerGuard.Key(view: 0, height: 44, phase: .checkpoint), content: hashB)
        let state = DurableState(
            view: 8, inViewChange: true, stableCheckpoint: checkpointProof,
            preparedCertificates: viewChange.prepared, signerGuard: signerGuard, ownViewChange: viewChange,
            preparedBlocks: [block.hash: block])
        let bytes = state.canonicalBytes
        XCTAssertEqual(try DurableState(canonicalBytes: bytes), state)
        XCTAssertEqual(SHA256.hash(bytes).hex, "2c8f4f124b3b5fe7dbf7055a55f61340f342a84d60501fa5e2c24dfa6f46d543")
        XCTAssertEqual(hex(Array(bytes.prefix(4 + 26 + 9))),
            "1a000000" + hex(Array("tally/consensus-durable/v1".utf8)) + "0800000000000000" + "01")
        XCTAssertThrowsError(try DurableState(canonicalBytes: Array(bytes.dropLast(3))))
        let empty = DurableState(view: 0, inViewChange: false, stableCheckpoint: .genesis(hash: hashA, stateRoot: hashB),
                                 preparedCertificates: [], signerGuard: SignerGuard(), ownViewChange: nil)
        XCTAssertEqual(try DurableState(canonicalBytes: empty.canonicalBytes), empty)
    }

    func testCompactDurableStateStoresBlocksApartAndIsPinned() throws {
        var signerGuard = SignerGuard()
        signerGuard.record(SignerGuard.Key(view: 8, height: 41, phase: .prepare), content: hashA)
        let state = DurableState(
            view: 8, inViewChange: true, stableCheckpoint: checkpointProof,
            preparedCertificates: viewChange.prepared, signerGuard: signerGuard, ownViewChange: viewChange,
            preparedBlocks: [block.hash: block])
        let blocks = state.referencedBlocks
        XCTAssertEqual(Set(blocks.keys), Set((state.preparedCertificates + viewChange.prepared).map(\.blockHash)))
        let bytes = state.compactBytes
        XCTAssertEqual(try DurableState(compactBytes: bytes) { blocks[$0] }, state)
        XCTAssertEqual(try DurableState(storedBytes: bytes) { blocks[$0] }, state)
        XCTAssertEqual(try DurableState(storedBytes: state.canonicalBytes) { _ in nil }, state, "the full form still reads")
        XCTAssertEqual(hex(Array(bytes.prefix(4 + 26 + 9))),
            "1a000000" + hex(Array("tally/consensus-durable/v2".utf8)) + "0800000000000000" + "01")
        XCTAssertEqual(SHA256.hash(bytes).hex, "ea8645d066e339771a73a2cbd4d129bce6ddc65ae306e28ea403c9bbd44b7962")
        // No block bytes inside: the full form with each block replaced by its hash.
        let blockBytes = state.preparedBlocks.values.map(\.canonicalBytes.count).reduce(0, +)
        XCTAssertEqual(bytes.count, state.canonicalBytes.count - blockBytes + 32 * state.preparedBlocks.count)
        // A missing block, or one with another hash, makes the state unreadable.
        XCTAssertThrowsError(try DurableState(compactBytes: bytes) { _ in nil })
        let other = Block(header: BlockHeader(
            height: 99, view: 0, timestampMs: 0, previousHash: hashB, transactionsRoot: Block.transactionsRoot([]),
            stateRoot: hashA, proposer: 0, transactionCount: 0), transactions: [])
        XCTAssertThrowsError(try DurableState(compactBytes: bytes) { _ in other })
        XCTAssertThrowsError(try DurableState(compactBytes: Array(bytes.dropLast(3))) { blocks[$0] })
    }

    func testSignerGuardAllowsOnlyTheSameContentTwice() {
        var signerGuard = SignerGuard()
        let key = SignerGuard.Key(view: 3, height: 9, phase: .prepare)
        XCTAssertTrue(signerGuard.allows(key, content: hashA))
        signerGuard.record(key, content: hashA)
        XCTAssertTrue(signerGuard.allows(key, content: hashA))
        XCTAssertFalse(signerGuard.allows(key, content: hashB))
        XCTAssertTrue(signerGuard.allows(SignerGuard.Key(view: 3, height: 9, phase: .commit), content: hashB))
        signerGuard.prune(currentView: 4, stableHeight: 0)
        XCTAssertTrue(signerGuard.signed.isEmpty, "old views are never signed in again")
    }
}
