import TallyTestbed
import XCTest

@testable import tally_chaos

final class FaultScheduleTests: XCTestCase {
    let processKinds = FaultKind.of([.process])
    let allKinds = FaultKind.of([.process, .network])
    let byzantineKinds = FaultKind.of([.byzantine])
    let everyKind = FaultKind.of([.process, .network, .byzantine])

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
                    } else if episode.faults[0].kind == .isolatePrimary {
                        XCTAssertEqual(episode.faults.count, 1)
                        XCTAssertNil(episode.faults[0].node)
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
                         .forgedNewView, .censor:
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
