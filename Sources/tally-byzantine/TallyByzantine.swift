import ArgumentParser
import TallyNodeCLI

/// A validator that misbehaves on purpose, for end-to-end tests of Byzantine fault
/// tolerance over the real network. TEST-ONLY: not a release product (it is not in
/// Package.swift's `products`) and never to be run on a real chain.
@main
struct TallyByzantineCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-byzantine",
        abstract: "TEST-ONLY: run a validator with one Byzantine misbehaviour.",
        discussion: """
            Runs exactly what `tally-node start` runs, except that the validator's outbound traffic goes through \
            the named misbehaviour. Every misbehaving act is logged (logger tally.byzantine) with a running count. \
            Not a release product: for the end-to-end tests and chaos runs only.
            """,
        subcommands: [Start.self])
}

struct Start: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the validator, misbehaving, until SIGTERM or SIGINT.",
        discussion: "Same options as `tally-node start`, plus --misbehaviour.")

    @OptionGroup var options: StartOptions
    @Option(name: .long, help: ArgumentHelp("One of: \(Misbehaviour.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "NAME"))
    var misbehaviour: Misbehaviour

    func run() async throws {
        let misbehaviour = self.misbehaviour
        try await options.run(makeOutbound: { key, genesis in
            ByzantineOutbound(misbehaviour: misbehaviour, key: key, genesis: genesis)
        })
    }
}
