import TallyCrypto

/// A signed transfer of `amount` from the account of `sender` to `recipient`,
/// paying `fee` to the block's proposer.
///
/// Canonical bytes (the transaction hash is SHA-256 of these):
/// ```
/// tag "tally/tx/v1" | chain_id: string | sender: 32 | recipient: 20
/// | amount: u64 | fee: u64 | nonce: u64 | signature: 64
/// ```
/// Signing bytes (what `signature` signs):
/// ```
/// tag "tally/tx-sign/v2" | genesis_hash: 32 | chain_id: string | sender: 32 | recipient: 20
/// | amount: u64 | fee: u64 | nonce: u64
/// ```
/// The signature commits to the hash of the chain's genesis, which the transaction
/// does not carry: any other chain, even one with the same chain id, has another
/// genesis hash, so a transaction signed for one chain never verifies on another.
/// `nonce` must be exactly the sender's next nonce (0 for a new account), which
/// makes every transaction single-use on its chain.
public struct Transaction: Hashable, Sendable, CanonicalCodable {
    public var chainID: String
    public var sender: PublicKey
    public var recipient: Address
    public var amount: UInt64
    public var fee: UInt64
    public var nonce: UInt64
    public var signature: Signature

    public init(
        chainID: String, sender: PublicKey, recipient: Address, amount: UInt64, fee: UInt64, nonce: UInt64,
        signature: Signature = .zero
    ) {
        self.chainID = chainID
        self.sender = sender
        self.recipient = recipient
        self.amount = amount
        self.fee = fee
        self.nonce = nonce
        self.signature = signature
    }

    /// Builds and signs a transfer for the chain of `genesisHash` (whose id is `chainID`).
    public static func signed(
        by key: SigningKey, chainID: String, genesisHash: Hash, to recipient: Address, amount: UInt64, fee: UInt64,
        nonce: UInt64
    ) -> Transaction {
        var transaction = Transaction(
            chainID: chainID, sender: key.publicKey, recipient: recipient, amount: amount, fee: fee, nonce: nonce)
        transaction.signature = key.sign(transaction.signingBytes(genesisHash: genesisHash))
        return transaction
    }

    public var senderAddress: Address { Address(publicKey: sender) }

    /// What `signature` signs on the chain whose genesis hashes to `genesisHash`.
    public func signingBytes(genesisHash: Hash) -> [UInt8] {
        var encoder = CanonicalEncoder(capacity: 192)
        encoder.tag(.transactionSigning)
        encoder.fixed(genesisHash.bytes)
        encodeBody(to: &encoder)
        return encoder.bytes
    }

    /// Checks the signature with libsodium, for the chain of `genesisHash`. Callers
    /// verify once (on admission or in the verifier) and the ledger trusts that.
    public func hasValidSignature(genesisHash: Hash) -> Bool {
        sender.isValidSignature(signature, for: signingBytes(genesisHash: genesisHash))
    }

    public var hash: Hash { SHA256.hash(canonicalBytes) }

    public func encode(to encoder: inout CanonicalEncoder) {
        encoder.tag(.transaction)
        encodeBody(to: &encoder)
        encoder.fixed(signature.bytes)
    }

    private func encodeBody(to encoder: inout CanonicalEncoder) {
        encoder.string(chainID)
        encoder.fixed(sender.bytes)
        encoder.fixed(recipient.bytes)
        encoder.u64(amount)
        encoder.u64(fee)
        encoder.u64(nonce)
    }

    public static func decode(from decoder: inout CanonicalDecoder) throws(CanonicalDecodingError) -> Transaction {
        try decoder.tag(.transaction)
        let chainID = try decoder.string(max: Limits.maxChainIDBytes, "tx.chain_id")
        let sender = try decoder.publicKey("tx.sender")
        let recipient = try decoder.address("tx.recipient")
        let amount = try decoder.u64("tx.amount")
        let fee = try decoder.u64("tx.fee")
        let nonce = try decoder.u64("tx.nonce")
        let signature = try decoder.signature("tx.signature")
        return Transaction(
            chainID: chainID, sender: sender, recipient: recipient, amount: amount, fee: fee, nonce: nonce,
            signature: signature)
    }

    /// Smallest possible encoding, for bounding list counts while decoding.
    static let minEncodedBytes = 4 + DomainTag.transaction.rawValue.utf8.count + 4 + 32 + 20 + 24 + 64
}
