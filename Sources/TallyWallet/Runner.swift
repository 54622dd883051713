import ArgumentParser
import Foundation
import TallyCrypto

/// `--node URL`: which node's API to use. Resolved as the option, then
/// `$TALLY_NODE`, then http://127.0.0.1:7700. The root `tally` command declares this
/// group too, so `tally --node URL send …` works as well as `tally send --node URL …`.
public struct NodeOptions: ParsableArguments {
    public static let defaultURL = "http://127.0.0.1:7700"

    @Option(name: .long, help: ArgumentHelp("The node's HTTP API (default: $TALLY_NODE, else \(NodeOptions.defaultURL)).", valueName: "URL"))
    public var node: String?

    public init() {}

    func client(_ context: WalletContext) throws(WalletError) -> NodeClient {
        let text = node ?? context.environment["TALLY_NODE"].flatMap { $0.isEmpty ? nil : $0 } ?? NodeOptions.defaultURL
        guard let url = URL(string: text), let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
              url.host != nil, url.query == nil
        else { throw .usage("node URL '\(text)' is not an http(s)://host:port URL") }
        var base = text
        while base.hasSuffix("/") { base.removeLast() }
        return NodeClient(baseURL: base)
    }
}

/// Runs a command body: a `WalletError` prints `error: …` on stderr (and, with
/// `--json`, one `{"error": …}` object on stdout) and exits with its code.
enum Runner {
    static func run(json: Bool, _ body: (WalletContext) async throws -> Void) async throws {
        let context = WalletContext.current
        do { try await body(context) } catch let error as WalletError {
            context.error("error: \(error.message)")
            if json {
                var failure: [String: Any] = ["exit_code": String(error.exitCode.rawValue), "message": error.message]
                if let code = error.nodeCode { failure["code"] = code }
                var object: [String: Any] = ["error": failure]
                for (key, value) in error.details { object[key] = value }
                emit(object, context)
            }
            throw error.exitCode.exitCode
        }
    }

    /// One JSON object on stdout: sorted keys, so the output is stable.
    static func emit(_ object: [String: Any], _ context: WalletContext) {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        context.output(String(decoding: data, as: UTF8.self))
    }
}

/// The Argon2id cost of new key files: MODERATE, or the minimum when
/// `TALLY_INSECURE_FAST_KDF=1` (for tests only: such files are cheap to brute-force).
func keyFileCost(_ context: WalletContext) -> KeyFileCost {
    context.environment["TALLY_INSECURE_FAST_KDF"] == "1" ? .light : .moderate
}

typealias KeyFileCost = KeyFile.Cost

extension Optional where Wrapped == String {
    /// JSON `null` for a missing value.
    var jsonValue: Any { self ?? NSNull() }
}
