import Foundation
import TallyCrypto
import TallyTypes

/// The chain the wallet trusts: the genesis whose validators sign commit
/// certificates. `--genesis FILE` names it for one run; otherwise the pin,
/// `$TALLY_HOME/genesis.json`, holds it. Only `tally genesis trust` writes the pin:
/// no command pins what a node serves and trusts it in the same run, because a lying
/// first node could then certify anything with validators of its own (issue 14).
/// Without either, commands that verify refuse to run (exit 2) and say how to pin.
/// Every contact compares the node's `/genesis` hash with the trusted one; a
/// different chain is exit 1.
enum ChainPin {
    static let fileName = "genesis.json"

    struct Trusted {
        var genesis: Genesis
        /// The file it came from: `--genesis FILE` or the pin.
        var source: String
    }

    static func pinnedPath(_ context: WalletContext) -> String {
        (context.home as NSString).appendingPathComponent(fileName)
    }

    /// `--genesis FILE` if given, else the pin; nil when neither exists. Reads no node.
    static func trusted(override file: String?, context: WalletContext) throws(WalletError) -> Trusted? {
        if let file { return Trusted(genesis: try load(file), source: file) }
        let pinnedPath = pinnedPath(context)
        guard FileManager.default.fileExists(atPath: pinnedPath) else { return nil }
        return Trusted(genesis: try load(pinnedPath), source: pinnedPath)
    }

    /// The genesis `node` serves, and its bytes as served.
    static func served(by node: NodeClient) async throws(WalletError) -> (genesis: Genesis, bytes: [UInt8]) {
        let answer = try await node.get("/genesis", maxBytes: NodeClient.maxGenesisBytes)
        guard answer.status == 200 else { throw node.unusable("/genesis answered HTTP \(answer.status)") }
        do { return (try Genesis(json: Data(answer.body)), answer.body) } catch { throw node.unusable("/genesis: \(error)") }
    }

    /// The trusted genesis, after checking that `node` serves the same chain. With
    /// nothing trusted it fails (exit 2) and pins nothing.
    static func genesis(node: NodeClient, override file: String?, context: WalletContext = .current) async throws(WalletError)
        -> Genesis
    {
        guard let trusted = try trusted(override: file, context: context) else {
            // Best effort: name the hash the node serves, so the user can check it.
            let served = try? await served(by: node).genesis
            throw notPinned(node: node, served: served, context: context)
        }
        let served = try await served(by: node).genesis
        try check(served: served, from: node, against: trusted, context: context)
        return trusted.genesis
    }

    static func check(served: Genesis, from node: NodeClient, against trusted: Trusted, context: WalletContext)
        throws(WalletError)
    {
        guard served.hash != trusted.genesis.hash else { return }
        var error = WalletError.verification(
            "the node at \(node.baseURL) serves genesis \(served.hash.hex) of chain '\(served.chainID)', "
                + "but the trusted genesis (\(trusted.source)) is \(trusted.genesis.hash.hex) of chain "
                + "'\(trusted.genesis.chainID)'. To use another chain, pass --genesis FILE or "
                + "`tally genesis trust --replace`.")
        error.details = ["genesis_hash": served.hash.hex, "trusted_genesis_hash": trusted.genesis.hash.hex]
        throw error
    }

    static func notPinned(node: NodeClient, served: Genesis?, context: WalletContext) -> WalletError {
        var message = "no genesis is pinned in \(pinnedPath(context)), so nothing the node says can be verified. "
        var details: [String: String] = [:]
        if let served {
            message += "The node at \(node.baseURL) serves genesis \(served.hash.hex) of chain '\(served.chainID)'; "
                + "check that hash with the chain's operators, then run `tally genesis trust --hash \(served.hash.hex)` "
            details["genesis_hash"] = served.hash.hex
        } else {
            message += "Run `tally genesis trust --hash HASH` with the genesis hash the chain's operators publish "
        }
        message += "(or `tally genesis trust --genesis FILE`, or pass --genesis FILE)."
        var error = WalletError.input(message)
        error.details = details
        return error
    }

    /// A genesis file given on the command line or the pin, read with a bound on its size.
    static func load(_ path: String) throws(WalletError) -> Genesis {
        try parse(try read(path), path: path)
    }

    static func read(_ path: String) throws(WalletError) -> Data {
        guard let data = BoundedRead.contents(of: path, maxBytes: NodeClient.maxGenesisBytes) else {
            throw .input("cannot read the genesis file \(path)")
        }
        guard data.count <= NodeClient.maxGenesisBytes else {
            throw .input("\(path) is over \(NodeClient.maxGenesisBytes) bytes; it is not a genesis file")
        }
        return data
    }

    static func parse(_ data: Data, path: String) throws(WalletError) -> Genesis {
        do { return try Genesis(json: data) } catch { throw .input("\(path): \(error)") }
    }

    /// Writes the pin (only `tally genesis trust` calls this).
    static func pin(_ bytes: Data, context: WalletContext) throws(WalletError) {
        let path = pinnedPath(context)
        do {
            try FileManager.default.createDirectory(
                atPath: context.home, withIntermediateDirectories: true,
                attributes: [.posixPermissions: Int(KeyStore.directoryMode)])
            try AtomicFile.write(bytes, to: path, mode: 0o644)
        } catch { throw .input("cannot pin the genesis at \(path): \(error)") }
    }
}
