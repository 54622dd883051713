import Metrics
import MetricsTestKit
import NIOCore
import NIOPosix
import TallyCrypto
import XCTest

@testable import TallyNetwork

/// Real sockets on 127.0.0.1, ephemeral ports.
final class PeerNetworkTests: XCTestCase {
    func testTwoNodesExchangeMessagesBothWays() async throws {
        let cluster = try await Cluster(count: 2)
        await cluster.waitFullyConnected()
        XCTAssertEqual(cluster.network(0).send(to: 1, [1, 2, 3]), .queued(droppedOldest: 0))
        XCTAssertEqual(cluster.network(1).send(to: 0, [4, 5]), .queued(droppedOldest: 0))
        await eventually("both delivered") {
            cluster.inbox(1).payloads(from: 0) == [[1, 2, 3]] && cluster.inbox(0).payloads(from: 1) == [[4, 5]]
        }
        XCTAssertEqual(cluster.inbox(1).all.first?.peer, cluster.keys[0].publicKey)
        XCTAssertEqual(cluster.network(0).send(to: 0, [1]), .unknownPeer, "no queue to ourselves")
        XCTAssertEqual(cluster.network(0).send(to: 7, [1]), .unknownPeer)
        // Order is kept per peer, and a large message goes through.
        let big = [UInt8](repeating: 0xAB, count: 3 * 1024 * 1024)
        for index in 0..<50 { cluster.network(0).send(to: 1, [UInt8(index)]) }
        cluster.network(0).send(to: 1, big)
        await eventually("ordered delivery") { cluster.inbox(1).payloads(from: 0).count == 52 }
        let received = cluster.inbox(1).payloads(from: 0)
        XCTAssertEqual(Array(received[1...50]), (0..<50).map { [UInt8($0)] })
        XCTAssertEqual(received.last, big)
        await cluster.shutdown()
    }

    /// Each message costs its bytes plus 21 on the wire (4-byte frame length, frame-kind
    /// byte, 16-byte Poly1305 tag): both the sender's and the receiver's statistics and
    /// `tally_network_bytes_{sent,received}_total` rise by exactly that, and the handshake
    /// and keepalives before are not counted.
    func testBytesSentAndReceivedCountEachMessageFrameOnTheWire() async throws {
        let keys = (0..<2).map(validatorKey)
        let senderMetrics = TestMetrics()
        let receiverMetrics = TestMetrics()
        let receiver = try await withMetricsFactory(receiverMetrics) {
            try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: testLimits(), extra: [])
        }
        let inbox = Inbox(receiver)
        let sender = try await withMetricsFactory(senderMetrics) {
            try await Cluster.start(
                index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: receiver.listenPort)],
                limits: testLimits(), extra: [])
        }
        await eventually("connected") { sender.connectedValidators == [0] && receiver.connectedValidators == [1] }
        XCTAssertEqual(sender.statistics.bytesSent, 0, "the handshake is not a message")
        XCTAssertEqual(receiver.statistics.bytesReceived, 0)

        sender.send(to: 0, [1, 2, 3])
        sender.send(to: 0, [UInt8](repeating: 0x5A, count: 1_000))
        await eventually("both delivered") { inbox.payloads(from: 1).count == 2 }
        let expectedBytes = (3 + 21) + (1_000 + 21)
        XCTAssertEqual(sender.statistics.messagesSent, 2)
        XCTAssertEqual(sender.statistics.bytesSent, expectedBytes)
        XCTAssertEqual(receiver.statistics.bytesReceived, expectedBytes)
        XCTAssertEqual(try senderMetrics.expectCounter("tally_network_bytes_sent_total").totalValue, Int64(expectedBytes))
        XCTAssertEqual(
            try receiverMetrics.expectCounter("tally_network_bytes_received_total").totalValue, Int64(expectedBytes))
        XCTAssertEqual(sender.statistics.bytesReceived, 0, "nothing came back")
        await sender.shutdown()
        await receiver.shutdown()
    }

    /// Everyone dials everyone: each pair ends with exactly one connection (the one dialed
    /// by the lower index), and broadcasts reach all.
    func testFourNodesDeduplicateConnectionsAndBroadcast() async throws {
        let cluster = try await Cluster(count: 4)
        await cluster.waitFullyConnected()
        for index in 0..<4 { XCTAssertEqual(cluster.network(index).broadcast([UInt8(index)]), 3) }
        await eventually("all broadcasts delivered") {
            (0..<4).allSatisfy { receiver in
                Set(cluster.inbox(receiver).all.map { $0.validatorIndex! }) == Set((0..<4).filter { $0 != receiver })
            }
        }
        for receiver in 0..<4 {
            for sender in 0..<4 where sender != receiver {
                XCTAssertEqual(cluster.inbox(receiver).payloads(from: sender), [[UInt8(sender)]])
            }
        }
        // Settled: one live connection per pair, and no flapping (no new connections).
        try await Task.sleep(for: .milliseconds(300))
        let before = (0..<4).map { cluster.network($0).statistics }
        try await Task.sleep(for: .milliseconds(500))
        for index in 0..<4 {
            let statistics = cluster.network(index).statistics
            XCTAssertEqual(statistics, before[index], "node \(index) kept reconnecting")
            XCTAssertEqual(cluster.network(index).connectedValidators, Set((0..<4).filter { $0 != index }))
            // The surviving connection of each pair is the one the lower index dialed.
            for peer in cluster.network(index).peers {
                XCTAssertEqual(peer.direction, peer.validatorIndex! > index ? .outbound : .inbound, "\(index)→\(peer)")
            }
        }
        await cluster.shutdown()
    }

    /// A node whose key is not in genesis dials a validator: the validator refuses it with a
    /// counted reason and a rejection frame; the validators keep talking.
    func testUnknownKeyIsRejectedAndTheNetworkKeepsRunning() async throws {
        let cluster = try await Cluster(count: 2)
        await cluster.waitFullyConnected()
        let outsider = SigningKey(seed: [UInt8](repeating: 0xEE, count: 32))!
        // The outsider believes it is validator 1 of a set containing validator 0.
        let intruder = try await PeerNetwork.start(
            configuration: NetworkConfiguration(
                listenHost: "127.0.0.1", listenPort: 0, chainID: testChainID, identity: outsider,
                validators: [cluster.keys[0].publicKey, outsider.publicKey],
                validatorAddresses: [0: PeerAddress(host: "127.0.0.1", port: cluster.network(0).listenPort)],
                limits: testLimits()),
            logger: quietLogger())
        await eventually("rejected on both sides") {
            cluster.network(0).statistics.closed(.unknownPeer) >= 1 && intruder.statistics.closed(.rejectedByPeer) >= 1
        }
        XCTAssertEqual(intruder.connectedValidators, [])
        await intruder.shutdown()
        cluster.network(1).send(to: 0, [42])
        await eventually("validators unaffected") { cluster.inbox(0).payloads(from: 1) == [[42]] }
        XCTAssertEqual(cluster.network(0).connectedValidators, [1])
        await cluster.shutdown()
    }

    /// Node 0 has validator 2's address written down for validator 1: it must notice it
    /// reached the wrong validator and hang up, rather than talk to 2 as if it were 1.
    func testDialerRefusesAPeerThatIsNotTheValidatorItMeantToReach() async throws {
        let keys = (0..<3).map(validatorKey)
        var nodes: [PeerNetwork] = []
        for index in 0..<3 {
            nodes.append(try await Cluster.start(index: index, keys: keys, port: 0, addresses: [:], limits: testLimits(), extra: []))
        }
        nodes[0].setAddress(PeerAddress(host: "127.0.0.1", port: nodes[2].listenPort), ofValidator: 1)
        await eventually("misdial counted") { nodes[0].statistics.closed(.unexpectedPeer) >= 1 }
        XCTAssertEqual(nodes[0].connectedValidators, [])
        XCTAssertEqual(nodes[2].connectedValidators, [])
        // With the right address it connects.
        nodes[0].setAddress(PeerAddress(host: "127.0.0.1", port: nodes[1].listenPort), ofValidator: 1)
        await eventually("connected after the fix") { nodes[0].connectedValidators == [1] }
        for node in nodes { await node.shutdown() }
    }

    /// The node does not read its inbound stream: each peer may have only its bound of
    /// messages waiting; the rest are dropped and counted, and reading frees the budget.
    func testInboundQueueIsBoundedPerPeer() async throws {
        var limits = testLimits()
        limits.maxMessageBytes = 1024
        limits.maxInboundQueueMessagesPerPeer = 10
        limits.maxInboundQueueBytesPerPeer = 4096
        let keys = (0..<2).map(validatorKey)
        let receiver = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [])
        let sender = try await Cluster.start(
            index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: receiver.listenPort)],
            limits: limits, extra: [])
        await eventually("connected") { sender.connectedValidators == [0] }
        for index in 0..<8 { sender.send(to: 0, [UInt8(index)]) }
        for _ in 0..<4 { sender.send(to: 0, [UInt8](repeating: 9, count: 1000)) }
        // 8 small + 4 large = 4008 bytes would fit the byte bound (4096), but the count
        // bound (10) admits only two of the large ones.
        await eventually("drops counted") { receiver.statistics.dropped(.inboundQueueFull) == 2 }
        XCTAssertEqual(receiver.statistics.messagesReceived, 10)

        var iterator = receiver.inbound.makeAsyncIterator()
        for index in 0..<8 {
            let message = await iterator.next()
            XCTAssertEqual(message?.bytes, [UInt8(index)])
        }
        for _ in 0..<2 { _ = await iterator.next() }
        // Budget freed: 5 large (5000 bytes) → the byte bound drops the fifth.
        for _ in 0..<5 { sender.send(to: 0, [UInt8](repeating: 7, count: 1000)) }
        await eventually("byte bound") { receiver.statistics.dropped(.inboundQueueFull) == 3 }
        XCTAssertEqual(receiver.statistics.messagesReceived, 14)
        for _ in 0..<4 {
            let message = await iterator.next()
            XCTAssertEqual(message?.bytes.count, 1000)
        }
        await sender.shutdown()
        await receiver.shutdown()
    }

    /// A raw client that claims validator 1's key in its hello but cannot sign for it.
    func testPeerClaimingAValidatorKeyWithoutOwningItIsRejected() async throws {
        let cluster = try await Cluster(count: 3)
        await cluster.waitFullyConnected()
        let node = cluster.network(0)
        let peer = try await RawPeer.connect(port: node.listenPort)
        try await peer.run { session in
            let ephemeral = KeyExchangeKeyPair.generate()
            let forgedHello = Hello(protocolVersion: Hello.protocolVersion, chainID: testChainID,
                                    identityKey: cluster.keys[1].publicKey, ephemeralKey: ephemeral.publicKey).encoded
            try await session.writeFrame(forgedHello)
            let received = await session.readFrame()
            let theirHello = try XCTUnwrap(received)
            let keys = try XCTUnwrap(ephemeral.sessionKeys(role: .client, peerPublicKey: try Hello.decode(theirHello).ephemeralKey))
            let transcript = HandshakeTranscript.hash(chainID: testChainID, dialerHello: forgedHello, listenerHello: theirHello)
            var sealer = DirectionalCipher(key: keys.transmit)
            let wrongSignature = SigningKey.generate().sign(HandshakeTranscript.signingBytes(signer: .dialer, transcript: transcript))
            try await session.writeFrame(sealer.seal(wrongSignature.bytes))
            await session.expectClosed()
        }
        await eventually("counted") { node.statistics.closed(.authenticationFailed) == 1 }
        // The real validator 1 stays connected and working.
        XCTAssertEqual(node.connectedValidators, [1, 2])
        cluster.network(1).send(to: 0, [1])
        await eventually("validator 1 unaffected") { cluster.inbox(0).payloads(from: 1) == [[1]] }
        await cluster.shutdown()
    }

    func testRandomBytesToThePeerPortCloseThatConnectionOnly() async throws {
        let cluster = try await Cluster(count: 2)
        await cluster.waitFullyConnected()
        let node = cluster.network(0)
        var generator = SplitMix64(seed: 7)
        for attempt in 0..<5 {
            let garbage = (0..<(200 + attempt * 300)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let peer = try await RawPeer.connect(port: node.listenPort)
            try await peer.run { session in
                try? await session.writeRaw(garbage)
                await session.expectClosed()
            }
        }
        await eventually("five peer-fault closes counted") {
            let closed = node.statistics.connectionsClosed
            return closed.filter { $0.key.isPeerFault }.values.reduce(0, +) == 5
        }
        cluster.network(1).send(to: 0, [9])
        cluster.network(0).send(to: 1, [8])
        await eventually("validators unaffected") {
            cluster.inbox(0).payloads(from: 1) == [[9]] && cluster.inbox(1).payloads(from: 0) == [[8]]
        }
        await cluster.shutdown()
    }

    /// Frame-level attacks after a genuine handshake (the attacker holds validator 1's key:
    /// a Byzantine validator): oversize frame, tampered ciphertext, oversize hello.
    func testOversizeTamperedAndOversizeHandshakeFramesCloseTheConnection() async throws {
        var limits = testLimits()
        limits.maxMessageBytes = 64 * 1024
        limits.maxOutboundQueueBytes = 1024 * 1024
        limits.maxInboundQueueBytesPerPeer = 1024 * 1024
        let cluster = try await Cluster(count: 3, limits: limits)
        await cluster.waitFullyConnected()
        // Validator 1 is played by hand: stop the real one.
        await cluster.networks[1]!.shutdown()
        cluster.networks[1] = nil
        let node = cluster.network(0)
        await eventually("disconnect noticed") { node.connectedValidators == [2] }

        // Tampered ciphertext: the first sealed message passes, a flipped bit does not.
        try await RawPeer.connect(port: node.listenPort).run { session in
            var secure = try await session.handshake(identity: cluster.keys[1], expected: cluster.keys[0].publicKey)
            try await session.writeFrame(secure.sealer.seal([FrameKind.message.rawValue, 7, 7]))
            var tampered = secure.sealer.seal([FrameKind.message.rawValue, 8, 8])
            tampered[tampered.count - 1] ^= 0x80
            try await session.writeFrame(tampered)
            await session.expectClosed()
        }
        await eventually("decrypt failure counted") { node.statistics.closed(.decryptFailed) == 1 }
        XCTAssertEqual(cluster.inbox(0).payloads(from: 1), [[7, 7]])

        // Oversize: a header announcing one byte over the limit closes at once.
        try await RawPeer.connect(port: node.listenPort).run { session in
            _ = try await session.handshake(identity: cluster.keys[1], expected: cluster.keys[0].publicKey)
            let announced = UInt32(limits.maxMessageBytes + NetworkLimits.frameOverheadBytes + 1)
            try await session.writeRaw(withUnsafeBytes(of: announced.littleEndian, Array.init))
            await session.expectClosed()
        }
        await eventually("oversize counted") { node.statistics.closed(.oversizeFrame) == 1 }

        // A frame shorter than the authentication tag.
        try await RawPeer.connect(port: node.listenPort).run { session in
            _ = try await session.handshake(identity: cluster.keys[1], expected: cluster.keys[0].publicKey)
            try await session.writeFrame([UInt8](repeating: 0, count: NetworkLimits.frameOverheadBytes - 1))
            await session.expectClosed()
        }
        await eventually("short frame counted") { node.statistics.closed(.shortFrame) == 1 }

        // A frame of unknown kind, and a keepalive carrying bytes.
        for plaintext: [UInt8] in [[7, 1, 2], [FrameKind.keepalive.rawValue, 1]] {
            try await RawPeer.connect(port: node.listenPort).run { session in
                var secure = try await session.handshake(identity: cluster.keys[1], expected: cluster.keys[0].publicKey)
                try await session.writeFrame(secure.sealer.seal([FrameKind.keepalive.rawValue]))
                try await session.writeFrame(secure.sealer.seal(plaintext))
                await session.expectClosed()
            }
        }
        await eventually("malformed frames counted") { node.statistics.closed(.malformedFrame) == 2 }

        // Before authentication only handshake-sized frames are accepted.
        try await RawPeer.connect(port: node.listenPort).run { session in
            try await session.writeFrame([UInt8](repeating: 1, count: NetworkLimits.maxHandshakeFrameBytes + 1))
            await session.expectClosed()
        }
        await eventually("unauthenticated oversize counted") { node.statistics.closed(.oversizeFrame) == 2 }

        // Node 0 and node 2 are unaffected throughout.
        cluster.network(2).send(to: 0, [2])
        await eventually("validator 2 unaffected") { cluster.inbox(0).payloads(from: 2) == [[2]] }
        await cluster.shutdown()
    }

    /// Quiet but healthy peers keep each other alive with keepalives; a peer that goes
    /// silent after the handshake is dropped when the idle timeout passes.
    func testKeepalivesHoldQuietConnectionsAndSilentPeersTimeOut() async throws {
        var limits = testLimits()
        limits.keepaliveIntervalMs = 50
        limits.idleTimeoutMs = 400
        let cluster = try await Cluster(count: 3, limits: limits)
        await cluster.waitFullyConnected()
        await cluster.networks[2]!.shutdown()
        cluster.networks[2] = nil
        let node = cluster.network(0)
        await eventually("node 2 gone") { node.connectedValidators == [1] }
        let establishedBefore = node.statistics.connectionsEstablished

        // A hand-played validator 2 that handshakes, then reads but never writes.
        let started = ContinuousClock.now
        try await RawPeer.connect(port: node.listenPort).run { session in
            var secure = try await session.handshake(identity: cluster.keys[2], expected: cluster.keys[0].publicKey)
            var keepalives = 0
            while let frame = await session.readFrame() {
                XCTAssertEqual(secure.opener.open(frame), [FrameKind.keepalive.rawValue])
                keepalives += 1
            }
            XCTAssertGreaterThanOrEqual(keepalives, 2, "the node kept sending keepalives while it waited")
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(390))
        // The peer sees the close before the node's event loop has counted it.
        await eventually("idle timeout counted") { node.statistics.closed(.idleTimeout) == 1 }
        XCTAssertEqual(node.statistics.closed(.idleTimeout), 1)

        // Meanwhile nodes 0 and 1 exchanged nothing but keepalives for longer than the idle
        // timeout, and stayed connected on their first connection.
        await eventually("raw peer gone") { node.connectedValidators == [1] }
        XCTAssertEqual(node.connectedValidators, [1])
        XCTAssertEqual(node.statistics.connectionsEstablished, establishedBefore + 1, "only the raw peer connected")
        XCTAssertEqual(cluster.inbox(0).all.count, 0, "keepalives are not delivered")
        await cluster.shutdown()
    }

    /// A peer that connects and says nothing is dropped when the handshake times out.
    func testSilentPeerIsDroppedAfterTheHandshakeTimeout() async throws {
        var limits = testLimits()
        limits.handshakeTimeoutMs = 200
        let cluster = try await Cluster(count: 1, limits: limits)
        let node = cluster.network(0)
        let started = ContinuousClock.now
        try await RawPeer.connect(port: node.listenPort).run { session in
            let received = await session.readFrame()
            let hello = try XCTUnwrap(received, "the node speaks first")
            XCTAssertNoThrow(try Hello.decode(hello))
            await session.expectClosed()
        }
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(190))
        await eventually("timeout counted") { node.statistics.closed(.handshakeTimeout) == 1 }
        await cluster.shutdown()
    }

    /// Unauthenticated connections are capped: beyond the cap a new one evicts the OLDEST
    /// pending handshake (it is not refused), and closing the silent ones frees the slots.
    func testPendingHandshakesAreBounded() async throws {
        var limits = testLimits()
        limits.maxPendingHandshakes = 2
        // The silent connections must be closed by their peers (what is counted below), not
        // by a handshake deadline, however slow the machine: both far beyond the test.
        limits.handshakeTimeoutMs = 30_000
        limits.handshakeFirstMessageTimeoutMs = limits.handshakeTimeoutMs
        let keys = (0..<2).map(validatorKey)
        let node = try await Cluster.start(index: 0, keys: keys, port: 0, addresses: [:], limits: limits, extra: [])
        // The node takes a slot when it sets a connection up, on that connection's event loop:
        // two connections opened back to back may be set up in either order. Each hello
        // (sent once the slot is taken) is read before the next connection is opened, so
        // "oldest" is the first one here.
        try await RawPeer.connect(port: node.listenPort).run { firstSession in
            let firstHello = await firstSession.readFrame()
            XCTAssertNotNil(firstHello)
            try await RawPeer.connect(port: node.listenPort).run { secondSession in
                let secondHello = await secondSession.readFrame()
                XCTAssertNotNil(secondHello)
                try await RawPeer.connect(port: node.listenPort).run { third in
                    let thirdHello = await third.readFrame()
                    XCTAssertNotNil(thirdHello, "the newcomer is served")
                    await firstSession.expectClosed(maxFrames: 0)
                    XCTAssertEqual(node.statistics.closed(.tooManyPendingHandshakes), 1, "the oldest was evicted")
                }
            }
        }
        await eventually("slots freed: \(CloseReason.allCases.map { "\($0.rawValue)=\(node.statistics.closed($0))" })") {
            node.statistics.closed(.closedDuringHandshake) == 2
        }
        let peer = try await Cluster.start(
            index: 1, keys: keys, port: 0, addresses: [0: PeerAddress(host: "127.0.0.1", port: node.listenPort)],
            limits: limits, extra: [])
        await eventually("a real peer connects") { node.connectedValidators == [1] }
        await peer.shutdown()
        await node.shutdown()
    }

    /// A validator that stops reading: the sender's memory for it stays within the outbound
    /// queue bound plus NIO's write-buffer high watermark; the oldest messages are dropped.
    func testPeerThatStopsReadingCannotGrowTheSendersMemory() async throws {
        var limits = testLimits()
        limits.maxMessageBytes = 64 * 1024
        limits.maxOutboundQueueMessages = 1000
        limits.maxOutboundQueueBytes = 1024 * 1024
        limits.writeBufferLowWatermarkBytes = 64 * 1024
        limits.writeBufferHighWatermarkBytes = 256 * 1024
        let cluster = try await Cluster(count: 2, limits: limits)
        await cluster.waitFullyConnected()
        await cluster.networks[1]!.shutdown()
        cluster.networks[1] = nil
        let node = cluster.network(0)
        await eventually("disconnect noticed") { node.connectedValidators.isEmpty }

        try await RawPeer.connect(port: node.listenPort).run { session in
            _ = try await session.handshake(identity: cluster.keys[1], expected: cluster.keys[0].publicKey)
            // From here on we read nothing: the stream stops pulling and TCP fills up.
            let message = [UInt8](repeating: 0x5A, count: 64 * 1024)
            await eventually("connected: \(node.statistics)") { node.connectedValidators == [1] }
            // 62.5 MiB offered over ~0.5 s, far more than the kernel's socket buffers hold,
            // with pauses so the node drains into the socket as fast as it can.
            for _ in 0..<50 {
                for _ in 0..<20 { node.send(to: 1, message) }
                try await Task.sleep(for: .milliseconds(10))
            }
            let (peers, statistics) = node.snapshot()
            let status = try XCTUnwrap(peers.first { $0.validatorIndex == 1 })
            XCTAssertLessThanOrEqual(status.queuedBytes, limits.maxOutboundQueueBytes)
            XCTAssertGreaterThan(status.queuedBytes, 0)
            let buffered = try await node.bufferedWritableBytes(validator: 1)
            XCTAssertLessThanOrEqual(buffered, limits.writeBufferHighWatermarkBytes + limits.maxFrameBodyBytes + 4)
            XCTAssertGreaterThan(statistics.dropped(.outboundQueueFull), 500)
            XCTAssertLessThan(statistics.messagesSent, 400, "the peer reads nothing: only socket buffers took any")
            XCTAssertEqual(statistics.messagesSent + statistics.dropped(.outboundQueueFull) + status.queuedMessages, 1000)
        }
        await cluster.shutdown()
    }

    /// A validator restarts on the same port: its peer redials, and what was queued while
    /// it was down is delivered.
    func testRestartedNodeIsReconnected() async throws {
        let cluster = try await Cluster(count: 2)
        await cluster.waitFullyConnected()
        let port = cluster.network(1).listenPort
        await cluster.networks[1]!.shutdown()
        cluster.networks[1] = nil
        await eventually("disconnect noticed") { cluster.network(0).connectedValidators.isEmpty }
        cluster.network(0).send(to: 1, [1, 1])
        try await Task.sleep(for: .milliseconds(300))  // a few failed redials
        XCTAssertGreaterThan(cluster.network(0).statistics.closed(.peerClosed), 0)
        await eventually("failed dials leave no channel behind") { cluster.network(0).openChannelCount == 0 }

        let restarted = try await Cluster.start(
            index: 1, keys: cluster.keys, port: port,
            addresses: [0: PeerAddress(host: "127.0.0.1", port: cluster.network(0).listenPort)],
            limits: cluster.limits, extra: [])
        cluster.networks[1] = restarted
        cluster.inboxes[1] = Inbox(restarted)
        await cluster.waitFullyConnected()
        await eventually("queued message delivered") { cluster.inbox(1).payloads(from: 0) == [[1, 1]] }
        restarted.send(to: 0, [2, 2])
        await eventually("reverse direction") { cluster.inbox(0).payloads(from: 1) == [[2, 2]] }
        await cluster.shutdown()
    }

    /// An allowed non-validator node (a syncing full node) may connect and be answered,
    /// but gets no broadcasts.
    func testAllowedNonValidatorCanConnectAndBeAnswered() async throws {
        let fullNode = SigningKey(seed: [UInt8](repeating: 0x77, count: 32))!
        let cluster = try await Cluster(count: 2, extraKeys: [fullNode.publicKey])
        await cluster.waitFullyConnected()
        let follower = try await PeerNetwork.start(
            configuration: NetworkConfiguration(
                listenHost: "127.0.0.1", listenPort: 0, chainID: testChainID, identity: fullNode,
                validators: cluster.keys.map(\.publicKey),
                validatorAddresses: [0: PeerAddress(host: "127.0.0.1", port: cluster.network(0).listenPort)],
                limits: testLimits()),
            logger: quietLogger())
        let followerInbox = Inbox(follower)
        await eventually("follower connected") { follower.connectedValidators == [0] }
        follower.send(to: 0, [3])
        await eventually("request arrives") { cluster.inbox(0).all.contains { $0.peer == fullNode.publicKey && $0.bytes == [3] } }
        XCTAssertNil(cluster.inbox(0).all.first { $0.peer == fullNode.publicKey }?.validatorIndex)
        XCTAssertEqual(cluster.network(0).broadcast([5]), 1, "broadcast goes to validators only")
        XCTAssertEqual(cluster.network(0).send(toPeer: fullNode.publicKey, [4]), .queued(droppedOldest: 0))
        await eventually("answer arrives") { followerInbox.payloads(from: 0) == [[4]] }
        await follower.shutdown()
        await cluster.shutdown()
    }
}
