import Foundation
import Hummingbird
import HummingbirdTesting
import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyNode

/// The block explorer the node serves: the embedded files are explorer/'s, served with
/// their security and cache headers, and the page's own checks agree with the Swift code.
final class ExplorerTests: XCTestCase {
    static var repository: URL { OpenAPIDocumentTests.repository }

    func file(_ name: String) throws -> String {
        try String(contentsOf: Self.repository.appendingPathComponent("explorer/\(name)"), encoding: .utf8)
    }

    func testEmbeddedAssetsAreTheFiles() throws {
        XCTAssertEqual(ExplorerAssets.html.body, try file("index.html"), "explorer/ changed: run tools/gen-explorer")
        XCTAssertEqual(ExplorerAssets.css.body, try file("explorer.css"), "explorer/ changed: run tools/gen-explorer")
        XCTAssertEqual(ExplorerAssets.javascript.body, try file("explorer.js"), "explorer/ changed: run tools/gen-explorer")
    }

    /// Data from the network reaches the DOM only as text: the script never parses HTML,
    /// and the page has no inline script or handler (the CSP would block them anyway).
    func testPageHasNoInlineScriptAndTheScriptRendersNoHTML() {
        let script = ExplorerAssets.javascript.body
        for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "DOMParser",
                     "createContextualFragment", "javascript:"] {
            XCTAssertFalse(script.contains(sink), sink)
        }
        let html = ExplorerAssets.html.body
        XCTAssertEqual(html.components(separatedBy: "<script").count - 1, 1)
        XCTAssertTrue(html.contains("<script src=\"/explorer/explorer.js\"></script>"))
        XCTAssertNil(html.range(of: #"\son[a-z]+\s*="#, options: .regularExpression), "inline event handler")
        XCTAssertFalse(html.contains("style="))
        XCTAssertFalse(html.contains("http://") || html.contains("https://"), "no other origin")
    }

    func testExplorerIsServedWithContentTypeCSPAndRevalidation() async throws {
        let genesis = try Genesis.load(path: Self.repository.appendingPathComponent("genesis/devnet.json").path)
        let api = HTTPAPI(node: LedgerOnlyNode(genesis: genesis), maxBodyBytes: 1 << 20, maxBatchTransactions: 3, metricsText: { "" })
        try await Application(router: api.router()).test(.router) { client in
            for (path, asset) in [("/", ExplorerAssets.html), ("/explorer", ExplorerAssets.html),
                                  ("/explorer/explorer.css", ExplorerAssets.css), ("/explorer/explorer.js", ExplorerAssets.javascript)] {
                try await client.execute(uri: path, method: .get) { response in
                    XCTAssertEqual(response.status, .ok, path)
                    XCTAssertEqual(response.headers[.contentType], asset.contentType, path)
                    XCTAssertEqual(String(buffer: response.body), asset.body, path)
                    XCTAssertEqual(response.headers[.contentSecurityPolicy], HTTPAPI.explorerContentSecurityPolicy, path)
                    XCTAssertEqual(response.headers[.xContentTypeOptions], "nosniff", path)
                    XCTAssertEqual(response.headers[.cacheControl], "no-cache", path)
                    XCTAssertEqual(response.headers[.eTag], asset.etag, path)
                }
                try await client.execute(uri: path, method: .get, headers: [.ifNoneMatch: "\"other\", \(asset.etag)"]) { response in
                    XCTAssertEqual(response.status, .notModified, path)
                    XCTAssertEqual(response.body.readableBytes, 0, path)
                }
                try await client.execute(uri: path, method: .get, headers: [.ifNoneMatch: "\"stale\""]) { response in
                    XCTAssertEqual(response.status, .ok, path)
                }
            }
        }
        XCTAssertTrue(HTTPAPI.explorerContentSecurityPolicy.contains("script-src 'self';"))
        XCTAssertFalse(HTTPAPI.explorerContentSecurityPolicy.contains("unsafe"))
    }

    /// The page's Merkle proof, header hash and certificate checks (explorer.js, run by
    /// Node.js's WebCrypto) against blocks, certificates and proofs made by the Swift
    /// code: the genuine ones pass, each tampered one fails.
    func testScriptChecksAgreeWithTheSwiftCode() throws {
        let validatorKeys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("explorer-v\($0)".utf8)).bytes)! }
        let sender = SigningKey(seed: SHA256.hash(Array("explorer-sender".utf8)).bytes)!
        let genesis = try Genesis(
            chainID: "tally-explorer", genesisTimeMs: 0,
            validators: validatorKeys.enumerated().map {
                Validator(name: "v\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:\(7800 + $0.offset)")
            },
            accounts: [GenesisAccount(address: Address(publicKey: sender.publicKey), balance: 1_000)])
        let transactions = (0..<5).map {
            Transaction.signed(by: sender, chainID: genesis.chainID, genesisHash: genesis.hash,
                               to: Address(bytes: [UInt8](repeating: UInt8($0), count: 20))!, amount: 1, fee: 1, nonce: UInt64($0))
        }
        let header = BlockHeader(
            height: 7, view: 3, timestampMs: 1_700_000_000_123, previousHash: SHA256.hash([1]),
            transactionsRoot: Block.transactionsRoot(transactions), stateRoot: SHA256.hash([2]), proposer: 2,
            transactionCount: UInt32(transactions.count))
        let block = Block(header: header, transactions: transactions)
        let target = VoteTarget(phase: .commit, view: 4, height: 7, blockHash: block.hash)
        let signatures = [0, 2, 3].map {
            CommitCertificate.Entry(validatorIndex: UInt32($0), signature: validatorKeys[$0].sign(target.signingBytes(chainID: genesis.chainID)))
        }
        let certified = CertifiedBlock(
            block: block, certificate: CommitCertificate(view: 4, height: 7, blockHash: block.hash, signatures: signatures))
        XCTAssertNoThrow(try certified.certificate.verify(height: 7, blockHash: block.hash, validators: genesis.validators,
                                                           chainID: genesis.chainID))
        let proofs = (0..<transactions.count).map { Merkle.proof(transactions.map(\.hash), index: $0)! }
        let vector: [String: Any] = [
            "genesis": ["chainID": genesis.chainID, "validators": genesis.validators.validators.map {
                ["name": $0.name, "public_key": $0.publicKey.hex, "address": $0.networkAddress]
            }],
            "block": HTTPAPI.blockJSON(certified),
            "signing_bytes": Hex.encode(target.signingBytes(chainID: genesis.chainID)),
            "proofs": proofs.enumerated().map { index, proof in
                ["hash": transactions[index].hash.hex, "index": String(proof.index), "leaf_count": String(proof.leafCount),
                 "path": proof.path.map(\.hex)]
            },
        ]
        let results = try runScript(vector: vector)
        XCTAssertEqual(results["header_hash"] as? String, block.hash.hex)
        XCTAssertEqual(results["signing_bytes"] as? String, Hex.encode(target.signingBytes(chainID: genesis.chainID)))
        XCTAssertEqual(results["roots"] as? [String], Array(repeating: header.transactionsRoot.hex, count: transactions.count))
        XCTAssertEqual(results["wrong_leaf_root"] as? String == header.transactionsRoot.hex, false)
        XCTAssertEqual(results["genuine"] as? String, "ok 3 of 4")
        XCTAssertEqual(results["tally"] as? [String], ["42.000001", "0.000000", "18446744073709.551615"], "as Amount.format")
        for tampered in ["signature", "state_root", "below_quorum", "unknown_signer", "order", "chain_id"] {
            XCTAssertEqual((results[tampered] as? String)?.hasPrefix("failed"), true, "\(tampered): \(results[tampered] ?? "none")")
        }
    }

    /// The page pins the genesis it first loads (localStorage); a node that later serves
    /// another genesis gets the mismatch banner, and the checks keep using the pinned
    /// validators, never the served ones. Without storage the page pins for itself only.
    func testGenesisMismatchShowsTheBannerAndKeepsThePinnedValidators() throws {
        func genesis(_ chainID: String, _ seed: String) throws -> String {
            let keys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("\(seed)-\($0)".utf8)).bytes)! }
            let genesis = try Genesis(
                chainID: chainID, genesisTimeMs: 0,
                validators: keys.enumerated().map {
                    Validator(name: "\(seed)\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:\(7800 + $0.offset)")
                },
                accounts: [])
            return String(decoding: genesis.jsonData(), as: UTF8.self)
        }
        let pinned = try genesis("tally-pinned", "p"), served = try genesis("tally-other", "o")
        let results = try runScript(vector: ["pinned": pinned, "served": served], script: Self.genesisScript)
        let first = try XCTUnwrap(results["first"] as? [String: Any])
        XCTAssertEqual(first["chain"] as? String, "tally-pinned")
        XCTAssertEqual(first["banner"] as? Bool, false, "first load: pinned, no banner")
        XCTAssertEqual(first["stored"] as? Bool, true, "the served genesis is pinned byte for byte")
        let same = try XCTUnwrap(results["same"] as? [String: Any])
        XCTAssertEqual(same["banner"] as? Bool, false, "the same genesis again: no banner")
        let other = try XCTUnwrap(results["other"] as? [String: Any])
        XCTAssertEqual(other["banner"] as? Bool, true, "another genesis: the banner")
        XCTAssertEqual((other["message"] as? String)?.contains("differs from the one this page pinned"), true, "\(other)")
        XCTAssertEqual(other["chain"] as? String, "tally-pinned", "checks use the pinned genesis")
        XCTAssertEqual(other["first_validator"] as? String, first["first_validator"] as? String)
        XCTAssertEqual(other["stored"] as? Bool, true, "the pin is not replaced by what a node serves")
        let unstored = try XCTUnwrap(results["no_storage"] as? [String: Any])
        XCTAssertEqual(unstored["banner"] as? Bool, false)
        XCTAssertEqual(unstored["chain"] as? String, "tally-other", "without storage: the served genesis, for this page only")
    }

    static let genesisScript = #"""
        const explorer = require(process.argv[2]);
        const vector = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8"));
        const PIN_KEY = "tally-explorer-genesis";
        // The browser's pieces loadGenesis uses: fetch, localStorage, the banner element.
        let servedGenesis = vector.pinned;
        globalThis.fetch = async (path) => {
          if (path !== "/genesis") throw new Error("unexpected fetch " + path);
          return { status: 200, text: async () => servedGenesis };
        };
        let store = new Map(), storageWorks = true;
        globalThis.localStorage = {
          getItem: (k) => { if (!storageWorks) throw new Error("no storage"); return store.has(k) ? store.get(k) : null; },
          setItem: (k, v) => { if (!storageWorks) throw new Error("no storage"); store.set(k, String(v)); },
        };
        let banner;
        globalThis.document = { getElementById: (id) => { if (id !== "banner") throw new Error(id); return banner; } };
        const load = async () => {
          banner = { hidden: true, textContent: "" };
          const g = await explorer.loadGenesis();
          return { chain: g.chainID, first_validator: g.validators[0].public_key, banner: !banner.hidden,
                   message: banner.textContent, stored: store.get(PIN_KEY) === vector.pinned };
        };
        (async () => {
          const out = {};
          out.first = await load();
          out.same = await load();
          servedGenesis = vector.served;
          out.other = await load();
          store = new Map(); storageWorks = false;
          out.no_storage = await load();
          process.stdout.write(JSON.stringify(out));
        })().catch((e) => { console.error(e); process.exit(1); });
        """#

    /// Runs explorer.js under Node.js with `vector`; returns what the script printed.
    func runScript(vector: [String: Any], script checkScript: String = ExplorerTests.checkScript) throws -> [String: Any] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("explorer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let vectorFile = directory.appendingPathComponent("vector.json")
        try JSONSerialization.data(withJSONObject: vector).write(to: vectorFile)
        let script = directory.appendingPathComponent("check.js")
        try checkScript.write(to: script, atomically: true, encoding: .utf8)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["node", script.path, Self.repository.appendingPathComponent("explorer/explorer.js").path, vectorFile.path]
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        do { try process.run() } catch { throw XCTSkip("Node.js is not available to run explorer.js: \(error)") }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        let errorText = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        if process.terminationStatus == 127 { throw XCTSkip("Node.js is not installed (`node` not found)") }
        XCTAssertEqual(process.terminationStatus, 0, errorText)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], errorText)
    }

    static let checkScript = #"""
        // Node.js 18 (Debian 12) has WebCrypto only as a module; later ones also as a global.
        if (!globalThis.crypto || !globalThis.crypto.subtle) globalThis.crypto = require("node:crypto").webcrypto;
        const explorer = require(process.argv[2]);
        const vector = JSON.parse(require("fs").readFileSync(process.argv[3], "utf8"));
        const copy = (x) => JSON.parse(JSON.stringify(x));
        const verdict = async (block, genesis) => {
          const r = await explorer.checkCertificate(block, genesis || vector.genesis);
          return r.ok ? "ok " + r.signers + " of " + r.of : "failed: " + r.reason;
        };
        (async () => {
          const out = {};
          explorer.checkBlock(vector.block);
          out.header_hash = await explorer.headerHash(vector.block);
          const c = vector.block.certificate;
          out.signing_bytes = explorer.toHex(explorer.commitSigningBytes(vector.genesis.chainID, c.view, c.height, c.block_hash));
          out.roots = [];
          for (const p of vector.proofs) {
            const root = await explorer.merkleRootFromProof(explorer.fromHex(p.hash), BigInt(p.index), BigInt(p.leaf_count), p.path.map(explorer.fromHex));
            out.roots.push(root ? explorer.toHex(root) : null);
          }
          const p0 = vector.proofs[0], p1 = vector.proofs[1];
          const wrong = await explorer.merkleRootFromProof(explorer.fromHex(p1.hash), BigInt(p0.index), BigInt(p0.leaf_count), p0.path.map(explorer.fromHex));
          out.wrong_leaf_root = wrong ? explorer.toHex(wrong) : null;
          out.genuine = await verdict(vector.block);
          let b = copy(vector.block);
          b.certificate.signatures[1].signature = b.certificate.signatures[1].signature.replace(/^./, (d) => d === "0" ? "1" : "0");
          out.signature = await verdict(b);
          b = copy(vector.block); b.state_root = "00".repeat(32); out.state_root = await verdict(b);
          b = copy(vector.block); b.certificate.signatures = b.certificate.signatures.slice(0, 2); out.below_quorum = await verdict(b);
          b = copy(vector.block); b.certificate.signatures[2].validator_index = 9; out.unknown_signer = await verdict(b);
          b = copy(vector.block); b.certificate.signatures.reverse(); out.order = await verdict(b);
          const other = copy(vector.genesis); other.chainID = "another-chain"; out.chain_id = await verdict(vector.block, other);
          out.tally = [explorer.tally("42000001"), explorer.tally("0"), explorer.tally("18446744073709551615")];
          process.stdout.write(JSON.stringify(out));
        })().catch((e) => { console.error(e); process.exit(1); });
        """#
}
