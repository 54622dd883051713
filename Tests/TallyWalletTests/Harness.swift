import ArgumentParser
import Foundation
import TallyCrypto
import TallyTypes
import XCTest
@testable import TallyWallet

/// The root command as `tally` declares it: the wallet's subcommands and the
/// `--node` group, so `tally --node URL send …` parses as in tools/testnet.
struct TestRoot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "tally", subcommands: WalletCommands.all)
    @OptionGroup var connection: NodeOptions
}

/// stdin as a test scripts it: lines, secrets (what a no-echo prompt would read)
/// and whether it is a terminal. Records the prompts shown.
final class ScriptedInput: WalletInput, @unchecked Sendable {
    let isTerminal: Bool
    private let lock = NSLock()
    private var lines: [String]
    private var secrets: [String]
    private(set) var prompts: [String] = []

    init(terminal: Bool = false, lines: [String] = [], secrets: [String] = []) {
        isTerminal = terminal
        self.lines = lines
        self.secrets = secrets
    }

    func readLine() -> String? {
        lock.withLock { lines.isEmpty ? nil : lines.removeFirst() }
    }

    func readSecret(prompt: String) -> String? {
        lock.withLock {
            prompts.append(prompt)
            return secrets.isEmpty ? nil : secrets.removeFirst()
        }
    }
}

final class Captured: @unchecked Sendable {
    private let lock = NSLock()
    private var outText = ""
    private var errorText = ""
    func out(_ text: String) { lock.withLock { outText += text } }
    func err(_ text: String) { lock.withLock { errorText += text } }
    var stdout: String { lock.withLock { outText } }
    var stderr: String { lock.withLock { errorText } }
}

struct Outcome {
    var exitCode: Int32
    var stdout: String
    var stderr: String

    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(stdout.utf8))) as? [String: Any] ?? [:]
    }

    var errorJSON: [String: Any] { json["error"] as? [String: Any] ?? [:] }
}

/// A wallet home in a fresh temporary directory, and the commands run in-process
/// against it.
final class WalletHarness: @unchecked Sendable {
    let home: String
    var environment: [String: String]

    init() {
        home = NSTemporaryDirectory() + "tally-wallet-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        environment = ["TALLY_HOME": home, "HOME": home, "TALLY_INSECURE_FAST_KDF": "1"]
    }

    deinit { try? FileManager.default.removeItem(atPath: home) }

    func file(_ name: String, _ contents: String) -> String {
        let path = (home as NSString).appendingPathComponent(name)
        _ = FileManager.default.createFile(atPath: path, contents: Data(contents.utf8))
        return path
    }

    func run(_ arguments: [String], input: ScriptedInput = ScriptedInput(), environment extra: [String: String] = [:]) async -> Outcome {
        let captured = Captured()
        let context = WalletContext(
            environment: environment.merging(extra) { $1 }, writeOutput: { captured.out($0) },
            writeError: { captured.err($0) }, input: input)
        let code: Int32 = await WalletContext.$current.withValue(context) {
            do {
                var command = try TestRoot.parseAsRoot(arguments)
                if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
                return 0
            } catch {
                let code = TestRoot.exitCode(for: error).rawValue
                let message = TestRoot.fullMessage(for: error)
                if !message.isEmpty { captured.err(message + "\n") }
                return code
            }
        }
        return Outcome(exitCode: code, stdout: captured.stdout, stderr: captured.stderr)
    }
}

/// A 4-validator test chain with a funded faucet key.
struct TestChain {
    static let initialFaucetBalance: UInt64 = 1_000_000 * Amount.baseUnitsPerTally
    let validatorKeys: [SigningKey]
    let faucet: SigningKey
    /// A second funded account, for blocks with more than one sender.
    let other: SigningKey
    let genesis: Genesis

    init(chainID: String = "tally-wallet-test", salt: String = "") {
        validatorKeys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("wallet-validator-\(salt)\($0)".utf8)).bytes)! }
        faucet = SigningKey(seed: SHA256.hash(Array("wallet-faucet-\(salt)".utf8)).bytes)!
        other = SigningKey(seed: SHA256.hash(Array("wallet-other-\(salt)".utf8)).bytes)!
        genesis = try! Genesis(
            chainID: chainID, genesisTimeMs: 0,
            validators: validatorKeys.enumerated().map {
                Validator(name: "validator\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:\(7800 + $0.offset)")
            },
            accounts: [GenesisAccount(address: Address(publicKey: faucet.publicKey), balance: TestChain.initialFaucetBalance),
                       GenesisAccount(address: Address(publicKey: other.publicKey), balance: TestChain.initialFaucetBalance)])
    }

    func node() -> CommittingNode { CommittingNode(genesis: genesis, validatorKeys: validatorKeys) }
}
