import ArgumentParser
import CSodium
import Foundation
import TallyCrypto
import TallyTypes
import TallyVerify

/// Libsodium's raw Ed25519 verify rate (one thread and all cores) and SHA-256 rates:
/// the machine's limits the other figures are divided by.
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Raw Ed25519 verify rate (1 thread, all cores) and SHA-256 rates.")

    @Option(name: .long, help: "Verifications per thread.") var verifications = 20_000
    @Option(name: .long, help: ArgumentHelp("Write the JSON result here (else stdout).", valueName: "FILE")) var json: String?

    func run() throws {
        let samples = Calibration.samples(count: 2_000)
        let cores = MachineFacts.cores
        let one = Calibration.rawVerifyRate(samples, threads: 1, perThread: verifications)
        let all = Calibration.rawVerifyRate(samples, threads: cores, perThread: verifications)
        let small = Calibration.sha256Rate(inputBytes: 64, seconds: 0.5)
        let large = Calibration.sha256Rate(inputBytes: 1 << 20, seconds: 0.5)
        benchLog(String(format: "libsodium verify: %.0f/s on 1 thread, %.0f/s on %d threads; SHA-256: %.0f 64-byte hashes/s, %.0f MiB/s",
                   one, all, cores, small, large * Double(1 << 20) / Double(1 << 20)))
        try writeJSON([
            "cores": cores, "cpu_model": MachineFacts.cpuModel,
            "verify_raw_1_thread_per_s": one, "verify_raw_all_cores_per_s": all,
            "sha256_64b_per_s": small, "sha256_1mib_mib_per_s": large,
        ], to: json)
    }
}

enum Calibration {
    /// Distinct keys and messages, so no cache makes one verification cheaper than another.
    static func samples(count: Int) -> [SignatureCalibration.Sample] {
        (0..<count).map { index in
            let key = DevnetKeys.accountKey(index % 64)
            let message = Array("calibration message \(index)".utf8)
            return SignatureCalibration.Sample(key: key.publicKey, signature: key.sign(message), message: message)
        }
    }

    /// Raw `crypto_sign_verify_detached` calls per second of wall clock over `threads` threads.
    static func rawVerifyRate(_ samples: [SignatureCalibration.Sample], threads: Int, perThread: Int) -> Double {
        let prepared = samples.map { (Array($0.key.bytes), Array($0.signature.bytes), $0.message) }
        let group = DispatchGroup()
        let start = monotonicSeconds()
        for thread in 0..<threads {
            group.enter()
            Thread {
                var position = thread * 7919 % prepared.count
                for _ in 0..<perThread {
                    let (key, signature, message) = prepared[position]
                    let result = crypto_sign_verify_detached(signature, message, UInt64(message.count), key)
                    precondition(result == 0, "calibration signature must verify")
                    position = position + 1 == prepared.count ? 0 : position + 1
                }
                group.leave()
            }.start()
        }
        group.wait()
        return Double(threads * perThread) / (monotonicSeconds() - start)
    }

    /// One thread: hashes per second for 64-byte inputs; MiB per second for larger ones.
    static func sha256Rate(inputBytes: Int, seconds: Double) -> Double {
        var input = [UInt8](repeating: 0x5a, count: inputBytes)
        var count = 0
        let start = monotonicSeconds()
        var elapsed = 0.0
        repeat {
            for _ in 0..<(inputBytes >= 4096 ? 1 : 1000) {
                let digest = SHA256.hash(input)
                input[0] = digest.bytes[0]
                count += 1
            }
            elapsed = monotonicSeconds() - start
        } while elapsed < seconds
        let perSecond = Double(count) / elapsed
        return inputBytes >= 4096 ? perSecond * Double(inputBytes) / Double(1 << 20) : perSecond
    }
}
