import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyNetwork

final class HandshakeTests: XCTestCase {
    private let dialerKey = validatorKey(0)
    private let listenerKey = validatorKey(1)

    private func pair(
        dialerCheck: PeerCheck? = nil, listenerCheck: PeerCheck? = nil,
        dialerEphemeral: KeyExchangeKeyPair = .generate(), listenerEphemeral: KeyExchangeKeyPair = .generate()
    ) -> (Handshake, Handshake) {
        let dialer = Handshake(
            role: .dialer, chainID: testChainID, identity: dialerKey, ephemeral: dialerEphemeral,
            peerCheck: dialerCheck ?? .expect(listenerKey.publicKey))
        let listener = Handshake(
            role: .listener, chainID: testChainID, identity: listenerKey, ephemeral: listenerEphemeral,
            peerCheck: listenerCheck ?? .allow([dialerKey.publicKey]))
        return (dialer, listener)
    }

    private func send(_ step: Handshake.Step) throws -> [UInt8] {
        guard case .send(let frame) = step else {
            XCTFail("expected a frame to send")
            throw HandshakeError.malformed("no frame to send")
        }
        return frame
    }

    private func session(_ step: Handshake.Step) throws -> Session {
        guard case .established(let session) = step else {
            XCTFail("expected an established session")
            throw HandshakeError.malformed("not established")
        }
        return session
    }

    func testBothSidesAuthenticateAndExchangeMessagesBothWays() throws {
        var (dialer, listener) = pair()
        let dialerAuth = try send(try dialer.receive(listener.hello))
        let listenerAuth = try send(try listener.receive(dialer.hello))
        var dialerSession = try session(try dialer.receive(listenerAuth))
        var listenerSession = try session(try listener.receive(dialerAuth))
        XCTAssertEqual(dialerSession.peerKey, listenerKey.publicKey)
        XCTAssertEqual(listenerSession.peerKey, dialerKey.publicKey)

        for round in 0..<3 {
            let message: [UInt8] = Array("round \(round)".utf8)
            XCTAssertEqual(listenerSession.opener.open(dialerSession.sealer.seal(message)), message)
            XCTAssertEqual(dialerSession.opener.open(listenerSession.sealer.seal(message)), message)
        }
    }

    /// The listener answers the hello first and rejects afterwards, so the dialer may
    /// already be waiting for the authentication frame: it still reads the rejection.
    func testRejectionAfterTheHelloIsReadAsRejection() throws {
        var (dialer, listener) = pair()
        _ = try send(try dialer.receive(listener.hello))
        XCTAssertThrowsError(try dialer.receive(Rejection.encoded(.unknownKey))) { error in
            XCTAssertEqual(error as? HandshakeError, .rejectedByPeer(.unknownKey))
        }
    }

    func testListenerRejectsKeyOutsideAllowedSetWithRejectionFrame() throws {
        var (_, listener) = pair(listenerCheck: .allow([validatorKey(2).publicKey]))
        let dialer = Handshake(role: .dialer, chainID: testChainID, identity: dialerKey, ephemeral: .generate(),
                               peerCheck: .expect(listenerKey.publicKey))
        XCTAssertThrowsError(try listener.receive(dialer.hello)) { error in
            XCTAssertEqual(error as? HandshakeError, .unknownPeer(dialerKey.publicKey))
            XCTAssertEqual((error as? HandshakeError)?.rejectionReason, .unknownKey)
        }
        // The dialer reads the rejection frame as a clear reason.
        var rejected = Handshake(role: .dialer, chainID: testChainID, identity: dialerKey, ephemeral: .generate(),
                                 peerCheck: .expect(listenerKey.publicKey))
        XCTAssertThrowsError(try rejected.receive(Rejection.encoded(.unknownKey))) { error in
            XCTAssertEqual(error as? HandshakeError, .rejectedByPeer(.unknownKey))
        }
    }

    func testDialerRejectsAPeerThatIsNotTheValidatorItDialed() throws {
        var (dialer, listener) = pair(dialerCheck: .expect(validatorKey(3).publicKey))
        XCTAssertThrowsError(try dialer.receive(listener.hello)) { error in
            XCTAssertEqual(error as? HandshakeError, .unexpectedPeer(expected: validatorKey(3).publicKey, actual: listenerKey.publicKey))
        }
    }

    func testWrongChainWrongVersionAndSelfAreRejected() throws {
        var (_, listener) = pair()
        let otherChain = Handshake(role: .dialer, chainID: "other-chain", identity: dialerKey, ephemeral: .generate(),
                                   peerCheck: .expect(listenerKey.publicKey))
        XCTAssertThrowsError(try listener.receive(otherChain.hello)) {
            XCTAssertEqual($0 as? HandshakeError, .wrongChain("other-chain"))
        }
        var (_, listener2) = pair()
        var hello = try Hello.decode(pair().0.hello)
        hello.protocolVersion = 2
        XCTAssertThrowsError(try listener2.receive(hello.encoded)) {
            XCTAssertEqual($0 as? HandshakeError, .wrongProtocolVersion(2))
        }
        var (_, listener3) = pair(listenerCheck: .allow([listenerKey.publicKey]))
        let mirror = Handshake(role: .dialer, chainID: testChainID, identity: listenerKey, ephemeral: .generate(),
                               peerCheck: .expect(listenerKey.publicKey))
        XCTAssertThrowsError(try listener3.receive(mirror.hello)) { XCTAssertEqual($0 as? HandshakeError, .selfConnection) }
    }

    func testMalformedHelloAndSmallOrderEphemeralKeyAreRejected() throws {
        var (_, listener) = pair()
        XCTAssertThrowsError(try listener.receive([1, 2, 3])) {
            guard case .malformed = $0 as? HandshakeError else { return XCTFail("\($0)") }
        }
        var (_, listener2) = pair()
        var trailing = pair().0.hello
        trailing.append(0)
        XCTAssertThrowsError(try listener2.receive(trailing)) {
            guard case .malformed = $0 as? HandshakeError else { return XCTFail("\($0)") }
        }
        var (_, listener3) = pair()
        let weak = Hello(protocolVersion: Hello.protocolVersion, chainID: testChainID, identityKey: dialerKey.publicKey,
                         ephemeralKey: [UInt8](repeating: 0, count: 32))
        XCTAssertThrowsError(try listener3.receive(weak.encoded)) { XCTAssertEqual($0 as? HandshakeError, .weakEphemeralKey) }
    }

    /// Someone who knows validator 0's public key but not its secret sends a hello claiming
    /// it; the transcript signature it produces with another key fails.
    func testImpostorWithoutTheSecretKeyFailsAuthentication() throws {
        let impostor = SigningKey.generate()
        let ephemeral = KeyExchangeKeyPair.generate()
        let forgedHello = Hello(protocolVersion: Hello.protocolVersion, chainID: testChainID,
                                identityKey: dialerKey.publicKey, ephemeralKey: ephemeral.publicKey).encoded
        var (_, listener) = pair()
        _ = try send(try listener.receive(forgedHello))
        let keys = try XCTUnwrap(ephemeral.sessionKeys(role: .client, peerPublicKey: try Hello.decode(listener.hello).ephemeralKey))
        let transcript = HandshakeTranscript.hash(chainID: testChainID, dialerHello: forgedHello, listenerHello: listener.hello)
        var sealer = DirectionalCipher(key: keys.transmit)
        let forged = sealer.seal(impostor.sign(HandshakeTranscript.signingBytes(signer: .dialer, transcript: transcript)).bytes)
        XCTAssertThrowsError(try listener.receive(forged)) {
            XCTAssertEqual($0 as? HandshakeError, .authenticationFailed("bad transcript signature"))
        }
    }

    /// A man in the middle relays the hellos but swaps in its own ephemeral keys: the
    /// honest signatures then cover a different transcript and both sides refuse.
    func testManInTheMiddleSwappingEphemeralKeysIsDetected() throws {
        var (dialer, listener) = pair()
        let mitmToListener = KeyExchangeKeyPair.generate()
        var swapped = try Hello.decode(dialer.hello)
        swapped.ephemeralKey = mitmToListener.publicKey
        let listenerAuth = try send(try listener.receive(swapped.encoded))
        // The MITM can decrypt the listener's auth (it shares those keys) and re-encrypt it
        // for the dialer, but the signature covers the swapped hello.
        let listenerEphemeral = try Hello.decode(listener.hello).ephemeralKey
        let listenerSideKeys = try XCTUnwrap(mitmToListener.sessionKeys(role: .client, peerPublicKey: listenerEphemeral))
        var fromListener = DirectionalCipher(key: listenerSideKeys.receive)
        let listenerSignature = try XCTUnwrap(fromListener.open(listenerAuth))

        let mitmToDialer = KeyExchangeKeyPair.generate()
        var swappedBack = try Hello.decode(listener.hello)
        swappedBack.ephemeralKey = mitmToDialer.publicKey
        _ = try send(try dialer.receive(swappedBack.encoded))
        let dialerEphemeral = try Hello.decode(dialer.hello).ephemeralKey
        let dialerSideKeys = try XCTUnwrap(mitmToDialer.sessionKeys(role: .server, peerPublicKey: dialerEphemeral))
        var toDialer = DirectionalCipher(key: dialerSideKeys.transmit)
        XCTAssertThrowsError(try dialer.receive(toDialer.seal(listenerSignature))) {
            XCTAssertEqual($0 as? HandshakeError, .authenticationFailed("bad transcript signature"))
        }
    }

    /// An authentication frame recorded from one connection does not pass on another:
    /// the new connection has fresh ephemeral keys, so it does not even decrypt.
    func testReplayedAuthenticationFromAnEarlierConnectionFails() throws {
        let dialerEphemeral = KeyExchangeKeyPair(seed: [UInt8](repeating: 7, count: 32))!
        var (dialer1, listener1) = pair(dialerEphemeral: dialerEphemeral)
        _ = try send(try listener1.receive(dialer1.hello))
        let recordedAuth = try send(try dialer1.receive(listener1.hello))

        // The attacker replays the dialer's hello (same ephemeral public key) and its auth.
        var (_, listener2) = pair()
        _ = try send(try listener2.receive(dialer1.hello))
        XCTAssertThrowsError(try listener2.receive(recordedAuth)) {
            XCTAssertEqual($0 as? HandshakeError, .authenticationFailed("authentication frame does not decrypt"))
        }
    }

    func testSessionFramesCannotBeTamperedReplayedOrReflected() throws {
        var (dialer, listener) = pair()
        let dialerAuth = try send(try dialer.receive(listener.hello))
        let listenerAuth = try send(try listener.receive(dialer.hello))
        var dialerSession = try session(try dialer.receive(listenerAuth))
        var listenerSession = try session(try listener.receive(dialerAuth))

        let first = dialerSession.sealer.seal([1, 2, 3])
        var tampered = first
        tampered[0] ^= 1
        var opener = listenerSession.opener
        XCTAssertNil(opener.open(tampered))
        XCTAssertEqual(listenerSession.opener.open(first), [1, 2, 3])
        XCTAssertNil(listenerSession.opener.open(first), "a replayed frame uses a spent counter")
        let reply = listenerSession.sealer.seal([9])
        XCTAssertNil(listenerSession.opener.open(reply), "our own frame reflected back does not open")
        XCTAssertEqual(dialerSession.opener.open(reply), [9])
    }

    /// Golden bytes: the documented hello layout, transcript, signed bytes, nonce layout and
    /// first encrypted frame, from fixed keys. A change here breaks every deployed peer.
    func testGoldenHandshakeBytes() throws {
        let dialerEphemeral = try XCTUnwrap(KeyExchangeKeyPair(seed: [UInt8](repeating: 0xA1, count: 32)))
        let listenerEphemeral = try XCTUnwrap(KeyExchangeKeyPair(seed: [UInt8](repeating: 0xB2, count: 32)))
        var (dialer, listener) = pair(dialerEphemeral: dialerEphemeral, listenerEphemeral: listenerEphemeral)

        // The hello, built field by field from the doc comment.
        var expected: [UInt8] = [18, 0, 0, 0] + Array("tally/p2p-hello/v1".utf8)
        expected += [1, 0]
        expected += [10, 0, 0, 0] + Array(testChainID.utf8)
        expected += dialerKey.publicKey.bytes + dialerEphemeral.publicKey
        XCTAssertEqual(dialer.hello, expected)
        XCTAssertEqual(Hex.encode(dialer.hello), Golden.dialerHello)
        XCTAssertEqual(try Hello.decode(dialer.hello).identityKey, dialerKey.publicKey)

        let transcript = HandshakeTranscript.hash(chainID: testChainID, dialerHello: dialer.hello, listenerHello: listener.hello)
        var transcriptInput: [UInt8] = [23, 0, 0, 0] + Array("tally/p2p-transcript/v1".utf8)
        transcriptInput += [10, 0, 0, 0] + Array(testChainID.utf8)
        transcriptInput += [UInt8(dialer.hello.count), 0, 0, 0] + dialer.hello
        transcriptInput += [UInt8(listener.hello.count), 0, 0, 0] + listener.hello
        XCTAssertEqual(transcript, SHA256.hash(transcriptInput))
        XCTAssertEqual(transcript.hex, Golden.transcript)

        let signed = HandshakeTranscript.signingBytes(signer: .listener, transcript: transcript)
        XCTAssertEqual(signed, [17, 0, 0, 0] + Array("tally/p2p-auth/v1".utf8) + [1] + transcript.bytes)

        XCTAssertEqual(DirectionalCipher.nonce(0x0102), [0x02, 0x01] + [UInt8](repeating: 0, count: 22))
        // Ed25519 signatures are deterministic, so the listener's first encrypted frame is too.
        let listenerAuth = try send(try listener.receive(dialer.hello))
        XCTAssertEqual(listenerAuth.count, 64 + 16)
        XCTAssertEqual(Hex.encode(listenerAuth), Golden.listenerAuthFrame)
        _ = try send(try dialer.receive(listener.hello))
        XCTAssertEqual(try session(try dialer.receive(listenerAuth)).peerKey, listenerKey.publicKey)
    }

    private enum Golden {
        static let dialerHello =
            "1200000074616c6c792f7032702d68656c6c6f2f763101000a00000074616c6c792d74657374"
            + "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c"
            + "a493bfe285ca79c30588e4ce8c98a165dd799dfe110ba485fd3bdebb6faf5d5c"
        static let transcript = "4562051339c3907d88ab74a0a34e483ffff572b89be30e4b6a2b717001e69011"
        static let listenerAuthFrame =
            "9c069c567a7303b2a76c6682dfc1a904a569ba97536c10db31cc3ba1f5d499d1"
            + "496abab0a6b744b37be0dc7ff4d806e39e14384aaeae1a32f417939976c09935"
            + "a21e0f8952b9236a0c6fd38a1279c73f"
    }
}
