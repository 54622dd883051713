import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

@testable import TallyConsensus
@testable import TallySimulation

/// Issue 13 item 8: a validator restored from an older copy of its data directory must
/// not sign again what its newer self signed, and equivocation by peers is kept as
/// evidence instead of being dropped silently.
final class RestartSafetyTests: XCTestCase {
    /// Commits one block everywhere and returns validator `index`'s data then (its
    /// chain and journal): the older copy a test restores it from later.
    func copyAfterTheFirstBlock(
        _ scenario: Scenario, of index: ValidatorIndex
    ) throws -> (chain: [CertifiedBlock], durable: DurableState) {
        scenario.submit(1)
        scenario.deliverAll()
        XCTAssertEqual(scenario.heights, Array(repeating: 1, count: scenario.validatorCount))
        return (scenario.executed[Int(index)], try XCTUnwrap(scenario.persisted[Int(index)]))
    }

    /// Replaces validator `index` by one restored from an older copy of its data:
    /// `chain` as its block store, `durable` as its journal.
    func restore(
        _ scenario: Scenario, _ index: ValidatorIndex, chain: [CertifiedBlock], durable: DurableState?,
        signingMark: SigningMark? = nil, quarantined: Bool
    ) throws {
        let app = scenario.makeApplication()
        // The restored block store: each block validated as sync would, then committed.
        for certified in chain {
            _ = try app.validate(
                certified.block, parentHash: certified.block.header.previousHash,
                maxTransactions: Int(scenario.parameters.maxBlockTransactions),
                origin: .sync(certificateView: certified.certificate.view)).get()
            _ = app.commit(certified.block)
        }
        scenario.apps[Int(index)] = app
        scenario.executed[Int(index)] = chain
        let journal = try durable.map { try DurableState(canonicalBytes: $0.canonicalBytes) }
        scenario.replicas[Int(index)] = scenario.makeReplica(
            index, durable: journal, signingMark: signingMark, quarantined: quarantined)
        scenario.persisted[Int(index)] = journal
    }

    /// The PRE-PREPAREs validator `index` sent, as (view, height) → block hashes.
    func proposals(_ scenario: Scenario, from index: ValidatorIndex) -> [[UInt64]: Set<Hash>] {
        var signed: [[UInt64]: Set<Hash>] = [:]
        for case .prePrepare(let prePrepare) in scenario.sent[Int(index)] {
            signed[[prePrepare.view, prePrepare.height], default: []].insert(prePrepare.blockHash)
        }
        return signed
    }

    /// Every vote validator `index` sent, as (phase, view, height) → block hashes.
    func votes(_ scenario: Scenario, from index: ValidatorIndex) -> [[UInt64]: Set<Hash>] {
        var signed: [[UInt64]: Set<Hash>] = [:]
        for message in scenario.sent[Int(index)] {
            switch message {
            case .prepare(let vote), .commit(let vote):
                signed[[UInt64(vote.target.phase == .prepare ? 1 : 2), vote.target.view, vote.target.height], default: []]
                    .insert(vote.target.blockHash)
            default: continue
            }
        }
        return signed
    }

    /// The primary of view 0 is restored from its data as of height 1 while the others
    /// (and its newer self) went on to height 2, then gets a new transaction: before the
    /// fix it proposed another block at (view 0, height 2) at once. In the quarantine
    /// it signs nothing until its peers told it where they are; it then finds its own
    /// COMMIT on block 2's certificate (its journal does not know it: the data was
    /// restored), so it signs nothing more in view 0, and rejoins in the next view.
    func testRestoredPrimaryDoesNotProposeAgainAtAHeightItSignedBefore() throws {
        let scenario = Scenario()
        let (olderChain, olderJournal) = try copyAfterTheFirstBlock(scenario, of: 0)
        scenario.submit(1)
        // Validator 3's COMMIT is held back, so every certificate of block 2 carries validator 0's.
        scenario.deliverAll { from, _, message in !(from == 3 && message.kind == "commit") }
        XCTAssertEqual(scenario.heights, [2, 2, 2, 2])
        try restore(scenario, 0, chain: olderChain, durable: olderJournal, quarantined: true)
        XCTAssertTrue(scenario.replicas[0].isQuarantined)
        scenario.submit(1)
        scenario.deliverAll()
        scenario.tick(3 * Int(scenario.parameters.viewChangeTimeoutTicks))
        for (key, hashes) in proposals(scenario, from: 0) { XCTAssertEqual(hashes.count, 1, "two PRE-PREPAREs for \(key)") }
        for (key, hashes) in votes(scenario, from: 0) { XCTAssertEqual(hashes.count, 1, "two votes for \(key)") }
        XCTAssertEqual(scenario.replicas[0].ownSignaturesFromNewerCopy, 1)
        XCTAssertFalse(scenario.replicas[0].isQuarantined)
        // It rejoined: the transaction committed in view 1, with its votes.
        XCTAssertEqual(scenario.heights, [3, 3, 3, 3])
        XCTAssertGreaterThanOrEqual(scenario.replicas[0].view, 1)
        XCTAssertTrue(votes(scenario, from: 0).keys.contains { $0[0] == 2 && $0[1] >= 1 && $0[2] == 3 }, "no COMMIT after rejoining")
    }

    /// A backup restored from older data, its peers further: it must not PREPARE (or
    /// COMMIT) before it caught up and its peers confirmed the view and height.
    func testRestoredBackupSignsNothingUntilItsPeersConfirmedWhereTheyAre() throws {
        let scenario = Scenario()
        let (olderChain, olderJournal) = try copyAfterTheFirstBlock(scenario, of: 2)
        scenario.submit(1)
        scenario.deliverAll()
        try restore(scenario, 2, chain: olderChain, durable: olderJournal, quarantined: true)
        let sentBefore = scenario.sent[2].count
        // A (Byzantine) primary sends the restored backup another block for height 2.
        let other = scenario.proposal(height: 2, parent: olderChain[0].block.hash, proposer: 0, timestampOffset: 7, on: 2)
        scenario.step(2, .message(.prePrepare(scenario.prePrepare(view: 0, block: other, by: 0)), from: 0))
        XCTAssertTrue(scenario.sent[2][sentBefore...].allSatisfy { $0.kind == "status" }, "signed in the quarantine")
        XCTAssertGreaterThanOrEqual(scenario.replicas[2].dropped[.quarantined] ?? 0, 1)
        scenario.deliverAll()
        scenario.tick(2 * Int(scenario.configuration(2).retransmitIntervalTicks))
        for (key, hashes) in votes(scenario, from: 2) { XCTAssertEqual(hashes.count, 1, "two votes for \(key)") }
        XCTAssertEqual(scenario.heights[2], 2)
    }

    /// An ordinary restart (journal current) leaves the quarantine as soon as f+1
    /// peers answered, and the replica votes again in the same view.
    func testReplicaRestartedWithItsCurrentJournalLeavesTheQuarantineAndVotes() throws {
        let scenario = Scenario()
        scenario.submit(1)
        scenario.deliverAll()
        try restore(scenario, 1, chain: scenario.executed[1], durable: scenario.persisted[1], quarantined: true)
        scenario.tick(1)
        XCTAssertFalse(scenario.replicas[1].isQuarantined)
        scenario.submit(1)
        scenario.deliverAll()
        XCTAssertEqual(scenario.heights, [2, 2, 2, 2])
        XCTAssertTrue(votes(scenario, from: 1).keys.contains([1, 0, 2]), "no PREPARE after the restart")
    }

    /// A restart with the current journal, one block behind (the others' COMMITs for
    /// it never arrived), into a view change: the replica joins view 1 in the quarantine
    /// (its signer guard forgets view 0 then), and only afterwards syncs block 1, whose
    /// certificate carries its own view-0 COMMIT. That COMMIT is in the journal it
    /// restarted with, so it is this copy's: the replica must not take it for a newer
    /// copy's and stop signing in view 1. Before the fix it did, so its VIEW-CHANGE was
    /// never sent, and with the primary down the view change lacked a quorum for good
    /// (simulator seed 221, n = 7, with start-up safety, the simulator's default).
    func testRestartedReplicaThatJoinsAViewChangeBeforeSyncingKnowsItsOwnCommit() throws {
        let scenario = Scenario()
        scenario.submit(1)
        // Validator 3's COMMIT is held back too, so every certificate of block 1 carries validator 1's.
        scenario.deliverAll { from, to, message in message.kind != "commit" || (to != 1 && from != 3) }
        XCTAssertEqual(scenario.heights, [1, 0, 1, 1])
        XCTAssertEqual(votes(scenario, from: 1)[[2, 0, 1]], [scenario.executed[0][0].block.hash])
        // The primary and validator 1 go down; the others time out on a new transaction.
        scenario.down = [0, 1]
        scenario.submit(1)
        var viewChanges: [ValidatorIndex: ViewChange] = [:]
        for _ in 0..<200 where viewChanges.count < 2 {
            scenario.tick()
            for index: ValidatorIndex in [2, 3] {
                for case .viewChange(let viewChange) in scenario.sent[Int(index)] where viewChange.newView == 1 {
                    viewChanges[index] = viewChange
                }
            }
        }
        XCTAssertEqual(viewChanges.count, 2, "validators 2 and 3 never asked for view 1")
        // Validator 1 restarts with its current journal and hears of view 1 before anything else.
        try restore(scenario, 1, chain: scenario.executed[1], durable: scenario.persisted[1], quarantined: true)
        scenario.down = [0]
        for index: ValidatorIndex in [2, 3] { scenario.step(1, .message(.viewChange(viewChanges[index]!), from: index)) }
        XCTAssertEqual(scenario.replicas[1].view, 1)
        XCTAssertTrue(scenario.replicas[1].isQuarantined)
        scenario.deliverAll()
        scenario.tick(2 * Int(scenario.configuration(1).retransmitIntervalTicks))
        XCTAssertEqual(scenario.replicas[1].ownSignaturesFromNewerCopy, 0, "took its own COMMIT for a newer copy's")
        XCTAssertFalse(scenario.replicas[1].isQuarantined)
        XCTAssertTrue(scenario.sent[1].contains { if case .viewChange(let own) = $0 { own.newView == 1 } else { false } },
                      "no VIEW-CHANGE for view 1 after the quarantine")
        // Validator 1 is view 1's primary: the transaction commits without validator 0.
        scenario.tick(4 * Int(scenario.configuration(1).retransmitIntervalTicks))
        XCTAssertEqual(scenario.heights[1...], [2, 2, 2])
    }

    /// The signing mark kept outside the data directory: a journal restored from before
    /// the last signatures cannot sign at or below the mark, even without the quarantine.
    func testJournalBehindTheSigningMarkFileSignsNothingAtOrBelowIt() throws {
        let scenario = Scenario()
        let (olderChain, olderJournal) = try copyAfterTheFirstBlock(scenario, of: 0)
        scenario.submit(1)
        scenario.deliverAll()
        let mark = scenario.replicas[0].signingMark
        XCTAssertEqual(mark, SigningMark(view: 0, height: 2, phase: SignerGuard.Phase.commit.rawValue))
        XCTAssertEqual(scenario.persisted[0]?.signingMark, mark, "the mark is in the journal too")
        XCTAssertLessThan(olderJournal.signingMark, mark)
        try restore(scenario, 0, chain: olderChain, durable: olderJournal, signingMark: mark, quarantined: false)
        scenario.submit(1)
        XCTAssertEqual(scenario.replicas[0].dropped[.belowSigningMark], 1)
        scenario.tick(2 * Int(scenario.parameters.viewChangeTimeoutTicks))
        for (key, hashes) in proposals(scenario, from: 0) { XCTAssertEqual(hashes.count, 1, "two PRE-PREPAREs for \(key)") }
        // Once caught up (by the peers' committed tip) it proposes above the mark.
        XCTAssertEqual(scenario.heights, [3, 3, 3, 3])
        XCTAssertEqual(proposals(scenario, from: 0)[[0, 3]]?.count, 1)
    }

    func testSigningMarkSurvivesTheJournalAndAnOlderJournalReadsAsZero() throws {
        let scenario = Scenario()
        scenario.submit(1)
        scenario.deliverAll()
        let state = try XCTUnwrap(scenario.persisted[1])
        XCTAssertEqual(state.signingMark, SigningMark(view: 0, height: 1, phase: SignerGuard.Phase.commit.rawValue))
        XCTAssertEqual(try DurableState(canonicalBytes: state.canonicalBytes), state)
        XCTAssertEqual(try DurableState(compactBytes: state.compactBytes) { state.preparedBlocks[$0] }, state)
        // The layout before the mark ends after the blocks.
        let older = Array(state.canonicalBytes.dropLast(17))
        XCTAssertEqual(try DurableState(canonicalBytes: older).signingMark, .zero)
    }

    // MARK: Evidence

    func testConflictingPrepareIsKeptAsEvidenceOnce() {
        let scenario = Scenario()
        let block = scenario.proposal()
        let first = scenario.vote(.prepare, view: 0, height: 1, hash: block.hash, by: 2)
        let second = scenario.vote(.prepare, view: 0, height: 1, hash: SHA256.hash([9]), by: 2)
        scenario.step(1, .message(.prepare(first), from: 2))
        for _ in 0..<3 { scenario.step(1, .message(.prepare(second), from: 2)) }
        XCTAssertEqual(scenario.replicas[1].dropped[.conflictingVote], 3)
        XCTAssertEqual(scenario.replicas[1].equivocationCounts, [2: 1], "retransmissions count once")
        let evidence = scenario.replicas[1].equivocations
        XCTAssertEqual(evidence.count, 1)
        XCTAssertEqual(evidence.first?.kind, .prepare)
        XCTAssertEqual(evidence.first?.validator, 2)
        XCTAssertEqual(evidence.first?.height, 1)
        XCTAssertEqual(evidence.first?.first.blockHash, block.hash)
        XCTAssertEqual(evidence.first?.second.blockHash, SHA256.hash([9]))
        XCTAssertEqual(evidence.first?.second.signature, second.signature)
        // An unsigned (forged) conflict is no evidence.
        let forged = Vote(target: VoteTarget(phase: .prepare, view: 0, height: 1, blockHash: SHA256.hash([8])), validator: 3,
                          signature: second.signature)
        scenario.step(1, .message(.prepare(forged), from: 3))
        XCTAssertEqual(scenario.replicas[1].equivocations.count, 1)
    }

    func testEquivocatingPrePrepareIsKeptAsEvidence() {
        let scenario = Scenario()
        let first = scenario.proposal()
        let second = scenario.proposal(timestampOffset: 1)
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: first, by: 0)), from: 0))
        scenario.step(1, .message(.prePrepare(scenario.prePrepare(view: 0, block: second, by: 0)), from: 0))
        let evidence = scenario.replicas[1].equivocations
        XCTAssertEqual(evidence.map(\.kind), [.prePrepare])
        XCTAssertEqual(evidence.first?.validator, 0)
        XCTAssertEqual(evidence.first.map { [$0.first.blockHash, $0.second.blockHash] }, [first.hash, second.hash])
    }

    func testEvidenceStoreKeepsTheLatestPerValidator() {
        var store = EvidenceStore()
        let statement = EquivocationEvidence.Statement(blockHash: .zero, stateRoot: nil, signature: Signature(bytes: [UInt8](repeating: 0, count: 64))!)
        for height in 1...UInt64(EvidenceStore.maxPerValidator + 5) {
            XCTAssertTrue(store.record(EquivocationEvidence(
                validator: 1, kind: .commit, view: 0, height: height, first: statement, second: statement, tick: 0)))
        }
        XCTAssertEqual(store.byValidator[1]?.count, EvidenceStore.maxPerValidator)
        XCTAssertEqual(store.byValidator[1]?.first?.height, 6)
        XCTAssertEqual(store.counts[1], EvidenceStore.maxPerValidator + 5)
    }
}
