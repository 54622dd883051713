import TallyConsensus

/// The Byzantine behaviours the simulator can give a replica.
public enum ByzantineMode: String, CaseIterable, Sendable {
    /// Two copies of correct code with one key, placed in different partitions.
    case twins
    /// As primary, sends conflicting PRE-PREPAREs to the two halves of the backups.
    case equivocatingPrimary = "equivocating-primary"
    /// Corrupts its own signatures and forges votes in other validators' names.
    case invalidSignatures = "invalid-signatures"
    /// Signs for another chain id, and replays a commit quorum captured on another chain.
    case wrongChain = "wrong-chain"
    /// Replays old messages it received (older views, lower heights).
    case replayOldView = "replay-old-view"
    /// Silent as primary; its VIEW-CHANGEs carry a forged prepared certificate.
    case forgedPreparedCertificate = "forged-prepared-certificate"
    /// As new primary, sends a NEW-VIEW whose PRE-PREPAREs replace the prepared blocks.
    case newViewDropsPrepared = "new-view-drops-prepared"
    /// Sends nothing while it is the primary.
    case silentPrimary = "silent-primary"
    /// As primary, sends its PRE-PREPAREs to only f replicas.
    case primaryTalksToF = "primary-talks-to-f"
    /// Floods VIEW-CHANGEs, votes and checkpoints for future views and heights.
    case futureViewFlood = "future-view-flood"
    /// Signs empty (invalid) NEW-VIEWs for views it leads: the next one above its own
    /// view and the highest one a message may name, a stream of them every tick.
    case forgedNewView = "forged-new-view"
    /// As primary, leaves out chosen senders' transactions (it drops them on arrival)
    /// and proposes the others, and empty blocks while the chosen ones wait.
    case censor
    /// As primary, holds everything it sends and lets it go every few ticks, just
    /// inside the view-change timeout (a primary paused and resumed, Aardvark's slow primary).
    case slowPrimary = "slow-primary"
}

public enum PartitionKind: String, Sendable {
    case halves, isolatePrimary = "isolate-primary", oneWay = "one-way"
}

/// Which kinds of faults a run may draw.
public enum FaultMix: String, CaseIterable, Sendable {
    case none, network, crash, byzantine, all
}

public struct Partition: Sendable, CustomStringConvertible {
    public let kind: PartitionKind
    public let startTick: Int
    public let endTick: Int
    /// Node group A (the other nodes are group B). For one-way, A → B is cut.
    public var groupA: Set<Int>

    public var description: String { "\(kind.rawValue) ticks \(startTick)..<\(endTick) A=\(groupA.sorted())" }
}

public struct Crash: Sendable, CustomStringConvertible {
    public let validator: Int
    public let tick: Int
    public let restartTick: Int
    /// The crash tears the write of the step it interrupts.
    public let tornWrite: Bool
    public var description: String {
        "validator \(validator) at \(tick), restart \(restartTick)\(tornWrite ? ", torn write" : ", after write")"
    }
}

/// Everything random about a run, drawn from its seed: printed on failure.
public struct FaultPlan: Sendable, CustomStringConvertible {
    public var lossPercent = 0
    public var duplicatePercent = 0
    public var maxDelayTicks = 2
    public var partitions: [Partition] = []
    public var crashes: [Crash] = []
    public var byzantine: [Int: ByzantineMode] = [:]
    /// Faults (loss, partitions, crashes) stop here; Byzantine replicas stay.
    public var healTick = 0

    public var description: String {
        var lines = ["heal at tick \(healTick); loss \(lossPercent)%, duplication \(duplicatePercent)%, delay 1...\(maxDelayTicks) ticks"]
        for partition in partitions { lines.append("partition \(partition)") }
        for crash in crashes { lines.append("crash \(crash)") }
        for (validator, mode) in byzantine.sorted(by: { $0.key < $1.key }) { lines.append("byzantine validator \(validator): \(mode.rawValue)") }
        return lines.joined(separator: "\n")
    }

    static func draw(mix: FaultMix, validatorCount: Int, random: inout SimRandom, faultTicks: Int,
                     byzantineModes: [ByzantineMode], forceByzantine: Bool = false) -> FaultPlan {
        var plan = FaultPlan()
        plan.healTick = faultTicks
        plan.maxDelayTicks = random.inRange(1...4)
        let maxFaulty = (validatorCount - 1) / 3
        let useNetwork = mix == .network || (mix == .all && random.chance(60))
        let useCrash = mix == .crash || (mix == .all && random.chance(50))
        let useByzantine = mix == .byzantine || (mix == .all && random.chance(60)) || forceByzantine
        if useByzantine {
            let count = random.inRange(1...maxFaulty)
            var candidates = Array(0..<validatorCount)
            random.shuffle(&candidates)
            for validator in candidates.prefix(count) { plan.byzantine[validator] = random.pick(byzantineModes) }
        }
        if useNetwork {
            plan.lossPercent = random.inRange(0...20)
            plan.duplicatePercent = random.inRange(0...10)
            for _ in 0..<random.inRange(0...3) {
                let start = random.inRange(0...(faultTicks - 20))
                let end = min(faultTicks, start + random.inRange(10...80))
                let kind = random.pick([PartitionKind.halves, .isolatePrimary, .oneWay])
                var nodes = Array(0..<validatorCount)
                random.shuffle(&nodes)
                let groupA: Set<Int>
                switch kind {
                case .halves, .oneWay: groupA = Set(nodes.prefix(validatorCount / 2))
                case .isolatePrimary: groupA = []  // filled in with the primary when it starts
                }
                plan.partitions.append(Partition(kind: kind, startTick: start, endTick: end, groupA: groupA))
            }
        }
        if useCrash {
            let honest = (0..<validatorCount).filter { plan.byzantine[$0] == nil }
            for _ in 0..<random.inRange(1...3) {
                let tick = random.inRange(5...(faultTicks - 10))
                let restart = min(faultTicks, tick + random.inRange(5...90))
                plan.crashes.append(Crash(validator: random.pick(honest), tick: tick, restartTick: restart, tornWrite: random.chance(50)))
            }
        }
        return plan
    }
}
