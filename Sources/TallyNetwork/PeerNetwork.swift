import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TallyCrypto

/// One message from an authenticated peer, as the node reads it from `PeerNetwork.inbound`.
public struct InboundMessage: Sendable {
    /// The peer's identity (Ed25519 key), proven in the handshake.
    public let peer: PublicKey
    /// The peer's validator index, or nil for an allowed non-validator node.
    public let validatorIndex: Int?
    public let bytes: [UInt8]
}

/// What happened to one `send`.
public enum SendOutcome: Sendable, Equatable {
    /// Queued; `droppedOldest` older messages were dropped to make room.
    case queued(droppedOldest: Int)
    /// Over `NetworkLimits.maxMessageBytes`: not queued.
    case tooLarge
    /// No such validator, our own index, or a non-validator that is not connected.
    case unknownPeer
}

/// One peer as `PeerNetwork.peers` reports it.
public struct PeerStatus: Sendable, Equatable {
    public enum Direction: Sendable, Equatable {
        /// We dialed the peer.
        case outbound
        /// The peer dialed us.
        case inbound
    }

    public let key: PublicKey
    public let validatorIndex: Int?
    /// Who dialed the live connection; nil when not connected.
    public let direction: Direction?
    public var isConnected: Bool { direction != nil }
    public let queuedMessages: Int
    public let queuedBytes: Int
}

/// The validator-to-validator transport: a TCP listener plus a dialer per validator,
/// each connection authenticated and encrypted (see `Handshake`), framed and bounded.
///
/// Wire format, per connection: frames of `length: u32 LE ‖ body` (`FrameDecoder`); the
/// first frame each way is a plaintext `Hello`, then one encrypted authentication frame
/// (`Handshake`), then encrypted `kind ‖ payload` frames (`SecureChannelHandler`).
/// Anything malformed, oversize, undecryptable or unauthenticated closes that connection
/// with a counted `CloseReason`; the rest of the network is unaffected.
///
/// Use: `start`, then read `inbound` (one consumer) and call `send` / `broadcast` from
/// anywhere (they never block: they enqueue into the peer's bounded outbound queue).
/// Simultaneous connections between two validators are deduplicated by keeping the one
/// dialed by the lower validator index (both sides apply the same rule). Lost
/// connections are re-dialed with jittered exponential back-off.
public final class PeerNetwork: Sendable {
    /// The port we listen on (the real one when configured with port 0).
    public let listenPort: Int
    /// Authenticated messages from peers, in arrival order per peer. Single consumer.
    public let inbound: InboundMessages
    private let core: NetworkCore
    private let serverChannel: any Channel

    private init(listenPort: Int, inbound: InboundMessages, core: NetworkCore, serverChannel: any Channel) {
        self.listenPort = listenPort
        self.inbound = inbound
        self.core = core
        self.serverChannel = serverChannel
    }

    /// Binds the listener and starts dialing every validator with an address.
    /// `random` drives only the reconnect jitter (inject a seeded one in tests).
    public static func start(
        configuration: NetworkConfiguration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "tally.network"),
        random: some RandomNumberGenerator & Sendable = SystemRandomNumberGenerator()
    ) async throws -> PeerNetwork {
        try configuration.check()
        let (stream, continuation) = AsyncStream<InboundMessage>.makeStream()
        let core = NetworkCore(
            configuration: configuration, group: group, logger: logger, random: random, continuation: continuation)
        let server = try await core.bind()
        guard let port = server.localAddress?.port else {
            try? await server.close()
            throw NetworkConfiguration.InvalidConfiguration(description: "listener has no local port")
        }
        logger.info("listening for peers", metadata: ["address": "\(configuration.listenHost):\(port)"])
        core.startDialing()
        return PeerNetwork(
            listenPort: port, inbound: InboundMessages(stream: stream, core: core), core: core, serverChannel: server)
    }

    /// Queues `message` for validator `validatorIndex`.
    @discardableResult
    public func send(to validatorIndex: Int, _ message: [UInt8]) -> SendOutcome {
        guard let key = core.validatorKey(validatorIndex) else {
            core.countDrop(.unknownPeer)
            return .unknownPeer
        }
        return core.enqueue(message, to: key)
    }

    /// Queues `message` for the peer with identity `key` (a validator or a connected
    /// non-validator node, e.g. to answer its sync request).
    @discardableResult
    public func send(toPeer key: PublicKey, _ message: [UInt8]) -> SendOutcome {
        core.enqueue(message, to: key)
    }

    /// Queues `message` for every other validator (non-validator nodes get no broadcasts).
    /// Returns how many validators it was queued for.
    @discardableResult
    public func broadcast(_ message: [UInt8]) -> Int {
        core.broadcast(message)
    }

    /// Changes where validator `index` is dialed (e.g. after a configuration reload, or
    /// when its port is only known after it started) and dials it if not connected.
    public func setAddress(_ address: PeerAddress, ofValidator index: Int) {
        core.setAddress(address, ofValidator: index)
    }

    /// Every validator (other than us) and every connected non-validator node.
    public var peers: [PeerStatus] { core.peerStatuses() }

    public func isConnected(validator index: Int) -> Bool {
        guard let key = core.validatorKey(index) else { return false }
        return core.peerStatuses().contains { $0.key == key && $0.isConnected }
    }

    /// Validator indexes we hold an authenticated connection to.
    public var connectedValidators: Set<Int> {
        Set(core.peerStatuses().filter(\.isConnected).compactMap(\.validatorIndex))
    }

    public var statistics: NetworkStatistics { core.statistics() }

    var openChannelCount: Int { core.openChannelCount }

    /// Peer statuses and statistics taken together (consistent with each other).
    func snapshot() -> ([PeerStatus], NetworkStatistics) { core.snapshot() }

    /// The remote end of validator `index`'s live connection (tests tell connections apart by it).
    func activeRemoteAddress(validator index: Int) -> SocketAddress? {
        guard let key = core.validatorKey(index) else { return nil }
        return core.activeChannel(key)?.remoteAddress
    }

    /// Bytes NIO holds for validator `index`'s connection beyond our queue (tests check
    /// the memory bound with it).
    func bufferedWritableBytes(validator index: Int) async throws -> Int {
        guard let key = core.validatorKey(index), let channel = core.activeChannel(key) else { return 0 }
        return try await channel.getOption(ChannelOptions.bufferedWritableBytes).get()
    }

    /// Stops dialing, closes the listener and every connection, and finishes `inbound`.
    public func shutdown() async {
        let channels = core.stop()
        try? await serverChannel.close()
        for channel in channels { try? await channel.close() }
        core.finishInbound()
    }
}

/// The inbound stream, with per-peer accounting: a message counts against its peer's
/// inbound bound until the consumer takes it.
public struct InboundMessages: AsyncSequence, Sendable {
    public typealias Element = InboundMessage
    let stream: AsyncStream<InboundMessage>
    let core: NetworkCore

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<InboundMessage>.AsyncIterator
        let core: NetworkCore

        public mutating func next() async -> InboundMessage? {
            guard let message = await base.next() else { return nil }
            core.consumed(message)
            return message
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: stream.makeAsyncIterator(), core: core)
    }
}
