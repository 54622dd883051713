import ArgumentParser
import Foundation
import TallyCrypto
import TallyStore
import TallyTypes
import TallyVerify

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify a chain offline, trusting nothing but the genesis file.",
        discussion: """
            Checks every height from 1 to the tip (no gaps), each header's previous-hash link, each transactions \
            Merkle root, each commit certificate (2f+1 distinct genesis validators, every signature valid for this \
            chain id, view, height and block hash), every transaction signature, and replays the ledger from genesis \
            checking each header's state root. Signature checks run on all cores; the replay is sequential.

            EXIT CODES
              0   the chain is valid
              1   the chain is invalid (the report names the first bad height and why)
              2   unusable input (missing data directory, unreadable or malformed genesis, I/O error)
              64  bad command-line usage
            """)

    enum Code {
        static let valid: Int32 = 0
        static let invalidChain: Int32 = 1
        static let unusableInput: Int32 = 2
    }

    @Option(name: .long, help: ArgumentHelp("The node's data directory (holds blocks/).", valueName: "DIR"))
    var data: String?

    @Option(name: .long, help: ArgumentHelp("The genesis file (JSON).", valueName: "FILE"))
    var genesis: String?

    @Option(name: .long, help: ArgumentHelp("A node home: uses HOME/data and HOME/genesis.json.", valueName: "HOME"))
    var home: String?

    @Flag(name: .long, help: "Print one machine-readable JSON report on stdout and no progress.")
    var json = false

    @Flag(name: .long, help: "Also measure libsodium's raw verify rate on this chain's signatures and print the ratio.")
    var calibrate = false

    @Option(name: .long, help: "Threads for the raw-rate calibration.")
    var calibrateThreads = 2

    func validate() throws {
        if home != nil && (data != nil || genesis != nil) {
            throw ValidationError("give either --home, or --data and --genesis, not both")
        }
        if home == nil && (data == nil || genesis == nil) {
            throw ValidationError("give --home HOME, or both --data DIR and --genesis FILE")
        }
        if calibrateThreads < 1 { throw ValidationError("--calibrate-threads must be at least 1") }
    }

    func run() throws {
        let dataDirectory = home.map { $0 + "/data" } ?? data!
        let genesisPath = home.map { $0 + "/genesis.json" } ?? genesis!
        let output = Output(json: json)

        let genesisValue: Genesis
        do { genesisValue = try Genesis.load(path: genesisPath) } catch {
            output.unusable("cannot use genesis \(genesisPath): \(error)")
            throw ExitCode(Code.unusableInput)
        }
        let blocksDirectory = ChainReader.blocksDirectory(dataDirectory: dataDirectory)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: blocksDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            output.unusable("no block files: \(blocksDirectory) is not a directory")
            throw ExitCode(Code.unusableInput)
        }

        // Calibration brackets the verification: libsodium's raw rate just before and
        // just after, so a machine whose load changes during the run is visible.
        var samples: [SignatureCalibration.Sample] = []
        var rawBefore: SignatureCalibration.Measurement?
        if calibrate {
            samples = (try? SignatureCalibration.samples(
                dataDirectory: dataDirectory, genesisHash: genesisValue.hash, count: 20_000)) ?? []
            if !samples.isEmpty { rawBefore = measureRaw(samples) }
        }

        let progress = ProgressBar(enabled: !json && isatty(STDERR_FILENO) == 1)
        let report: VerificationReport
        let onProgress: ((VerificationProgress) -> Void)? = progress.enabled ? { progress.update($0) } : nil
        let cpuBefore = SignatureCalibration.processCPUSeconds()
        do {
            report = try ChainVerification.run(dataDirectory: dataDirectory, genesis: genesisValue, progress: onProgress)
        } catch {
            progress.finish()
            output.unusable("cannot read \(dataDirectory): \(error)")
            throw ExitCode(Code.unusableInput)
        }
        let verifyCPUSeconds = SignatureCalibration.processCPUSeconds() - cpuBefore
        progress.finish()

        var calibration: Calibration?
        if let rawBefore {
            let rawAfter = measureRaw(samples)
            let raw = (rawBefore.verificationsPerSecond + rawAfter.verificationsPerSecond) / 2
            let rawCPU = (rawBefore.cpuSecondsPerVerification + rawAfter.cpuSecondsPerVerification) / 2
            let rate = report.seconds > 0 ? Double(report.signaturesChecked) / report.seconds : 0
            let cpuPerSignature = report.signaturesChecked > 0 ? verifyCPUSeconds / Double(report.signaturesChecked) : 0
            calibration = Calibration(
                threads: calibrateThreads, rawBefore: rawBefore.verificationsPerSecond, rawAfter: rawAfter.verificationsPerSecond,
                rawVerifiesPerSecond: raw, ratio: raw > 0 ? rate / raw : 0,
                cpuRatio: cpuPerSignature > 0 ? rawCPU / cpuPerSignature : 0)
        }
        output.report(report, calibration: calibration)
        if !report.isValid { throw ExitCode(Code.invalidChain) }
    }

    func measureRaw(_ samples: [SignatureCalibration.Sample]) -> SignatureCalibration.Measurement {
        SignatureCalibration.measureRawVerify(samples: samples, threads: calibrateThreads, verificationsPerThread: 20_000)
    }
}

struct Calibration {
    let threads: Int
    let rawBefore: Double
    let rawAfter: Double
    /// Mean of the measurements before and after.
    let rawVerifiesPerSecond: Double
    /// This run's signatures per second over the raw rate (wall clock).
    let ratio: Double
    /// libsodium CPU time per raw verification over this run's CPU time per
    /// signature: the share of the run's work that is signature verification,
    /// unaffected by other load on the machine.
    let cpuRatio: Double
}

/// Human or JSON output of the final report.
struct Output {
    let json: Bool

    func unusable(_ message: String) {
        if json {
            printJSON(["valid": false, "error": message, "exit_code": Int(Verify.Code.unusableInput)])
        } else {
            FileHandle.standardError.write(Data("tally verify: \(message)\n".utf8))
        }
    }

    func report(_ report: VerificationReport, calibration: Calibration?) {
        let signatureRate = report.seconds > 0 ? Double(report.signaturesChecked) / report.seconds : 0
        if json {
            var object: [String: Any] = [
                "valid": report.isValid, "blocks": report.blocks, "transactions": report.transactions,
                "signatures_checked": report.signaturesChecked, "seconds": report.seconds,
                "transactions_per_second": report.transactionsPerSecond, "signatures_per_second": signatureRate,
                "replay_wait_seconds": report.replayWaitSeconds, "precheck_wait_seconds": report.precheckWaitSeconds,
                "verified_height": report.blocks, "last_verified_hash": report.tipHash.hex, "state_root": report.stateRoot.hex,
                "first_bad_height": report.failure.map { $0.height as Any } ?? NSNull(),
                "reason": report.failure.map { $0.explanation as Any } ?? NSNull(),
                "reason_code": report.failure.map { $0.code as Any } ?? NSNull(),
            ]
            if let calibration {
                object["calibration"] = [
                    "threads": calibration.threads, "raw_verifies_per_second": calibration.rawVerifiesPerSecond,
                    "raw_verifies_per_second_before": calibration.rawBefore,
                    "raw_verifies_per_second_after": calibration.rawAfter,
                    "ratio": calibration.ratio, "cpu_ratio": calibration.cpuRatio,
                ]
            }
            printJSON(object)
            return
        }
        if let failure = report.failure {
            print("chain INVALID at height \(failure.height): \(failure.explanation)")
            print("  \(report.blocks) blocks before it verified")
        } else {
            print("chain valid: \(report.blocks) blocks, tip \(report.tipHash.hex)")
            print("  state root \(report.stateRoot.hex)")
        }
        print(String(
            format: "  %llu blocks, %d transactions, %d signatures checked in %.2f s (%.0f tx/s, %.0f signatures/s)",
            report.blocks, report.transactions, report.signaturesChecked, report.seconds, report.transactionsPerSecond,
            signatureRate))
        if let calibration {
            print(String(
                format: "  libsodium raw verify, %d threads: %.0f signatures/s (%.0f before, %.0f after); this run reached %.2f of it",
                calibration.threads, calibration.rawVerifiesPerSecond, calibration.rawBefore, calibration.rawAfter,
                calibration.ratio))
            print(String(format: "  CPU-time ratio (raw libsodium CPU per verify / this run's CPU per signature): %.2f", calibration.cpuRatio))
        }
    }

    private func printJSON(_ object: [String: Any]) {
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}

/// A one-line progress bar on stderr: height, blocks/s, share of bytes read, ETA.
final class ProgressBar: @unchecked Sendable {
    let enabled: Bool
    private var lastDrawn = -1.0
    private var drew = false

    init(enabled: Bool) { self.enabled = enabled }

    func update(_ progress: VerificationProgress) {
        guard progress.seconds - lastDrawn >= 0.1 else { return }
        lastDrawn = progress.seconds
        let fraction = progress.totalBytes > 0 ? min(1, Double(progress.bytesRead) / Double(progress.totalBytes)) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let blocksPerSecond = progress.seconds > 0 ? Double(progress.height) / progress.seconds : 0
        let eta = fraction > 0 ? progress.seconds * (1 - fraction) / fraction : 0
        let line = String(
            format: "\r[%@%@] %3.0f%%  height %llu  %.1f blocks/s  %.0f tx/s  ETA %@ ",
            String(repeating: "#", count: filled), String(repeating: ".", count: width - filled), fraction * 100,
            progress.height, blocksPerSecond, progress.seconds > 0 ? Double(progress.transactions) / progress.seconds : 0,
            ProgressBar.duration(eta))
        FileHandle.standardError.write(Data(line.utf8))
        drew = true
    }

    func finish() {
        if drew { FileHandle.standardError.write(Data("\n".utf8)) }
    }

    static func duration(_ seconds: Double) -> String {
        let total = Int(seconds.rounded())
        return total >= 60 ? "\(total / 60)m\(String(format: "%02d", total % 60))s" : "\(total)s"
    }
}
