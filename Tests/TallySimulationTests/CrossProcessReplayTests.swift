import Foundation
import XCTest

@testable import TallySimulation

/// A seed replays in any process, not only in the one that ran it first. Swift seeds
/// its hashing per process, so a dictionary or set iterated where the order reaches
/// consensus (the mempool once handed out transaction-timer sequence numbers in set
/// order) gives each process its own run: a failure's seed would not replay, and
/// tests built on one run go red at random on another machine.
final class CrossProcessReplayTests: XCTestCase {
    static let seeds: ClosedRange<UInt64> = 1...24

    /// The built `tally-sim` next to this test bundle.
    static let simulator: URL? = {
        let candidates = [
            URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
            Bundle.main.bundleURL,
            Bundle.main.bundleURL.deletingLastPathComponent(),
        ]
        return candidates.map { $0.appendingPathComponent("tally-sim") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }()

    /// "seed N fingerprint HEX" for every run of `tally-sim` over `seeds`, in a child
    /// process with randomised hashing (whatever this process was given).
    func childFingerprints() throws -> [UInt64: String] {
        let simulator = try XCTUnwrap(Self.simulator, "tally-sim is built with the tests (swift build --build-tests)")
        let process = Process()
        process.executableURL = simulator
        process.arguments = [
            "--seeds", "\(Self.seeds.lowerBound)-\(Self.seeds.upperBound)", "--replicas", "4,7", "--faults", "all",
            "--jobs", "2", "--verbose",
        ]
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_DETERMINISTIC_HASHING"] = nil
        process.environment = environment
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, String(decoding: data, as: UTF8.self))
        var fingerprints: [UInt64: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") where line.hasPrefix("seed ") {
            let words = line.split(separator: " ")
            guard let seed = UInt64(words[1]), let at = words.firstIndex(of: "fingerprint") else { continue }
            fingerprints[seed] = String(words[at + 1])
        }
        return fingerprints
    }

    func testSeedsReplayIdenticallyInOtherProcesses() throws {
        let first = try childFingerprints()
        let second = try childFingerprints()
        XCTAssertEqual(first.count, Self.seeds.count, "one fingerprint per seed")
        for seed in Self.seeds {
            let options = SimulationOptions(validatorCount: seed % 2 == 0 ? 4 : 7, mix: .all)
            let here = Simulation(seed: seed, options: options).run().fingerprint.hex.prefix(16)
            XCTAssertEqual(first[seed], second[seed], "seed \(seed) ran differently in two processes")
            XCTAssertEqual(first[seed], String(here), "seed \(seed) ran differently here than in tally-sim")
        }
    }
}
