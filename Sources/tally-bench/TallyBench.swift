import ArgumentParser
import Foundation

/// Benchmarks of a release build against this machine's own limits (BENCHMARKS.md).
/// Each measuring subcommand writes one JSON object (`--json FILE`); `report`
/// merges them into bench-results.json and prints the table. `tools/bench` runs all.
@main
struct TallyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tally-bench",
        abstract: "Measure Tally against this machine's limits (run a release build).",
        subcommands: [Calibrate.self, EndToEnd.self, VerifyBench.self, Growth.self, Micro.self, SwitchBench.self, GenerateChain.self, Report.self])
}

// MARK: shared helpers

/// Seconds on the monotonic clock.
func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

func benchLog(_ message: String) {
    FileHandle.standardError.write(Data("[tally-bench] \(message)\n".utf8))
}

/// Writes a JSON object (sorted keys) to `path`, or stdout when `path` is nil.
func writeJSON(_ object: [String: Any], to path: String?) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes])
    if let path {
        try data.write(to: URL(fileURLWithPath: path))
    } else {
        print(String(decoding: data, as: UTF8.self))
    }
}

/// The directory holding this executable and its siblings (`tally-node`, `tally`).
let productsDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()

func product(_ name: String) -> String { productsDirectory.appendingPathComponent(name).path }

/// Runs a process to completion; returns its exit status and stdout (stderr goes to ours).
func runProcess(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: Data) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, data)
}

/// `p`-quantile (0…1) of sorted values, nearest rank.
func quantile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let rank = Int((p * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

struct MachineFacts {
    static var cores: Int { ProcessInfo.processInfo.activeProcessorCount }
    static var cpuModel: String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("model name") }),
            let colon = line.firstIndex(of: ":")
        else { return "unknown" }
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
}
