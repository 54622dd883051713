import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyConsensus
@testable import TallySimulation

/// Each phase and each Byzantine input as a scenario on four replicas with real
/// Ed25519 keys. Validator 0 is the primary of view 0, 1 of view 1.
final class ScenarioTests: XCTestCase {
    // MARK: Normal case

    func testTransactionsCommitInOneBlockWithACertificateTheVerifierAccepts() throws {
        let scenario = Scenario()
        scenario.submit(3)
        scenario.deliverAll()
        XCTAssertEqual(scenario.heights, [1, 1, 1, 1])
        for chain in scenario.executed {
            let certified = try XCTUnwrap(chain.first)
            XCTAssertEqual(certified.block.transactions.count, 3)
            XCTAssertNoThrow(try certified.certificate.verify(
                height: 1, blockHash: certified.block.hash, validators: scenario.genesis.validators, chainID: Scenario.chainID))
        }
        XCTAssertEqual(Set(scenario.executed.map { $0[0].block.hash }).count, 1)
        // PBFT message pattern: one PRE-PREPARE, PREPAREs from backups only, COMMITs from all.
        XCTAssertEqual(scenario.messages(from: 0, "pre_prepare").count, 1)
        XCTAssertEqual(scenario.messages(from: 0, "prepare").count, 0)
        XCTAssertEqual(scenario.messages(from: 1, "prepare").count, 1)
        XCTAssertEqual((0..<4).map { scenario.messages(from: ValidatorIndex($0), "commit").count }, [1, 1, 1, 1])
    }

    func testAVoteIsPersistedInTheSameStepBeforeItIsSent() throws {
        let scenario = Scenario()
        let block = scenario.proposal()
        let actions = scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: block, by: 0)), from: 0))
        guard case .persist(let state) = actions.first else { return XCTFail("first action must persist: \(actions)") }
        XCTAssertEqual(state.signerGuard.signed[SignerGuard.Key(view: 0, height: 1, phase: .prepare)], block.hash)
        guard case .broadcast(.prepare(let vote)) = actions.last else { return XCTFail("expected the PREPARE") }
        XCTAssertEqual(vote.target.blockHash, block.hash)
    }

    func testEmptyMempoolProposesNothing() {
        let scenario = Scenario()
        scenario.tick(5)
        XCTAssertEqual(scenario.heights, [0, 0, 0, 0])
        XCTAssertTrue(scenario.sent.allSatisfy { $0.filter { $0.kind == "pre_prepare" }.isEmpty })
    }

    func testPipelineKeepsAtMostMaxBlocksInFlight() {
        let scenario = Scenario()
        scenario.submit(40)
        // Hold back every COMMIT: nothing can execute, so the primary must stop at the window.
        scenario.deliverAll { _, _, message in message.kind != "commit" }
        scenario.tick(1) { _, _, message in message.kind != "commit" }
        XCTAssertEqual(scenario.messages(from: 0, "pre_prepare").count, Int(scenario.parameters.maxBlocksInFlight))
        // Stuck replicas retransmit their votes: the held-back COMMITs arrive.
        scenario.tick(6)
        XCTAssertGreaterThanOrEqual(scenario.heights.min()!, scenario.parameters.maxBlocksInFlight)
    }

    // MARK: Checkpoints and catching up

    func testCheckpointBecomesStableAndTheLogBelowIsCollected() {
        let scenario = Scenario()
        for _ in 0..<5 {
            scenario.submit(2)
            scenario.deliverAll()
        }
        XCTAssertEqual(scenario.heights, [5, 5, 5, 5])
        for replica in scenario.replicas {
            XCTAssertEqual(replica.stableCheckpoint.height, 4)
            XCTAssertGreaterThanOrEqual(replica.stableCheckpoint.signatures.count, 3)
            XCTAssertTrue(replica.durableState.preparedCertificates.allSatisfy { $0.height > 4 })
            XCTAssertTrue(replica.slots.keys.allSatisfy { $0 > 4 })
            XCTAssertTrue(replica.signerGuard.signed.keys.allSatisfy { $0.height > 4 || $0.phase == .viewChange })
        }
    }

    func testReplicaThatMissedBlocksFetchesThemWithCertificates() {
        let scenario = Scenario()
        scenario.down = [3]
        for _ in 0..<9 {
            scenario.submit(1)
            scenario.deliverAll()
        }
        XCTAssertEqual(scenario.heights, [9, 9, 9, 0])
        scenario.down = []
        scenario.tick(30)
        XCTAssertEqual(scenario.replicas[3].committedHeight, 9)
        XCTAssertEqual(scenario.executed[3].map(\.block.hash), scenario.executed[0].map(\.block.hash))
        XCTAssertFalse(scenario.messages(from: 3, "sync_request").isEmpty)
    }

    // MARK: View change

    func testSilentPrimaryIsReplacedAfterTheTimeoutWhichDoublesPerAttempt() {
        let scenario = Scenario()
        scenario.down = [0]
        scenario.submit(1)
        let timeout = Int(scenario.parameters.viewChangeTimeoutTicks)
        scenario.tick(timeout - 1)
        XCTAssertTrue(scenario.replicas[1...].allSatisfy { $0.view == 0 && !$0.inViewChange })
        scenario.tick(1)
        XCTAssertTrue(scenario.replicas[1...].allSatisfy { $0.view == 1 })
        XCTAssertTrue(scenario.replicas[1...].allSatisfy { !$0.inViewChange }, "primary 1 sent a NEW-VIEW")
        scenario.tick(2)
        XCTAssertEqual(Array(scenario.heights[1...]), [1, 1, 1])
        // View 1's primary now goes silent too: the next timeout is the base again
        // (a commit reset the back-off); waiting for view 2's NEW-VIEW doubles it.
        XCTAssertEqual(scenario.replicas[2].timeoutTicks, UInt64(timeout))
        scenario.down = [0, 1]
        scenario.submit(1)
        scenario.tick(timeout)
        XCTAssertEqual(scenario.replicas[2].view, 2)
        XCTAssertEqual(scenario.replicas[2].timeoutTicks, UInt64(2 * timeout))
    }

    func testPreparedBlockSurvivesAViewChange() {
        let scenario = Scenario()
        scenario.submit(2)
        // Every PREPARE arrives, no COMMIT does: the block is prepared, not committed.
        scenario.deliverAll { _, _, message in message.kind != "commit" }
        let prepared = scenario.replicas[2].durableState.preparedCertificates.first?.blockHash
        XCTAssertNotNil(prepared)
        scenario.down = [0]
        // Retransmitted COMMITs of view 0 stay lost too, so only the view change can commit it.
        scenario.tick(Int(scenario.parameters.viewChangeTimeoutTicks)) { _, _, message in
            if case .commit(let vote) = message { return vote.target.view > 0 }
            return true
        }
        scenario.tick(4)
        XCTAssertEqual(Array(scenario.heights[1...]), [1, 1, 1])
        XCTAssertEqual(scenario.executed[1].first?.block.hash, prepared, "NEW-VIEW re-proposed the prepared block")
        XCTAssertEqual(scenario.executed[1].first?.certificate.view, 1)
    }

    // MARK: Byzantine input

    func testEquivocatingPrePrepareIsDroppedAndCounted() {
        let scenario = Scenario()
        let first = scenario.proposal()
        let second = scenario.proposal(timestampOffset: 1)
        XCTAssertNotEqual(first.hash, second.hash)
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: first, by: 0)), from: 0))
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: second, by: 0)), from: 0))
        XCTAssertEqual(scenario.replicas[1].dropped[.equivocation], 1)
        let prepares = scenario.messages(from: 1, "prepare")
        XCTAssertEqual(prepares.count, 1)
        guard case .prepare(let vote) = prepares[0] else { return XCTFail() }
        XCTAssertEqual(vote.target.blockHash, first.hash)
    }

    func testPrePrepareFromABackupIsRejected() {
        let scenario = Scenario()
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: scenario.proposal(proposer: 0), by: 2)), from: 2))
        XCTAssertEqual(scenario.replicas[1].dropped[.invalidSignature], 1)
        XCTAssertTrue(scenario.messages(from: 1, "prepare").isEmpty)
    }

    func testInvalidBlockIsNotPrepared() {
        let scenario = Scenario()
        let good = scenario.proposal()
        var header = good.header
        header.stateRoot = SHA256.hash([1, 2, 3])
        let bad = Block(header: header, transactions: good.transactions)
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: bad, by: 0)), from: 0))
        XCTAssertEqual(scenario.replicas[1].dropped[.invalidBlock], 1)
        XCTAssertTrue(scenario.messages(from: 1, "prepare").isEmpty)
    }

    func testForgedSignaturesAndOtherChainsVotesAreDropped() {
        let scenario = Scenario()
        let block = scenario.proposal()
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: block, by: 0)), from: 0))
        let honest = scenario.vote(.commit, view: 0, height: 1, hash: block.hash, by: 2)
        let forged = Vote(target: honest.target, validator: 3, signature: honest.signature)
        let otherChain = scenario.vote(.commit, view: 0, height: 1, hash: block.hash, by: 0, chainID: "another-chain")
        for vote in [forged, otherChain] { scenario.step(1, .message(.commit(vote), from: 3)) }
        XCTAssertEqual(scenario.replicas[1].dropped[.invalidSignature], 2)
        XCTAssertEqual(scenario.replicas[1].slots[1]?.commits.count ?? 0, 0)
        // Three valid COMMITs would commit; the two dropped ones must not count.
        scenario.step(1, .message(.commit(honest), from: 2))
        XCTAssertEqual(scenario.replicas[1].committedHeight, 0)
    }

    func testConflictingVoteFromOneValidatorIsCountedOnce() {
        let scenario = Scenario()
        let block = scenario.proposal()
        scenario.step(1, .message(.prepare(scenario.vote(.prepare, view: 0, height: 1, hash: block.hash, by: 2)), from: 2))
        scenario.step(1, .message(.prepare(scenario.vote(.prepare, view: 0, height: 1, hash: SHA256.hash([9]), by: 2)), from: 2))
        XCTAssertEqual(scenario.replicas[1].dropped[.conflictingVote], 1)
        XCTAssertEqual(scenario.replicas[1].slots[1]?.prepares.count, 1)
    }

    func testReplayedOldViewMessagesAreDropped() {
        let scenario = Scenario()
        scenario.down = [0]
        scenario.submit(1)
        scenario.tick(Int(scenario.parameters.viewChangeTimeoutTicks) + 2)
        XCTAssertEqual(scenario.replicas[1].view, 1)
        let block = scenario.proposal(height: 2, parent: scenario.executed[1][0].block.hash, on: 1)
        let before = scenario.replicas[2].dropped[.staleView] ?? 0
        scenario.step(2, .message(.prePrepare(scenario.prePrepare(view: 0, block: block, by: 0)), from: 0))
        for validator: ValidatorIndex in [0, 1, 3] {
            scenario.step(2, .message(.commit(scenario.vote(.commit, view: 0, height: 2, hash: block.hash, by: validator)), from: validator))
        }
        XCTAssertEqual(scenario.replicas[2].dropped[.staleView], before + 4)
        XCTAssertEqual(scenario.replicas[2].committedHeight, 1)
    }

    func testViewChangeWithForgedPreparedCertificateIsRejected() {
        let scenario = Scenario()
        let block = scenario.proposal()
        let prePrepare = scenario.prePrepare(view: 0, block: block, by: 0)
        // Prepares "from" 1 and 2, signed by 3 (the forger).
        let prepares = [1, 2].map { validator -> Vote in
            let real = scenario.vote(.prepare, view: 0, height: 1, hash: block.hash, by: 3)
            return Vote(target: real.target, validator: ValidatorIndex(validator), signature: real.signature)
        }
        let certificate = PreparedCertificate(proposal: prePrepare.proposal, prepares: prepares)
        let checkpoint = CheckpointProof.genesis(hash: scenario.genesisHash, stateRoot: scenario.genesisLedger.stateRoot)
        let bodyHash = ViewChange.bodyHash(checkpoint: checkpoint, prepared: [certificate])
        let viewChange = ViewChange(
            newView: 1, validator: 3, checkpoint: checkpoint, prepared: [certificate],
            signature: scenario.keys[3].sign(ViewChange.signingBytes(chainID: Scenario.chainID, newView: 1, validator: 3, bodyHash: bodyHash)))
        scenario.step(1, .message(.viewChange(viewChange), from: 3))
        XCTAssertEqual(scenario.replicas[1].dropped[.invalidViewChange], 1)
        XCTAssertTrue(scenario.replicas[1].viewChanges.isEmpty)
    }

    func testNewViewThatDropsAPreparedBlockIsRejectedAndLeadsToTheNextView() {
        let scenario = Scenario()
        scenario.submit(2)
        scenario.deliverAll { _, _, message in message.kind != "commit" }
        scenario.down = [0]
        // Hold back validator 1's NEW-VIEW; forge one without the prepared block.
        var captured: NewView?
        scenario.tick(Int(scenario.parameters.viewChangeTimeoutTicks)) { from, _, message in
            if from == 1, case .newView(let newView) = message { captured = newView; return false }
            return message.kind != "commit"
        }
        let newView = try! XCTUnwrap(captured)
        XCTAssertEqual(newView.proposals.count, 1)
        let bodyHash = NewView.bodyHash(viewChanges: newView.viewChanges, proposals: [])
        let forged = NewView(
            view: 1, viewChanges: newView.viewChanges, proposals: [],
            signature: scenario.keys[1].sign(NewView.signingBytes(chainID: Scenario.chainID, view: 1, bodyHash: bodyHash)))
        scenario.step(2, .message(.newView(forged), from: 1))
        XCTAssertEqual(scenario.replicas[2].dropped[.invalidNewView], 1)
        XCTAssertEqual(scenario.replicas[2].view, 2)
        XCTAssertTrue(scenario.replicas[2].inViewChange)
        // The genuine one for view 1 is now stale for replica 2; replica 3 accepts it.
        scenario.step(3, .message(.newView(newView), from: 1))
        XCTAssertEqual(scenario.replicas[3].view, 1)
        XCTAssertFalse(scenario.replicas[3].inViewChange)
    }

    func testFutureViewFloodFromOneValidatorMovesNobody() {
        let scenario = Scenario()
        let checkpoint = CheckpointProof.genesis(hash: scenario.genesisHash, stateRoot: scenario.genesisLedger.stateRoot)
        for view in UInt64(5)...UInt64(60) {
            let bodyHash = ViewChange.bodyHash(checkpoint: checkpoint, prepared: [])
            let viewChange = ViewChange(
                newView: view, validator: 3, checkpoint: checkpoint, prepared: [],
                signature: scenario.keys[3].sign(ViewChange.signingBytes(chainID: Scenario.chainID, newView: view, validator: 3, bodyHash: bodyHash)))
            scenario.step(1, .message(.viewChange(viewChange), from: 3))
        }
        XCTAssertEqual(scenario.replicas[1].view, 0)
        XCTAssertFalse(scenario.replicas[1].inViewChange)
        XCTAssertEqual(scenario.replicas[1].viewChanges.count, 1, "one stored VIEW-CHANGE per validator")
        // f+1 = 2 validators asking for view 7 are enough to join it.
        let bodyHash = ViewChange.bodyHash(checkpoint: checkpoint, prepared: [])
        let second = ViewChange(
            newView: 7, validator: 2, checkpoint: checkpoint, prepared: [],
            signature: scenario.keys[2].sign(ViewChange.signingBytes(chainID: Scenario.chainID, newView: 7, validator: 2, bodyHash: bodyHash)))
        scenario.step(1, .message(.viewChange(second), from: 2))
        XCTAssertEqual(scenario.replicas[1].view, 7)
        XCTAssertTrue(scenario.replicas[1].inViewChange)
    }

    func testSignerGuardHoldsAcrossARestart() throws {
        let scenario = Scenario()
        let first = scenario.proposal()
        let second = scenario.proposal(timestampOffset: 1)
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: first, by: 0)), from: 0))
        XCTAssertEqual(scenario.messages(from: 1, "prepare").count, 1)
        try scenario.restart(1)
        // After the restart the slot is empty: the other block would be accepted if
        // the guard were not persisted.
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: second, by: 0)), from: 0))
        XCTAssertEqual(scenario.replicas[1].dropped[.signerGuardRefused], 1)
        XCTAssertEqual(scenario.messages(from: 1, "prepare").count, 1)
        // The same block again is a retransmission: allowed.
        try scenario.restart(1)
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: first, by: 0)), from: 0))
        XCTAssertEqual(scenario.messages(from: 1, "prepare").count, 2)
    }

    func testViewNeverGoesBackAcrossARestart() throws {
        let scenario = Scenario()
        scenario.down = [0]
        scenario.submit(1)
        scenario.tick(Int(scenario.parameters.viewChangeTimeoutTicks) + 2)
        XCTAssertEqual(scenario.replicas[2].view, 1)
        try scenario.restart(2)
        XCTAssertEqual(scenario.replicas[2].view, 1)
        XCTAssertEqual(scenario.replicas[2].committedHeight, 1)
    }
}

extension ScenarioTests {
    /// Chaos seed 7 (notes/chaos.md): a replica cut off while it expected progress
    /// moved alone to a higher view; the others committed the next block in the
    /// lower view and the network went quiet. Their retransmitted COMMITs are of a
    /// stale view for it, yet a quorum of them proves the block is committed, so
    /// it must fetch the block instead of waiting for traffic that never comes.
    func testReplicaAloneInAHigherViewCatchesUpOnAQuietNetwork() {
        let scenario = Scenario()
        scenario.submit(1)
        scenario.deliverAll()
        XCTAssertEqual(scenario.heights, [1, 1, 1, 1])
        let cutOff: (ValidatorIndex, ValidatorIndex, ConsensusMessage) -> Bool = { from, to, _ in from != 3 && to != 3 }
        scenario.submit(1)
        scenario.deliverAll(filter: cutOff)
        scenario.tick(Int(scenario.parameters.viewChangeTimeoutTicks) + 1, filter: cutOff)
        XCTAssertEqual(scenario.heights, [2, 2, 2, 1])
        XCTAssertEqual(scenario.replicas[3].view, 1, "validator 3 moved to view 1 alone")
        XCTAssertEqual(scenario.replicas[0].view, 0)
        // Healed, and no new transactions: only retransmissions flow.
        scenario.tick(60)
        XCTAssertEqual(scenario.heights, [2, 2, 2, 2])
        XCTAssertEqual(scenario.executed[3].map(\.block.hash), scenario.executed[0].map(\.block.hash))
    }
}
