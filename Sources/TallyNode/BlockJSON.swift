import TallyCrypto
import TallyTypes

/// The JSON body of `GET /blocks/{height}` and `/blocks/latest`, written directly.
///
/// The bytes are exactly what `JSONSerialization` with sorted keys makes of
/// `HTTPAPI.blockJSON` (BlockJSONTests pins the two together): every value is hex,
/// decimal digits or bech32m and every key is fixed, so nothing needs escaping and the
/// key order is written out below. The generic serialiser sorts each dictionary's keys
/// with ICU collation and bridges every value to an Objective-C object: in the hostile
/// run (`tools/chaos --faults hostile --attacks hammer`, release) a node answering
/// about 400 block reads a second spent half a core in it, and honest commit latency
/// tripled on the shared cores. The text goes into the response's buffer as is
/// (`ByteBuffer(string:)`), with no intermediate byte array.
enum BlockJSON {
    static func text(_ certified: CertifiedBlock) -> String {
        let header = certified.block.header
        let certificate = certified.certificate
        var out = ""
        out.reserveCapacity(900 + certified.block.transactions.count * 330)
        out += "{\"certificate\":{\"block_hash\":\"\(certificate.blockHash.hex)\",\"height\":\"\(certificate.height)\",\"signatures\":["
        for (position, entry) in certificate.signatures.enumerated() {
            if position > 0 { out += "," }
            out += "{\"signature\":\"\(entry.signature.hex)\",\"validator_index\":\(entry.validatorIndex)}"
        }
        out += "],\"view\":\"\(certificate.view)\"},\"hash\":\"\(header.hash.hex)\",\"height\":\"\(header.height)\""
        out += ",\"previous_hash\":\"\(header.previousHash.hex)\",\"proposer\":\(header.proposer)"
        out += ",\"state_root\":\"\(header.stateRoot.hex)\",\"timestamp_ms\":\"\(header.timestampMs)\",\"transactions\":["
        for (position, transaction) in certified.block.transactions.enumerated() {
            if position > 0 { out += "," }
            appendTransaction(transaction, to: &out)
        }
        out += "],\"transactions_root\":\"\(header.transactionsRoot.hex)\",\"view\":\"\(header.view)\"}"
        return out
    }

    /// `GET /txs/{hash}` for a committed transaction: `HTTPAPI.committedJSON`'s object
    /// (the hammer asked for these as often as for blocks, at a fifth of the node's CPU).
    static func committedText(hash: Hash, height: UInt64, index: Int, blockHash: Hash, proof: InclusionProof) -> String {
        var out = "{\"block_hash\":\"\(blockHash.hex)\",\"hash\":\"\(hash.hex)\",\"height\":\"\(height)\",\"index\":\(index)"
        out += ",\"proof\":{\"index\":\"\(proof.index)\",\"leaf_count\":\"\(proof.leafCount)\",\"path\":["
        for (position, step) in proof.path.enumerated() {
            if position > 0 { out += "," }
            out += "\"\(step.hex)\""
        }
        out += "]},\"status\":\"committed\"}"
        return out
    }

    /// `HTTPAPI.transactionJSON`'s object, keys in sorted order.
    static func appendTransaction(_ transaction: Transaction, to out: inout String) {
        out += "{\"amount\":\"\(transaction.amount)\",\"fee\":\"\(transaction.fee)\",\"from\":\"\(transaction.senderAddress.bech32m)\""
        out += ",\"hash\":\"\(transaction.hash.hex)\",\"nonce\":\"\(transaction.nonce)\",\"to\":\"\(transaction.recipient.bech32m)\"}"
    }
}
