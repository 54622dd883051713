import ArgumentParser

/// The Tally command-line client. `verify` checks a chain offline; the wallet
/// commands (keys, balance, send, tx) join as further subcommands.
struct Tally: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "Tally's command-line client.",
        subcommands: [Verify.self])
}

Tally.main()
