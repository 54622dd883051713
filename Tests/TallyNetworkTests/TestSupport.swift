import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TallyCrypto
import XCTest

@testable import TallyNetwork

let testChainID = "tally-test"

/// Deterministic validator keys: seed byte `index + 1` repeated.
func validatorKey(_ index: Int) -> SigningKey {
    SigningKey(seed: [UInt8](repeating: UInt8(index + 1), count: 32))!
}

/// Small limits so the tests run fast: short back-off and handshake timeout.
func testLimits() -> NetworkLimits {
    var limits = NetworkLimits.default
    limits.handshakeTimeoutMs = 2_000
    limits.reconnectInitialDelayMs = 20
    limits.reconnectMaxDelayMs = 200
    limits.connectTimeoutMs = 1_000
    return limits
}

/// Collects one network's inbound messages in the background so tests can wait for them.
final class Inbox: Sendable {
    private let messages = NIOLockedValueBox<[InboundMessage]>([])
    private let task: Task<Void, Never>

    init(_ network: PeerNetwork) {
        let messages = self.messages
        task = Task {
            for await message in network.inbound { messages.withLockedValue { $0.append(message) } }
        }
    }

    var all: [InboundMessage] { messages.withLockedValue { $0 } }

    func payloads(from index: Int) -> [[UInt8]] { all.filter { $0.validatorIndex == index }.map(\.bytes) }

    deinit { task.cancel() }
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass. `what` is evaluated
/// only on failure, so it can describe the state that was reached.
func eventually(
    _ what: @autoclosure () -> String, within seconds: Double = 10, file: StaticString = #filePath, line: UInt = #line,
    _ condition: () async throws -> Bool
) async rethrows {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try? await Task.sleep(for: .milliseconds(10))
    }
    XCTFail("timed out waiting for: \(what())", file: file, line: line)
}

/// A cluster of `count` validators on 127.0.0.1, each on an ephemeral port, every
/// address filled in once all are listening.
final class Cluster {
    let keys: [SigningKey]
    var networks: [PeerNetwork?] = []
    var inboxes: [Inbox?] = []
    let limits: NetworkLimits
    let extraKeys: Set<PublicKey>

    init(count: Int, limits: NetworkLimits = testLimits(), extraKeys: Set<PublicKey> = []) async throws {
        keys = (0..<count).map(validatorKey)
        self.limits = limits
        self.extraKeys = extraKeys
        for index in 0..<count {
            let network = try await Cluster.start(index: index, keys: keys, port: 0, addresses: [:], limits: limits, extra: extraKeys)
            networks.append(network)
            inboxes.append(Inbox(network))
        }
        for (index, network) in networks.enumerated() {
            for (other, peer) in networks.enumerated() where other != index {
                network!.setAddress(PeerAddress(host: "127.0.0.1", port: peer!.listenPort), ofValidator: other)
            }
        }
    }

    static func start(
        index: Int, keys: [SigningKey], port: Int, addresses: [Int: PeerAddress], limits: NetworkLimits,
        extra: Set<PublicKey>, acceptOnlyValidatorAddresses: Bool = false, logger: Logger? = nil
    ) async throws -> PeerNetwork {
        var quiet = Logger(label: "tally.network.\(index)")
        quiet.logLevel = .critical
        let configuration = NetworkConfiguration(
            listenHost: "127.0.0.1", listenPort: port, chainID: testChainID, identity: keys[index],
            validators: keys.map(\.publicKey), validatorAddresses: addresses, extraAllowedKeys: extra,
            acceptOnlyValidatorAddresses: acceptOnlyValidatorAddresses, limits: limits)
        return try await PeerNetwork.start(
            configuration: configuration, logger: logger ?? quiet, random: SplitMix64(seed: UInt64(index)))
    }

    func network(_ index: Int) -> PeerNetwork { networks[index]! }
    func inbox(_ index: Int) -> Inbox { inboxes[index]! }

    func waitFullyConnected(file: StaticString = #filePath, line: UInt = #line) async {
        let count = keys.count
        await eventually("full mesh", file: file, line: line) {
            networks.enumerated().allSatisfy { index, network in
                network == nil || network!.connectedValidators == Set((0..<count).filter { $0 != index && networks[$0] != nil })
            }
        }
    }

    func shutdown() async {
        for network in networks { await network?.shutdown() }
    }
}

/// A hand-driven peer on a raw TCP connection, for sending what a correct node never would.
/// Inbound bytes are split into frames with the production `FrameDecoder`; outbound bytes
/// are written exactly as given.
struct RawPeer {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    /// `from`: the local address to connect from (any of 127.0.0.0/8 is loopback on Linux),
    /// so tests can play peers on different IP addresses.
    static func connect(port: Int, from localHost: String? = nil) async throws -> RawPeer {
        var bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        if let localHost { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: localHost, port: 0)) }
        let channel = try await bootstrap
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(FrameDecoder(maxBodyBytes: NetworkLimits.maxFrameBytes)))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return RawPeer(channel: channel)
    }

    /// Runs `body` with a session; closes the connection afterwards.
    func run(_ body: (inout Session) async throws -> Void) async throws {
        try await channel.executeThenClose { inbound, outbound in
            var session = Session(inbound: inbound.makeAsyncIterator(), outbound: outbound)
            try await body(&session)
        }
    }

    struct Session {
        var inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
        let outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>

        func writeRaw(_ bytes: [UInt8]) async throws {
            try await outbound.write(ByteBuffer(bytes: bytes))
        }

        func writeFrame(_ body: [UInt8]) async throws {
            var buffer = ByteBuffer()
            buffer.writeInteger(UInt32(body.count), endianness: .little)
            buffer.writeBytes(body)
            try await outbound.write(buffer)
        }

        /// The next frame body, or nil once the other side closed the connection.
        mutating func readFrame() async -> [UInt8]? {
            do {
                guard let buffer = try await inbound.next() else { return nil }
                return Array(buffer.readableBytesView)
            } catch {
                return nil
            }
        }

        /// Reads until the other side closes; fails if it sends more than `maxFrames`.
        mutating func expectClosed(maxFrames: Int = 100, file: StaticString = #filePath, line: UInt = #line) async {
            for _ in 0...maxFrames {
                if await readFrame() == nil { return }
            }
            XCTFail("connection stayed open", file: file, line: line)
        }

        /// Completes a genuine dialer handshake as `identity` with the node whose key is
        /// `expected`; returns the established session.
        mutating func handshake(identity: SigningKey, expected: PublicKey) async throws -> TallyNetwork.Session {
            var handshake = Handshake(
                role: .dialer, chainID: testChainID, identity: identity, ephemeral: .generate(), peerCheck: .expect(expected))
            try await writeFrame(handshake.hello)
            guard let hello = await readFrame() else { throw RawPeerError.closed }
            guard case .send(let authentication) = try handshake.receive(hello) else { throw RawPeerError.unexpected }
            try await writeFrame(authentication)
            guard let theirs = await readFrame() else { throw RawPeerError.closed }
            guard case .established(let session) = try handshake.receive(theirs) else { throw RawPeerError.unexpected }
            return session
        }
    }

    enum RawPeerError: Error {
        case closed
        case unexpected
    }
}

func quietLogger() -> Logger {
    var logger = Logger(label: "tally.network.test")
    logger.logLevel = .critical
    return logger
}


/// A TCP connection that sends nothing, as a flooder's would: it only notices when the
/// node closes it.
struct IdleConnection {
    let channel: any Channel

    static func open(port: Int, from localHost: String = "127.0.0.1") async throws -> IdleConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(to: try SocketAddress(ipAddress: localHost, port: 0))
            .connect(host: "127.0.0.1", port: port).get()
        return IdleConnection(channel: channel)
    }

    /// True once the node closed it (NIO sees the EOF as the channel going inactive).
    var isClosed: Bool { !channel.isActive }

    func close() async { try? await channel.close() }
}
