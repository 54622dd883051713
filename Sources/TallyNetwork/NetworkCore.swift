import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import TallyCrypto

/// The shared state behind `PeerNetwork`: peers, their queues and connections, dialing.
/// Called from the node (send, broadcast) and from every connection's event loop, so
/// all mutable state sits behind one lock; channel I/O happens outside it.
final class NetworkCore: Sendable {
    let configuration: NetworkConfiguration
    let group: any EventLoopGroup
    let logger: Logger
    /// For every line a peer (or anyone reaching the port) can trigger.
    let boundedLog: RateLimitedLogger
    private let metrics = NetworkMetrics()
    private let continuation: AsyncStream<InboundMessage>.Continuation
    private let ownIndex: Int?
    private let listenerAllowedKeys: Set<PublicKey>
    private let state: NIOLockedValueBox<State>

    private struct ActiveConnection {
        let id: UInt64
        let channel: any Channel
        let role: ConnectionRole
        let establishedAt: NIODeadline
        /// The remote endpoint, for the log.
        let remote: String
        var drainScheduled = false
    }

    /// What to do with a newly authenticated connection when its key has one already.
    private enum Conflict {
        case replace
        case keepExisting
        /// Keep the existing one and report: two processes hold this key.
        case twin
    }

    private enum DialState {
        case idle
        case scheduled(Scheduled<Void>)
        case inFlight
    }

    private struct Peer {
        let key: PublicKey
        let validatorIndex: Int?
        var address: PeerAddress?
        var queue: OutboundQueue
        var connection: ActiveConnection?
        var dial = DialState.idle
        var backoffMs: Int64
        /// The IP addresses of `address` (only with `acceptOnlyValidatorAddresses`).
        var addressIPs: Set<String> = []
        /// When a connection last arrived while this peer had a settled one (see `conflict`).
        var lastConflictAt: NIODeadline?
    }

    /// An inbound connection that has not authenticated yet.
    private struct PendingHandshake {
        let channel: any Channel
        /// `addressKey` of the remote: the per-address cap's key (an IPv6 /64).
        let addressKey: String
    }

    private enum Admission {
        case accepted(id: UInt64, evicted: [any Channel])
        case refused(CloseReason)
    }

    private struct State {
        var running = true
        var peers: [PublicKey: Peer] = [:]
        var nextConnectionID: UInt64 = 1
        /// Keyed by connection id, which grows with time: the smallest is the oldest.
        var pendingHandshakes: [UInt64: PendingHandshake] = [:]
        var pendingPerAddress: [String: Int] = [:]
        var openChannels: [UInt64: any Channel] = [:]
        /// A reason decided by us for a connection we are closing (duplicate, shutdown).
        var closingReasons: [UInt64: CloseReason] = [:]
        var inboundUsage: [PublicKey: (messages: Int, bytes: Int)] = [:]
        var statistics = NetworkStatistics()
        var random: any RandomNumberGenerator & Sendable
    }

    init(
        configuration: NetworkConfiguration, group: any EventLoopGroup, logger: Logger,
        random: any RandomNumberGenerator & Sendable, continuation: AsyncStream<InboundMessage>.Continuation
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        boundedLog = RateLimitedLogger(
            logger: logger, maxLinesPerInterval: configuration.limits.logLinesPerInterval,
            intervalMs: configuration.limits.logIntervalMs)
        self.continuation = continuation
        let ownIndex = configuration.ownIndex
        self.ownIndex = ownIndex
        var state = State(random: random)
        for (index, key) in configuration.validators.enumerated() where index != ownIndex {
            state.peers[key] = Peer(
                key: key, validatorIndex: index, address: configuration.validatorAddresses[index],
                queue: NetworkCore.makeQueue(configuration.limits), backoffMs: configuration.limits.reconnectInitialDelayMs,
                addressIPs: NetworkCore.allowedIPs(configuration.validatorAddresses[index], configuration))
        }
        listenerAllowedKeys = Set(configuration.validators).union(configuration.extraAllowedKeys)
            .subtracting([configuration.identity.publicKey])
        self.state = NIOLockedValueBox(state)
    }

    private static func makeQueue(_ limits: NetworkLimits) -> OutboundQueue {
        OutboundQueue(maxMessages: limits.maxOutboundQueueMessages, maxBytes: limits.maxOutboundQueueBytes)
    }

    private var limits: NetworkLimits { configuration.limits }

    // MARK: Listening and dialing

    func bind() async throws -> any Channel {
        let waterMark = ChannelOptions.Types.WriteBufferWaterMark(
            low: limits.writeBufferLowWatermarkBytes, high: limits.writeBufferHighWatermarkBytes)
        return try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 128)
            .serverChannelInitializer { [self] channel in
                // Out of descriptors, an accept that fails is counted and retried a
                // second later, not at once for as long as the shortage lasts.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptErrorCounter { [self] error in countAcceptError(error) })
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.writeBufferWaterMark, value: waterMark)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture { try acceptConnection(channel) }
            }
            .bind(host: configuration.listenHost, port: configuration.listenPort)
            .get()
    }

    func acceptConnection(_ channel: any Channel) throws {
        let remoteIP = NetworkCore.ipAddress(of: channel.remoteAddress)
        let key = addressKey(channel.remoteAddress)
        switch state.withLockedValue({ admit(channel, from: remoteIP, key: key, in: &$0) }) {
        case .refused(let reason):
            count(closed: reason)
            if reason != .shutdown {
                boundedLog.log(.warning, "refusing peer connection", reason: reason.rawValue,
                               metadata: ["remote": "\(channel.remoteAddress.map { "\($0)" } ?? "?")"])
            }
            channel.close(promise: nil)
        case .accepted(let id, let evicted):
            // Each evicted connection is counted and logged by its handler as it closes.
            for old in evicted { old.close(promise: nil) }
            do {
                try addHandlers(to: channel, id: id, role: .listener, peerCheck: .allow(listenerAllowedKeys))
            } catch {
                state.withLockedValue { state in
                    removePending(id, in: &state)
                    state.openChannels[id] = nil
                }
                throw error
            }
        }
    }

    /// Takes a pending-handshake slot for a new inbound connection. A full address or a
    /// full table evicts its OLDEST pending handshake rather than refusing the newcomer:
    /// connections that sit idle cannot keep out a validator that redials, and each slot
    /// is held at most `handshakeFirstMessageTimeoutMs` by a peer that sends nothing.
    /// The allow-list matches the exact `remoteIP`; the per-address cap counts by `key`
    /// (`addressKey`: one IPv6 /64 is one address).
    private func admit(_ channel: any Channel, from remoteIP: String, key: String, in state: inout State) -> Admission {
        guard state.running else { return .refused(.shutdown) }
        if configuration.acceptOnlyValidatorAddresses,
           !state.peers.values.contains(where: { $0.addressIPs.contains(remoteIP) })
        {
            return .refused(.addressNotAllowed)
        }
        var evicted: [any Channel] = []
        if state.pendingPerAddress[key, default: 0] >= limits.maxPendingHandshakesPerAddress,
           let oldest = state.pendingHandshakes.filter({ $0.value.addressKey == key }).keys.min()
        {
            evicted.append(evictPending(oldest, reason: .tooManyPendingFromAddress, in: &state))
        }
        if state.pendingHandshakes.count >= limits.maxPendingHandshakes, let oldest = state.pendingHandshakes.keys.min() {
            evicted.append(evictPending(oldest, reason: .tooManyPendingHandshakes, in: &state))
        }
        let id = register(channel, in: &state)
        state.pendingHandshakes[id] = PendingHandshake(channel: channel, addressKey: key)
        state.pendingPerAddress[key, default: 0] += 1
        return .accepted(id: id, evicted: evicted)
    }

    private func evictPending(_ id: UInt64, reason: CloseReason, in state: inout State) -> any Channel {
        let channel = state.pendingHandshakes[id]!.channel
        removePending(id, in: &state)
        state.closingReasons[id] = reason
        return channel
    }

    private func removePending(_ id: UInt64, in state: inout State) {
        guard let entry = state.pendingHandshakes.removeValue(forKey: id) else { return }
        let remaining = state.pendingPerAddress[entry.addressKey, default: 1] - 1
        state.pendingPerAddress[entry.addressKey] = remaining > 0 ? remaining : nil
    }

    /// The reason we decided for closing connection `id`, if we closed it.
    func closingReason(of id: UInt64) -> CloseReason? {
        state.withLockedValue { $0.closingReasons[id] }
    }

    /// The remote's IP as text, IPv4-mapped IPv6 shown as IPv4, so a dual-stack listener
    /// matches `127.0.0.1` and `::ffff:127.0.0.1` alike. "?" when it has none.
    static func ipAddress(of address: SocketAddress?) -> String {
        guard let ip = address?.ipAddress else { return "?" }
        return normalizedIP(ip)
    }

    static func normalizedIP(_ ip: String) -> String {
        let lowered = ip.lowercased()
        let mappedPrefix = "::ffff:"
        if lowered.hasPrefix(mappedPrefix), lowered.contains(".") { return String(lowered.dropFirst(mappedPrefix.count)) }
        return lowered
    }

    /// The IP addresses an inbound connection from validator `address` may come from:
    /// the host itself when it is an IP literal, else its first resolved address (looked
    /// up once, so only when the allow-list is on).
    private static func allowedIPs(_ address: PeerAddress?, _ configuration: NetworkConfiguration) -> Set<String> {
        guard configuration.acceptOnlyValidatorAddresses, let host = address?.host else { return [] }
        let resolved = (try? SocketAddress(ipAddress: host, port: 0)) ?? (try? SocketAddress.makeAddressResolvingHost(host, port: 0))
        return resolved?.ipAddress.map { [normalizedIP($0)] } ?? []
    }

    private func register(_ channel: any Channel, in state: inout State) -> UInt64 {
        let id = state.nextConnectionID
        state.nextConnectionID += 1
        state.openChannels[id] = channel
        return id
    }

    private func addHandlers(to channel: any Channel, id: UInt64, role: ConnectionRole, peerCheck: PeerCheck) throws {
        let decoder = FrameDecoder(maxBodyBytes: NetworkLimits.maxHandshakeFrameBytes)
        let handshake = Handshake(
            role: role, chainID: configuration.chainID, identity: configuration.identity,
            ephemeral: .generate(), peerCheck: peerCheck)
        let operations = channel.pipeline.syncOperations
        try operations.addHandler(ByteToMessageHandler(decoder))
        try operations.addHandler(MessageToByteHandler(FrameEncoder()))
        try operations.addHandler(IdleStateHandler(
            readTimeout: .milliseconds(limits.idleTimeoutMs), writeTimeout: .milliseconds(limits.keepaliveIntervalMs)))
        try operations.addHandler(SecureChannelHandler(
            handshake: handshake, frameDecoder: decoder, maxFrameBodyBytes: limits.maxFrameBodyBytes,
            handshakeTimeout: .milliseconds(limits.handshakeTimeoutMs),
            firstMessageTimeout: role == .listener ? .milliseconds(limits.handshakeFirstMessageTimeoutMs) : nil))
        try operations.addHandler(PeerConnectionHandler(core: self, connectionID: id))
    }

    func startDialing() {
        let keys = state.withLockedValue { state in state.peers.values.filter { $0.address != nil }.map(\.key) }
        for key in keys { dial(key) }
    }

    func setAddress(_ address: PeerAddress, ofValidator index: Int) {
        guard let key = validatorKey(index) else { return }
        let shouldDial = state.withLockedValue { state -> Bool in
            guard var peer = state.peers[key] else { return false }
            peer.address = address
            peer.addressIPs = NetworkCore.allowedIPs(address, configuration)
            let idle: Bool
            if case .idle = peer.dial { idle = true } else { idle = false }
            state.peers[key] = peer
            return idle && peer.connection == nil
        }
        if shouldDial { dial(key) }
    }

    private func dial(_ key: PublicKey) {
        let target: (address: PeerAddress, id: UInt64)? = state.withLockedValue { state in
            guard state.running, var peer = state.peers[key], peer.connection == nil, let address = peer.address else {
                state.peers[key]?.dial = .idle
                return nil
            }
            if case .inFlight = peer.dial { return nil }
            peer.dial = .inFlight
            let id = state.nextConnectionID
            state.nextConnectionID += 1
            state.peers[key] = peer
            return (address, id)
        }
        guard let target else { return }
        let waterMark = ChannelOptions.Types.WriteBufferWaterMark(
            low: limits.writeBufferLowWatermarkBytes, high: limits.writeBufferHighWatermarkBytes)
        ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(limits.connectTimeoutMs))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: waterMark)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    let running = state.withLockedValue { state in
                        if state.running { state.openChannels[target.id] = channel }
                        return state.running
                    }
                    guard running else { throw ChannelError.ioOnClosedChannel }
                    try addHandlers(to: channel, id: target.id, role: .dialer, peerCheck: .expect(key))
                }
            }
            .connect(host: target.address.host, port: target.address.port)
            .whenComplete { [self] result in
                switch result {
                case .failure(let error):
                    // The initializer ran before the connect failed: forget the channel.
                    state.withLockedValue { _ = $0.openChannels.removeValue(forKey: target.id) }
                    logger.debug("dial failed", metadata: ["peer": "\(target.address)", "error": "\(error)"])
                    dialEnded(key)
                case .success(let channel):
                    channel.closeFuture.whenComplete { [self] _ in dialEnded(key) }
                }
            }
    }

    /// A dial attempt is over (connect failed, or the dialed connection closed): dial
    /// again after a jittered back-off unless the peer is connected some other way.
    private func dialEnded(_ key: PublicKey) {
        let delayMs: Int64? = state.withLockedValue { state in
            guard var peer = state.peers[key] else { return nil }
            peer.dial = .idle
            defer { state.peers[key] = peer }
            guard state.running, peer.connection == nil, peer.address != nil else { return nil }
            let delay = NetworkCore.jittered(peer.backoffMs, random: &state.random)
            peer.backoffMs = NetworkCore.nextBackoff(after: peer.backoffMs, max: limits.reconnectMaxDelayMs)
            return delay
        }
        if let delayMs { scheduleDial(key, afterMs: delayMs) }
    }

    /// Exponential back-off: double the delay after each failed attempt, up to `max`.
    static func nextBackoff(after delayMs: Int64, max: Int64) -> Int64 {
        min(delayMs.multipliedReportingOverflow(by: 2).partialValue, max)
    }

    /// 50–100 % of `delayMs`, so peers that lost each other at once do not redial in lockstep.
    static func jittered(_ delayMs: Int64, random: inout any RandomNumberGenerator & Sendable) -> Int64 {
        let factor = Double.random(in: 0.5...1.0, using: &random)
        return max(1, Int64((Double(delayMs) * factor).rounded()))
    }

    private func scheduleDial(_ key: PublicKey, afterMs delayMs: Int64) {
        let task = group.next().scheduleTask(in: .milliseconds(delayMs)) { [self] in dial(key) }
        let keep = state.withLockedValue { state -> Bool in
            guard state.running, var peer = state.peers[key], case .idle = peer.dial else { return false }
            peer.dial = .scheduled(task)
            state.peers[key] = peer
            return true
        }
        if !keep { task.cancel() }
    }

    // MARK: Connection events (called by PeerConnectionHandler on the channel's event loop)

    /// The peer on connection `id` authenticated as `key`. Returns false when the
    /// connection lost deduplication (or is a twin's) and must be retired; when it wins
    /// over an existing connection, that one is retired instead.
    func established(id: UInt64, channel: any Channel, key: PublicKey, role: ConnectionRole) -> Bool {
        let now = NIODeadline.now()
        let remote = channel.remoteAddress.map { "\($0)" } ?? "?"
        let (conflict, existing): (Conflict?, ActiveConnection?) = state.withLockedValue { state in
            removePending(id, in: &state)
            // Evicted (or shutting down) while its last handshake frame was in flight.
            guard state.running, state.closingReasons[id] == nil else { return (.keepExisting, nil) }
            var peer = state.peers[key] ?? Peer(
                key: key, validatorIndex: nil, address: nil, queue: NetworkCore.makeQueue(limits),
                backoffMs: limits.reconnectInitialDelayMs)
            let existing = peer.connection
            var conflict: Conflict?
            if let existing {
                conflict = self.conflict(existing: existing, newRole: role, peer: &peer, now: now)
                switch conflict! {
                case .replace: state.closingReasons[existing.id] = .duplicateConnection
                case .keepExisting: break
                case .twin: state.closingReasons[id] = .keyInUseTwice
                }
            }
            if conflict == nil || conflict == .replace {
                peer.connection = ActiveConnection(id: id, channel: channel, role: role, establishedAt: now, remote: remote)
                state.statistics.connectionsEstablished += 1
            }
            state.peers[key] = peer
            return (conflict, existing)
        }
        let index = validatorIndex(of: key).map(String.init) ?? "-"
        switch conflict {
        case .keepExisting:
            return false
        case .twin:
            boundedLog.log(.error, "validator key in use twice", reason: CloseReason.keyInUseTwice.rawValue, metadata: [
                "peer": "\(key)", "validator": "\(index)",
                "established": "\(existing!.remote) (\(existing!.role))", "refused": "\(remote) (\(role))"])
            return false
        case .replace:
            boundedLog.log(.info, "a newer connection replaces the established one", reason: "same_key_replaced", metadata: [
                "peer": "\(key)", "validator": "\(index)", "old": "\(existing!.remote)", "new": "\(remote)"])
            existing!.channel.pipeline.fireUserInboundEventTriggered(RetireConnection())
        case nil:
            break
        }
        metrics.established.increment()
        updateConnectedGauge()
        logger.info("peer connected", metadata: ["peer": "\(key)", "validator": "\(index)", "role": "\(role)"])
        drain(key: key, connectionID: id)
        return true
    }

    /// A connection for a key that already has an established one. Within the
    /// simultaneous-dial window, two connections of opposite roles are the usual race and
    /// are resolved by the validator-index rule (both ends decide alike). Otherwise the
    /// remote dialed again although we hold a connection to it: it restarted and our old
    /// connection is half-open (not yet known dead), or a second process has its key.
    /// The newcomer may replace the established connection once; another conflict within
    /// `sameKeyReplacementIntervalMs` is the twin signal, and then the established one
    /// stays (each conflict restarts the interval, so twins cannot take turns).
    private func conflict(existing: ActiveConnection, newRole: ConnectionRole, peer: inout Peer, now: NIODeadline) -> Conflict {
        guard existing.channel.isActive else { return .replace }
        if newRole != existing.role,
           NetworkCore.milliseconds(from: existing.establishedAt, to: now) < limits.simultaneousDialWindowMs
        {
            return prefers(newRole: newRole, over: existing.role, peerIndex: peer.validatorIndex) ? .replace : .keepExisting
        }
        defer { peer.lastConflictAt = now }
        if let last = peer.lastConflictAt,
           NetworkCore.milliseconds(from: last, to: now) < limits.sameKeyReplacementIntervalMs
        {
            return .twin
        }
        return .replace
    }

    static func milliseconds(from start: NIODeadline, to end: NIODeadline) -> Int64 {
        (end - start).nanoseconds / 1_000_000
    }

    /// Which of two simultaneously dialed connections to the same peer to keep. Both ends
    /// must decide alike: keep the one dialed by the lower validator index. For a
    /// non-validator, keep the newer.
    private func prefers(newRole: ConnectionRole, over oldRole: ConnectionRole, peerIndex: Int?) -> Bool {
        guard let peerIndex, let ownIndex, newRole != oldRole else { return true }
        let newDialer = newRole == .dialer ? ownIndex : peerIndex
        let oldDialer = oldRole == .dialer ? ownIndex : peerIndex
        return newDialer < oldDialer
    }

    func received(_ bytes: [UInt8], from key: PublicKey) {
        let wireBytes = Frame.wireBytes(messageBytes: bytes.count)
        metrics.bytesReceived.increment(by: wireBytes)
        let accepted = state.withLockedValue { state -> Bool in
            state.statistics.bytesReceived += wireBytes
            let usage = state.inboundUsage[key, default: (0, 0)]
            guard usage.messages < limits.maxInboundQueueMessagesPerPeer,
                  usage.bytes + bytes.count <= limits.maxInboundQueueBytesPerPeer
            else {
                state.statistics.messagesDropped[.inboundQueueFull, default: 0] += 1
                return false
            }
            state.inboundUsage[key] = (usage.messages + 1, usage.bytes + bytes.count)
            state.statistics.messagesReceived += 1
            return true
        }
        guard accepted else {
            metrics.dropped(.inboundQueueFull)
            logger.debug("inbound queue full, dropping message", metadata: ["peer": "\(key)"])
            return
        }
        metrics.received.increment()
        continuation.yield(InboundMessage(peer: key, validatorIndex: validatorIndex(of: key), bytes: bytes))
    }

    func consumed(_ message: InboundMessage) {
        state.withLockedValue { state in
            guard let usage = state.inboundUsage[message.peer] else { return }
            let remaining = (usage.messages - 1, usage.bytes - message.bytes.count)
            state.inboundUsage[message.peer] = remaining.0 == 0 ? nil : remaining
        }
    }

    /// Connection `id` closed. `key` is its peer if it had authenticated.
    func closed(id: UInt64, key: PublicKey?, reason: CloseReason) {
        let (finalReason, redialMs): (CloseReason, Int64?) = state.withLockedValue { state in
            state.openChannels[id] = nil
            let finalReason = state.closingReasons.removeValue(forKey: id) ?? reason
            removePending(id, in: &state)
            state.statistics.connectionsClosed[finalReason, default: 0] += 1
            guard let key, var peer = state.peers[key], let connection = peer.connection, connection.id == id else {
                return (finalReason, nil)
            }
            peer.connection = nil
            if NetworkCore.milliseconds(from: connection.establishedAt, to: .now()) >= limits.stableConnectionMs {
                peer.backoffMs = limits.reconnectInitialDelayMs
            }
            guard peer.validatorIndex != nil else {
                state.peers[key] = nil  // a non-validator's queue goes with its connection
                return (finalReason, nil)
            }
            state.peers[key] = peer
            guard state.running, peer.address != nil, case .idle = peer.dial else { return (finalReason, nil) }
            return (finalReason, NetworkCore.jittered(peer.backoffMs, random: &state.random))
        }
        metrics.closed(finalReason)
        if key != nil { updateConnectedGauge() }
        if let key, let redialMs { scheduleDial(key, afterMs: redialMs) }
    }

    private func countAcceptError(_ error: IOError) {
        let total = state.withLockedValue { state in
            state.statistics.acceptErrors += 1
            return state.statistics.acceptErrors
        }
        metrics.acceptErrors.increment()
        boundedLog.log(.error, "cannot accept a peer connection; retrying in 1 s", reason: "accept_error",
                       metadata: ["error": "\(error)", "total": "\(total)"])
    }

    func count(closed reason: CloseReason) {
        state.withLockedValue { $0.statistics.connectionsClosed[reason, default: 0] += 1 }
        metrics.closed(reason)
    }

    private func updateConnectedGauge() {
        let connected = state.withLockedValue { state in state.peers.values.filter { $0.connection != nil }.count }
        metrics.connectedPeers.record(connected)
    }

    // MARK: Sending

    func validatorKey(_ index: Int) -> PublicKey? {
        guard configuration.validators.indices.contains(index), index != ownIndex else { return nil }
        return configuration.validators[index]
    }

    private func validatorIndex(of key: PublicKey) -> Int? {
        state.withLockedValue { $0.peers[key]?.validatorIndex }
    }

    func countDrop(_ reason: DropReason, count: Int = 1) {
        guard count > 0 else { return }
        state.withLockedValue { $0.statistics.messagesDropped[reason, default: 0] += count }
        metrics.dropped(reason, count: count)
    }

    func enqueue(_ message: [UInt8], to key: PublicKey) -> SendOutcome {
        guard message.count <= limits.maxMessageBytes else {
            countDrop(.messageTooLarge)
            return .tooLarge
        }
        let result: (dropped: Int, drain: (any Channel, UInt64)?)? = state.withLockedValue { state in
            // Mutated in place: a copy of `Peer` would copy its whole queue (O(n) per send).
            guard let slot = state.peers.index(forKey: key) else { return nil }
            let dropped = state.peers.values[slot].queue.push(message)
            var drain: (any Channel, UInt64)?
            if let connection = state.peers.values[slot].connection, !connection.drainScheduled {
                state.peers.values[slot].connection!.drainScheduled = true
                drain = (connection.channel, connection.id)
            }
            return (dropped, drain)
        }
        guard let result else {
            countDrop(.unknownPeer)
            return .unknownPeer
        }
        countDrop(.outboundQueueFull, count: result.dropped)
        if let (channel, id) = result.drain {
            channel.eventLoop.execute { [self] in drain(key: key, connectionID: id) }
        }
        return .queued(droppedOldest: result.dropped)
    }

    func broadcast(_ message: [UInt8]) -> Int {
        var queued = 0
        for index in configuration.validators.indices where index != ownIndex {
            if case .queued = enqueue(message, to: configuration.validators[index]) { queued += 1 }
        }
        return queued
    }

    /// Moves queued messages into the channel while it is writable (NIO's write-buffer
    /// watermark), so at most one watermark of bytes sits outside our bounded queue.
    /// Runs on the channel's event loop; called again when it becomes writable.
    func drain(key: PublicKey, connectionID: UInt64) {
        var channel: (any Channel)?
        var written = 0
        var writtenBytes = 0
        while true {
            let next: [UInt8]? = state.withLockedValue { state in
                guard let slot = state.peers.index(forKey: key), let connection = state.peers.values[slot].connection,
                      connection.id == connectionID
                else { return nil }
                state.peers.values[slot].connection!.drainScheduled = false
                channel = connection.channel
                let message = connection.channel.isWritable ? state.peers.values[slot].queue.pop() : nil
                if let message {
                    state.statistics.messagesSent += 1
                    state.statistics.bytesSent += Frame.wireBytes(messageBytes: message.count)
                }
                return message
            }
            guard let next, let channel else { break }
            channel.write(next, promise: nil)
            written += 1
            writtenBytes += Frame.wireBytes(messageBytes: next.count)
        }
        if written > 0 {
            metrics.sent.increment(by: written)
            metrics.bytesSent.increment(by: writtenBytes)
            channel?.flush()
        }
    }

    // MARK: Status and shutdown

    func peerStatuses() -> [PeerStatus] {
        state.withLockedValue { NetworkCore.statuses($0) }
    }

    func snapshot() -> ([PeerStatus], NetworkStatistics) {
        state.withLockedValue { (NetworkCore.statuses($0), $0.statistics) }
    }

    private static func statuses(_ state: State) -> [PeerStatus] {
            state.peers.values.map {
                PeerStatus(key: $0.key, validatorIndex: $0.validatorIndex,
                           direction: $0.connection.map { $0.role == .dialer ? .outbound : .inbound },
                           queuedMessages: $0.queue.count, queuedBytes: $0.queue.byteCount)
            }.sorted { ($0.validatorIndex ?? Int.max, $0.key.hex) < ($1.validatorIndex ?? Int.max, $1.key.hex) }
    }

    /// Channels not yet closed (tests check that failed dials leave none behind).
    var openChannelCount: Int { state.withLockedValue { $0.openChannels.count } }

    func activeChannel(_ key: PublicKey) -> (any Channel)? {
        state.withLockedValue { $0.peers[key]?.connection?.channel }
    }

    func statistics() -> NetworkStatistics {
        state.withLockedValue { $0.statistics }
    }

    /// Marks the network stopped and returns the channels to close.
    func stop() -> [any Channel] {
        let (channels, tasks): ([any Channel], [Scheduled<Void>]) = state.withLockedValue { state in
            state.running = false
            var tasks: [Scheduled<Void>] = []
            for key in state.peers.keys {
                if case .scheduled(let task) = state.peers[key]!.dial { tasks.append(task) }
                state.peers[key]!.dial = .idle
            }
            for id in state.openChannels.keys { state.closingReasons[id] = .shutdown }
            return (Array(state.openChannels.values), tasks)
        }
        for task in tasks { task.cancel() }
        return channels
    }

    func finishInbound() {
        continuation.finish()
    }
}
