import ArgumentParser
import TallyNodeCLI

/// Validator operations.
@main
struct TallyNodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-node",
        abstract: "Run and manage a Tally validator.",
        discussion: """
            A node's home (--home, else $TALLY_NODE_HOME, else ~/.tally-node) holds config.toml, the encrypted \
            validator key, genesis.json and the data directory.

            Exit codes: 0 success (or a clean stop on SIGTERM/SIGINT); 1 the node failed while running; \
            2 unusable configuration, genesis, key or data; 64 bad usage.
            """,
        subcommands: [Init.self, Testnet.self, Start.self, ShowValidator.self, UnsafeResetAll.self])
}
