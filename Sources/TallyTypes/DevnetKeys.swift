import TallyCrypto

/// The devnet's well-known keys. **INSECURE: anyone can derive them.** They exist so
/// that the devnet genesis (`genesis/devnet.json`), the chain generator, tests and
/// benchmarks agree on validator and account keys without shipping secrets. Never
/// fund or run a real network with them.
///
/// - validator `i`'s seed: `SHA-256("tally-devnet-validator-" ‖ decimal(i))`
/// - account `i`'s seed:   `SHA-256("tally-devnet-account-" ‖ decimal(i))`
///
/// Each seed is 32 bytes: an Ed25519 secret key in RFC 8032's sense.
public enum DevnetKeys {
    public static let chainID = "tally-devnet"
    /// n = 3f+1 with f = 1.
    public static let validatorCount = 4

    public static func validatorSeed(_ index: Int) -> [UInt8] {
        precondition(index >= 0, "negative devnet validator index")
        return SHA256.hash(Array("tally-devnet-validator-\(index)".utf8)).bytes
    }

    public static func accountSeed(_ index: Int) -> [UInt8] {
        precondition(index >= 0, "negative devnet account index")
        return SHA256.hash(Array("tally-devnet-account-\(index)".utf8)).bytes
    }

    public static func validatorKey(_ index: Int) -> SigningKey { SigningKey(seed: validatorSeed(index))! }
    public static func accountKey(_ index: Int) -> SigningKey { SigningKey(seed: accountSeed(index))! }

    /// The devnet validators as genesis lists them: `validator-i` at `127.0.0.1:(26600 + i)`.
    public static func validators(count: Int = validatorCount) -> [Validator] {
        (0..<count).map {
            Validator(name: "validator-\($0)", publicKey: validatorKey($0).publicKey, networkAddress: "127.0.0.1:\(26600 + $0)")
        }
    }
}
