import ArgumentParser
import TallyWallet

/// The Tally command-line client: the wallet (keys, balance, send, tx, block,
/// status) and the offline chain verifier.
@main
struct Tally: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally",
        abstract: "Tally's command-line client: wallet and offline chain verifier.",
        discussion: """
            The wallet talks to a node's HTTP API (--node URL, else $TALLY_NODE, else http://127.0.0.1:7700) and \
            keeps keys under $TALLY_HOME (default ~/.tally). `tally verify` needs no node at all.

            Exit codes: 0 ok; 1 verification failed (invalid chain, certificate, inclusion proof, or a node of \
            another chain); 2 unusable input (or no pinned genesis: `tally genesis trust`); 3 transaction rejected by \
            the node; 4 node unreachable (or catching up); 5 timed out \
            waiting for commit; 6 key error (wrong passphrase, unknown key); 7 not found; 64 usage.

            Shell completions: `tally --generate-completion-script bash` (or zsh, fish).
            """,
        subcommands: WalletCommands.all + [Verify.self])

    @OptionGroup var node: NodeOptions
}
