import TallyCrypto
import TallyTestbed

enum FaultClass: String, CaseIterable {
    case process, network, byzantine
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
        case .kill, .freeze, .tear, .restoredData: return .process
        case .equivocate, .conflictingVotes, .forgedViewChange, .garbageFrames, .silent, .forgedNewView, .censor: return .byzantine
        default: return .network
        }
    }

    /// Byzantine kinds that act only (equivocate, censor) or mostly (forged-view-change) as the
    /// primary: at the episode's start they move to the current primary (`ChaosRun`).
    var actsAsPrimary: Bool { self == .equivocate || self == .forgedViewChange || self == .censor }

    /// Kinds that make up a whole episode on their own (not one node's fault).
    var isWholeEpisode: Bool { self == .split || self == .isolatePrimary }

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
            let duration = min(Double.random(in: Self.faultSeconds, using: &random), durationSeconds - time)
            if duration < 1 { break }
            let faults: [FaultEpisode.Fault]
            if !wholeKinds.isEmpty && (nodeKinds.isEmpty || random.unitInterval() < Self.wholeEpisodeShare) {
                faults = Self.wholeEpisode(wholeKinds.randomElement(using: &random)!, validators: validators, random: &random)
            } else {
                // Process-only schedules draw exactly what they always did, so old seeds replay.
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
        default:
            preconditionFailure("\(kind) is a one-node fault")
        }
    }

    private static func fault(_ kind: FaultKind, node: Int, tornBytes: Int, validators: Int, random: inout SplitMix64) -> FaultEpisode.Fault {
        var peer = node
        var link = LinkPolicy.clear
        switch kind {
        case .kill, .freeze, .tear, .restoredData: break
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
