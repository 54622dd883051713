import TallyCrypto
import TallyTypes

/// Bounds and timings of the peer transport. Every queue and frame is bounded by one
/// of these; `check()` runs at start-up so an inconsistent configuration fails early.
public struct NetworkLimits: Sendable, Equatable {
    /// Hard ceiling on one message: a full block (`Limits.maxBlockBytes`, about 10 MiB
    /// for 20,000 transactions) plus room for its certificate and envelope.
    public static let maxFrameBytes = 16 * 1024 * 1024
    /// Handshake frames are a few hundred bytes; an unauthenticated peer gets no more.
    public static let maxHandshakeFrameBytes = 1024

    /// Largest message payload this node sends or accepts (≤ `maxFrameBytes`).
    public var maxMessageBytes: Int
    /// Outbound queue per peer. When either bound is hit the OLDEST queued message is
    /// dropped: consensus messages supersede older ones (newer views and heights), and
    /// PBFT recovers any lost message by retransmission, view change or block sync.
    public var maxOutboundQueueMessages: Int
    public var maxOutboundQueueBytes: Int
    /// Inbound messages per peer waiting for the node to read them. When full, the
    /// NEWEST message from that peer is dropped (and counted), so one flooding peer
    /// cannot crowd out the others or grow our memory.
    public var maxInboundQueueMessagesPerPeer: Int
    public var maxInboundQueueBytesPerPeer: Int
    /// Inbound connections that have not finished the handshake yet. When all slots are
    /// taken, a new connection evicts the OLDEST pending one instead of being refused, so
    /// idle connections cannot lock out a validator that keeps redialing.
    public var maxPendingHandshakes: Int
    /// Pending inbound handshakes per remote IP address (`addressKey`: an IPv6 /64 is one
    /// address); one more evicts that address's oldest. Local test networks put every validator on 127.0.0.1, and each peer has at
    /// most one dial in flight, so this must exceed the validator count there (4–7).
    public var maxPendingHandshakesPerAddress: Int
    /// A peer that does not finish the handshake within this time is disconnected.
    public var handshakeTimeoutMs: Int64
    /// An inbound peer must deliver its whole first handshake frame (its hello) within
    /// this time; a real peer sends it as soon as TCP is up. The whole handshake still
    /// has `handshakeTimeoutMs`.
    public var handshakeFirstMessageTimeoutMs: Int64
    /// A new authenticated connection for a key that already has a healthy established
    /// connection replaces it at most once per this interval (the remote may have
    /// restarted, leaving the old TCP connection half-open). A second conflict within the
    /// interval means two processes hold the same key: the established connection is kept
    /// and the newcomer refused (`CloseReason.keyInUseTwice`). Every conflict restarts the
    /// interval, so twins that keep redialing cannot take turns.
    public var sameKeyReplacementIntervalMs: Int64
    /// Log lines an outsider can trigger: at most this many per reason per interval
    /// (see `RateLimitedLogger`); the rest are counted in the metrics only.
    public var logLinesPerInterval: Int
    public var logIntervalMs: Int64
    /// After this long without sending anything, an established connection sends a
    /// keepalive frame, so a quiet but healthy peer is not mistaken for a dead one.
    public var keepaliveIntervalMs: Int64
    /// After this long without receiving anything (not even a keepalive), the peer is
    /// presumed gone (a dead TCP connection can otherwise linger for many minutes) and
    /// the connection is closed and redialed.
    public var idleTimeoutMs: Int64
    /// Reconnect back-off: the first retry waits `reconnectInitialDelayMs`, each failure
    /// doubles it up to `reconnectMaxDelayMs`; the actual wait is jittered to 50–100 %.
    public var reconnectInitialDelayMs: Int64
    public var reconnectMaxDelayMs: Int64
    public var connectTimeoutMs: Int64
    /// NIO's write-buffer watermarks: above `high` the channel is not writable and we
    /// stop moving messages from the bounded queue into the socket.
    public var writeBufferLowWatermarkBytes: Int
    public var writeBufferHighWatermarkBytes: Int

    public static let `default` = NetworkLimits(
        maxMessageBytes: maxFrameBytes - frameOverheadBytes,
        maxOutboundQueueMessages: 4096,
        maxOutboundQueueBytes: 64 * 1024 * 1024,
        maxInboundQueueMessagesPerPeer: 4096,
        maxInboundQueueBytesPerPeer: 64 * 1024 * 1024,
        maxPendingHandshakes: 64,
        maxPendingHandshakesPerAddress: 8,
        handshakeTimeoutMs: 5_000,
        handshakeFirstMessageTimeoutMs: 1_000,
        keepaliveIntervalMs: 5_000,
        idleTimeoutMs: 20_000,
        reconnectInitialDelayMs: 100,
        reconnectMaxDelayMs: 5_000,
        connectTimeoutMs: 3_000,
        writeBufferLowWatermarkBytes: 256 * 1024,
        writeBufferHighWatermarkBytes: 1024 * 1024,
        sameKeyReplacementIntervalMs: 30_000,
        logLinesPerInterval: 5,
        logIntervalMs: 10_000)

    /// What a frame adds to a message: the frame-kind byte and the Poly1305 tag.
    public static let frameOverheadBytes = 1 + XChaCha20Poly1305.tagByteCount

    public init(
        maxMessageBytes: Int, maxOutboundQueueMessages: Int, maxOutboundQueueBytes: Int,
        maxInboundQueueMessagesPerPeer: Int, maxInboundQueueBytesPerPeer: Int, maxPendingHandshakes: Int,
        maxPendingHandshakesPerAddress: Int = 8,
        handshakeTimeoutMs: Int64, handshakeFirstMessageTimeoutMs: Int64 = 1_000,
        keepaliveIntervalMs: Int64, idleTimeoutMs: Int64, reconnectInitialDelayMs: Int64, reconnectMaxDelayMs: Int64,
        connectTimeoutMs: Int64, writeBufferLowWatermarkBytes: Int, writeBufferHighWatermarkBytes: Int,
        sameKeyReplacementIntervalMs: Int64 = 30_000, logLinesPerInterval: Int = 5, logIntervalMs: Int64 = 10_000
    ) {
        self.maxMessageBytes = maxMessageBytes
        self.maxOutboundQueueMessages = maxOutboundQueueMessages
        self.maxOutboundQueueBytes = maxOutboundQueueBytes
        self.maxInboundQueueMessagesPerPeer = maxInboundQueueMessagesPerPeer
        self.maxInboundQueueBytesPerPeer = maxInboundQueueBytesPerPeer
        self.maxPendingHandshakes = maxPendingHandshakes
        self.maxPendingHandshakesPerAddress = maxPendingHandshakesPerAddress
        self.handshakeTimeoutMs = handshakeTimeoutMs
        self.handshakeFirstMessageTimeoutMs = handshakeFirstMessageTimeoutMs
        self.keepaliveIntervalMs = keepaliveIntervalMs
        self.idleTimeoutMs = idleTimeoutMs
        self.reconnectInitialDelayMs = reconnectInitialDelayMs
        self.reconnectMaxDelayMs = reconnectMaxDelayMs
        self.connectTimeoutMs = connectTimeoutMs
        self.writeBufferLowWatermarkBytes = writeBufferLowWatermarkBytes
        self.writeBufferHighWatermarkBytes = writeBufferHighWatermarkBytes
        self.sameKeyReplacementIntervalMs = sameKeyReplacementIntervalMs
        self.logLinesPerInterval = logLinesPerInterval
        self.logIntervalMs = logIntervalMs
    }

    /// How long after a connection is established a conflicting connection of the
    /// other role may still be the other half of a simultaneous dial (resolved by the
    /// validator-index rule): the other side's dial began before it saw ours, so it
    /// connected within the connect timeout and finished within the handshake timeout.
    var simultaneousDialWindowMs: Int64 {
        let (sum, overflow) = connectTimeoutMs.addingReportingOverflow(handshakeTimeoutMs)
        return overflow ? .max : sum
    }

    /// A connection that closes sooner than this after its handshake leaves the reconnect
    /// back-off where it was (it is reset only by a connection that lasted): a peer that
    /// accepts and then drops us at once (a twin's refusal, a crash loop) is redialed
    /// ever more slowly instead of every `reconnectInitialDelayMs`.
    var stableConnectionMs: Int64 {
        let (double, overflow) = keepaliveIntervalMs.multipliedReportingOverflow(by: 2)
        return overflow ? .max : double
    }

    /// Largest frame body (ciphertext) after the handshake.
    var maxFrameBodyBytes: Int { maxMessageBytes + NetworkLimits.frameOverheadBytes }

    public struct InvalidLimits: Error, CustomStringConvertible {
        public let description: String
    }

    public func check() throws(InvalidLimits) {
        func require(_ condition: Bool, _ message: String) throws(InvalidLimits) {
            if !condition { throw InvalidLimits(description: "network limits: " + message) }
        }
        try require(maxMessageBytes >= 1 && maxFrameBodyBytes <= NetworkLimits.maxFrameBytes,
                    "max message bytes must be 1…\(NetworkLimits.maxFrameBytes - NetworkLimits.frameOverheadBytes)")
        try require(maxOutboundQueueMessages >= 1, "outbound queue must hold at least one message")
        try require(maxOutboundQueueBytes >= maxMessageBytes, "outbound queue bytes must hold one largest message")
        try require(maxInboundQueueMessagesPerPeer >= 1, "inbound queue must hold at least one message")
        try require(maxInboundQueueBytesPerPeer >= maxMessageBytes, "inbound queue bytes must hold one largest message")
        try require(maxPendingHandshakes >= 1, "at least one pending handshake")
        try require(maxPendingHandshakesPerAddress >= 1, "at least one pending handshake per address")
        try require(handshakeTimeoutMs >= 1, "handshake timeout must be positive")
        try require(handshakeFirstMessageTimeoutMs >= 1, "handshake first-message timeout must be positive")
        try require(sameKeyReplacementIntervalMs >= 1, "same-key replacement interval must be positive")
        try require(logLinesPerInterval >= 1 && logIntervalMs >= 1, "log rate: at least one line per positive interval")
        try require(keepaliveIntervalMs >= 1 && idleTimeoutMs >= 2 * keepaliveIntervalMs,
                    "idle timeout must be at least twice the keepalive interval")
        try require(reconnectInitialDelayMs >= 1 && reconnectMaxDelayMs >= reconnectInitialDelayMs,
                    "reconnect delays: 1 ≤ initial ≤ max")
        try require(connectTimeoutMs >= 1, "connect timeout must be positive")
        try require(writeBufferLowWatermarkBytes >= 1 && writeBufferHighWatermarkBytes >= writeBufferLowWatermarkBytes,
                    "write-buffer watermarks: 1 ≤ low ≤ high")
    }
}
