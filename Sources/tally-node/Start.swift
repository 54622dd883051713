import ArgumentParser
import Foundation
import TallyNodeCLI

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the validator until SIGTERM or SIGINT.",
        discussion: """
            Reads HOME/config.toml; every option below overrides the value of the same name there. The key's \
            passphrase comes from key_password_file (mode 0600 or stricter, else exit 2), else \
            $TALLY_NODE_PASSWORD (unset and wiped from the environment once read), else a prompt. SIGTERM and SIGINT \
            stop accepting requests, finish the block being written and close cleanly.
            """)

    @OptionGroup var options: StartOptions

    func run() async throws { try await options.run() }
}
