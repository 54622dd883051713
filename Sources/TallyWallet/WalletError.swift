import ArgumentParser

/// The exit codes of the whole `tally` CLI (one table; `verify` uses 1 and 2 too).
/// Documented in every command's `--help` and in docs/WALLET.md.
public enum WalletExitCode: Int32, Sendable, CaseIterable {
    case ok = 0
    /// A commit certificate, inclusion proof or pinned genesis did not check out.
    case verificationFailed = 1
    /// A file given on the command line is missing, unreadable or malformed; or no
    /// genesis is pinned (the pin is a missing input: see `tally genesis trust`).
    case unusableInput = 2
    /// The node refused the transaction (its error code and message are printed).
    case transactionRejected = 3
    /// The node could not be reached, or answered with something unusable.
    case nodeUnreachable = 4
    /// The transaction did not commit before `--timeout`.
    case timedOut = 5
    /// Wrong passphrase, unknown key name, key already exists, deletion declined.
    case keyError = 6
    /// The node does not know the transaction hash or block height asked for.
    case notFound = 7
    /// Bad command line (ArgumentParser's code for validation errors).
    case usage = 64

    public var exitCode: ExitCode { ExitCode(rawValue) }
}

/// The help text every command shows under its discussion.
let exitCodeHelp = """
    Exit codes: 0 ok; 1 verification failed (certificate, inclusion proof or pinned \
    genesis); 2 unusable input file or no pin; 3 transaction rejected by the node; 4 node \
    unreachable or unusable answer; 5 timed out waiting for commit; 6 key error (wrong \
    passphrase, unknown key, key exists); 7 not found (unknown transaction or height); \
    64 usage.
    """

/// A failure a wallet command reports to its user: a message and the exit code.
/// `nodeCode` carries the node's error code (e.g. `insufficient_balance`) when the
/// node refused something; `details` are extra JSON fields (e.g. the hash that timed out).
struct WalletError: Error, CustomStringConvertible {
    var exitCode: WalletExitCode
    var message: String
    var nodeCode: String? = nil
    var details: [String: String] = [:]

    var description: String { message }

    static func usage(_ message: String) -> WalletError { WalletError(exitCode: .usage, message: message) }
    static func input(_ message: String) -> WalletError { WalletError(exitCode: .unusableInput, message: message) }
    static func key(_ message: String) -> WalletError { WalletError(exitCode: .keyError, message: message) }
    static func verification(_ message: String) -> WalletError {
        WalletError(exitCode: .verificationFailed, message: "verification failed: \(message)")
    }
}
