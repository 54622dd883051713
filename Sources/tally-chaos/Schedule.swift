import TallyCrypto
import TallyTestbed

enum FaultClass: String, CaseIterable {
    case process, network, byzantine
    /// The primary killed while a load keeps blocks full (issue 13 item 2): a heavy
    /// load of its own, so a class of its own (not in `tools/test`'s debug run).
    case fullBlocks = "full-blocks"
}

/// One way to make validators faulty for a while.
enum FaultKind: String, CaseIterable, Sendable {
    // process faults
    /// kill -9 at the start, restart at the end.
    case kill
    /// SIGSTOP at the start, SIGCONT at the end: a frozen node whose sockets stay open.
    case freeze
    /// kill -9, truncate a few bytes off the newest block segment, restart at the end.
    case tear
    /// A copy of the data directory at the start (SIGSTOP, copy, SIGCONT); the node goes
    /// on signing; at the end kill -9, the copy put back, restart (issue 13 item 8: it
    /// must sign nothing that conflicts with what it signed after the copy).
    case restoredData = "restored-data"
    /// Whoever is primary when the episode starts is paused 1.9 s of every 2.1 s
    /// (SIGSTOP/SIGCONT) for the episode (issue 13 item 9): the backups must replace
    /// it, and commit latency stays bounded (`SlowPrimaryBounds`).
    case slowPrimary = "slow-primary"
    /// A second process with a copy of the node's home (same key) on other ports for
    /// the episode (issue 13 item 10): the honest validators keep their peers and count
    /// `validator key in use twice`.
    case twin
    // full-blocks faults
    /// A load that fills blocks (pre-signed transfers from funded devnet accounts to the
    /// backups), then kill -9 of the primary while blocks are full; commits must resume
    /// in a later view within the view-change bound, with no message too large to send.
    case killPrimaryFullBlocks = "kill-primary-full-blocks"
    // network faults (validators in a `NetworkLab`); links to the harness stay clear
    /// The node cannot reach any other validator, nor they it.
    case isolate
    /// Whoever is primary when the episode starts (asked of a healthy node) is isolated.
    case isolatePrimary = "isolate-primary"
    /// The validators split into two halves that cannot reach each other (2/2 with 4:
    /// neither side has a quorum, so the network stalls until the heal).
    case split
    /// Packets from the node to one peer are lost with a high probability; the other direction is clear.
    case oneWayLoss = "one-way-loss"
    /// Delay and jitter on every link to and from the node.
    case delay
    /// Random loss on every link to and from the node.
    case loss
    /// Random duplication on every link to and from the node.
    case duplicate
    // Byzantine faults: the node is restarted as `tally-byzantine --misbehaviour RAW`
    // (same home and data) for the episode, then as an honest `tally-node` again.
    /// As primary, two valid PRE-PREPAREs (two blocks) for one view and height.
    case equivocate
    /// Its PREPARE/COMMIT preceded, for some peers, by a vote for another block.
    case conflictingVotes = "conflicting-votes"
    /// Silent as primary; VIEW-CHANGEs with a forged prepared certificate; NEW-VIEWs
    /// that drop the prepared blocks.
    case forgedViewChange = "forged-view-change"
    /// Random/truncated payloads, forged gossip and oversized frames to its peers.
    case garbageFrames = "garbage-frames"
    /// Sends nothing at all.
    case silent
    /// Invalid NEW-VIEWs for views it leads, up to the highest nameable one.
    case forgedNewView = "forged-new-view"
    /// Keeps chosen senders' transactions out of its proposals (tally-byzantine censor).
    case censor

    var faultClass: FaultClass {
        switch self {
        case .kill, .freeze, .tear, .restoredData, .slowPrimary, .twin: return .process
        case .killPrimaryFullBlocks: return .fullBlocks
        case .equivocate, .conflictingVotes, .forgedViewChange, .garbageFrames, .silent, .forgedNewView, .censor: return .byzantine
        default: return .network
        }
    }

    /// Byzantine kinds that act only (equivocate, censor) or mostly (forged-view-change) as the
    /// primary, and restored-data (only a restored primary can sign a conflicting statement:
    /// a restored backup signs again for the blocks it signed before): at the episode's
    /// start they move to the current primary (`ChaosRun`).
    var actsAsPrimary: Bool { self == .equivocate || self == .forgedViewChange || self == .censor || self == .restoredData }

    /// Kinds that make up an episode on their own: not one node's fault (split,
    /// isolate-primary), or a fault whose check needs the network otherwise healthy
    /// (slow-primary, twin, kill-primary-full-blocks).
    var isWholeEpisode: Bool {
        switch self {
        case .split, .isolatePrimary, .slowPrimary, .twin, .killPrimaryFullBlocks: return true
        default: return false
        }
    }

    /// Whole-episode kinds whose node is whoever is primary when the episode starts.
    var targetsPrimary: Bool { self == .isolatePrimary || self == .slowPrimary || self == .killPrimaryFullBlocks }

    /// The shortest episode in which the kind's check can be judged; the schedule
    /// lengthens such an episode to this, and draws the kind only where it fits.
    var minimumEpisodeSeconds: Double {
        switch self {
        case .slowPrimary: return SlowPrimaryBounds.default.episodeSeconds
        case .twin: return TwinEpisode.minimumSeconds
        case .killPrimaryFullBlocks: return FullBlocksLoad.minimumEpisodeSeconds
        default: return 0
        }
    }

    static func of(_ classes: Set<FaultClass>) -> [FaultKind] { allCases.filter { classes.contains($0.faultClass) } }
}

/// Faults that start together and end together.
struct FaultEpisode: Sendable, CustomStringConvertible {
    struct Fault: Sendable, CustomStringConvertible {
        /// The faulty validator; nil for `isolatePrimary` (chosen when the episode starts).
        let node: Int?
        let kind: FaultKind
        /// Bytes cut off the newest segment (tear only).
        let tornBytes: Int
        /// The peer whose inbound link loses packets (one-way-loss only).
        let peer: Int
        /// What the fault does to the node's links (network kinds except isolate/split).
        let link: LinkPolicy

        var description: String {
            let name = node.map { "node\($0)" } ?? "primary"
            switch kind {
            case .tear: return "tear(\(name), -\(tornBytes) B)"
            case .oneWayLoss: return "one-way-loss(\(name)→node\(peer), \(link))"
            case .delay, .loss, .duplicate: return "\(kind.rawValue)(\(name), \(link))"
            case _ where kind.faultClass == .byzantine: return "byzantine(\(name), \(kind.rawValue))"
            default: return "\(kind.rawValue)(\(name))"
            }
        }
    }
    let startSeconds: Double
    let durationSeconds: Double
    let faults: [Fault]

    var description: String {
        let what: String
        if let first = faults.first, first.kind == .split {
            let side = faults.compactMap(\.node).map { "node\($0)" }.joined(separator: ",")
            what = "split({\(side)} | the rest)"
        } else {
            what = faults.map(\.description).joined(separator: " ")
        }
        return "t=\(Int(startSeconds))s +\(Int(durationSeconds))s " + what
    }
}

/// The whole run's faults, drawn from the seed before anything starts.
struct FaultSchedule {
    static let warmupSeconds = 8.0
    static let faultSeconds = 3.0...12.0
    static let healthySeconds = 4.0...10.0
    static let tornBytes = 1...24
    /// Share of episodes that are a split or an isolated primary, when those kinds are on.
    static let wholeEpisodeShare = 0.25
    static let delayMilliseconds: ClosedRange<UInt64> = 20...200
    static let lossProbability = 0.05...0.4
    static let oneWayLossProbability = 0.5...1.0
    static let duplicateProbability = 0.1...0.5

    let episodes: [FaultEpisode]

    init(seed: UInt64, validators: Int, maxFaulty: Int, durationSeconds: Double, kinds: [FaultKind]) {
        precondition(!kinds.isEmpty && maxFaulty >= 1 && maxFaulty <= validators)
        var random = SplitMix64(seed: seed)
        let nodeKinds = kinds.filter { !$0.isWholeEpisode }
        let wholeKinds = kinds.filter(\.isWholeEpisode)
        var episodes: [FaultEpisode] = []
        var time = Self.warmupSeconds
        while time < durationSeconds {
            var duration = min(Double.random(in: Self.faultSeconds, using: &random), durationSeconds - time)
            if duration < 1 { break }
            let faults: [FaultEpisode.Fault]
            var whole: FaultKind?
            if !wholeKinds.isEmpty && (nodeKinds.isEmpty || random.unitInterval() < Self.wholeEpisodeShare) {
                // Only kinds whose shortest judgeable episode fits in the time left; when
                // none does, a node episode instead (or the schedule ends).
                whole = wholeKinds.filter { $0.minimumEpisodeSeconds <= durationSeconds - time }.randomElement(using: &random)
                if whole == nil && nodeKinds.isEmpty { break }
            }
            if let kind = whole {
                faults = Self.wholeEpisode(kind, validators: validators, random: &random)
                duration = max(duration, kind.minimumEpisodeSeconds)
            } else {
                // Schedules of classes without whole-episode kinds (byzantine, network alone)
                // draw exactly what they always did, so their old seeds replay.
                let count = Int.random(in: 1...maxFaulty, using: &random)
                var nodes = Array(0..<validators)
                nodes.shuffle(using: &random)
                faults = nodes.prefix(count).sorted().map { node in
                    let kind = nodeKinds.randomElement(using: &random)!
                    let torn = Int.random(in: Self.tornBytes, using: &random)
                    return Self.fault(kind, node: node, tornBytes: torn, validators: validators, random: &random)
                }
            }
            episodes.append(FaultEpisode(startSeconds: time, durationSeconds: duration, faults: faults))
            time += duration + Double.random(in: Self.healthySeconds, using: &random)
        }
        self.episodes = episodes
    }

    private static func wholeEpisode(_ kind: FaultKind, validators: Int, random: inout SplitMix64) -> [FaultEpisode.Fault] {
        switch kind {
        case .split:
            var nodes = Array(0..<validators)
            nodes.shuffle(using: &random)
            return nodes.prefix(validators / 2).sorted().map {
                FaultEpisode.Fault(node: $0, kind: .split, tornBytes: 0, peer: $0, link: .partitioned)
            }
        case .isolatePrimary:
            return [FaultEpisode.Fault(node: nil, kind: .isolatePrimary, tornBytes: 0, peer: 0, link: .partitioned)]
        case .slowPrimary, .killPrimaryFullBlocks:
            return [FaultEpisode.Fault(node: nil, kind: kind, tornBytes: 0, peer: 0, link: .clear)]
        case .twin:
            let node = Int.random(in: 0..<validators, using: &random)
            return [FaultEpisode.Fault(node: node, kind: .twin, tornBytes: 0, peer: node, link: .clear)]
        default:
            preconditionFailure("\(kind) is a one-node fault")
        }
    }

    private static func fault(_ kind: FaultKind, node: Int, tornBytes: Int, validators: Int, random: inout SplitMix64) -> FaultEpisode.Fault {
        var peer = node
        var link = LinkPolicy.clear
        switch kind {
        case .kill, .freeze, .tear, .restoredData: break
        case .slowPrimary, .twin, .killPrimaryFullBlocks: preconditionFailure("\(kind) is a whole episode")
        case .equivocate, .conflictingVotes, .forgedViewChange, .garbageFrames, .silent, .forgedNewView, .censor: break
        case .isolate: link = .partitioned
        case .oneWayLoss:
            peer = (node + Int.random(in: 1..<validators, using: &random)) % validators
            link = LinkPolicy(lossProbability: Double.random(in: Self.oneWayLossProbability, using: &random))
        case .delay:
            let delay = UInt64.random(in: Self.delayMilliseconds, using: &random)
            link = LinkPolicy(delayMicroseconds: delay * 1000, jitterMicroseconds: UInt64.random(in: 0...delay / 2, using: &random) * 1000)
        case .loss: link = LinkPolicy(lossProbability: Double.random(in: Self.lossProbability, using: &random))
        case .duplicate: link = LinkPolicy(duplicateProbability: Double.random(in: Self.duplicateProbability, using: &random))
        case .split, .isolatePrimary: preconditionFailure("\(kind) is a whole episode")
        }
        return FaultEpisode.Fault(node: node, kind: kind, tornBytes: tornBytes, peer: peer, link: link)
    }
}
