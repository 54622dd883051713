import ArgumentParser
import Foundation
import TallyCrypto
import TallyNode

/// The executable's name, for error messages (`tally-node` or `tally-byzantine`).
let programName = URL(fileURLWithPath: CommandLine.arguments.first ?? "tally-node").lastPathComponent

public struct HomeOption: ParsableArguments {
    public init() {}

    @Option(name: .long, help: ArgumentHelp("Node home directory (default $TALLY_NODE_HOME or ~/.tally-node).", valueName: "DIR"))
    public var home: String?

    public var resolved: NodeHome { NodeHome.resolve(home) }
}

/// Reads a passphrase as UTF-8 bytes (zero them with `KeyFile.zero` after use): a
/// file (owner-only, else exit 2 naming it and its mode), then $TALLY_NODE_PASSWORD
/// (removed from the environment once read), then the terminal without echo.
public func readNodePassphrase(file: String?, confirm: Bool) throws -> [UInt8] {
    if let file {
        do { return try NodeHome.readPassphrase(file: file) } catch { throw fail("\(error)") }
    }
    if let bytes = NodeHome.takePassphraseFromEnvironment() { return bytes }
    guard isatty(STDIN_FILENO) == 1 else {
        throw ValidationError("no passphrase: use --password-file, $TALLY_NODE_PASSWORD, or run on a terminal")
    }
    var first = prompt("Validator key passphrase: ")
    if confirm {
        var second = prompt("Repeat the passphrase: ")
        defer { KeyFile.zero(&second) }
        guard first == second else {
            KeyFile.zero(&first)
            throw ValidationError("the passphrases differ")
        }
    }
    return first
}

/// getpass's answer as bytes; its static buffer is zeroed after the copy.
private func prompt(_ text: String) -> [UInt8] {
    guard let answer = getpass(text) else { return [] }
    let length = strlen(answer)
    let bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(answer).assumingMemoryBound(to: UInt8.self), count: length))
    memset(answer, 0, length)
    return bytes
}

public func fail(_ message: String, code: Int32 = NodeExit.unusableInput) -> ExitCode {
    FileHandle.standardError.write(Data("\(programName): \(message)\n".utf8))
    return ExitCode(code)
}

public enum NodeExit {
    public static let failure: Int32 = 1
    public static let unusableInput: Int32 = 2
}
