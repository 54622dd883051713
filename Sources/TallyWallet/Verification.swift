import TallyCrypto
import TallyTypes

/// Checks what a node says against the trusted genesis, so a confirmation never
/// rests on trusting the node: the block's commit certificate must carry a quorum
/// of valid COMMIT signatures of the genesis validators over this chain id, height
/// and block hash; the block's transactions must hash to its `transactions_root`;
/// and a transaction's inclusion proof must lead from its hash to that root.
enum Verification {
    /// Checks a certified block at `height`; returns the number of signers.
    @discardableResult
    static func check(_ certified: CertifiedBlock, height: UInt64, genesis: Genesis) throws(WalletError) -> Int {
        let header = certified.block.header
        guard header.height == height else {
            throw .verification("asked for the block at height \(height), the node sent height \(header.height)")
        }
        do {
            try certified.certificate.verify(
                height: height, blockHash: certified.block.hash, validators: genesis.validators, chainID: genesis.chainID)
        } catch { throw .verification("block \(height): \(error)") }
        guard Block.transactionsRoot(certified.block.transactions) == header.transactionsRoot else {
            throw .verification("block \(height): its transactions do not hash to its transactions_root")
        }
        return certified.certificate.signatures.count
    }

    /// Checks that `hash` is the transaction at `index` of the (already checked)
    /// block, by the node's inclusion proof against the header's transactions root.
    static func checkInclusion(of hash: Hash, index: Int, proof: InclusionProof, in certified: CertifiedBlock)
        throws(WalletError)
    {
        let header = certified.block.header
        guard proof.index == UInt64(index), proof.leafCount == UInt64(header.transactionCount) else {
            throw .verification("the inclusion proof is for leaf \(proof.index) of \(proof.leafCount), "
                + "not \(index) of \(header.transactionCount)")
        }
        guard proof.verify(item: hash, root: header.transactionsRoot) else {
            throw .verification("the inclusion proof of \(hash.hex) does not lead to block \(header.height)'s transactions_root")
        }
        guard index < certified.block.transactions.count, certified.block.transactions[index].hash == hash else {
            throw .verification("block \(header.height) holds another transaction at index \(index)")
        }
    }

    static func decode(_ bytes: [UInt8], node: NodeClient) throws(WalletError) -> CertifiedBlock {
        do { return try CertifiedBlock(canonicalBytes: bytes) } catch {
            throw .verification("the node at \(node.baseURL) sent a block that does not decode: \(error)")
        }
    }
}
