import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where a command reads secrets and lines from. The process uses the real stdin and
/// terminal; tests inject a script.
public protocol WalletInput: Sendable {
    /// True when stdin is a terminal (then secrets are prompted for without echo).
    var isTerminal: Bool { get }
    /// One line from stdin without its newline; nil at end of input.
    func readLine() -> String?
    /// Prompts on the terminal (stderr) and reads a line without echo.
    func readSecret(prompt: String) -> String?
}

/// Everything a wallet command touches outside its arguments: environment variables,
/// stdout, stderr and stdin. A task-local, so tests run commands in-process and
/// concurrently, each with its own.
public struct WalletContext: Sendable {
    public var environment: [String: String]
    public var writeOutput: @Sendable (String) -> Void
    public var writeError: @Sendable (String) -> Void
    public var input: any WalletInput

    public init(
        environment: [String: String], writeOutput: @escaping @Sendable (String) -> Void,
        writeError: @escaping @Sendable (String) -> Void, input: any WalletInput
    ) {
        self.environment = environment
        self.writeOutput = writeOutput
        self.writeError = writeError
        self.input = input
    }

    /// The real process: its environment, stdout, stderr and stdin.
    public static var process: WalletContext {
        WalletContext(
            environment: ProcessInfo.processInfo.environment,
            writeOutput: { FileHandle.standardOutput.write(Data($0.utf8)) },
            writeError: { FileHandle.standardError.write(Data($0.utf8)) },
            input: ProcessInput())
    }

    @TaskLocal public static var current: WalletContext = .process

    func output(_ line: String) { writeOutput(line + "\n") }
    func error(_ line: String) { writeError(line + "\n") }

    /// `$TALLY_HOME`, else `~/.tally`.
    var home: String {
        if let home = environment["TALLY_HOME"], !home.isEmpty { return home }
        let user = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return (user as NSString).appendingPathComponent(".tally")
    }
}

/// stdin and the controlling terminal of this process.
struct ProcessInput: WalletInput {
    var isTerminal: Bool { isatty(STDIN_FILENO) == 1 }

    func readLine() -> String? { Swift.readLine(strippingNewline: true) }

    /// Turns terminal echo off while reading, and always back on.
    func readSecret(prompt: String) -> String? {
        FileHandle.standardError.write(Data(prompt.utf8))
        var saved = termios()
        guard tcgetattr(STDIN_FILENO, &saved) == 0 else { return Swift.readLine(strippingNewline: true) }
        var silent = saved
        silent.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent)
        defer {
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return Swift.readLine(strippingNewline: true)
    }
}
