import TallyConsensus
import TallyCrypto
import TallyDriver
import TallyNetwork
import TallyTypes

/// The simulated network keeps the real transport's bounds (`NetworkLimits.default`,
/// what a node runs with): a message is measured by the bytes the node frames
/// (`ConsensusWire`), one over `maxMessageBytes` is dropped at the sender as the real
/// transport drops it (`message_too_large`), and each direction of a connection holds
/// at most `maxOutboundQueueMessages` / `maxOutboundQueueBytes` of messages sent and
/// not yet delivered, dropping the oldest to make room (`outbound_queue_full`), as
/// `OutboundQueue` does.
///
/// Connections reset: a crash loses everything the crashed node had sent and not yet
/// delivered, and everything on its way to it; a partition that cuts a connection
/// loses what was in flight on it (`connection_reset`). Messages sent to a peer that
/// is down wait in the sender's queue (within its bounds) and go out when the peer is
/// back, as the real queue survives a reconnect (`held_for_reconnect`).
struct TransportBounds {
    let maxMessageBytes: Int
    let maxQueueMessages: Int
    let maxQueueBytes: Int

    init(_ limits: NetworkLimits) {
        maxMessageBytes = limits.maxMessageBytes
        maxQueueMessages = limits.maxOutboundQueueMessages
        maxQueueBytes = limits.maxOutboundQueueBytes
    }

    static let node = TransportBounds(.default)
}

/// What the simulated transport dropped or held, by the real transport's drop reasons.
public enum TransportEvent: String, CaseIterable, Sendable {
    case messageTooLarge = "message_too_large"
    case outboundQueueFull = "outbound_queue_full"
    case connectionReset = "connection_reset"
    case heldForReconnect = "held_for_reconnect"
}

/// One direction of a simulated connection: what was sent on it and not delivered,
/// oldest first.
struct Link {
    var undelivered: [(id: Int, bytes: Int)] = []
    var byteCount = 0
    /// Sent while the peer was down, with the delay each drew: sent on when it is back.
    var held: [(delivery: Simulation.Delivery, delayTicks: Int)] = []
}

extension Simulation {
    /// The largest message the simulated transport carries: the node's.
    public static var maxMessageBytes: Int { TransportBounds.node.maxMessageBytes }

    func linkIndex(fromSlot: Int, toSlot: Int) -> Int { fromSlot * nodes.count + toSlot }

    func countTransport(_ event: TransportEvent, _ amount: Int = 1) {
        guard amount > 0 else { return }
        transport[event, default: 0] += amount
    }

    /// Queues a message on its link, dropping the oldest ones that no longer fit;
    /// false (and counted) when the message is over the frame bound.
    func admit(_ delivery: Delivery) {
        let index = linkIndex(fromSlot: delivery.fromSlot, toSlot: delivery.toSlot)
        let bounds = TransportBounds.node
        while links[index].undelivered.count >= bounds.maxQueueMessages
            || links[index].byteCount + delivery.bytes > bounds.maxQueueBytes {
            let oldest = links[index].undelivered.removeFirst()
            links[index].byteCount -= oldest.bytes
            if let held = links[index].held.firstIndex(where: { $0.delivery.id == oldest.id }) {
                links[index].held.remove(at: held)
            } else {
                cancelledDeliveries.insert(oldest.id)
            }
            countTransport(.outboundQueueFull)
        }
        links[index].undelivered.append((delivery.id, delivery.bytes))
        links[index].byteCount += delivery.bytes
    }

    /// Whether `delivery` still arrives (not dropped from its queue or by a reset);
    /// takes it off its link.
    func arrives(_ delivery: Delivery) -> Bool {
        if cancelledDeliveries.remove(delivery.id) != nil { return false }
        let index = linkIndex(fromSlot: delivery.fromSlot, toSlot: delivery.toSlot)
        if let at = links[index].undelivered.firstIndex(where: { $0.id == delivery.id }) {
            links[index].byteCount -= links[index].undelivered.remove(at: at).bytes
        }
        return true
    }

    /// The connection from `fromSlot` to `toSlot` resets: what was in flight on it is
    /// lost; what it held for a down peer is lost too when `dropHeld` (the sender died).
    func resetLink(fromSlot: Int, toSlot: Int, dropHeld: Bool) {
        let index = linkIndex(fromSlot: fromSlot, toSlot: toSlot)
        let heldIDs = Set(links[index].held.map(\.delivery.id))
        var kept: [(id: Int, bytes: Int)] = []
        var byteCount = 0
        for entry in links[index].undelivered {
            if heldIDs.contains(entry.id) && !dropHeld {
                kept.append(entry)
                byteCount += entry.bytes
            } else {
                if !heldIDs.contains(entry.id) { cancelledDeliveries.insert(entry.id) }
                countTransport(.connectionReset)
            }
        }
        links[index].undelivered = kept
        links[index].byteCount = byteCount
        if dropHeld { links[index].held = [] }
    }

    /// A crashed node's connections reset both ways; its own queues die with it.
    func resetConnections(of slot: Int) {
        for other in nodes.indices where other != slot {
            resetLink(fromSlot: slot, toSlot: other, dropHeld: true)
            resetLink(fromSlot: other, toSlot: slot, dropHeld: false)
        }
    }

    /// Connections a partition starting now cuts lose what was in flight on them.
    func resetCutConnections() {
        for from in nodes.indices {
            for to in nodes.indices where from != to && isCut(fromSlot: from, toSlot: to) {
                resetLink(fromSlot: from, toSlot: to, dropHeld: false)
            }
        }
    }

    /// A restarted node's peers send what they held for it (unless cut from it now).
    func sendHeldMessages(to slot: Int) {
        for from in nodes.indices where from != slot {
            let index = linkIndex(fromSlot: from, toSlot: slot)
            let held = links[index].held
            links[index].held = []
            for (delivery, delayTicks) in held {
                if tick < healTick && isCut(fromSlot: from, toSlot: slot) {
                    _ = arrives(delivery)
                    count("messages_partitioned")
                    continue
                }
                network[tick + 1 + delayTicks, default: []].append(delivery)
            }
        }
    }
}

/// The largest VIEW-CHANGE and NEW-VIEW a run sent, as carried (blocks by hash) and
/// as they would have been with each named block whole (the format before issue 13
/// item 2, which outgrew the frame bound under full blocks and halted the chain).
public struct ViewChangeSizes: Sendable, Equatable {
    public var viewChangeBytes = 0
    public var viewChangeWholeBlockBytes = 0
    public var newViewBytes = 0
    public var newViewWholeBlockBytes = 0

    public init() {}

    /// What a block body adds to its header: the block's encoding minus the header's,
    /// for a block of the simulator's transactions (all of one encoded size).
    static func bodyBytes(transactionCount: UInt32, transaction: Transaction) -> Int {
        let header = BlockHeader(
            height: 1, view: 0, timestampMs: 0, previousHash: .zero, transactionsRoot: .zero, stateRoot: .zero, proposer: 0,
            transactionCount: 0)
        let empty = Block(header: header, transactions: []).canonicalBytes.count - header.canonicalBytes.count
        let perTransaction = Block(header: header, transactions: [transaction]).canonicalBytes.count
            - header.canonicalBytes.count - empty
        return empty + Int(transactionCount) * perTransaction
    }

    mutating func record(_ message: ConsensusMessage, bytes: Int, body: (SignedProposal) -> Int) {
        func bodies(_ viewChange: ViewChange) -> Int { viewChange.prepared.reduce(0) { $0 + body($1.proposal) } }
        switch message {
        case .viewChange(let viewChange):
            viewChangeBytes = max(viewChangeBytes, bytes)
            viewChangeWholeBlockBytes = max(viewChangeWholeBlockBytes, bytes + bodies(viewChange))
        case .newView(let newView):
            newViewBytes = max(newViewBytes, bytes)
            let whole = bytes + newView.viewChanges.reduce(0) { $0 + bodies($1) } + newView.proposals.reduce(0) { $0 + body($1) }
            newViewWholeBlockBytes = max(newViewWholeBlockBytes, whole)
        default:
            break
        }
    }

    public mutating func merge(_ other: ViewChangeSizes) {
        viewChangeBytes = max(viewChangeBytes, other.viewChangeBytes)
        viewChangeWholeBlockBytes = max(viewChangeWholeBlockBytes, other.viewChangeWholeBlockBytes)
        newViewBytes = max(newViewBytes, other.newViewBytes)
        newViewWholeBlockBytes = max(newViewWholeBlockBytes, other.newViewWholeBlockBytes)
    }
}

extension Simulation {
    func recordViewChangeSize(_ message: ConsensusMessage, bytes: Int) {
        let transaction = pool.transactions[0][0]
        viewChangeSizes.record(message, bytes: bytes) { proposal in
            ViewChangeSizes.bodyBytes(transactionCount: proposal.header.transactionCount, transaction: transaction)
        }
    }
}

/// What one kind of consensus message cost its senders: every copy a sender put on a
/// connection (one per target; before the simulated network loses or duplicates any)
/// and its bytes as the node encodes it (`ConsensusWire`, what the frame bound
/// measures; the frame's length prefix and the channel's AEAD tag come on top).
/// `resent…` is the part that repeated, byte for byte, a message the same sender had
/// already sent to the same peer (retransmits, repeated status and tip announcements).
public struct KindTraffic: Sendable, Equatable {
    public var messages = 0
    public var bytes = 0
    public var resentMessages = 0
    public var resentBytes = 0

    public init() {}

    public mutating func merge(_ other: KindTraffic) {
        messages += other.messages
        bytes += other.bytes
        resentMessages += other.resentMessages
        resentBytes += other.resentBytes
    }
}

/// Every message the validators of a run sent, by kind (`ConsensusMessage.kind`).
/// The simulator has no transaction gossip (clients submit to every replica's
/// mempool directly), so this is the consensus traffic alone.
public struct MessageTraffic: Sendable, Equatable {
    /// Every kind, in protocol order (normal case, checkpoints, view change, catch-up).
    public static let kinds = [
        "pre_prepare", "prepare", "commit", "checkpoint", "view_change", "new_view", "sync_request", "sync_response",
        "committed_tip", "block_request", "block", "status",
    ]
    /// The normal-case kinds whose first sends are counted by height (`firstSentByHeight`).
    package static let heightKinds = ["pre_prepare", "prepare", "commit", "checkpoint"]

    public var byKind: [String: KindTraffic] = [:]
    /// First sends (not `resent`) of each height-carrying normal-case kind, by height.
    package var firstSentByHeight: [String: [UInt64: Int]] = [:]
    /// Repeats of normal-case messages outside a tick step, by kind. Retransmission
    /// runs only on ticks, so in a correct run this stays empty.
    package var repeatedOutsideTickSteps: [String: Int] = [:]
    /// The ticks at which a normal-case message was repeated (on a tick step).
    package var repeatTicks: Set<Int> = []

    public init() {}

    public var messages: Int { byKind.values.reduce(0) { $0 + $1.messages } }
    public var bytes: Int { byKind.values.reduce(0) { $0 + $1.bytes } }
    public var resentMessages: Int { byKind.values.reduce(0) { $0 + $1.resentMessages } }
    public var resentBytes: Int { byKind.values.reduce(0) { $0 + $1.resentBytes } }

    /// Adds another run's traffic (a sweep's totals); the per-height detail is per run only.
    public mutating func merge(_ other: MessageTraffic) {
        for (kind, traffic) in other.byKind { byKind[kind, default: KindTraffic()].merge(traffic) }
    }

    /// Sorted lines for the run's fingerprint.
    var fingerprintLines: [String] {
        byKind.sorted { $0.key < $1.key }.map {
            "sent \($0.key) \($0.value.messages) \($0.value.bytes) resent \($0.value.resentMessages) \($0.value.resentBytes)"
        }
    }
}

/// Counts what the validators send (`MessageTraffic`), and tells a first send from a
/// repeat by the hash of its bytes, per sender and peer.
struct TrafficRecorder {
    struct SentKey: Hashable {
        let content: Hash
        let fromSlot: Int
        let toSlot: Int
    }

    private(set) var traffic = MessageTraffic()
    private var sent = Set<SentKey>()
    /// Whether the step whose sends are going out is a tick (set by `Simulation.step`).
    var stepIsTick = false

    mutating func record(_ message: ConsensusMessage, encoded: [UInt8], fromSlot: Int, toSlots: [Int], tick: Int) {
        let kind = message.kind
        let content = SHA256.hash(encoded)
        var resent = 0
        for toSlot in toSlots where !sent.insert(SentKey(content: content, fromSlot: fromSlot, toSlot: toSlot)).inserted {
            resent += 1
        }
        let first = toSlots.count - resent
        traffic.byKind[kind, default: KindTraffic()].merge(KindTraffic(
            messages: toSlots.count, bytes: toSlots.count * encoded.count, resentMessages: resent,
            resentBytes: resent * encoded.count))
        guard let height = Self.normalCaseHeight(message) else { return }
        if first > 0 { traffic.firstSentByHeight[kind, default: [:]][height, default: 0] += first }
        if resent > 0 {
            if stepIsTick { traffic.repeatTicks.insert(tick) } else { traffic.repeatedOutsideTickSteps[kind, default: 0] += resent }
        }
    }

    static func normalCaseHeight(_ message: ConsensusMessage) -> UInt64? {
        switch message {
        case .prePrepare(let prePrepare): prePrepare.height
        case .prepare(let vote), .commit(let vote): vote.target.height
        case .checkpoint(let checkpoint): checkpoint.height
        default: nil
        }
    }
}

extension KindTraffic {
    init(messages: Int, bytes: Int, resentMessages: Int, resentBytes: Int) {
        self.messages = messages
        self.bytes = bytes
        self.resentMessages = resentMessages
        self.resentBytes = resentBytes
    }
}
