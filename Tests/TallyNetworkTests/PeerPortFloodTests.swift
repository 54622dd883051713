import Logging
import Metrics
import MetricsTestKit
import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import NIOPosix
import TallyCrypto
import TallyLogTesting
import XCTest

@testable import TallyNetwork

/// Floods of unauthenticated connections on the peer port (issue 13): they must not keep
/// a validator out, hold a slot long, or fill the log.
final class PeerPortFloodTests: XCTestCase {
    /// Timeouts far beyond the test so that only the caps and eviction can free a slot.
    private func patientLimits() -> NetworkLimits {
        var limits = testLimits()
        limits.handshakeTimeoutMs = 30_000
        limits.handshakeFirstMessageTimeoutMs = 30_000
        return limits
    }

    /// Opens an idle connection and waits until `node` registered it. A node sets up its
    /// connections on several event loops, so two opened one after the other may register
    /// in either order; "oldest" is the registration order.
    private func openRegistered(_ node: PeerNetwork, from host: String = "127.0.0.1") async throws -> IdleConnection {
        let before = node.openChannelCount
        let connection = try await IdleConnection.open(port: node.listenPort, from: host)
        await eventually("the node registered the connection") { node.openChannelCount > before }
        return connection
    }

    private func openIdle(_ count: Int, port: Int, from host: String = "127.0.0.1") async throws -> [IdleConnection] {
        var connections: [IdleConnection] = []
        for _ in 0..<count { connections.append(try await IdleConnection.open(port: port, from: host)) }
        return connections
    }

    /// The flood: 70 idle connections from one address against the default caps
    /// (64 slots, 8 per address). The node keeps at most 8 of them, and a validator that
    /// dials in (from the same address, as on a local testnet) completes its handshake
    /// at once instead of waiting for the idle ones to time out.
    func testRealPeerConnectsWhileIdleConnectionsFloodThePendingSlots() async throws {
        let limits = patientLimits()
        XCTAssertEqual(limits.maxPendingHandshakes, 64)
        XCTAssertEqual(limits.maxPendingHandshakesPerAddress, 8)
        let keys = (0..<2).map(validatorKey)
        let node = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [])
        let idle = try await openIdle(70, port: node.listenPort)
        await eventually("only the per-address cap of idle connections is kept") {
            idle.filter { !$0.isClosed }.count == limits.maxPendingHandshakesPerAddress
        }
        XCTAssertEqual(node.statistics.closed(.tooManyPendingFromAddress), 70 - limits.maxPendingHandshakesPerAddress)
        let peer = try await Cluster.start(
            index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: node.listenPort)],
            limits: limits, extra: [])
        await eventually("the validator connects during the flood", within: 3) { node.connectedValidators == [1] }
        XCTAssertEqual(peer.connectedValidators, [0])
        for connection in idle { await connection.close() }
        await peer.shutdown()
        await node.shutdown()
    }

    /// Every slot held by idle connections from many addresses: the newcomer evicts the
    /// oldest pending handshake, so a validator that dials in gets through.
    func testFullPendingTableEvictsTheOldestForAValidator() async throws {
        var limits = patientLimits()
        limits.maxPendingHandshakes = 4
        let keys = (0..<2).map(validatorKey)
        let node = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [])
        var idle: [IdleConnection] = []
        for index in 0..<4 { idle.append(try await openRegistered(node, from: "127.0.0.\(2 + index)")) }
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertTrue(idle.allSatisfy { !$0.isClosed }, "four fit")
        let peer = try await Cluster.start(
            index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: node.listenPort)],
            limits: limits, extra: [])
        await eventually("the validator connects", within: 3) { node.connectedValidators == [1] }
        await eventually("the oldest idle connection was evicted") { idle[0].isClosed }
        XCTAssertFalse(idle[1].isClosed || idle[2].isClosed || idle[3].isClosed, "only the oldest goes")
        XCTAssertGreaterThanOrEqual(node.statistics.closed(.tooManyPendingHandshakes), 1)
        for connection in idle { await connection.close() }
        await peer.shutdown()
        await node.shutdown()
    }

    /// The per-address cap evicts that address's oldest pending handshake and leaves other
    /// addresses alone.
    func testPendingHandshakesPerAddressAreCapped() async throws {
        var limits = patientLimits()
        limits.maxPendingHandshakesPerAddress = 2
        let keys = (0..<2).map(validatorKey)
        let node = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [])
        let first = try await openRegistered(node)
        let second = try await openRegistered(node)
        let other = try await openRegistered(node, from: "127.0.0.2")
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertFalse(first.isClosed || second.isClosed || other.isClosed, "within the caps")
        let third = try await IdleConnection.open(port: node.listenPort)
        await eventually("the address's oldest was evicted") { first.isClosed }
        let otherSecond = try await IdleConnection.open(port: node.listenPort, from: "127.0.0.2")
        try await Task.sleep(for: .milliseconds(100))
        XCTAssertFalse(second.isClosed || third.isClosed || other.isClosed || otherSecond.isClosed)
        XCTAssertEqual(node.statistics.closed(.tooManyPendingFromAddress), 1)
        for connection in [second, third, other, otherSecond] { await connection.close() }
        await node.shutdown()
    }

    /// An inbound peer must deliver its hello within the first-message bound: silence and
    /// a trickled partial frame are cut then; a peer that sent its hello has the whole
    /// handshake timeout.
    func testInboundPeerMustSendItsFirstHandshakeFrameInTime() async throws {
        var limits = testLimits()
        limits.handshakeFirstMessageTimeoutMs = 200
        limits.handshakeTimeoutMs = 1_500
        let keys = (0..<2).map(validatorKey)
        let node = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [])

        for partial: [UInt8] in [[], [40, 0, 0]] {
            let started = ContinuousClock.now
            try await RawPeer.connect(port: node.listenPort).run { session in
                if !partial.isEmpty { try await session.writeRaw(partial) }
                await session.expectClosed(maxFrames: 1)  // the node's hello, then the close
            }
            let elapsed = ContinuousClock.now - started
            XCTAssertGreaterThanOrEqual(elapsed, .milliseconds(190))
            XCTAssertLessThan(elapsed, .milliseconds(1_200), "cut at the first-message bound, not the handshake timeout")
        }
        // The client can see the close before the node's thread has counted it.
        await eventually("both cut at the first-message bound: \(node.statistics.closed(.firstMessageTimeout))", within: 5) {
            node.statistics.closed(.firstMessageTimeout) >= 2
        }
        XCTAssertEqual(node.statistics.closed(.firstMessageTimeout), 2)

        // A hello in time, then nothing: only the whole-handshake timeout applies.
        let started = ContinuousClock.now
        try await RawPeer.connect(port: node.listenPort).run { session in
            let hello = Hello(protocolVersion: Hello.protocolVersion, chainID: testChainID, identityKey: keys[1].publicKey,
                              ephemeralKey: KeyExchangeKeyPair.generate().publicKey)
            try await session.writeFrame(hello.encoded)
            await session.expectClosed(maxFrames: 2)
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(1_450))
        await eventually("cut at the handshake timeout: \(node.statistics.closed(.handshakeTimeout))", within: 5) {
            node.statistics.closed(.handshakeTimeout) >= 1
        }
        XCTAssertEqual(node.statistics.closed(.handshakeTimeout), 1)
        XCTAssertEqual(node.statistics.closed(.firstMessageTimeout), 2)
        await node.shutdown()
    }

    /// 40 connections sending a malformed hello write a handful of log lines, not 40; each
    /// is still counted, and the next interval's first line says how many were suppressed.
    func testFloodOfBadHandshakesLogsABoundedNumberOfLines() async throws {
        var limits = testLimits()
        limits.logLinesPerInterval = 3
        limits.logIntervalMs = 4_000
        let keys = (0..<2).map(validatorKey)
        let capture = LogCapture()
        let logger = capture.logger(level: .info)
        let node = try await Cluster.start(
            index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [], logger: logger)
        let flood = 40
        let started = ContinuousClock.now
        for _ in 0..<flood {
            try await RawPeer.connect(port: node.listenPort).run { session in
                try await session.writeFrame([UInt8](repeating: 0xFF, count: 10))
                await session.expectClosed()
            }
        }
        await eventually("every bad handshake counted") { node.statistics.closed(.malformedHandshake) == flood }
        XCTAssertLessThan(ContinuousClock.now - started, .milliseconds(limits.logIntervalMs - 100), "the flood fits in one log interval")
        let closing = capture.lines.filter { $0.message.hasPrefix("closing peer connection") }
        XCTAssertEqual(closing.count, limits.logLinesPerInterval, "\(closing.map(\.message))")
        XCTAssertTrue(closing.allSatisfy { $0.level == .warning && $0.metadata["reason"] == "malformed_handshake" })

        try await Task.sleep(for: .milliseconds(limits.logIntervalMs))
        try await RawPeer.connect(port: node.listenPort).run { session in
            try await session.writeFrame([UInt8](repeating: 0xFF, count: 10))
            await session.expectClosed()
        }
        await eventually("the next interval's line") {
            capture.lines.filter { $0.message.hasPrefix("closing peer connection") }.count
                == limits.logLinesPerInterval + 1
        }
        let summary = capture.lines.last { $0.message.hasPrefix("closing peer connection") }
        XCTAssertEqual(summary?.metadata["suppressed"], "\(flood - limits.logLinesPerInterval)")
        XCTAssertTrue(summary?.message.contains("suppressed \(flood - limits.logLinesPerInterval) similar") ?? false)
        await node.shutdown()
    }

    /// With `acceptOnlyValidatorAddresses`, a connection from an address no validator has
    /// is closed at accept (no hello), counted and logged at a bounded rate; validators
    /// still connect. Off (the default), the same address is served.
    func testAcceptOnlyValidatorAddressesRefusesOtherIPs() async throws {
        var limits = testLimits()
        limits.logLinesPerInterval = 2
        let keys = (0..<2).map(validatorKey)
        let capture = LogCapture()
        let logger = capture.logger(level: .info)
        // Validator 1 is known at 127.0.0.1 (the port does not matter for the IP match).
        let node = try await Cluster.start(
            index: 0, keys: keys, port: 0, addresses: [1: PeerAddress(host: "127.0.0.1", port: 1)], limits: limits,
            extra: [], acceptOnlyValidatorAddresses: true, logger: logger)
        for _ in 0..<5 {
            try await RawPeer.connect(port: node.listenPort, from: "127.0.0.2").run { session in
                await session.expectClosed(maxFrames: 0)
            }
        }
        await eventually("refusals counted") { node.statistics.closed(.addressNotAllowed) == 5 }
        let refusals = capture.lines.filter { $0.message.hasPrefix("refusing peer connection") }
        XCTAssertEqual(refusals.count, 2, "bounded: \(refusals.map(\.message))")
        XCTAssertEqual(refusals.first?.metadata["reason"], "address_not_allowed")

        let peer = try await Cluster.start(
            index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: node.listenPort)],
            limits: limits, extra: [])
        await eventually("a validator's address is accepted") { node.connectedValidators == [1] }
        await peer.shutdown()
        await node.shutdown()

        let open = try await Cluster.start(
            index: 0, keys: keys, port: 0, addresses: [1: PeerAddress(host: "127.0.0.1", port: 1)], limits: limits,
            extra: [])
        try await RawPeer.connect(port: open.listenPort, from: "127.0.0.2").run { session in
            let hello = await session.readFrame()
            XCTAssertNotNil(hello, "off by default")
        }
        await open.shutdown()
    }

    func testRateLimitedLoggerKeepsABudgetPerReasonAndReportsWhatItSuppressed() {
        let clock = NIOLockedValueBox(NIODeadline.uptimeNanoseconds(1_000_000_000))
        let capture = LogCapture()
        let logger = capture.logger(level: .info)
        let log = RateLimitedLogger(logger: logger, maxLinesPerInterval: 3, intervalMs: 1_000) {
            clock.withLockedValue { $0 }
        }
        for index in 0..<10 { log.log(.warning, "bad \(index)", reason: "a") }
        log.log(.warning, "other", reason: "b")
        XCTAssertEqual(capture.lines.map(\.message), ["bad 0", "bad 1", "bad 2", "other"])
        clock.withLockedValue { $0 = $0 + .milliseconds(999) }
        log.log(.warning, "still suppressed", reason: "a")
        XCTAssertEqual(capture.lines.count, 4)
        clock.withLockedValue { $0 = $0 + .milliseconds(1) }
        log.log(.warning, "next", reason: "a")
        let last = capture.lines.last
        XCTAssertEqual(last?.message, "next (suppressed 8 similar)")
        XCTAssertEqual(last?.metadata["suppressed"], "8")
        XCTAssertEqual(last?.metadata["reason"], "a")
        log.log(.warning, "quiet", reason: "a")
        XCTAssertEqual(capture.lines.last?.message, "quiet", "the count is reported once")
    }

    /// The per-address cap and the allow-list key on the IP: a dual-stack listener's
    /// IPv4-mapped addresses count as their IPv4 address.
    /// Regression (issue 14): out of descriptors, the peer port's listener retried each
    /// failing accept at once (about 28,000 in 1.5 s; NIO's `AcceptBackoffHandler`, not
    /// installed on this bootstrap, would not have stopped it) and nothing counted or
    /// logged the failures. Now each
    /// failure is counted (`acceptErrors`, `tally_network_accept_errors_total`) and
    /// logged at a bounded rate, the listener tries again a second later, and once
    /// descriptors are free a validator connects.
    func testRunningOutOfDescriptorsOnThePeerPortIsCountedAndSurvived() async throws {
        let keys = (0..<2).map(validatorKey)
        let metrics = TestMetrics()
        let node = try await withMetricsFactory(metrics) {
            try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: patientLimits(), extra: [])
        }
        var original = rlimit()
        XCTAssertEqual(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &original), 0)
        // A few descriptors above what is open now: clients take them, then the
        // listener's accepts fail with EMFILE.
        let open = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        var lowered = original
        lowered.rlim_cur = rlim_t(open + 8)
        XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lowered), 0)
        var sockets: [Int32] = []
        while let socket = Self.blockingConnect(port: node.listenPort), sockets.count < 64 { sockets.append(socket) }
        await eventually("accept failures are counted", within: 5) { node.statistics.acceptErrors > 0 }
        let errorsBefore = node.statistics.acceptErrors
        let cpuBefore = Self.processCPUSeconds()
        try await Task.sleep(for: .milliseconds(1_500))
        let cpuSpent = Self.processCPUSeconds() - cpuBefore
        let errorsDuring = node.statistics.acceptErrors - errorsBefore
        sockets.forEach { close($0) }
        XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &original), 0)
        XCTAssertLessThanOrEqual(errorsDuring, 4, "about one accept attempt a second, not a retry loop")
        XCTAssertLessThan(cpuSpent, 0.75, "the shortage must not keep a thread busy")
        let counted = try metrics.expectCounter("tally_network_accept_errors_total")
        XCTAssertEqual(counted.totalValue, Int64(node.statistics.acceptErrors))
        // Descriptors are back: the listener goes on.
        let peer = try await Cluster.start(
            index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: node.listenPort)],
            limits: patientLimits(), extra: [])
        await eventually("a validator connects after the shortage", within: 5) { node.connectedValidators == [1] }
        await peer.shutdown()
        await node.shutdown()
    }

    /// A blocking TCP connection to 127.0.0.1:`port`; nil when no socket can be made.
    private static func blockingConnect(port: Int) -> Int32? {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { return nil }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(socket)
            return nil
        }
        return socket
    }

    /// User and system CPU time this process has used.
    private static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Per-address limits (peer port and HTTP API, one function) key IPv6 clients by /64 (else one host's 2^64 addresses would
    /// each get a full cap) and IPv4-mapped IPv6 as the IPv4 address.
    func testAddressKeyGroupsIPv6By64() throws {
        func key(_ ip: String) throws -> String { addressKey(try SocketAddress(ipAddress: ip, port: 1)) }
        XCTAssertEqual(try key("2001:db8:1:2::1"), try key("2001:db8:1:2:ffff:eeee:dddd:cccc"))
        XCTAssertEqual(try key("2001:db8:1:2::1"), "2001:db8:1:2::/64")
        XCTAssertNotEqual(try key("2001:db8:1:2::1"), try key("2001:db8:1:3::1"))
        XCTAssertEqual(try key("::ffff:192.0.2.7"), "192.0.2.7")
        XCTAssertEqual(try key("192.0.2.7"), "192.0.2.7")
        XCTAssertNotEqual(try key("192.0.2.7"), try key("192.0.2.8"))
        XCTAssertEqual(addressKey(nil), "unknown")
    }

    /// Regression (issue 14): the peer port's cap on pending handshakes was keyed by the
    /// full IPv6 address, so one host with a /64 had 2^64 caps. Now one /64 shares one
    /// cap (its oldest pending handshake is evicted), and another /64 has its own.
    /// Connections are `EmbeddedChannel`s with the remote addresses a host would use
    /// (loopback has only ::1).
    func testPendingHandshakesFromOneIPv6Slash64ShareTheirCap() throws {
        var limits = patientLimits()
        limits.maxPendingHandshakesPerAddress = 2
        let keys = (0..<2).map(validatorKey)
        let configuration = NetworkConfiguration(
            listenHost: "::1", listenPort: 0, chainID: testChainID, identity: keys[0],
            validators: keys.map(\.publicKey), validatorAddresses: [:], extraAllowedKeys: [], limits: limits)
        let (_, continuation) = AsyncStream<InboundMessage>.makeStream()
        var quiet = Logger(label: "tally.network.test")
        quiet.logLevel = .critical
        let metrics = TestMetrics()
        let core = withMetricsFactory(metrics) {
            NetworkCore(
                configuration: configuration, group: MultiThreadedEventLoopGroup.singleton, logger: quiet,
                random: SplitMix64(seed: 1), continuation: continuation)
        }
        func accept(from ip: String) throws -> EmbeddedChannel {
            let channel = EmbeddedChannel()
            let address = try SocketAddress(ipAddress: ip, port: 40_000)
            channel.remoteAddress = address
            try core.acceptConnection(channel)
            try channel.connect(to: address).wait()
            return channel
        }
        let oneHost = try ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff:eeee:dddd:cccc"].map(accept)
        let otherHost = try accept(from: "2001:db8:1:3::1")
        XCTAssertFalse(oneHost[0].isActive, "the /64's third pending handshake evicts its oldest")
        XCTAssertTrue(oneHost[1].isActive && oneHost[2].isActive)
        XCTAssertTrue(otherHost.isActive, "another /64 has its own cap")
        XCTAssertEqual(core.statistics().closed(.tooManyPendingFromAddress), 1)
        let evicted = try metrics.expectCounter(
            "tally_network_connections_closed_total", [("reason", CloseReason.tooManyPendingFromAddress.rawValue)])
        XCTAssertEqual(evicted.totalValue, 1)
        for channel in oneHost + [otherHost] { _ = try? channel.finish() }
    }

    func testRemoteAddressesAreKeyedByNormalizedIP() throws {
        XCTAssertEqual(NetworkCore.normalizedIP("::FFFF:10.0.0.7"), "10.0.0.7")
        XCTAssertEqual(NetworkCore.normalizedIP("FE80::1"), "fe80::1")
        XCTAssertEqual(NetworkCore.ipAddress(of: try SocketAddress(ipAddress: "127.0.0.1", port: 4000)), "127.0.0.1")
        XCTAssertEqual(NetworkCore.ipAddress(of: try SocketAddress(ipAddress: "::ffff:127.0.0.1", port: 4000)), "127.0.0.1")
        XCTAssertEqual(NetworkCore.ipAddress(of: nil), "?")
    }
}
