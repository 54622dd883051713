import ArgumentParser
import Foundation
import TallyNode

/// The executable's name, for error messages (`tally-node` or `tally-byzantine`).
let programName = URL(fileURLWithPath: CommandLine.arguments.first ?? "tally-node").lastPathComponent

public struct HomeOption: ParsableArguments {
    public init() {}

    @Option(name: .long, help: ArgumentHelp("Node home directory (default $TALLY_NODE_HOME or ~/.tally-node).", valueName: "DIR"))
    public var home: String?

    public var resolved: NodeHome { NodeHome.resolve(home) }
}

/// Reads a passphrase: a file, then $TALLY_NODE_PASSWORD, then the terminal without echo.
public func readNodePassphrase(file: String?, confirm: Bool) throws -> String {
    if let file { return try NodeHome.readPassphrase(file: file) }
    if let env = ProcessInfo.processInfo.environment["TALLY_NODE_PASSWORD"] { return env }
    guard isatty(STDIN_FILENO) == 1 else {
        throw ValidationError("no passphrase: use --password-file, $TALLY_NODE_PASSWORD, or run on a terminal")
    }
    let first = String(cString: getpass("Validator key passphrase: "))
    if confirm {
        let second = String(cString: getpass("Repeat the passphrase: "))
        guard first == second else { throw ValidationError("the passphrases differ") }
    }
    return first
}

public func fail(_ message: String, code: Int32 = NodeExit.unusableInput) -> ExitCode {
    FileHandle.standardError.write(Data("\(programName): \(message)\n".utf8))
    return ExitCode(code)
}

public enum NodeExit {
    public static let failure: Int32 = 1
    public static let unusableInput: Int32 = 2
}
