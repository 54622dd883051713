import TallyCrypto

/// What a directed link (one endpoint to another) does to each packet, as `tc netem`
/// would: fixed delay plus uniform jitter, independent loss and duplication, or
/// nothing at all (blocked: a partition).
public struct LinkPolicy: Equatable, Sendable, CustomStringConvertible {
    public var delayMicroseconds: UInt64
    /// Each packet's delay is `delay ± jitter` (uniform), at least 0.
    public var jitterMicroseconds: UInt64
    /// Probability 0…1 that a packet is dropped.
    public var lossProbability: Double
    /// Probability 0…1 that a delivered packet is delivered twice.
    public var duplicateProbability: Double
    public var blocked: Bool

    public init(
        delayMicroseconds: UInt64 = 0, jitterMicroseconds: UInt64 = 0, lossProbability: Double = 0, duplicateProbability: Double = 0,
        blocked: Bool = false
    ) {
        precondition((0...1).contains(lossProbability) && (0...1).contains(duplicateProbability))
        self.delayMicroseconds = delayMicroseconds
        self.jitterMicroseconds = jitterMicroseconds
        self.lossProbability = lossProbability
        self.duplicateProbability = duplicateProbability
        self.blocked = blocked
    }

    /// A perfect link: every packet delivered at once, once.
    public static let clear = LinkPolicy()
    public static let partitioned = LinkPolicy(blocked: true)

    public var isClear: Bool { self == .clear }

    /// Two faults on one link at once: delays add, the larger jitter and duplication
    /// apply, losses are independent, a block wins.
    public func combined(with other: LinkPolicy) -> LinkPolicy {
        LinkPolicy(
            delayMicroseconds: delayMicroseconds + other.delayMicroseconds,
            jitterMicroseconds: max(jitterMicroseconds, other.jitterMicroseconds),
            lossProbability: other.lossProbability == 0 ? lossProbability
                : lossProbability == 0 ? other.lossProbability : 1 - (1 - lossProbability) * (1 - other.lossProbability),
            duplicateProbability: max(duplicateProbability, other.duplicateProbability),
            blocked: blocked || other.blocked)
    }

    public var description: String {
        if blocked { return "blocked" }
        var parts: [String] = []
        if delayMicroseconds > 0 || jitterMicroseconds > 0 {
            parts.append("delay \(delayMicroseconds / 1000)±\(jitterMicroseconds / 1000) ms")
        }
        if lossProbability > 0 { parts.append("loss \(Int((lossProbability * 100).rounded())) %") }
        if duplicateProbability > 0 { parts.append("duplicate \(Int((duplicateProbability * 100).rounded())) %") }
        return parts.isEmpty ? "clear" : parts.joined(separator: ", ")
    }
}

/// A directed link between two switch ports.
public struct Link: Hashable, Sendable {
    public let from: Int
    public let to: Int
    public init(from: Int, to: Int) {
        self.from = from
        self.to = to
    }
}

/// Why the switch did not deliver a packet, counted per reason.
public enum DropReason: String, CaseIterable, Sendable {
    /// The link is partitioned.
    case blocked
    /// The link's loss probability said so.
    case loss
    /// The timed queue was full.
    case queueFull = "queue_full"
    /// Not IPv4, too short, or addressed to no port of the switch.
    case unroutable
    /// The destination device would not take it (its queue is full).
    case writeFailed = "write_failed"
}

/// The pure part of the packet switch: given the link policies, a seed and each
/// packet's arrival time, decides which packets are delivered, to which port, when
/// (and which twice). No clock, no I/O: the switch thread feeds it times and packets.
/// Per link, packets leave in the order they came (a WAN path does not reorder;
/// jitter stretches gaps instead), so `deliverAt` never decreases on one link.
public struct PacketScheduler<Packet> {
    /// Packets held at once (delayed or due); beyond it new ones are dropped.
    public let maxQueuedPackets: Int
    /// Bytes held at once; beyond it new packets are dropped.
    public let maxQueuedBytes: Int
    public private(set) var queuedBytes = 0
    private var policies: [Link: LinkPolicy] = [:]
    private var random: SplitMix64
    private var lastDeliveryNanoseconds: [Link: UInt64] = [:]
    private var heap: [Entry] = []
    private var sequence: UInt64 = 0
    public private(set) var drops: [DropReason: Int] = [:]
    public private(set) var accepted = 0
    public private(set) var duplicated = 0

    struct Entry {
        let deliverAt: UInt64
        let sequence: UInt64
        let port: Int
        let packet: Packet
        let bytes: Int
        func before(_ other: Entry) -> Bool { (deliverAt, sequence) < (other.deliverAt, other.sequence) }
    }

    public init(seed: UInt64, maxQueuedPackets: Int, maxQueuedBytes: Int) {
        precondition(maxQueuedPackets > 0 && maxQueuedBytes > 0)
        random = SplitMix64(seed: seed)
        self.maxQueuedPackets = maxQueuedPackets
        self.maxQueuedBytes = maxQueuedBytes
    }

    private func hasRoom(_ bytes: Int) -> Bool { heap.count < maxQueuedPackets && queuedBytes + bytes <= maxQueuedBytes }

    public func policy(_ link: Link) -> LinkPolicy { policies[link] ?? .clear }

    public mutating func setPolicy(_ policy: LinkPolicy, for link: Link) {
        policies[link] = policy.isClear ? nil : policy
    }

    /// Every link clear.
    public mutating func healAll() { policies = [:] }

    public var queuedCount: Int { heap.count }

    public mutating func drop(_ reason: DropReason) { drops[reason, default: 0] += 1 }

    /// A packet of `bytes` arrived from `link.from` for `link.to` at `nowNanoseconds`.
    public mutating func submit(_ packet: Packet, bytes: Int, on link: Link, nowNanoseconds: UInt64) {
        let policy = policy(link)
        if policy.blocked { return drop(.blocked) }
        if policy.lossProbability > 0 && random.unitInterval() < policy.lossProbability { return drop(.loss) }
        var delay = Int64(policy.delayMicroseconds)
        if policy.jitterMicroseconds > 0 {
            let jitter = Int64(policy.jitterMicroseconds)
            delay += Int64(random.next() % UInt64(2 * jitter + 1)) - jitter
        }
        var deliverAt = nowNanoseconds + UInt64(max(delay, 0)) * 1000
        if let last = lastDeliveryNanoseconds[link], last > deliverAt { deliverAt = last }
        let twice = policy.duplicateProbability > 0 && random.unitInterval() < policy.duplicateProbability
        guard hasRoom(bytes) else { return drop(.queueFull) }
        push(Entry(deliverAt: deliverAt, sequence: sequence, port: link.to, packet: packet, bytes: bytes))
        sequence += 1
        accepted += 1
        if twice {
            if hasRoom(bytes) {
                push(Entry(deliverAt: deliverAt, sequence: sequence, port: link.to, packet: packet, bytes: bytes))
                sequence += 1
                duplicated += 1
            } else {
                drop(.queueFull)
            }
        }
        if policy.isClear { lastDeliveryNanoseconds[link] = nil } else { lastDeliveryNanoseconds[link] = deliverAt }
    }

    /// When the next packet is due, or nil when none is held.
    public var nextDueNanoseconds: UInt64? { heap.first?.deliverAt }

    /// Removes and returns the next packet due at or before `nowNanoseconds`.
    public mutating func popDue(nowNanoseconds: UInt64) -> (port: Int, packet: Packet)? {
        guard let first = heap.first, first.deliverAt <= nowNanoseconds else { return nil }
        queuedBytes -= first.bytes
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            siftDown(0)
        }
        return (first.port, first.packet)
    }

    // MARK: binary min-heap on (deliverAt, sequence)

    private mutating func push(_ entry: Entry) {
        queuedBytes += entry.bytes
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].before(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < heap.count && heap[left].before(heap[smallest]) { smallest = left }
            if right < heap.count && heap[right].before(heap[smallest]) { smallest = right }
            if smallest == parent { return }
            heap.swapAt(parent, smallest)
            parent = smallest
        }
    }
}
