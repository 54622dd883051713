import ArgumentParser
import Foundation
import TallyCrypto

/// `tally keys …`: the encrypted key files under `$TALLY_HOME/keys`.
public struct Keys: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Create, list, show, import, export and delete keys.",
        discussion: """
            Keys live in $TALLY_HOME/keys/NAME.json (default ~/.tally/keys), each an \
            Ed25519 seed encrypted with Argon2id + XChaCha20-Poly1305 (file mode 0600, \
            directory 0700). Names: 1-64 characters from A-Z a-z 0-9 _ -.

            Passphrases come from --password-file F (first line), else $TALLY_PASSWORD \
            (unsafe: visible to other processes of the user), else one line of stdin when \
            stdin is not a terminal, else a prompt without echo (twice for a new key).

            \(exitCodeHelp)
            """,
        subcommands: [New.self, List.self, Show.self, Import.self, Export.self, Delete.self])

    public init() {}

    /// Key name argument, checked before anything runs.
    struct NameArgument: ParsableArguments {
        @Argument(help: "The key's name (1-64 of A-Z a-z 0-9 _ -).")
        var name: String

        func validate() throws {
            do { try KeyStore.checkName(name) } catch { throw ValidationError(error.message) }
        }
    }

    static func summary(name: String?, file: KeyFile) -> [String: Any] {
        var object: [String: Any] = ["address": file.address, "public_key": file.publicKey]
        if let name { object["name"] = name }
        return object
    }

    // MARK: new

    public struct New: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Create a new random key, encrypted under a passphrase.",
            discussion: "Prints the name, address and public key.\n\n\(exitCodeHelp)")

        @OptionGroup var key: NameArgument
        @Option(name: .customLong("password-file"), help: ArgumentHelp("Read the new passphrase from this file's first line.", valueName: "FILE"))
        var passwordFile: String?
        @Flag(help: "Print one JSON object: name, address, public_key.") var json = false

        public init() {}

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let store = KeyStore(home: context.home)
                guard !store.exists(key.name) else { throw WalletError.key("a key named '\(key.name)' already exists") }
                let passphrase = try Passphrase.read(file: passwordFile, purpose: .create(key.name), context: context)
                let file = try KeyFile.seal(SigningKey.generate(), passphrase: passphrase, cost: keyFileCost(context))
                try store.add(key.name, file)
                Keys.report(name: key.name, file: file, verb: "created", json: json, context: context)
            }
        }
    }

    static func report(name: String, file: KeyFile, verb: String, json: Bool, context: WalletContext) {
        if json {
            Runner.emit(summary(name: name, file: file), context)
        } else {
            context.output("\(verb) key '\(name)'\naddress:    \(file.address)\npublic key: \(file.publicKey)")
        }
    }

    // MARK: list

    public struct List: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "List the keys: name and address.",
            discussion: "With --json: {\"keys\": [{\"name\", \"address\", \"public_key\"}, …]}.\n\n\(exitCodeHelp)")

        @Flag(help: "Print one JSON object.") var json = false

        public init() {}

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let store = KeyStore(home: context.home)
                let (keys, problems) = store.list()
                for problem in problems { context.error("warning: skipped \(problem)") }
                if json {
                    Runner.emit(["keys": keys.map { Keys.summary(name: $0.name, file: $0.file) }], context)
                } else if keys.isEmpty {
                    context.output("no keys in \(store.directory) (create one with `tally keys new NAME`)")
                } else {
                    let width = keys.map(\.name.count).max() ?? 0
                    for key in keys {
                        context.output(key.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + key.file.address)
                    }
                }
            }
        }
    }

    // MARK: show

    public struct Show: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Show a key's address and public key (no passphrase needed).",
            discussion: "With --json: {\"name\", \"address\", \"public_key\"}.\n\n\(exitCodeHelp)")

        @OptionGroup var key: NameArgument
        @Flag(help: "Print one JSON object.") var json = false

        public init() {}

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let file = try KeyStore(home: context.home).load(key.name)
                if json {
                    Runner.emit(Keys.summary(name: key.name, file: file), context)
                } else {
                    context.output("name:       \(key.name)\naddress:    \(file.address)\npublic key: \(file.publicKey)")
                }
            }
        }
    }

    // MARK: import

    public struct Import: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Import a key file (e.g. a testnet faucet key) or a raw seed.",
            discussion: """
                --file KEYFILE: the file must open with its passphrase (--password-file \
                or the usual sources); it is then copied as is, so it keeps that \
                passphrase and its KDF cost.

                --seed-hex: reads a 32-byte Ed25519 seed as 64 hex characters from \
                --seed-file F, else from one line of stdin when it is not a terminal, \
                else from a prompt without echo; it is then encrypted under a new \
                passphrase (asked twice on a terminal). Never pass a seed as an argument.

                \(exitCodeHelp)
                """)

        @OptionGroup var key: NameArgument
        @Option(help: ArgumentHelp("An encrypted Tally key file to import as is.", valueName: "KEYFILE"))
        var file: String?
        @Flag(name: .customLong("seed-hex"), help: "Import a raw seed (64 hex characters), read without echo.")
        var seedHex = false
        @Option(name: .customLong("seed-file"), help: ArgumentHelp("Read the hex seed from this file (implies --seed-hex).", valueName: "FILE"))
        var seedFile: String?
        @Option(name: .customLong("password-file"), help: ArgumentHelp("The passphrase: of KEYFILE, or the new one for a seed.", valueName: "FILE"))
        var passwordFile: String?
        @Flag(help: "Print one JSON object: name, address, public_key.") var json = false

        public init() {}

        public func validate() throws {
            let fromSeed = seedHex || seedFile != nil
            guard (file != nil) != fromSeed else {
                throw ValidationError("give exactly one of --file KEYFILE or --seed-hex [--seed-file F]")
            }
        }

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let store = KeyStore(home: context.home)
                guard !store.exists(key.name) else { throw WalletError.key("a key named '\(key.name)' already exists") }
                let imported: KeyFile
                if let file {
                    imported = try KeyStore.loadFile(file)
                    let passphrase = try Passphrase.read(file: passwordFile, purpose: .open(file), context: context)
                    _ = try KeyStore.unlock(imported, passphrase: passphrase, label: file)
                } else {
                    let seed = try readSeed(context)
                    let passphrase = try Passphrase.read(file: passwordFile, purpose: .create(key.name), context: context)
                    imported = try KeyFile.seal(seed, passphrase: passphrase, cost: keyFileCost(context))
                }
                try store.add(key.name, imported)
                Keys.report(name: key.name, file: imported, verb: "imported", json: json, context: context)
            }
        }

        func readSeed(_ context: WalletContext) throws(WalletError) -> SigningKey {
            let text: String?
            if let seedFile {
                guard let data = BoundedRead.contents(of: seedFile, maxBytes: Passphrase.maxFileBytes),
                      data.count <= Passphrase.maxFileBytes
                else {
                    throw .input("cannot read the seed file \(seedFile)")
                }
                text = String(decoding: data, as: UTF8.self)
            } else if context.input.isTerminal {
                text = context.input.readSecret(prompt: "Seed (64 hex characters): ")
            } else {
                text = context.input.readLine()
            }
            let trimmed = (text ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            guard let bytes = Hex.decode(trimmed.lowercased()), bytes.count == SigningKey.seedByteCount,
                  let key = SigningKey(seed: bytes)
            else { throw .input("the seed must be \(SigningKey.seedByteCount * 2) hex characters") }
            return key
        }
    }

    // MARK: export

    public struct Export: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Print a key's encrypted key file (JSON).",
            discussion: """
                Prints the key file as stored: still encrypted, safe to back up. With \
                --unsafe-seed it asks for the passphrase and prints the raw seed (hex) \
                instead, which gives full control of the account to whoever sees it \
                (with --json: {"name", "address", "public_key", "seed"}).

                \(exitCodeHelp)
                """)

        @OptionGroup var key: NameArgument
        @Flag(name: .customLong("unsafe-seed"), help: "Print the unencrypted seed (hex) instead of the key file.")
        var unsafeSeed = false
        @Option(name: .customLong("password-file"), help: ArgumentHelp("Passphrase file (only with --unsafe-seed).", valueName: "FILE"))
        var passwordFile: String?
        @Flag(help: "Print one JSON object.") var json = false

        public init() {}

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let file = try KeyStore(home: context.home).load(key.name)
                guard unsafeSeed else {
                    context.output(String(decoding: file.encoded(), as: UTF8.self))
                    return
                }
                let passphrase = try Passphrase.read(file: passwordFile, purpose: .open(key.name), context: context)
                let signingKey = try KeyStore.unlock(file, passphrase: passphrase, label: "'\(key.name)'")
                let seed = Hex.encode(signingKey.seed.copyBytes())
                context.error("warning: this is the raw seed of '\(key.name)'; anyone who sees it controls \(file.address)")
                if json {
                    var object = Keys.summary(name: key.name, file: file)
                    object["seed"] = seed
                    Runner.emit(object, context)
                } else {
                    context.output(seed)
                }
            }
        }
    }

    // MARK: delete

    public struct Delete: AsyncParsableCommand {
        public static let configuration = CommandConfiguration(
            abstract: "Delete a key file.",
            discussion: """
                Asks to type the key's name to confirm (one line of stdin), unless --yes. \
                Declining deletes nothing and exits with 6. Funds stay on the chain but \
                cannot be spent without a copy of the key.

                \(exitCodeHelp)
                """)

        @OptionGroup var key: NameArgument
        @Flag(help: "Do not ask for confirmation.") var yes = false
        @Flag(help: "Print one JSON object: name, address, deleted.") var json = false

        public init() {}

        public func run() async throws {
            try await Runner.run(json: json) { context in
                let store = KeyStore(home: context.home)
                let file = try store.load(key.name)
                if !yes {
                    context.writeError("Delete key '\(key.name)' (\(file.address))? Type its name to confirm: ")
                    let answer = context.input.readLine()
                    if !context.input.isTerminal { context.writeError("\n") }
                    guard let answer, answer.trimmingCharacters(in: .whitespaces) == key.name else {
                        throw WalletError.key("not confirmed; key '\(key.name)' was not deleted")
                    }
                }
                try store.delete(key.name)
                if json {
                    var object = Keys.summary(name: key.name, file: file)
                    object["deleted"] = true
                    Runner.emit(object, context)
                } else {
                    context.output("deleted key '\(key.name)' (\(file.address))")
                }
            }
        }
    }
}
