import TallyCrypto
import XCTest

final class KeyExchangeAeadTests: XCTestCase {
    /// crypto_kx: the client's transmit key is the server's receive key and vice versa,
    /// and the two directions differ.
    func testSessionKeysMatchCrosswise() throws {
        let client = KeyExchangeKeyPair.generate()
        let server = KeyExchangeKeyPair.generate()
        let clientKeys = try XCTUnwrap(client.sessionKeys(role: .client, peerPublicKey: server.publicKey))
        let serverKeys = try XCTUnwrap(server.sessionKeys(role: .server, peerPublicKey: client.publicKey))
        XCTAssertEqual(clientKeys.transmit.copyBytes(), serverKeys.receive.copyBytes())
        XCTAssertEqual(clientKeys.receive.copyBytes(), serverKeys.transmit.copyBytes())
        XCTAssertNotEqual(clientKeys.transmit.copyBytes(), clientKeys.receive.copyBytes())
        XCTAssertEqual(clientKeys.transmit.count, 32)
    }

    func testSeededKeyPairIsDeterministicAndSmallOrderPeerKeysAreRefused() throws {
        let seed = [UInt8](repeating: 3, count: 32)
        XCTAssertEqual(KeyExchangeKeyPair(seed: seed)?.publicKey, KeyExchangeKeyPair(seed: seed)?.publicKey)
        XCTAssertNil(KeyExchangeKeyPair(seed: [1, 2]))
        let pair = KeyExchangeKeyPair.generate()
        XCTAssertNil(pair.sessionKeys(role: .client, peerPublicKey: [UInt8](repeating: 0, count: 32)))
        XCTAssertNil(pair.sessionKeys(role: .client, peerPublicKey: [UInt8](repeating: 0, count: 31)))
    }

    /// XChaCha20-Poly1305 IETF: draft-irtf-cfrg-xchacha-03 §A.3.1 test vector, with AD, is
    /// not expressible here (we use no associated data), so check the properties instead:
    /// round trip, tag size, and rejection of any change of key, nonce or ciphertext.
    func testSealOpenAndRejection() throws {
        let key = SecretBytes([UInt8](repeating: 9, count: 32))
        let aead = try XCTUnwrap(XChaCha20Poly1305(key: key))
        let nonce = [UInt8](repeating: 1, count: 24)
        let sealed = aead.seal([1, 2, 3, 4], nonce: nonce)
        XCTAssertEqual(sealed.count, 4 + XChaCha20Poly1305.tagByteCount)
        XCTAssertEqual(aead.open(sealed, nonce: nonce), [1, 2, 3, 4])
        XCTAssertEqual(aead.open(aead.seal([UInt8](), nonce: nonce), nonce: nonce), [])
        var tampered = sealed
        tampered[2] ^= 1
        XCTAssertNil(aead.open(tampered, nonce: nonce))
        XCTAssertNil(aead.open(sealed, nonce: [UInt8](repeating: 2, count: 24)))
        XCTAssertNil(XChaCha20Poly1305(key: SecretBytes([UInt8](repeating: 8, count: 32)))!.open(sealed, nonce: nonce))
        XCTAssertNil(aead.open([UInt8](repeating: 0, count: 15), nonce: nonce))
        XCTAssertNil(XChaCha20Poly1305(key: SecretBytes([1])))
    }
}
