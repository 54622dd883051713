import ArgumentParser
import Foundation
import TallyCrypto
import TallyTypes

/// Options every command that talks to a node has.
struct ChainOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Trust this local genesis file for this run instead of the pinned $TALLY_HOME/genesis.json (pins nothing).",
        valueName: "FILE"))
    var genesis: String?
}

/// A node whose chain has been checked against the trusted genesis.
struct NodeSession {
    let node: NodeClient
    let genesis: Genesis

    static func open(_ options: NodeOptions, _ chain: ChainOptions, _ context: WalletContext) async throws(WalletError)
        -> NodeSession
    {
        let node = try options.client(context)
        return NodeSession(node: node, genesis: try await ChainPin.genesis(node: node, override: chain.genesis, context: context))
    }

    /// Balance and committed nonce, and the next nonce counting the node's pending
    /// transactions of the account (the committed one where the node does not say).
    func account(_ address: Address) async throws(WalletError) -> (balance: UInt64, nonce: UInt64, pendingNonce: UInt64) {
        let object = try node.object(try await node.get("/accounts/\(address.bech32m)"), "/accounts")
        guard object["address"] as? String == address.bech32m,
              let balance = (object["balance"] as? String).flatMap(UInt64.init),
              let nonce = (object["nonce"] as? String).flatMap(UInt64.init)
        else { throw node.unusable("/accounts/\(address.bech32m) lacks address, balance or nonce") }
        let pending = (object["pending_nonce"] as? String).flatMap(UInt64.init) ?? nonce
        return (balance, nonce, max(pending, nonce))
    }

    enum TransactionState {
        case pending
        case unknown
        case committed(height: UInt64, index: Int, blockHash: Hash, proof: InclusionProof)
    }

    func transactionState(_ hash: Hash, timeoutSeconds: Int64 = NodeClient.requestTimeoutSeconds) async throws(WalletError)
        -> TransactionState
    {
        let answer = try await node.get("/txs/\(hash.hex)", timeoutSeconds: timeoutSeconds)
        guard let object = answer.json, let status = object["status"] as? String else {
            throw node.unusable("/txs/\(hash.hex) answered HTTP \(answer.status) without a status")
        }
        switch status {
        case "pending": return .pending
        case "unknown": return .unknown
        case "committed":
            guard let height = (object["height"] as? String).flatMap(UInt64.init),
                  let index = object["index"] as? Int, index >= 0,
                  let blockHash = (object["block_hash"] as? String).flatMap(Hash.init(hex:)),
                  let proofObject = object["proof"] as? [String: Any],
                  let proofIndex = (proofObject["index"] as? String).flatMap(UInt64.init),
                  let leafCount = (proofObject["leaf_count"] as? String).flatMap(UInt64.init),
                  let pathTexts = proofObject["path"] as? [String], pathTexts.count <= 64
            else { throw node.unusable("/txs/\(hash.hex): malformed committed status") }
            let path = pathTexts.compactMap(Hash.init(hex:))
            guard path.count == pathTexts.count else { throw node.unusable("/txs/\(hash.hex): malformed proof path") }
            return .committed(height: height, index: index, blockHash: blockHash,
                              proof: InclusionProof(index: proofIndex, leafCount: leafCount, path: path))
        default:
            throw node.unusable("/txs/\(hash.hex): unknown status '\(status)'")
        }
    }

    /// The certified block at `height` (nil: the latest), its certificate checked
    /// against the trusted genesis. Returns it and the number of signers.
    func verifiedBlock(_ height: UInt64?) async throws(WalletError) -> (block: CertifiedBlock, signers: Int) {
        let route = height.map { "/blocks/\($0)" } ?? "/blocks/latest"
        let answer = try await node.get(route, accept: "application/octet-stream", maxBytes: NodeClient.maxBlockBytes)
        guard answer.status == 200 else {
            let error = answer.nodeError
            throw WalletError(exitCode: answer.status == 404 ? .notFound : .nodeUnreachable,
                              message: "\(route): \(error.map { $0.message } ?? "HTTP \(answer.status)")", nodeCode: error?.code)
        }
        let certified = try Verification.decode(answer.body, node: node)
        let signers = try Verification.check(certified, height: height ?? certified.block.height, genesis: genesis)
        return (certified, signers)
    }

    /// Fetches the block a committed transaction is in and checks the certificate
    /// and the inclusion proof; returns the block and its number of signers.
    func verifyCommitted(_ hash: Hash, height: UInt64, index: Int, blockHash: Hash, proof: InclusionProof)
        async throws(WalletError) -> (block: CertifiedBlock, signers: Int)
    {
        let (certified, signers) = try await verifiedBlock(height)
        guard certified.block.hash == blockHash else {
            throw .verification("the node said block \(blockHash.hex) at height \(height), but the certified block there is \(certified.block.hash.hex)")
        }
        try Verification.checkInclusion(of: hash, index: index, proof: proof, in: certified)
        return (certified, signers)
    }

    func parseAddress(_ text: String) throws(WalletError) -> Address {
        do { return try Address(bech32m: text) } catch { throw .usage("'\(text)' is not a Tally address: \(error)") }
    }
}
