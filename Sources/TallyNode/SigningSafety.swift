import Foundation
import Logging
import Metrics
import TallyConsensus
import TallyStore
import TallyTypes

/// `HOME/signing-mark`: the highest key the replica signed (`SigningMark`), kept in
/// the node's home beside the key and outside the data directory, so that restoring
/// an older copy of the data directory does not roll it back. The node writes it
/// durably (a `DurableStateFile`: write, fsync, rename, fsync the directory) whenever
/// the replica's mark moved, while the journal record is written and before anything
/// of that step is sent. At start-up a mark above the journal's means the journal forgot signatures:
/// the replica then signs nothing at or below it. Operators must never restore or
/// delete this file (README, "Backups").
final class SigningMarkFile {
    static let fileName = "signing-mark"

    /// A mark file that cannot be read: refusing to start is the only safe answer (a
    /// validator that forgot what it signed could sign twice).
    struct Damaged: Error, CustomStringConvertible {
        let description: String
    }

    private let file: DurableStateFile
    /// The mark on disk (nil: no file yet).
    private(set) var mark: SigningMark?

    init(path: String) throws {
        file = DurableStateFile(path: path)
        let bytes: [UInt8]?
        do { bytes = try file.read() } catch { throw Damaged(description: "signing mark \(path) is unreadable: \(error)") }
        guard let bytes else { return }
        do { mark = try SigningMark(canonicalBytes: bytes) } catch {
            throw Damaged(description: "signing mark \(path) is damaged: \(error)")
        }
    }

    /// Writes `mark` (durable when this returns) if it is above the one on disk; never lowers it.
    func raise(to mark: SigningMark) throws {
        guard mark > (self.mark ?? .zero) else { return }
        try file.write(mark.canonicalBytes)
        self.mark = mark
    }

    /// Runs `journalWrite` on this thread while `raise(to: mark)` (through
    /// `durableWrite`) runs on `writer`'s, and returns once both are done: two fsync
    /// waits at once instead of one after the other. Safe in either order: nothing is
    /// sent before this returns, and a mark durable without its journal record only
    /// makes a restart sign nothing at or below it. Rethrows the journal's failure
    /// first, then the mark's.
    func raise(
        to mark: SigningMark, durableWrite: DurableWrite, alongside journalWrite: () throws(DurableWrite.GaveUp) -> Void
    ) throws(DurableWrite.GaveUp) {
        guard mark > (self.mark ?? .zero) else { return try journalWrite() }
        let markWritten = DispatchSemaphore(value: 0)
        // Touched by nothing else until the semaphore is signalled; the retry hooks
        // (usleep, the logger) are thread-safe.
        nonisolated(unsafe) let file = self
        nonisolated(unsafe) let durableWrite = durableWrite
        nonisolated(unsafe) var markResult: Result<Void, DurableWrite.GaveUp>?
        Self.writer.async {
            markResult = Result { () throws(DurableWrite.GaveUp) in
                try durableWrite.run("write the signing mark") { try file.raise(to: mark) }
            }
            markWritten.signal()
        }
        let journalResult = Result { () throws(DurableWrite.GaveUp) in try journalWrite() }
        markWritten.wait()
        try journalResult.get()
        try markResult!.get()
    }

    /// The mark's writes, beside the journal's on the node's actor thread (one
    /// thread for every node of the process: each waits for its own write).
    private static let writer = DispatchQueue(label: "tally.signing-mark")
}

/// The node's side of equivocation evidence: counts per validator
/// (`tally_equivocations_total{validator}`), error lines at a bounded rate, and the
/// JSON of `GET /evidence`.
struct EquivocationReporter {
    /// Conflicts logged one by one; after that every 100th (the metric counts all).
    static let loggedInFull = 20
    static let logEvery = 100

    private var exported: [ValidatorIndex: Int] = [:]
    private var logged = 0
    private var newerCopySignatures = 0

    /// At start-up: says when the journal is behind the mark file (a restored data
    /// directory) and that the replica waits for its peers before it signs.
    static func logStartupSafety(journalMark: SigningMark, fileMark: SigningMark?, replica: Replica, logger: Logger) {
        if let fileMark, fileMark > journalMark {
            logger.error("consensus journal is behind the signing mark: the data directory was restored from an older copy (or the node stopped between the two writes); signing nothing at or below the mark", metadata: [
                "mark_view": "\(fileMark.view)", "mark_height": "\(fileMark.height)",
                "journal_view": "\(journalMark.view)", "journal_height": "\(journalMark.height)",
            ])
        }
        if replica.isQuarantined {
            logger.notice("start-up quarantine: signing nothing until f+1 peers confirmed the view and height")
        }
    }

    /// Counts and logs what the replica recorded since the last call.
    mutating func export(_ replica: Replica, validators: ValidatorSet, logger: Logger) {
        if replica.ownSignaturesFromNewerCopy > newerCopySignatures {
            newerCopySignatures = replica.ownSignaturesFromNewerCopy
            Counter(label: "tally_own_signatures_unknown_to_journal_total").increment()
            if newerCopySignatures <= Self.loggedInFull {
                logger.critical("a committed block carries this validator's signature that its journal does not know: its data directory was restored from an older copy, or its key runs in another process; signing nothing more in this view", metadata: ["total": "\(newerCopySignatures)"])
            }
        }
        for (validator, count) in replica.equivocationCounts where count > exported[validator, default: 0] {
            let new = count - exported[validator, default: 0]
            exported[validator] = count
            Counter(label: "tally_equivocations_total", dimensions: [("validator", validators[Int(validator)].name)])
                .increment(by: Int64(new))
            for _ in 0..<new {
                logged += 1
                guard logged <= Self.loggedInFull || logged % Self.logEvery == 0 else { continue }
                let latest = replica.equivocations.last { $0.validator == validator }
                logger.error("validator signed two conflicting statements (equivocation); kept as evidence at GET /evidence", metadata: [
                    "validator": "\(validators[Int(validator)].name)", "kind": "\(latest?.kind.rawValue ?? "")",
                    "view": "\(latest?.view ?? 0)", "height": "\(latest?.height ?? 0)", "total": "\(logged)",
                ])
            }
        }
    }

    /// `GET /evidence`: every kept conflict, numbers wider than 31 bits as strings.
    static func json(_ evidence: [EquivocationEvidence], validators: ValidatorSet) -> [[String: Any]] {
        evidence.map { item in
            func statement(_ statement: EquivocationEvidence.Statement) -> [String: Any] {
                var json: [String: Any] = ["block_hash": statement.blockHash.hex, "signature": statement.signature.hex]
                if let root = statement.stateRoot { json["state_root"] = root.hex }
                return json
            }
            return [
                "validator": Int(item.validator), "validator_name": validators[Int(item.validator)].name,
                "public_key": validators[Int(item.validator)].publicKey.hex, "kind": item.kind.rawValue,
                "view": String(item.view), "height": String(item.height),
                "first": statement(item.first), "second": statement(item.second),
            ]
        }
    }
}
