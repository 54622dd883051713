import ArgumentParser

/// Validator operations. `generate-chain` writes test chains; `init`, `testnet`
/// and `start` join as further subcommands.
struct TallyNode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-node",
        abstract: "Run and manage a Tally validator.",
        subcommands: [GenerateChain.self])
}

TallyNode.main()
