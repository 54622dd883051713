import ArgumentParser
import Foundation
import TallyCrypto
import TallyTypes

/// `tally history`: an account's committed transactions, newest first, from the
/// node's index (`GET /accounts/{address}/txs`).
public struct History: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "List an account's committed transactions, newest first.",
        discussion: """
            NAME|ADDRESS: a key name, or a bech32m address (tally1…). Without it, the only \
            key in the key store. Shows at most --limit transactions (1…\(maxLimit), \
            default \(defaultLimit)); when there are older ones it prints the --before \
            cursor that lists the next page. The list is as the node's index gives it \
            (not proven: check one with `tally tx HASH`); a node indexes the transactions \
            of its last blocks (it says from which height: older ones are not listed). \
            Amounts are whole TALLY with 6 decimals.
            With --json: address (and name for a key), transactions [{hash, height, index, \
            direction (sent|received|self), from, to, amount, fee, nonce}], next (the \
            --before of the next page, or null), indexed_from_height.

            \(chainHelp)

            \(exitCodeHelp)
            """)

    /// The node's largest page (docs/API.md).
    static let maxLimit = 100
    static let defaultLimit = 20

    @Argument(help: "A key name or a tally1… address.") var account: String?
    @Option(help: "Most transactions to list (1…100).") var limit = History.defaultLimit
    @Option(help: ArgumentHelp("List only transactions older than this position (from a previous page).", valueName: "HEIGHT:INDEX"))
    var before: String?
    @OptionGroup var connection: NodeOptions
    @OptionGroup var chain: ChainOptions
    @Flag(help: "Print one JSON object.") var json = false

    public init() {}

    public func validate() throws {
        if let account, account.lowercased().hasPrefix(Address.humanReadablePrefix + "1") {
            do { _ = try Address(bech32m: account) } catch { throw ValidationError("'\(account)' is not a Tally address: \(error)") }
        }
        guard (1...Self.maxLimit).contains(limit) else { throw ValidationError("--limit must be 1…\(Self.maxLimit)") }
        if let before, Self.cursor(before) == nil {
            throw ValidationError("--before must be HEIGHT:INDEX (decimal), as a previous page prints it")
        }
    }

    /// `HEIGHT:INDEX`, decimal digits only.
    static func cursor(_ text: String) -> (height: UInt64, index: UInt32)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy { $0 >= 48 && $0 <= 57 } }),
              let height = UInt64(parts[0]), let index = UInt32(parts[1])
        else { return nil }
        return (height, index)
    }

    struct Entry {
        let hash: Hash
        let height: UInt64
        let index: UInt32
        let from: Address
        let to: Address
        let amount: UInt64
        let fee: UInt64
        let nonce: UInt64
    }

    public func run() async throws {
        try await Runner.run(json: json) { context in
            let (name, address) = try Balance.resolve(account, context)
            let session = try await NodeSession.open(connection, chain, context)
            let query = "limit=\(limit)" + (before.map { "&before=\($0)" } ?? "")
            let route = "/accounts/\(address.bech32m)/txs"
            let object = try session.node.object(try await session.node.get("\(route)?\(query)"), route)
            let (entries, next, indexedFrom) = try Self.parse(object, address: address, limit: limit, node: session.node)
            if json {
                var result: [String: Any] = [
                    "address": address.bech32m, "next": next ?? NSNull(), "indexed_from_height": String(indexedFrom),
                    "transactions": entries.map { entry -> [String: Any] in
                        ["hash": entry.hash.hex, "height": String(entry.height), "index": String(entry.index),
                         "direction": Self.direction(entry, address), "from": entry.from.bech32m, "to": entry.to.bech32m,
                         "amount": Amount.format(entry.amount), "fee": Amount.format(entry.fee), "nonce": String(entry.nonce)]
                    },
                ]
                if let name { result["name"] = name }
                return Runner.emit(result, context)
            }
            var lines = ["\(name.map { "\(address.bech32m) (\($0))" } ?? address.bech32m): \(entries.count) transactions, newest first"]
            for entry in entries {
                let direction = Self.direction(entry, address)
                let other = direction == "received" ? "from \(entry.from.bech32m)" : direction == "sent" ? "to \(entry.to.bech32m)" : "to itself"
                lines.append("  \(entry.height):\(entry.index)  \(entry.hash.hex)  \(direction) \(Amount.format(entry.amount)) TALLY \(other)"
                    + " (fee \(Amount.format(entry.fee)), nonce \(entry.nonce))")
            }
            if let next {
                lines.append("older: tally history \(address.bech32m) --before \(next)\(limit == Self.defaultLimit ? "" : " --limit \(limit)")")
            } else if indexedFrom > 1 {
                lines.append("(this node lists transactions from height \(indexedFrom) on; older ones are in their blocks)")
            }
            context.output(lines.joined(separator: "\n"))
        }
    }

    static func direction(_ entry: Entry, _ address: Address) -> String {
        entry.from == address ? (entry.to == address ? "self" : "sent") : "received"
    }

    /// The page, checked: at most `limit` entries, each of `address`, strictly newest
    /// first, and a well-formed cursor. Anything else is an unusable answer (exit 4).
    static func parse(_ object: [String: Any], address: Address, limit: Int, node: NodeClient)
        throws(WalletError) -> (entries: [Entry], next: String?, indexedFrom: UInt64)
    {
        guard object["address"] as? String == address.bech32m, let items = object["transactions"] as? [[String: Any]],
              items.count <= limit, let indexedFrom = (object["indexed_from_height"] as? String).flatMap(UInt64.init)
        else { throw node.unusable("the account's transactions lack address, transactions or indexed_from_height, or are too many") }
        var entries: [Entry] = []
        for item in items {
            guard let hash = (item["hash"] as? String).flatMap(Hash.init(hex:)),
                  let height = (item["height"] as? String).flatMap(UInt64.init),
                  let index = (item["index"] as? Int).flatMap(UInt32.init(exactly:)),
                  let from = try? Address(bech32m: item["from"] as? String ?? ""),
                  let to = try? Address(bech32m: item["to"] as? String ?? ""),
                  let amount = (item["amount"] as? String).flatMap(UInt64.init),
                  let fee = (item["fee"] as? String).flatMap(UInt64.init),
                  let nonce = (item["nonce"] as? String).flatMap(UInt64.init)
            else { throw node.unusable("a malformed transaction in the account's list") }
            let entry = Entry(hash: hash, height: height, index: index, from: from, to: to, amount: amount, fee: fee, nonce: nonce)
            guard from == address || to == address else { throw node.unusable("a transaction of another account in the list") }
            if let last = entries.last, !((height, index) < (last.height, last.index)) {
                throw node.unusable("the account's transactions are not newest first")
            }
            entries.append(entry)
        }
        var next: String?
        if let text = object["next"] as? String {
            guard let cursor = cursor(text) else { throw node.unusable("a malformed next cursor '\(text)'") }
            next = "\(cursor.height):\(cursor.index)"
        } else if !(object["next"] is NSNull) {
            throw node.unusable("the account's transactions lack next")
        }
        return (entries, next, indexedFrom)
    }
}
