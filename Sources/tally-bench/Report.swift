import ArgumentParser
import Foundation

/// Merges the parts into bench-results.json, derives the ratios and prints the table
/// with each target.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Merge the parts into bench-results.json and print the table.")

    @Option(name: .long, help: "Directory holding calibrate.json, e2e.json, verify-e2e.json, verify.json, growth.json, micro.json (and e2e-window1, e2e-wan, e2e-wan-window1, switch, e2e-scaling-<V>, e2e-scaling-wan-<V> when run).")
    var parts: String
    @Option(name: .long, help: "The merged result.") var output = "bench-results.json"
    @Flag(name: .long, help: "Mark the result as a --quick run.") var quick = false

    func run() throws {
        func part(_ name: String) -> [String: Any] {
            guard let data = FileManager.default.contents(atPath: parts + "/" + name + ".json"),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { return [:] }
            return object
        }
        let calibrate = part("calibrate"), e2e = part("e2e"), verifyE2E = part("verify-e2e"), verify = part("verify")
        let growth = part("growth"), micro = part("micro"), window1 = part("e2e-window1")
        let wanDefault = part("e2e-wan"), wanWindow1 = part("e2e-wan-window1"), packetSwitch = part("switch")
        let validators = e2e["validators"] as? Int ?? 4
        let allCores = calibrate["verify_raw_all_cores_per_s"] as? Double ?? 0
        let ceiling = allCores / Double(validators)
        let e2eRate = e2e["e2e_tx_per_s"] as? Double ?? 0
        let verifyRate = verify["tx_per_s"] as? Double ?? 0
        let overallRate = e2e["e2e_overall_tx_per_s"] as? Double ?? 0
        // Against the calibration taken right before and after the verification when there
        // is one (machine drift between minutes does not decide it); else the one at the start.
        let verifyRatio = (verify["calibrated_ratio"] as? Double) ?? (allCores > 0 ? verifyRate / allCores : 0)
        let date = ISO8601DateFormatter().string(from: Date())

        var result: [String: Any] = [
            "date": date, "quick": quick, "cores": calibrate["cores"] ?? MachineFacts.cores,
            "cpu_model": calibrate["cpu_model"] ?? MachineFacts.cpuModel,
            "ceiling_tx_per_s": ceiling, "e2e_tx_per_s": e2eRate, "e2e_ratio": ceiling > 0 ? e2eRate / ceiling : 0,
            "latency_p50_ms": e2e["latency_p50_ms"] ?? 0, "latency_p99_ms": e2e["latency_p99_ms"] ?? 0,
            "latency_max_ms": e2e["latency_max_ms"] ?? 0,
            "e2e_overall_tx_per_s": overallRate, "e2e_overall_ratio": ceiling > 0 ? overallRate / ceiling : 0,
            "verify_tx_per_s": verifyRate, "verify_ratio": verifyRatio,
            "validator_rss_mb_max": e2e["validator_rss_mb_max"] ?? 0,
            "calibration": calibrate, "e2e": e2e, "verify_e2e_chain": verifyE2E, "verify_generated_chain": verify,
        ]
        if !growth.isEmpty { result["growth"] = growth["growth"] }
        if !micro.isEmpty { result["micro"] = micro["micro"] }
        if !window1.isEmpty { result["e2e_window1"] = window1 }
        for (name, wan) in [("default", wanDefault), ("window1", wanWindow1)] where !wan.isEmpty {
            result["wan_\(name)_tx_per_s"] = wan["e2e_tx_per_s"] ?? 0
            result["wan_\(name)_latency_p50_ms"] = wan["latency_p50_ms"] ?? 0
            result["wan_\(name)_latency_p99_ms"] = wan["latency_p99_ms"] ?? 0
            result["wan_\(name)_max_blocks_in_flight"] = wan["max_blocks_in_flight"] ?? 0
            result["wan_delay_ms"] = wan["wan_delay_ms"] ?? 0
            result["e2e_wan_\(name)"] = wan
        }
        if !packetSwitch.isEmpty { result["switch"] = packetSwitch }
        let scaling = Self.scalingRows(allCores: allCores, loopback: e2e, wan: wanDefault, parts: parts)
        if !scaling.isEmpty { result["scaling"] = scaling }
        try writeJSON(result, to: output)
        printTable(result, calibrate: calibrate, e2e: e2e, verifyE2E: verifyE2E, verify: verify, growth: growth, window1: window1)
        printNetworkLab(wanDefault: wanDefault, wanWindow1: wanWindow1, packetSwitch: packetSwitch)
        if !scaling.isEmpty { Self.printScaling(scaling) }
        print("results written to \(output)")
    }

    /// Parts of `tools/bench --scaling`: `e2e-scaling-<V>.json` (loopback) and
    /// `e2e-scaling-wan-<V>.json` (WAN profile).
    static let scalingPrefixes = [("loopback", "e2e-scaling-"), ("wan", "e2e-scaling-wan-")]

    /// `scaling[]`: one row per network size and profile, the default 4-validator runs
    /// (`e2e`, `e2e-wan`) included, each against its own size's ceiling. Empty unless a
    /// scaling part exists, so a run without `--scaling` writes what it always did.
    static func scalingRows(allCores: Double, loopback: [String: Any], wan: [String: Any], parts: String) -> [[String: Any]] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: parts)) ?? []
        var runs: [(profile: String, e2e: [String: Any])] = []
        for name in names.sorted() where name.hasSuffix(".json") {
            let stem = String(name.dropLast(".json".count))
            // The longest matching prefix decides: "e2e-scaling-wan-7" is WAN, not loopback "wan-7".
            guard let (profile, prefix) = scalingPrefixes.filter({ stem.hasPrefix($0.1) }).max(by: { $0.1.count < $1.1.count }),
                Int(stem.dropFirst(prefix.count)) != nil,
                let data = FileManager.default.contents(atPath: parts + "/" + name),
                let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            else { continue }
            runs.append((profile, object))
        }
        guard !runs.isEmpty else { return [] }
        if !loopback.isEmpty { runs.append(("loopback", loopback)) }
        if !wan.isEmpty { runs.append(("wan", wan)) }
        return runs.map { scalingRow(profile: $0.profile, $0.e2e, allCores: allCores) }
            .sorted { ($0["profile"] as! String, $0["validators"] as! Int) < ($1["profile"] as! String, $1["validators"] as! Int) }
    }

    static func scalingRow(profile: String, _ e2e: [String: Any], allCores: Double) -> [String: Any] {
        func number(_ key: String) -> Double { (e2e[key] as? Double) ?? Double(e2e[key] as? Int ?? 0) }
        let validators = e2e["validators"] as? Int ?? 4
        let ceiling = allCores / Double(validators)
        var row: [String: Any] = [
            "profile": profile, "validators": validators, "ceiling_tx_per_s": ceiling,
            "transactions": number("e2e_committed"),
            "e2e_tx_per_s": number("e2e_tx_per_s"), "e2e_ratio": ceiling > 0 ? number("e2e_tx_per_s") / ceiling : 0,
            "e2e_overall_tx_per_s": number("e2e_overall_tx_per_s"),
            "e2e_overall_ratio": ceiling > 0 ? number("e2e_overall_tx_per_s") / ceiling : 0,
            "latency_offered_tx_per_s": number("latency_offered_tx_per_s"),
            "latency_p50_ms": number("latency_p50_ms"), "latency_p99_ms": number("latency_p99_ms"),
            "view_changes": number("view_changes"), "validator_rss_mb_max": number("validator_rss_mb_max"),
        ]
        // Absent when a node's counter could not be read: left out rather than shown as 0.
        for phase in ["saturation", "latency"] {
            let key = "\(phase)_bytes_sent_per_tx_per_validator"
            if let bytes = e2e[key] { row[key] = bytes }
        }
        if let delay = e2e["wan_delay_ms"] { row["wan_delay_ms"] = delay }
        return row
    }

    static func printScaling(_ rows: [[String: Any]]) {
        func number(_ row: [String: Any], _ key: String) -> Double { (row[key] as? Double) ?? Double(row[key] as? Int ?? 0) }
        func padded(_ text: String, _ width: Int) -> String { text.count >= width ? text : text.padding(toLength: width, withPad: " ", startingAt: 0) }
        func rightAligned(_ text: String, _ width: Int) -> String { String(repeating: " ", count: max(0, width - text.count)) + text }
        func bytes(_ row: [String: Any], _ key: String) -> String { row[key] == nil ? "?" : String(format: "%.0f", number(row, key)) }
        print("scaling: saturation against each size's ceiling (all-core verify ÷ V); latency at the fixed load; bytes sent per committed tx per validator")
        print(" V  profile    ceiling   saturation (ratio)   whole run (ratio)   p50 / p99 ms at tx/s       bytes/tx/val sat / fixed  view ch.  tx")
        for row in rows {
            print(String(format: "%2d  %@ %7.0f   %7.0f (%4.2f)      %7.0f (%4.2f)     %6.1f / %6.1f at %5.0f     %@ / %@          %3.0f  %6.0f",
                         row["validators"] as? Int ?? 0, padded(row["profile"] as? String ?? "?", 8), number(row, "ceiling_tx_per_s"),
                         number(row, "e2e_tx_per_s"), number(row, "e2e_ratio"), number(row, "e2e_overall_tx_per_s"),
                         number(row, "e2e_overall_ratio"), number(row, "latency_p50_ms"), number(row, "latency_p99_ms"),
                         number(row, "latency_offered_tx_per_s"), rightAligned(bytes(row, "saturation_bytes_sent_per_tx_per_validator"), 8),
                         padded(bytes(row, "latency_bytes_sent_per_tx_per_validator"), 8), number(row, "view_changes"), number(row, "transactions")))
        }
    }

    /// The WAN profile (validators in network namespaces, delay on every validator
    /// link) and the packet switch's own cost; absent when not run (not root).
    private func printNetworkLab(wanDefault: [String: Any], wanWindow1: [String: Any], packetSwitch: [String: Any]) {
        func number(_ object: [String: Any], _ key: String) -> Double { (object[key] as? Double) ?? Double(object[key] as? Int ?? 0) }
        func row(_ name: String, _ value: String) {
            print(name.padding(toLength: 52, withPad: " ", startingAt: 0) + value)
        }
        for (name, wan) in [("default window", wanDefault), ("window 1", wanWindow1)] where !wan.isEmpty {
            row(String(format: "WAN %.0f ms one way, %@ (max %.0f in flight)", number(wan, "wan_delay_ms"), name, number(wan, "max_blocks_in_flight")),
                String(format: "%.0f tx/s; latency p50 %.1f / p99 %.1f ms at %.0f tx/s", number(wan, "e2e_tx_per_s"), number(wan, "latency_p50_ms"),
                       number(wan, "latency_p99_ms"), number(wan, "latency_offered_tx_per_s")))
        }
        if !packetSwitch.isEmpty {
            row("packet switch: RTT p50 direct / switched", String(format: "%.0f / %.0f µs (+%.0f µs one way)", number(packetSwitch, "rtt_direct_p50_us"),
                number(packetSwitch, "rtt_switch_p50_us"), number(packetSwitch, "added_one_way_p50_us")))
            row("packet switch: 64-byte UDP forwarded", String(format: "%.0f packets/s (%.0f offered)", number(packetSwitch, "udp_forwarded_per_s"),
                number(packetSwitch, "udp_sent_per_s")))
            row("packet switch: one TCP stream", String(format: "%.0f MiB/s", number(packetSwitch, "bulk_tcp_mib_per_s")))
        }
    }

    private func printTable(
        _ result: [String: Any], calibrate: [String: Any], e2e: [String: Any], verifyE2E: [String: Any], verify: [String: Any],
        growth: [String: Any], window1: [String: Any]
    ) {
        func number(_ object: [String: Any], _ key: String) -> Double { (object[key] as? Double) ?? Double(object[key] as? Int ?? 0) }
        // Padded, never cut: a long value pushes its target right.
        func pad(_ text: String, _ width: Int) -> String { text.count >= width ? text + " " : text.padding(toLength: width, withPad: " ", startingAt: 0) }
        func row(_ name: String, _ value: String, _ target: String = "") { print(pad(name, 44) + pad(value, 22) + target) }
        func verdict(_ ok: Bool) -> String { ok ? "met" : "NOT met" }
        print("Tally benchmarks \(result["date"]!)\(quick ? " (quick)" : "") on \(result["cores"]!) cores, \(result["cpu_model"]!)")
        print(String(repeating: "-", count: 90))
        row("figure", "value", "target")
        row("libsodium verify, 1 thread", String(format: "%.0f /s", number(calibrate, "verify_raw_1_thread_per_s")))
        row("libsodium verify, all cores", String(format: "%.0f /s", number(calibrate, "verify_raw_all_cores_per_s")))
        row("SHA-256, 64-byte inputs", String(format: "%.0f /s", number(calibrate, "sha256_64b_per_s")))
        row("SHA-256, 1 MiB inputs", String(format: "%.0f MiB/s", number(calibrate, "sha256_1mib_mib_per_s")))
        let ceiling = number(result, "ceiling_tx_per_s")
        row("ceiling (all-core verify / \(e2e["validators"] ?? 4))", String(format: "%.0f tx/s", ceiling))
        let ratio = number(result, "e2e_ratio")
        row("e2e committed tx/s at saturation", String(format: "%.0f tx/s (%.2f)", number(result, "e2e_tx_per_s"), ratio),
            "≥ 0.6 of ceiling: " + verdict(ratio >= 0.6))
        let overallRatio = number(result, "e2e_overall_ratio")
        row("  whole run (first submit → last commit)", String(format: "%.0f tx/s (%.2f)", number(result, "e2e_overall_tx_per_s"), overallRatio),
            "≥ 0.8 of ceiling: " + verdict(overallRatio >= 0.8))
        row("  blocks/s, tx/block", String(format: "%.1f, %.0f", number(e2e, "e2e_blocks_per_s"), number(e2e, "e2e_tx_per_block")))
        let p50 = number(result, "latency_p50_ms"), p99 = number(result, "latency_p99_ms")
        row(String(format: "commit latency p50 at %.0f tx/s", number(e2e, "latency_offered_tx_per_s")), String(format: "%.1f ms", p50),
            "< 5 ms: " + verdict(p50 < 5))
        row("commit latency p99", String(format: "%.1f ms", p99), "< 25 ms: " + verdict(p99 < 25))
        row("commit latency max", String(format: "%.1f ms", number(e2e, "latency_max_ms")))
        for loop in (e2e["closed_loop"] as? [[String: Any]]) ?? [] {
            row(String(format: "closed loop, %.0f clients: ops/s", number(loop, "clients")), String(format: "%.0f ops/s", number(loop, "ops_per_s")))
            row("  latency median / p90 / p99", String(format: "%.1f / %.1f / %.1f ms", number(loop, "latency_median_ms"),
                number(loop, "latency_p90_ms"), number(loop, "latency_p99_ms")))
        }
        if let stages = (e2e["stages"] as? [String: Any])?["latency"] as? [[String: Any]] {
            for stage in stages {
                row("  stage \(stage["stage"] ?? "?") (fixed load, all nodes)", String(format: "mean %.2f / p50 %.2f / p99 %.2f ms",
                    number(stage, "mean_ms"), number(stage, "p50_ms"), number(stage, "p99_ms")), String(format: "%.0f obs", number(stage, "observations")))
            }
        }
        row("view changes during the run", String(format: "%.0f", number(e2e, "view_changes")), "0: " + verdict(number(e2e, "view_changes") == 0))
        let rss = number(result, "validator_rss_mb_max")
        row("validator peak RSS (max of \(e2e["validators"] ?? 4))", String(format: "%.0f MiB", rss), "< 300 MB: " + verdict(rss < 300))
        row("validator restart (e2e chain)", String(format: "%.2f s", number(e2e, "restart_seconds")))
        if !window1.isEmpty {
            row("e2e with max_blocks_in_flight = 1", String(format: "%.0f tx/s", number(window1, "e2e_tx_per_s")))
            row("  latency p50 / p99", String(format: "%.1f / %.1f ms", number(window1, "latency_p50_ms"), number(window1, "latency_p99_ms")))
        }
        row("verify, e2e chain", String(format: "%.0f tx/s", number(verifyE2E, "tx_per_s")))
        let verifyRatio = number(result, "verify_ratio")
        row(String(format: "verify, generated chain (%.0f tx)", number(verify, "transactions")),
            String(format: "%.0f tx/s (%.2f)", number(result, "verify_tx_per_s"), verifyRatio), "≥ 0.85 of all-core: " + verdict(verifyRatio >= 0.85))
        if verify["calibrated_ratio"] != nil {
            row("  calibration right before / after", String(format: "%.0f / %.0f /s", number(verify, "calibration_before_per_s"),
                number(verify, "calibration_after_per_s")), String(format: "ratio: %.0f signatures/s ÷ their mean", number(verify, "signatures_per_s")))
        }
        for entry in (growth["growth"] as? [[String: Any]]) ?? [] {
            row(String(format: "growth %.0f tx: verify / start / restart", number(entry, "length")),
                String(format: "%.2f / %.2f / %.2f s", number(entry, "seconds"), number(entry, "first_start_seconds"), number(entry, "restart_seconds")),
                String(format: "RSS %.0f MiB after restart; restart replayed %.0f blocks", number(entry, "restart_rss_mb"),
                       number(entry, "restart_replayed_blocks")))
        }
    }
}
