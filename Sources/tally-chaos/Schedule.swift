/// SplitMix64 (Steele, Lea, Flood 2014): the schedule's only source of randomness,
/// so a seed replays the same faults at the same offsets on the same nodes.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum FaultClass: String, CaseIterable {
    case process, network, byzantine
}

/// One way to make a validator faulty for a while.
enum FaultKind: String, CaseIterable, Sendable {
    /// kill -9 at the start, restart at the end.
    case kill
    /// SIGSTOP at the start, SIGCONT at the end: a frozen node whose sockets stay open.
    case freeze
    /// kill -9, truncate a few bytes off the newest block segment, restart at the end.
    case tear
}

/// Faults that start together and end together.
struct FaultEpisode: Sendable, CustomStringConvertible {
    struct Fault: Sendable {
        let node: Int
        let kind: FaultKind
        /// Bytes cut off the newest segment (tear only).
        let tornBytes: Int
    }
    let startSeconds: Double
    let durationSeconds: Double
    let faults: [Fault]

    var description: String {
        let what = faults.map { fault in
            fault.kind == .tear ? "tear(node\(fault.node), -\(fault.tornBytes) B)" : "\(fault.kind.rawValue)(node\(fault.node))"
        }
        return "t=\(Int(startSeconds))s +\(Int(durationSeconds))s " + what.joined(separator: " ")
    }
}

/// The whole run's faults, drawn from the seed before anything starts.
struct FaultSchedule {
    static let warmupSeconds = 8.0
    static let faultSeconds = 3.0...12.0
    static let healthySeconds = 4.0...10.0
    static let tornBytes = 1...24

    let episodes: [FaultEpisode]

    init(seed: UInt64, validators: Int, maxFaulty: Int, durationSeconds: Double, kinds: [FaultKind]) {
        precondition(!kinds.isEmpty && maxFaulty >= 1 && maxFaulty <= validators)
        var random = SplitMix64(seed: seed)
        var episodes: [FaultEpisode] = []
        var time = Self.warmupSeconds
        while time < durationSeconds {
            let duration = min(Double.random(in: Self.faultSeconds, using: &random), durationSeconds - time)
            if duration < 1 { break }
            let count = Int.random(in: 1...maxFaulty, using: &random)
            var nodes = Array(0..<validators)
            nodes.shuffle(using: &random)
            let faults = nodes.prefix(count).sorted().map { node in
                FaultEpisode.Fault(
                    node: node, kind: kinds.randomElement(using: &random)!, tornBytes: Int.random(in: Self.tornBytes, using: &random))
            }
            episodes.append(FaultEpisode(startSeconds: time, durationSeconds: duration, faults: faults))
            time += duration + Double.random(in: Self.healthySeconds, using: &random)
        }
        self.episodes = episodes
    }
}
