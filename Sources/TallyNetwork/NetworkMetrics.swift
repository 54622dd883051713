import Metrics
import NIOCore

/// Why a connection closed; the `reason` dimension of `tally_network_connections_closed_total`.
public enum CloseReason: String, Sendable, CaseIterable {
    case oversizeFrame = "oversize_frame"
    case emptyFrame = "empty_frame"
    case decryptFailed = "decrypt_failed"
    case shortFrame = "short_frame"
    case malformedFrame = "malformed_frame"
    case idleTimeout = "idle_timeout"
    case malformedHandshake = "malformed_handshake"
    case protocolVersion = "protocol_version"
    case wrongChain = "wrong_chain"
    case unknownPeer = "unknown_peer"
    case unexpectedPeer = "unexpected_peer"
    case selfConnection = "self_connection"
    case weakKey = "weak_key"
    case authenticationFailed = "authentication_failed"
    case rejectedByPeer = "rejected_by_peer"
    case handshakeTimeout = "handshake_timeout"
    /// An inbound peer did not deliver its first handshake frame in time.
    case firstMessageTimeout = "first_message_timeout"
    case closedDuringHandshake = "closed_during_handshake"
    /// Evicted, the oldest pending handshake, when every pending-handshake slot was taken.
    case tooManyPendingHandshakes = "too_many_pending_handshakes"
    /// Evicted, the oldest pending handshake from one IP address, when that address had
    /// its cap of pending handshakes.
    case tooManyPendingFromAddress = "too_many_pending_from_address"
    /// Refused at accept: not from a genesis validator's IP address (when configured).
    case addressNotAllowed = "address_not_allowed"
    case duplicateConnection = "duplicate_connection"
    /// Refused: the key already has a healthy established connection that was itself a
    /// replacement within `sameKeyReplacementIntervalMs`, i.e. two processes hold one key.
    case keyInUseTwice = "key_in_use_twice"
    case peerClosed = "peer_closed"
    case ioError = "io_error"
    case shutdown = "shutdown"

    /// True for reasons that are the peer's fault (bad or hostile input).
    public var isPeerFault: Bool {
        switch self {
        case .peerClosed, .ioError, .shutdown, .duplicateConnection, .keyInUseTwice, .rejectedByPeer,
             .tooManyPendingHandshakes, .idleTimeout:
            return false
        default:
            return true
        }
    }

    init(_ error: Error) {
        switch error {
        case let error as FrameError:
            switch error {
            case .oversize: self = .oversizeFrame
            case .empty: self = .emptyFrame
            }
        case let error as SessionError:
            switch error {
            case .decryptFailed: self = .decryptFailed
            case .shortFrame: self = .shortFrame
            case .malformedFrame: self = .malformedFrame
            case .idleTimeout: self = .idleTimeout
            case .handshakeTimeout: self = .handshakeTimeout
            case .firstMessageTimeout: self = .firstMessageTimeout
            case .closedDuringHandshake: self = .closedDuringHandshake
            }
        case let error as HandshakeError:
            switch error {
            case .malformed: self = .malformedHandshake
            case .wrongProtocolVersion: self = .protocolVersion
            case .wrongChain: self = .wrongChain
            case .unknownPeer: self = .unknownPeer
            case .unexpectedPeer: self = .unexpectedPeer
            case .selfConnection: self = .selfConnection
            case .weakEphemeralKey: self = .weakKey
            case .authenticationFailed: self = .authenticationFailed
            case .rejectedByPeer: self = .rejectedByPeer
            }
        default:
            self = .ioError
        }
    }
}

/// Why an outbound or inbound message was dropped; the `reason` dimension of
/// `tally_network_messages_dropped_total`.
public enum DropReason: String, Sendable, CaseIterable {
    /// The peer's outbound queue was full: its oldest message was dropped.
    case outboundQueueFull = "outbound_queue_full"
    /// The node was not reading fast enough: the peer's newest inbound message was dropped.
    case inboundQueueFull = "inbound_queue_full"
    /// `send` with a message over `NetworkLimits.maxMessageBytes`.
    case messageTooLarge = "message_too_large"
    /// `send` to a validator index or key we have no queue for.
    case unknownPeer = "unknown_peer"
}

/// The swift-metrics instruments of one network, plus the same counts kept locally
/// for `PeerNetwork.statistics` (tests and the node's status page read those).
struct NetworkMetrics: Sendable {
    static let connectionsClosed = "tally_network_connections_closed_total"
    static let connectionsEstablished = "tally_network_connections_established_total"
    static let messagesDropped = "tally_network_messages_dropped_total"
    static let messagesSent = "tally_network_messages_sent_total"
    static let messagesReceived = "tally_network_messages_received_total"
    static let bytesSentLabel = "tally_network_bytes_sent_total"
    static let bytesReceivedLabel = "tally_network_bytes_received_total"
    static let peersConnected = "tally_network_peers_connected"
    static let acceptErrorsLabel = "tally_network_accept_errors_total"

    private let closed: [CloseReason: Counter]
    private let dropped: [DropReason: Counter]
    let established = Counter(label: connectionsEstablished)
    let sent = Counter(label: messagesSent)
    let received = Counter(label: messagesReceived)
    /// Wire bytes of the message frames counted in `sent` (`Frame.wireBytes`): what the
    /// transport writes to the socket for them, before TCP/IP headers.
    let bytesSent = Counter(label: bytesSentLabel)
    /// Wire bytes of every message frame an authenticated peer delivered, including those
    /// then dropped for a full inbound queue (they crossed the wire all the same).
    let bytesReceived = Counter(label: bytesReceivedLabel)
    let connectedPeers = Gauge(label: peersConnected)
    /// Accepts on the peer port that failed (out of descriptors, say).
    let acceptErrors = Counter(label: acceptErrorsLabel)

    init() {
        closed = Dictionary(uniqueKeysWithValues: CloseReason.allCases.map {
            ($0, Counter(label: NetworkMetrics.connectionsClosed, dimensions: [("reason", $0.rawValue)]))
        })
        dropped = Dictionary(uniqueKeysWithValues: DropReason.allCases.map {
            ($0, Counter(label: NetworkMetrics.messagesDropped, dimensions: [("reason", $0.rawValue)]))
        })
    }

    func closed(_ reason: CloseReason) { closed[reason]!.increment() }
    func dropped(_ reason: DropReason, count: Int = 1) { dropped[reason]!.increment(by: count) }
}

/// A snapshot of the network's counters.
public struct NetworkStatistics: Sendable, Equatable {
    public var connectionsClosed: [CloseReason: Int] = [:]
    public var connectionsEstablished = 0
    public var messagesDropped: [DropReason: Int] = [:]
    public var messagesSent = 0
    public var messagesReceived = 0
    /// Wire bytes of the messages in `messagesSent`: for each, the 4-byte frame length,
    /// the frame-kind byte, the message and the 16-byte Poly1305 tag
    /// (`message + Frame.messageOverheadBytes`). Handshake and keepalive frames and
    /// TCP/IP headers are not counted.
    public var bytesSent = 0
    /// Wire bytes, counted as for `bytesSent`, of every message frame authenticated peers
    /// delivered, including those then dropped for a full inbound queue (so more
    /// than `messagesReceived` messages' worth when some were).
    public var bytesReceived = 0
    /// Accepts on the peer port that failed (out of descriptors, say); the listener
    /// pauses a second and goes on.
    public var acceptErrors = 0

    public func closed(_ reason: CloseReason) -> Int { connectionsClosed[reason, default: 0] }
    public func dropped(_ reason: DropReason) -> Int { messagesDropped[reason, default: 0] }
}
