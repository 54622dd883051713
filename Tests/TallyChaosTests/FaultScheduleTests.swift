import TallyTestbed
import TallyTypes
import XCTest

@testable import tally_chaos

final class FaultScheduleTests: XCTestCase {
    let processKinds = FaultKind.of([.process])
    let allKinds = FaultKind.of([.process, .network])
    let byzantineKinds = FaultKind.of([.byzantine])
    let everyKind = FaultKind.of([.process, .network, .byzantine, .fullBlocks])

    func schedule(seed: UInt64, validators: Int = 4, maxFaulty: Int = 1, seconds: Double = 600, kinds: [FaultKind]? = nil) -> FaultSchedule {
        FaultSchedule(seed: seed, validators: validators, maxFaulty: maxFaulty, durationSeconds: seconds, kinds: kinds ?? processKinds)
    }

    func testSameSeedSameSchedule() {
        for kinds in [processKinds, allKinds, byzantineKinds, everyKind] {
            XCTAssertEqual(schedule(seed: 42, kinds: kinds).episodes.map(\.description), schedule(seed: 42, kinds: kinds).episodes.map(\.description))
            XCTAssertNotEqual(schedule(seed: 42, kinds: kinds).episodes.map(\.description), schedule(seed: 43, kinds: kinds).episodes.map(\.description))
        }
    }

    func testEpisodesRespectTheBoundAndDoNotOverlap() {
        for kinds in [processKinds, allKinds, byzantineKinds, everyKind] {
            for seed in UInt64(0)..<50 {
                let episodes = schedule(seed: seed, validators: 7, maxFaulty: 2, kinds: kinds).episodes
                XCTAssertFalse(episodes.isEmpty)
                var previousEnd = 0.0
                for episode in episodes {
                    let nodes = episode.faults.compactMap(\.node)
                    XCTAssertEqual(Set(nodes).count, nodes.count, "a node twice in one episode")
                    XCTAssertTrue(nodes.allSatisfy { (0..<7).contains($0) })
                    XCTAssertTrue(episode.faults.allSatisfy { kinds.contains($0.kind) })
                    if episode.faults[0].kind == .split {
                        // The one deliberate excess: half the validators cut off from the rest.
                        XCTAssertEqual(episode.faults.count, 3)
                        XCTAssertTrue(episode.faults.allSatisfy { $0.kind == .split })
                    } else if episode.faults[0].kind.isWholeEpisode {
                        // Alone in its episode; the primary's kinds name no node until it starts.
                        XCTAssertEqual(episode.faults.count, 1)
                        XCTAssertEqual(episode.faults[0].node == nil, episode.faults[0].kind.targetsPrimary)
                        XCTAssertGreaterThanOrEqual(episode.durationSeconds, episode.faults[0].kind.minimumEpisodeSeconds)
                    } else {
                        XCTAssertTrue((1...2).contains(episode.faults.count))
                        XCTAssertEqual(nodes.count, episode.faults.count)
                    }
                    XCTAssertGreaterThanOrEqual(episode.startSeconds, previousEnd)
                    XCTAssertLessThanOrEqual(episode.startSeconds + episode.durationSeconds, 600)
                    previousEnd = episode.startSeconds + episode.durationSeconds
                }
            }
        }
    }

    func testNetworkSchedulesUseEveryKindWithSaneParameters() {
        var seen = Set<FaultKind>()
        for seed in UInt64(0)..<30 {
            for episode in schedule(seed: seed, kinds: allKinds).episodes {
                for fault in episode.faults {
                    seen.insert(fault.kind)
                    switch fault.kind {
                    case .oneWayLoss:
                        XCTAssertNotEqual(fault.peer, fault.node)
                        XCTAssertTrue(FaultSchedule.oneWayLossProbability.contains(fault.link.lossProbability))
                    case .delay:
                        XCTAssertTrue(FaultSchedule.delayMilliseconds.contains(fault.link.delayMicroseconds / 1000))
                        XCTAssertLessThanOrEqual(fault.link.jitterMicroseconds, fault.link.delayMicroseconds / 2)
                    case .loss: XCTAssertTrue(FaultSchedule.lossProbability.contains(fault.link.lossProbability))
                    case .duplicate: XCTAssertTrue(FaultSchedule.duplicateProbability.contains(fault.link.duplicateProbability))
                    case .isolate, .isolatePrimary, .split: XCTAssertTrue(fault.link.blocked)
                    case .kill, .freeze, .tear, .restoredData, .equivocate, .conflictingVotes, .forgedViewChange, .garbageFrames, .silent,
                         .forgedNewView, .censor, .slowPrimary, .twin, .killPrimaryFullBlocks:
                        XCTAssertEqual(fault.link, .clear)
                    }
                }
            }
        }
        XCTAssertEqual(seen, Set(allKinds))
    }

    func testByzantineKindsAreTheMisbehaviours() {
        // The raw values are what `tally-byzantine --misbehaviour` takes.
        XCTAssertEqual(byzantineKinds.map(\.rawValue), ["equivocate", "conflicting-votes", "forged-view-change", "garbage-frames", "silent", "forged-new-view", "censor"])
        XCTAssertTrue(byzantineKinds.allSatisfy { $0.faultClass == .byzantine && !$0.isWholeEpisode })
        XCTAssertEqual(Set(everyKind), Set(FaultKind.allCases))
        XCTAssertEqual(
            FaultEpisode.Fault(node: 2, kind: .forgedViewChange, tornBytes: 0, peer: 2, link: .clear).description,
            "byzantine(node2, forged-view-change)")
    }

    func testByzantineSchedulesDrawEveryMisbehaviourOnNamedNodesWithinTheBound() {
        var seen = Set<FaultKind>()
        var mixedWithOtherClasses = false
        for seed in UInt64(0)..<30 {
            for kinds in [byzantineKinds, everyKind] {
                for episode in schedule(seed: seed, validators: 7, maxFaulty: 2, kinds: kinds).episodes {
                    let byzantine = episode.faults.filter { $0.kind.faultClass == .byzantine }
                    guard !byzantine.isEmpty else { continue }
                    // A Byzantine validator is one of the at most f faulty ones: never in a split or isolate-primary episode.
                    XCTAssertLessThanOrEqual(episode.faults.count, 2)
                    XCTAssertTrue(episode.faults.allSatisfy { !$0.kind.isWholeEpisode && $0.node != nil })
                    XCTAssertTrue(byzantine.allSatisfy { $0.link == .clear })
                    if byzantine.count < episode.faults.count { mixedWithOtherClasses = true }
                    seen.formUnion(byzantine.map(\.kind))
                }
            }
        }
        XCTAssertEqual(seen, Set(byzantineKinds))
        XCTAssertTrue(mixedWithOtherClasses, "a Byzantine node and a crashed or cut-off node in one episode")
    }

    func testByzantineStartsAreCountedPerMisbehaviourFromTheNodeLog() {
        let line = { (name: String) in "2026-11-28T01:44:21+0000 warning tally.byzantine: misbehaviour=\(name) [tally_byzantine] TEST-ONLY Byzantine validator\n" }
        let log = line("silent") + "2026-11-28T01:44:22+0000 info tally.node: started\n" + line("equivocate") + line("silent")
        XCTAssertEqual(ChaosRun.byzantineStarts(in: log, .silent), 2)
        XCTAssertEqual(ChaosRun.byzantineStarts(in: log, .equivocate), 1)
        XCTAssertEqual(ChaosRun.byzantineStarts(in: log, .forgedViewChange), 0)
        XCTAssertEqual(ChaosRun.byzantineStarts(in: "", .silent), 0)
    }

    func testProcessSchedulesDrawTheSlowPrimaryAndTheTwinAloneAndLongEnough() {
        var seen: [FaultKind: Int] = [:]
        var twinned = Set<Int>()
        for seed in UInt64(0)..<30 {
            let episodes = schedule(seed: seed, validators: 7, maxFaulty: 2).episodes
            XCTAssertEqual(episodes.map(\.description), schedule(seed: seed, validators: 7, maxFaulty: 2).episodes.map(\.description), "seeded")
            for episode in episodes {
                for fault in episode.faults { seen[fault.kind, default: 0] += 1 }
                guard let first = episode.faults.first, first.kind == .slowPrimary || first.kind == .twin else { continue }
                XCTAssertEqual(episode.faults.count, 1, "nothing else is faulty while the check watches the network")
                XCTAssertGreaterThanOrEqual(episode.durationSeconds, first.kind.minimumEpisodeSeconds)
                XCTAssertLessThanOrEqual(episode.startSeconds + episode.durationSeconds, 600)
                if first.kind == .slowPrimary {
                    XCTAssertNil(first.node, "the primary, decided when the episode starts")
                    XCTAssertEqual(first.description, "slow-primary(primary)")
                } else {
                    XCTAssertTrue((0..<7).contains(first.node!))
                    twinned.insert(first.node!)
                    XCTAssertEqual(first.description, "twin(node\(first.node!))")
                }
            }
        }
        XCTAssertEqual(Set(seen.keys), Set(processKinds), "every process kind is drawn")
        XCTAssertEqual(twinned, Set(0..<7), "any validator may get a twin")
        XCTAssertEqual(processKinds, [.kill, .freeze, .tear, .restoredData, .slowPrimary, .twin])
        // About a quarter of the episodes are whole ones (slow-primary or twin).
        let whole = Double((seen[.slowPrimary] ?? 0) + (seen[.twin] ?? 0))
        let episodes = Double((0..<30).map { schedule(seed: UInt64($0), validators: 7, maxFaulty: 2).episodes.count }.reduce(0, +))
        XCTAssertEqual(whole / episodes, FaultSchedule.wholeEpisodeShare, accuracy: 0.08)
    }

    func testFullBlocksScheduleIsOnlyPrimaryKillsThatFit() {
        let kinds = FaultKind.of([.fullBlocks])
        XCTAssertEqual(kinds, [.killPrimaryFullBlocks])
        XCTAssertTrue(FaultKind.killPrimaryFullBlocks.targetsPrimary && FaultKind.killPrimaryFullBlocks.isWholeEpisode)
        for seed in UInt64(0)..<20 {
            let episodes = schedule(seed: seed, seconds: 300, kinds: kinds).episodes
            XCTAssertEqual(episodes.map(\.description), schedule(seed: seed, seconds: 300, kinds: kinds).episodes.map(\.description))
            XCTAssertFalse(episodes.isEmpty)
            for episode in episodes {
                XCTAssertEqual(episode.faults.map(\.kind), [.killPrimaryFullBlocks])
                XCTAssertNil(episode.faults[0].node)
                XCTAssertGreaterThanOrEqual(episode.durationSeconds, FullBlocksLoad.minimumEpisodeSeconds)
                XCTAssertLessThanOrEqual(episode.startSeconds + episode.durationSeconds, 300)
            }
        }
        // Too short for one judgeable episode: nothing is scheduled rather than a kill that cannot be judged.
        XCTAssertTrue(schedule(seed: 1, seconds: FaultSchedule.warmupSeconds + FullBlocksLoad.minimumEpisodeSeconds - 1, kinds: kinds).episodes.isEmpty)
    }

    func testOneChosenKindMakesEveryEpisode() {
        // `--kinds slow-primary`: the one-episode runs of the new kinds.
        for kind in [FaultKind.slowPrimary, .twin, .restoredData, .killPrimaryFullBlocks] {
            let episodes = schedule(seed: 7, seconds: 120, kinds: [kind]).episodes
            XCTAssertFalse(episodes.isEmpty, "\(kind)")
            XCTAssertTrue(episodes.allSatisfy { $0.faults.allSatisfy { $0.kind == kind } }, "\(kind)")
        }
    }

    func testRestoredDataMovesToThePrimary() {
        // Only a restored primary re-proposes (a restored backup signs its old blocks again).
        XCTAssertTrue(FaultKind.restoredData.actsAsPrimary)
        XCTAssertFalse(FaultKind.restoredData.isWholeEpisode)
        XCTAssertFalse(FaultKind.kill.actsAsPrimary || FaultKind.freeze.actsAsPrimary || FaultKind.tear.actsAsPrimary)
    }

    func testSlowPrimaryBoundsFollowTheGenesis() {
        let bounds = SlowPrimaryBounds.default
        XCTAssertEqual(bounds.cycleSeconds, 2.1, accuracy: 1e-9)
        XCTAssertEqual(bounds.viewChangeTimeoutSeconds, 2.0, accuracy: 1e-9)
        // (5 samples + 2) cycles + 2 view-change timeouts.
        XCTAssertEqual(bounds.replacementSeconds, 7 * 2.1 + 4, accuracy: 1e-9)
        XCTAssertEqual(bounds.latencySeconds, 7 * 2.1 + 8, accuracy: 1e-9)
        XCTAssertEqual(bounds.afterReplacementMedianSeconds, 2.1, accuracy: 1e-9)
        XCTAssertGreaterThan(bounds.episodeSeconds, bounds.replacementSeconds + bounds.viewChangeTimeoutSeconds)
        XCTAssertEqual(FaultKind.slowPrimary.minimumEpisodeSeconds, bounds.episodeSeconds)
        var slower = ConsensusParameters.default
        slower.viewChangeTimeoutTicks *= 2
        XCTAssertEqual(SlowPrimaryBounds(parameters: slower).replacementSeconds, 7 * 2.1 + 8, accuracy: 1e-9)
        XCTAssertEqual(ChaosRun.defaultViewChangeBoundSeconds(.default), 20, accuracy: 1e-9)
    }

    func testTwinPortsNeverMeetAValidatorsPorts() {
        for validators in [4, 7, 10] {
            let base = 20_000
            let validatorPorts = Set((0..<validators).flatMap { [base + $0, base + 100 + $0] })
            var twinPorts: [Int] = []
            for node in 0..<validators {
                let ports = TwinEpisode.ports(basePort: base, validators: validators, node: node)
                twinPorts += [ports.api, ports.p2p]
            }
            XCTAssertEqual(Set(twinPorts).count, twinPorts.count)
            XCTAssertTrue(validatorPorts.isDisjoint(with: twinPorts))
            XCTAssertTrue(twinPorts.allSatisfy { $0 < base })
        }
    }

    func testFullBlocksTransfersAreOneTransactionPerNonceBetweenFundedAccounts() {
        XCTAssertEqual(FullBlocksLoad.perAccount(transactions: 180_000, accounts: 400), 450)
        XCTAssertEqual(FullBlocksLoad.perAccount(transactions: 10, accounts: 4), 3)
    }

    func testPrometheusTextIsReadByNameAndLabels() {
        let text = """
            # TYPE tally_network_messages_dropped_total counter
            tally_network_messages_dropped_total{reason="message_too_large"} 42
            tally_network_messages_dropped_total{reason="outbound_queue_full"} 335
            tally_transactions_committed_total 180000
            tally_network_connections_closed_total{reason="key_in_use_twice"} 7.0
            tally_network_connections_closed_total{reason="peer_closed"} 3
            tally_transactions_committed_total_other 1
            """
        XCTAssertEqual(PrometheusText.value(text, "tally_network_messages_dropped_total", labels: ["reason": "message_too_large"]), 42)
        XCTAssertEqual(PrometheusText.value(text, "tally_network_messages_dropped_total"), 377)
        XCTAssertEqual(PrometheusText.value(text, "tally_transactions_committed_total"), 180_000)
        XCTAssertEqual(PrometheusText.value(text, "tally_network_connections_closed_total", labels: ["reason": "key_in_use_twice"]), 7)
        XCTAssertNil(PrometheusText.value(text, "tally_network_connections_closed_total", labels: ["reason": "oversize_frame"]))
        XCTAssertNil(PrometheusText.value(text, "tally_view"))
        // A counter lower than before: the node restarted and counts from 0 again.
        XCTAssertEqual(counterRise(from: 5, to: 9), 4)
        XCTAssertEqual(counterRise(from: 5, to: 2), 2)
        XCTAssertEqual(counterRise(from: nil, to: 3), 3)
        XCTAssertEqual(counterRise(from: 3, to: nil), 0)
    }

    func fault(_ kind: FaultKind, _ node: Int, peer: Int = 0, link: LinkPolicy = .clear) -> FaultEpisode.Fault {
        FaultEpisode.Fault(node: node, kind: kind, tornBytes: 0, peer: peer, link: link)
    }

    func testLinkPoliciesOfAnEpisode() {
        // Split {1,2} | {0,3}: exactly the 8 cross links blocked, both ways.
        let split = ChaosRun.linkPolicies([fault(.split, 1, link: .partitioned), fault(.split, 2, link: .partitioned)], validators: 4)
        XCTAssertEqual(Set(split.keys), Set([1, 2].flatMap { a in [0, 3].flatMap { b in [Link(from: a, to: b), Link(from: b, to: a)] } }))
        XCTAssertTrue(split.values.allSatisfy(\.blocked))

        // One-way loss 1→2 only.
        let lossy = LinkPolicy(lossProbability: 0.9)
        XCTAssertEqual(ChaosRun.linkPolicies([fault(.oneWayLoss, 1, peer: 2, link: lossy)], validators: 4), [Link(from: 1, to: 2): lossy])

        // Delay on node 0 and loss on node 1 meet on the 0↔1 links.
        let delay = LinkPolicy(delayMicroseconds: 50_000, jitterMicroseconds: 5_000)
        let loss = LinkPolicy(lossProbability: 0.2)
        let both = ChaosRun.linkPolicies([fault(.delay, 0, link: delay), fault(.loss, 1, link: loss)], validators: 3)
        XCTAssertEqual(both[Link(from: 0, to: 1)], delay.combined(with: loss))
        XCTAssertEqual(both[Link(from: 1, to: 0)], delay.combined(with: loss))
        XCTAssertEqual(both[Link(from: 0, to: 2)], delay)
        XCTAssertEqual(both[Link(from: 2, to: 1)], loss)
        XCTAssertNil(both[Link(from: 2, to: 2)])

        // Process faults touch no link.
        XCTAssertTrue(ChaosRun.linkPolicies([fault(.kill, 0), fault(.freeze, 1)], validators: 4).isEmpty)
    }
}
