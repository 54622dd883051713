import TallyCrypto
import TallyTypes

/// Which end of a TCP connection we are: the dialer is `crypto_kx`'s client.
enum ConnectionRole: UInt8, Sendable {
    case dialer = 0
    case listener = 1

    var keyExchangeRole: KeyExchangeKeyPair.Role { self == .dialer ? .client : .server }
    var opposite: ConnectionRole { self == .dialer ? .listener : .dialer }
}

/// What a side accepts as the other's identity.
enum PeerCheck: Sendable {
    /// A dialer must reach exactly the validator it meant to reach.
    case expect(PublicKey)
    /// A listener accepts any key in the allowed set (genesis validators plus
    /// configured non-validator full nodes).
    case allow(Set<PublicKey>)
}

/// Why a handshake failed. Each case is a counted close reason.
enum HandshakeError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case wrongProtocolVersion(UInt16)
    case wrongChain(String)
    case unknownPeer(PublicKey)
    case unexpectedPeer(expected: PublicKey, actual: PublicKey)
    case selfConnection
    case weakEphemeralKey
    case authenticationFailed(String)
    case rejectedByPeer(RejectionReason)

    var description: String {
        switch self {
        case .malformed(let why): return "malformed handshake: \(why)"
        case .wrongProtocolVersion(let version): return "peer speaks protocol version \(version), we speak \(Hello.protocolVersion)"
        case .wrongChain(let chain): return "peer is on chain '\(chain)'"
        case .unknownPeer(let key): return "peer key \(key) is not in the allowed set"
        case .unexpectedPeer(let expected, let actual): return "dialed \(expected) but reached \(actual)"
        case .selfConnection: return "connected to ourselves"
        case .weakEphemeralKey: return "peer's ephemeral key is of small order"
        case .authenticationFailed(let why): return "peer failed authentication: \(why)"
        case .rejectedByPeer(let reason): return "rejected by peer: \(reason)"
        }
    }

    /// What we tell the peer before closing, for failures decided on its hello. Failures
    /// of authentication get no answer: there is nothing useful to tell an impostor.
    var rejectionReason: RejectionReason? {
        switch self {
        case .wrongProtocolVersion: return .protocolVersion
        case .wrongChain: return .chain
        case .unknownPeer: return .unknownKey
        case .unexpectedPeer: return .unexpectedKey
        case .selfConnection: return .selfConnection
        default: return nil
        }
    }
}

/// The reason code in a rejection frame.
enum RejectionReason: UInt8, Sendable, CustomStringConvertible {
    case protocolVersion = 1
    case chain = 2
    case unknownKey = 3
    case unexpectedKey = 4
    case selfConnection = 5

    var description: String {
        switch self {
        case .protocolVersion: return "protocol version mismatch"
        case .chain: return "chain id mismatch"
        case .unknownKey: return "our key is not in its allowed set"
        case .unexpectedKey: return "we are not the validator it dialed"
        case .selfConnection: return "self connection"
        }
    }
}

/// The first frame each side sends, in the clear, as soon as the TCP connection is up:
/// ```
/// tag "tally/p2p-hello/v1"            (u32 length ‖ ASCII)
/// protocol_version: u16
/// chain_id: string                    (u32 length ‖ UTF-8, ≤ 64 bytes)
/// identity_key: 32                    (the node's Ed25519 public key)
/// ephemeral_key: 32                   (a fresh X25519 `crypto_kx` public key)
/// ```
struct Hello: Equatable {
    static let protocolVersion: UInt16 = 1

    var protocolVersion: UInt16
    var chainID: String
    var identityKey: PublicKey
    var ephemeralKey: [UInt8]

    var encoded: [UInt8] {
        var encoder = CanonicalEncoder(capacity: 128)
        encoder.tag(.peerHello)
        encoder.u16(protocolVersion)
        encoder.string(chainID)
        encoder.fixed(identityKey.bytes)
        encoder.fixed(ephemeralKey)
        return encoder.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(CanonicalDecodingError) -> Hello {
        var decoder = CanonicalDecoder(bytes)
        try decoder.tag(.peerHello)
        let version = try decoder.u16("protocol_version")
        let chain = try decoder.string(max: Limits.maxChainIDBytes, "chain_id")
        let identity = try decoder.publicKey("identity_key")
        let ephemeral = try decoder.fixed(KeyExchangeKeyPair.publicKeyByteCount, "ephemeral_key")
        try decoder.finish()
        return Hello(protocolVersion: version, chainID: chain, identityKey: identity, ephemeralKey: ephemeral)
    }
}

/// Sent in the clear instead of a hello's answer when we refuse the peer's hello:
/// `tag "tally/p2p-reject/v1" ‖ reason: u8`. Unauthenticated, so only informative.
enum Rejection {
    static func encoded(_ reason: RejectionReason) -> [UInt8] {
        var encoder = CanonicalEncoder()
        encoder.tag(.peerRejection)
        encoder.u8(reason.rawValue)
        return encoder.bytes
    }

    /// The reason if `bytes` is a rejection frame; nil if it is something else.
    static func decode(_ bytes: [UInt8]) -> RejectionReason? {
        var decoder = CanonicalDecoder(bytes)
        guard (try? decoder.tag(.peerRejection)) != nil, let raw = try? decoder.u8("reason"),
              (try? decoder.finish()) != nil
        else { return nil }
        return RejectionReason(rawValue: raw)
    }
}

/// The bytes each side signs to prove it owns its identity key on this connection.
/// ```
/// transcript = SHA-256(tag "tally/p2p-transcript/v1" ‖ chain_id: string
///                      ‖ dialer_hello: bytes ‖ listener_hello: bytes)        (bytes = u32 length ‖ raw)
/// signed     = tag "tally/p2p-auth/v1" ‖ signer_role: u8 (0 dialer, 1 listener) ‖ transcript: 32
/// ```
/// Both hellos carry both identity keys, both fresh ephemeral keys and the chain id, so a
/// signature is valid for this one connection only: a replay carries old ephemeral keys, a
/// man in the middle must substitute its own ephemeral key (changing the transcript), and
/// the role byte stops a peer from reflecting our own signature back at us.
enum HandshakeTranscript {
    static func hash(chainID: String, dialerHello: [UInt8], listenerHello: [UInt8]) -> Hash {
        var encoder = CanonicalEncoder(capacity: 256)
        encoder.tag(.peerTranscript)
        encoder.string(chainID)
        encoder.variable(dialerHello)
        encoder.variable(listenerHello)
        return SHA256.hash(encoder.bytes)
    }

    static func signingBytes(signer: ConnectionRole, transcript: Hash) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: 64)
        encoder.tag(.peerAuthentication)
        encoder.u8(signer.rawValue)
        encoder.fixed(transcript.bytes)
        return encoder.bytes
    }
}

/// One direction of an established session: XChaCha20-Poly1305 under that direction's
/// `crypto_kx` session key, nonce = `counter: u64 little-endian ‖ 16 zero bytes`. The
/// counter starts at 0 (the authentication frame) and goes up by one per frame, so a
/// dropped, replayed, reordered or reflected frame fails to open.
struct DirectionalCipher {
    private let aead: XChaCha20Poly1305
    private(set) var counter: UInt64 = 0

    init(key: SecretBytes) {
        aead = XChaCha20Poly1305(key: key)!
    }

    static func nonce(_ counter: UInt64) -> [UInt8] {
        var nonce = [UInt8](repeating: 0, count: XChaCha20Poly1305.nonceByteCount)
        withUnsafeBytes(of: counter.littleEndian) { nonce.replaceSubrange(0..<8, with: $0) }
        return nonce
    }

    mutating func seal<Bytes: ByteContainer>(_ plaintext: Bytes) -> [UInt8] {
        precondition(counter < UInt64.max, "nonce counter exhausted")
        defer { counter += 1 }
        return aead.seal(plaintext, nonce: DirectionalCipher.nonce(counter))
    }

    mutating func open<Bytes: ByteContainer>(_ ciphertext: Bytes) -> [UInt8]? {
        guard let plaintext = aead.open(ciphertext, nonce: DirectionalCipher.nonce(counter)) else { return nil }
        counter += 1
        return plaintext
    }
}

/// An authenticated session: the peer's identity and the two ciphers.
struct Session {
    let peerKey: PublicKey
    var sealer: DirectionalCipher
    var opener: DirectionalCipher
}

/// The handshake as a pure state machine (no I/O): the NIO handler feeds it frames and
/// writes what it returns. Sequence on each side:
/// 1. send our hello;
/// 2. on the peer's hello: check version, chain and identity, derive the session keys with
///    `crypto_kx` (dialer = client), send our signature over the transcript as the first
///    encrypted frame (counter 0);
/// 3. on the peer's first encrypted frame: open it and verify its signature → established.
struct Handshake {
    enum Step {
        /// Write this frame, keep waiting.
        case send([UInt8])
        /// The peer is authenticated.
        case established(Session)
    }

    private enum State {
        case awaitingHello
        case awaitingAuthentication(peerKey: PublicKey, transcript: Hash, sealer: DirectionalCipher, opener: DirectionalCipher)
        case finished
    }

    let role: ConnectionRole
    let chainID: String
    let hello: [UInt8]
    private let identity: SigningKey
    private let ephemeral: KeyExchangeKeyPair
    private let peerCheck: PeerCheck
    private var state = State.awaitingHello

    init(role: ConnectionRole, chainID: String, identity: SigningKey, ephemeral: KeyExchangeKeyPair, peerCheck: PeerCheck) {
        self.role = role
        self.chainID = chainID
        self.identity = identity
        self.ephemeral = ephemeral
        self.peerCheck = peerCheck
        hello = Hello(protocolVersion: Hello.protocolVersion, chainID: chainID, identityKey: identity.publicKey,
                      ephemeralKey: ephemeral.publicKey).encoded
    }

    mutating func receive(_ frame: [UInt8]) throws(HandshakeError) -> Step {
        switch state {
        case .awaitingHello:
            return try receiveHello(frame)
        case .awaitingAuthentication(let peerKey, let transcript, let sealer, var opener):
            state = .finished
            // The listener answers our hello before it judges ours, so a rejection can
            // arrive here. It is unauthenticated: all it can do is end the handshake.
            if let reason = Rejection.decode(frame) { throw .rejectedByPeer(reason) }
            guard let signatureBytes = opener.open(frame) else {
                throw .authenticationFailed("authentication frame does not decrypt")
            }
            let signed = HandshakeTranscript.signingBytes(signer: role.opposite, transcript: transcript)
            guard peerKey.isValidSignature(bytes: signatureBytes, for: signed) else {
                throw .authenticationFailed("bad transcript signature")
            }
            return .established(Session(peerKey: peerKey, sealer: sealer, opener: opener))
        case .finished:
            preconditionFailure("handshake fed after it finished")
        }
    }

    private mutating func receiveHello(_ frame: [UInt8]) throws(HandshakeError) -> Step {
        state = .finished
        if let reason = Rejection.decode(frame) { throw .rejectedByPeer(reason) }
        let peer: Hello
        do { peer = try Hello.decode(frame) } catch { throw .malformed(error.description) }
        guard peer.protocolVersion == Hello.protocolVersion else { throw .wrongProtocolVersion(peer.protocolVersion) }
        guard ChainID.same(peer.chainID, chainID) else { throw .wrongChain(peer.chainID) }
        guard peer.identityKey != identity.publicKey else { throw .selfConnection }
        switch peerCheck {
        case .expect(let expected):
            guard peer.identityKey == expected else { throw .unexpectedPeer(expected: expected, actual: peer.identityKey) }
        case .allow(let allowed):
            guard allowed.contains(peer.identityKey) else { throw .unknownPeer(peer.identityKey) }
        }
        guard let keys = ephemeral.sessionKeys(role: role.keyExchangeRole, peerPublicKey: peer.ephemeralKey) else {
            throw .weakEphemeralKey
        }
        let transcript = HandshakeTranscript.hash(
            chainID: chainID, dialerHello: role == .dialer ? hello : frame, listenerHello: role == .dialer ? frame : hello)
        var sealer = DirectionalCipher(key: keys.transmit)
        let signature = identity.sign(HandshakeTranscript.signingBytes(signer: role, transcript: transcript))
        let authentication = sealer.seal(signature.bytes)
        state = .awaitingAuthentication(
            peerKey: peer.identityKey, transcript: transcript, sealer: sealer, opener: DirectionalCipher(key: keys.receive))
        return .send(authentication)
    }
}
