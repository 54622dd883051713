import Foundation
import TallySimulation

/// What the runs of one validator count committed and what their validators sent
/// (`--traffic`).
struct CountTotals {
    var runs = 0
    var blocks: UInt64 = 0
    var transactions = 0
    var ticks = 0
    var traffic = MessageTraffic()

    mutating func add(_ result: SimulationResult) {
        runs += 1
        blocks += result.blocksCommitted
        transactions += result.transactionsCommitted
        ticks += result.ticks
        traffic.merge(result.traffic)
    }
}

/// The `--traffic` figures of one validator count, as printed and as JSON.
struct TrafficRow: Encodable {
    struct Kind: Encodable {
        let kind: String
        let messages: Int
        let bytes: Int
        let resentMessages: Int
        let resentBytes: Int
        let messagesPerBlock: Double
        let bytesPerBlock: Double
        /// Without the repeats: what the protocol sends once per block.
        let firstMessagesPerBlock: Double
        let firstBytesPerBlock: Double

        enum CodingKeys: String, CodingKey {
            case kind, messages, bytes
            case resentMessages = "resent_messages", resentBytes = "resent_bytes"
            case messagesPerBlock = "messages_per_block", bytesPerBlock = "bytes_per_block"
            case firstMessagesPerBlock = "first_messages_per_block", firstBytesPerBlock = "first_bytes_per_block"
        }
    }

    let validators: Int
    let runs: Int
    let ticks: Int
    let blocksCommitted: UInt64
    let transactionsCommitted: Int
    let messages: Int
    let bytes: Int
    let resentMessages: Int
    let resentBytes: Int
    let messagesPerBlock: Double
    let bytesPerBlock: Double
    /// Sent by one validator, on average, per committed block.
    let messagesPerBlockPerValidator: Double
    let bytesPerBlockPerValidator: Double
    /// Nil when no transaction committed.
    let messagesPerTransaction: Double?
    let bytesPerTransaction: Double?
    let kinds: [Kind]

    enum CodingKeys: String, CodingKey {
        case validators, runs, ticks, messages, bytes, kinds
        case blocksCommitted = "blocks_committed", transactionsCommitted = "transactions_committed"
        case resentMessages = "resent_messages", resentBytes = "resent_bytes"
        case messagesPerBlock = "messages_per_block", bytesPerBlock = "bytes_per_block"
        case messagesPerBlockPerValidator = "messages_per_block_per_validator"
        case bytesPerBlockPerValidator = "bytes_per_block_per_validator"
        case messagesPerTransaction = "messages_per_transaction", bytesPerTransaction = "bytes_per_transaction"
    }

    init(validators: Int, totals: CountTotals) {
        let traffic = totals.traffic
        let blocks = Double(max(totals.blocks, 1))
        self.validators = validators
        runs = totals.runs
        ticks = totals.ticks
        blocksCommitted = totals.blocks
        transactionsCommitted = totals.transactions
        messages = traffic.messages
        bytes = traffic.bytes
        resentMessages = traffic.resentMessages
        resentBytes = traffic.resentBytes
        messagesPerBlock = Double(messages) / blocks
        bytesPerBlock = Double(bytes) / blocks
        messagesPerBlockPerValidator = messagesPerBlock / Double(validators)
        bytesPerBlockPerValidator = bytesPerBlock / Double(validators)
        let transactions = totals.transactions > 0 ? Double(totals.transactions) : nil
        messagesPerTransaction = transactions.map { Double(traffic.messages) / $0 }
        bytesPerTransaction = transactions.map { Double(traffic.bytes) / $0 }
        kinds = MessageTraffic.kinds.compactMap { kind in
            guard let sent = traffic.byKind[kind], sent.messages > 0 else { return nil }
            return Kind(
                kind: kind, messages: sent.messages, bytes: sent.bytes, resentMessages: sent.resentMessages,
                resentBytes: sent.resentBytes, messagesPerBlock: Double(sent.messages) / blocks,
                bytesPerBlock: Double(sent.bytes) / blocks,
                firstMessagesPerBlock: Double(sent.messages - sent.resentMessages) / blocks,
                firstBytesPerBlock: Double(sent.bytes - sent.resentBytes) / blocks)
        }
    }
}

extension Sweep {
    var trafficRows: [TrafficRow] {
        byCount.sorted { $0.key < $1.key }.map { TrafficRow(validators: $0.key, totals: $0.value) }
    }

    /// The `--traffic` table: one line per validator count, then each count's split by kind.
    func trafficTable() -> String {
        // Three significant figures or so: per-transaction figures of full blocks are well below one.
        func number(_ value: Double) -> String {
            String(format: value >= 100 ? "%.0f" : value >= 1 ? "%.1f" : "%.3f", value)
        }
        func optional(_ value: Double?) -> String { value.map(number) ?? "-" }
        var lines = [
            "messages and bytes sent per committed block (every copy to every peer; bytes as the node encodes them)",
            "n | runs | blocks | tx | msgs/block | bytes/block | msgs/block/validator | bytes/block/validator | msgs/tx | bytes/tx | resent msgs %",
        ]
        let rows = trafficRows
        for row in rows {
            let resentShare = row.messages > 0 ? 100 * Double(row.resentMessages) / Double(row.messages) : 0
            lines.append([
                "\(row.validators)", "\(row.runs)", "\(row.blocksCommitted)", "\(row.transactionsCommitted)",
                number(row.messagesPerBlock), number(row.bytesPerBlock), number(row.messagesPerBlockPerValidator),
                number(row.bytesPerBlockPerValidator), optional(row.messagesPerTransaction), optional(row.bytesPerTransaction),
                String(format: "%.1f", resentShare),
            ].joined(separator: " | "))
        }
        for row in rows {
            lines.append("")
            lines.append("n = \(row.validators), by kind: kind | msgs/block | bytes/block | first msgs/block | first bytes/block | resent msgs | resent bytes")
            for kind in row.kinds {
                lines.append([
                    kind.kind, number(kind.messagesPerBlock), number(kind.bytesPerBlock), number(kind.firstMessagesPerBlock),
                    number(kind.firstBytesPerBlock), "\(kind.resentMessages)", "\(kind.resentBytes)",
                ].joined(separator: " | "))
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The summary as one JSON document (`--json`).
    func summaryJSON(elapsed: TimeInterval, traffic: Bool, replay: String?) -> String {
        struct Summary: Encodable {
            struct Failure: Encodable {
                let seed: UInt64
                let validators: Int
                let reason: String
                let replay: String
            }
            let runs: Int
            let faults: String
            let elapsedSeconds: Double
            let blocksCommitted: UInt64
            let transactionsCommitted: Int
            let viewChanges: Int
            let faultsInjected: [String: Int]
            let dropped: [String: Int]
            let transport: [String: Int]
            let result: String
            let failure: Failure?
            let traffic: [TrafficRow]?

            enum CodingKeys: String, CodingKey {
                case runs, faults, dropped, transport, result, failure, traffic
                case elapsedSeconds = "elapsed_seconds", blocksCommitted = "blocks_committed"
                case transactionsCommitted = "transactions_committed", viewChanges = "view_changes"
                case faultsInjected = "faults_injected"
            }
        }
        let failed = failure.map { result in
            Summary.Failure(seed: result.seed, validators: result.validatorCount, reason: result.failure ?? "", replay: replay ?? "")
        }
        let summary = Summary(
            runs: runs, faults: mix.rawValue, elapsedSeconds: elapsed, blocksCommitted: blocks,
            transactionsCommitted: transactions, viewChanges: viewChanges, faultsInjected: faults,
            dropped: Dictionary(uniqueKeysWithValues: dropped.map { ($0.key.rawValue, $0.value) }),
            transport: Dictionary(uniqueKeysWithValues: transport.map { ($0.key.rawValue, $0.value) }),
            result: failure == nil ? "ok" : "failed", failure: failed, traffic: traffic ? trafficRows : nil)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try! encoder.encode(summary), as: UTF8.self)
    }
}
