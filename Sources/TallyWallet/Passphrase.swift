import Foundation

/// Where a passphrase comes from, in this order: `--password-file F` (its first
/// line), `$TALLY_PASSWORD` (unsafe: other processes of the user may read the
/// environment), one line of stdin when stdin is not a terminal, else a prompt on
/// the terminal without echo (asked twice when it protects a new key file).
enum Passphrase {
    /// Largest password file we read; a passphrase is a line, not a document.
    static let maxFileBytes = 4096

    enum Purpose {
        /// Unlocks an existing key file.
        case open(String)
        /// Protects a new key file: prompted twice, must not be empty.
        case create(String)
    }

    static func read(file: String?, purpose: Purpose, context: WalletContext = .current) throws(WalletError) -> String {
        let passphrase = try obtain(file: file, purpose: purpose, context: context)
        if case .create = purpose, passphrase.isEmpty {
            throw .key("the passphrase is empty; a key file needs one")
        }
        return passphrase
    }

    private static func obtain(file: String?, purpose: Purpose, context: WalletContext) throws(WalletError) -> String {
        if let file { return try readFile(file) }
        if let fromEnvironment = context.environment["TALLY_PASSWORD"] { return fromEnvironment }
        let input = context.input
        if !input.isTerminal {
            guard let line = input.readLine() else {
                throw .input("no passphrase: stdin ended (use --password-file F, $TALLY_PASSWORD or a terminal)")
            }
            return line
        }
        switch purpose {
        case .open(let name):
            guard let entered = input.readSecret(prompt: "Passphrase for key '\(name)': ") else {
                throw .input("no passphrase entered")
            }
            return entered
        case .create(let name):
            guard let first = input.readSecret(prompt: "New passphrase for key '\(name)': "),
                  let second = input.readSecret(prompt: "Repeat the passphrase: ")
            else { throw .input("no passphrase entered") }
            guard first == second else { throw .key("the two passphrases differ; nothing was written") }
            return first
        }
    }

    /// The first line of the file, without its line ending.
    static func readFile(_ path: String) throws(WalletError) -> String {
        guard let data = BoundedRead.contents(of: path, maxBytes: maxFileBytes) else {
            throw .input("cannot read the password file \(path)")
        }
        guard data.count <= maxFileBytes else {
            throw .input("the password file \(path) is over \(maxFileBytes) bytes; it should hold one line")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw .input("the password file \(path) is not UTF-8") }
        // "\r\n" is one Character, and a newline.
        return text.split(maxSplits: 1, omittingEmptySubsequences: false, whereSeparator: \.isNewline).first.map(String.init) ?? ""
    }
}
