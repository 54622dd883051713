import TallyCrypto
import TallyTypes

/// A stored block's canonical bytes with the byte range of each transaction, so the
/// verifier hashes transactions and rebuilds their signing bytes from the bytes it
/// read instead of encoding every transaction twice more.
struct EncodedBlock: Sendable {
    let payload: [UInt8]
    let transactionRanges: [Range<Int>]

    /// Smallest transaction encoding (as `Transaction`'s own bound, which is internal
    /// to TallyTypes): tag, chain id length, sender, recipient, three u64s, signature.
    static let minTransactionBytes = 4 + DomainTag.transaction.rawValue.utf8.count + 4 + 32 + 20 + 24 + 64

    static let transactionTagBytes = encodedTag(.transaction)
    static let signingTagBytes = encodedTag(.transactionSigning)

    static func encodedTag(_ tag: DomainTag) -> [UInt8] {
        var encoder = CanonicalEncoder()
        encoder.tag(tag)
        return encoder.bytes
    }

    /// Decodes exactly as `CertifiedBlock(canonicalBytes:)` does (same checks, same
    /// errors), recording where each transaction's bytes are.
    static func decode(_ payload: [UInt8]) throws(CanonicalDecodingError) -> (CertifiedBlock, EncodedBlock) {
        var decoder = CanonicalDecoder(payload)
        try decoder.tag(.block)
        let header = try BlockHeader.decode(from: &decoder)
        let count = try decoder.count(max: Limits.maxBlockTransactions, minItemBytes: minTransactionBytes, "block.transactions")
        guard count == Int(header.transactionCount) else {
            throw .invalid(field: "block.transactions", reason: "count \(count) differs from header's \(header.transactionCount)")
        }
        var transactions: [Transaction] = []
        var ranges: [Range<Int>] = []
        transactions.reserveCapacity(count)
        ranges.reserveCapacity(count)
        for _ in 0..<count {
            let start = decoder.offset
            transactions.append(try Transaction.decode(from: &decoder))
            ranges.append(start..<decoder.offset)
        }
        let certificate = try CommitCertificate.decode(from: &decoder)
        try decoder.finish()
        return (
            CertifiedBlock(block: Block(header: header, transactions: transactions), certificate: certificate),
            EncodedBlock(payload: payload, transactionRanges: ranges)
        )
    }

    /// A transaction's signing bytes from its canonical bytes: the two layouts share
    /// the body and differ in the tag, the genesis hash after the signing tag and the
    /// trailing signature (see `Transaction`).
    static func signingBytes(payload: [UInt8], transaction range: Range<Int>, genesisHash: Hash) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(signingTagBytes.count + Hash.byteCount + range.count)
        bytes.append(contentsOf: signingTagBytes)
        bytes.append(contentsOf: genesisHash.bytes)
        bytes.append(contentsOf: payload[(range.lowerBound + transactionTagBytes.count)..<(range.upperBound - Signature.byteCount)])
        return bytes
    }
}
