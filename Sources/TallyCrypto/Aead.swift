import CSodium

/// XChaCha20-Poly1305 (IETF construction, libsodium `crypto_aead_xchacha20poly1305_ietf_*`)
/// under one 32-byte key. Callers supply unique 24-byte nonces (e.g. a message counter).
public struct XChaCha20Poly1305: Sendable {
    public static let keyByteCount = Int(crypto_aead_xchacha20poly1305_ietf_KEYBYTES)
    public static let nonceByteCount = Int(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES)
    /// Bytes the authentication tag adds to every ciphertext.
    public static let tagByteCount = Int(crypto_aead_xchacha20poly1305_ietf_ABYTES)

    private let key: SecretBytes

    /// Nil unless the key is exactly 32 bytes.
    public init?(key: SecretBytes) {
        guard key.count == XChaCha20Poly1305.keyByteCount else { return nil }
        self.key = key
    }

    /// `plaintext` encrypted and authenticated: ciphertext ‖ 16-byte tag.
    public func seal<Plaintext: ByteContainer>(_ plaintext: Plaintext, nonce: [UInt8]) -> [UInt8] {
        precondition(nonce.count == XChaCha20Poly1305.nonceByteCount, "XChaCha20 nonce is 24 bytes")
        Sodium.ready()
        return plaintext.withNonNullBytes { message, length in
            var output = [UInt8](repeating: 0, count: length + XChaCha20Poly1305.tagByteCount)
            var outputLength: UInt64 = 0
            let result = key.withUnsafeBytes { keyBytes in
                crypto_aead_xchacha20poly1305_ietf_encrypt(
                    &output, &outputLength, message, UInt64(length), nil, 0, nil, nonce,
                    keyBytes.bindMemory(to: UInt8.self).baseAddress!)
            }
            precondition(result == 0 && Int(outputLength) == output.count, "xchacha20poly1305 encrypt failed")
            return output
        }
    }

    /// The plaintext, or nil when the ciphertext is shorter than a tag or fails
    /// authentication (wrong key, wrong nonce, or any bit changed).
    public func open<Ciphertext: ByteContainer>(_ ciphertext: Ciphertext, nonce: [UInt8]) -> [UInt8]? {
        precondition(nonce.count == XChaCha20Poly1305.nonceByteCount, "XChaCha20 nonce is 24 bytes")
        Sodium.ready()
        return ciphertext.withNonNullBytes { input, length -> [UInt8]? in
            guard length >= XChaCha20Poly1305.tagByteCount else { return nil }
            var output = [UInt8](repeating: 0, count: length - XChaCha20Poly1305.tagByteCount)
            var outputLength: UInt64 = 0
            let result = output.withUnsafeMutableBufferPointer { out in
                key.withUnsafeBytes { keyBytes in
                    // An empty plaintext gives a nil base address; libsodium writes nothing then.
                    crypto_aead_xchacha20poly1305_ietf_decrypt(
                        out.baseAddress ?? UnsafeMutablePointer(mutating: input), &outputLength, nil, input,
                        UInt64(length), nil, 0, nonce, keyBytes.bindMemory(to: UInt8.self).baseAddress!)
                }
            }
            guard result == 0 else { return nil }
            precondition(Int(outputLength) == output.count)
            return output
        }
    }
}
