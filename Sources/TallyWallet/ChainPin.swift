import Foundation
import TallyCrypto
import TallyTypes

/// The chain the wallet trusts: the genesis whose validators sign commit
/// certificates. `--genesis FILE` names it; otherwise `$TALLY_HOME/genesis.json`
/// holds it. With neither, the first node contacted supplies it and it is pinned
/// (trust on first use, with a note on stderr). Every later contact compares the
/// node's `/genesis` hash with the pinned one; a different chain is exit 1.
enum ChainPin {
    static let fileName = "genesis.json"

    static func pinnedPath(_ context: WalletContext) -> String {
        (context.home as NSString).appendingPathComponent(fileName)
    }

    /// The trusted genesis, after checking that `node` serves the same chain.
    static func genesis(node: NodeClient, override file: String?, context: WalletContext = .current) async throws(WalletError)
        -> Genesis
    {
        let pinnedPath = pinnedPath(context)
        let trusted: (genesis: Genesis, source: String)?
        if let file {
            trusted = (try load(file), file)
        } else if FileManager.default.fileExists(atPath: pinnedPath) {
            trusted = (try load(pinnedPath), pinnedPath)
        } else {
            trusted = nil
        }
        let answer = try await node.get("/genesis", maxBytes: NodeClient.maxGenesisBytes)
        guard answer.status == 200 else { throw node.unusable("/genesis answered HTTP \(answer.status)") }
        let served: Genesis
        do { served = try Genesis(json: Data(answer.body)) } catch { throw node.unusable("/genesis: \(error)") }

        if let trusted {
            guard served.hash == trusted.genesis.hash else {
                throw WalletError.verification(
                    "the node at \(node.baseURL) serves genesis \(served.hash.hex) of chain '\(served.chainID)', "
                        + "but the trusted genesis (\(trusted.source)) is \(trusted.genesis.hash.hex) of chain "
                        + "'\(trusted.genesis.chainID)'. To use another chain, pass --genesis FILE or remove \(pinnedPath).")
            }
            return trusted.genesis
        }
        try pin(answer.body, at: pinnedPath, context: context)
        context.error(
            "note: pinned the genesis of chain '\(served.chainID)' (hash \(served.hash.hex)) from \(node.baseURL) "
                + "to \(pinnedPath); nodes of any other chain will be refused. Check the hash with the chain's operators.")
        return served
    }

    static func load(_ path: String) throws(WalletError) -> Genesis {
        guard FileManager.default.fileExists(atPath: path) else { throw .input("cannot read the genesis file \(path)") }
        do { return try Genesis.load(path: path) } catch { throw .input("\(path): \(error)") }
    }

    private static func pin(_ bytes: [UInt8], at path: String, context: WalletContext) throws(WalletError) {
        do {
            try FileManager.default.createDirectory(
                atPath: context.home, withIntermediateDirectories: true,
                attributes: [.posixPermissions: Int(KeyStore.directoryMode)])
            try AtomicFile.write(Data(bytes), to: path, mode: 0o644)
        } catch { throw .input("cannot pin the genesis at \(path): \(error)") }
    }
}
