import Foundation
import TallyCrypto
import TallyNode
import TallyTestbed
import TallyTypes

/// The attacks on connections and reads, from attacker addresses.
struct NetworkAttacks {
    /// The node's defaults (`HTTPLimits`, `[api]` in config.toml) the checks hold it to,
    /// read from the node's own types so the checks follow a changed default.
    static let nodeLimits = HTTPLimits()
    static let maxConnectionsPerAddress = nodeLimits.maxConnectionsPerAddress
    static let headerTimeoutSeconds = Double(nodeLimits.headerTimeoutSeconds)
    static let bodyTimeoutSeconds = Double(nodeLimits.bodyTimeoutSeconds)
    static let maxEventSubscribersPerAddress = nodeLimits.maxEventSubscribersPerAddress
    static let maxEventSubscribers = NodeConfig().api.maxEventSubscribers
    /// Slack for a loaded machine on each deadline.
    static let deadlineGraceSeconds = 5.0

    let cluster: Testbed
    let options: HostileOptions
    let firstAddress: Int

    var host: String { cluster.host(0) }

    /// Idle connections spread so that every address but the last is at the
    /// per-address cap and the last goes past it; plus slowloris heads and slow bodies.
    func connectionFloods(target: Int) -> [ConnectionFlood] {
        let api = ConnectionFlood.Target(host: host, port: cluster.basePort + target)
        // The first address asks for more than the cap (the extra ones must be refused);
        // it connects first, while the node still accepts. The rest fill the total cap and beyond.
        var idle = [Self.maxConnectionsPerAddress + 8]
        var remaining = options.idleConnections
        while remaining > 0 {
            idle.append(min(remaining, Self.maxConnectionsPerAddress))
            remaining -= idle.last!
        }
        let slowAddresses = max(1, options.slowConnections / 8)
        let spread = { (total: Int) in (0..<slowAddresses).map { total / slowAddresses + ($0 < total % slowAddresses ? 1 : 0) } }
        // The slow ones connect first: past the total cap (512) the node answers 503
        // server_busy (or closes the heaviest address's oldest connection for an address
        // holding fewer), so a slow connection opened later might not be held.
        let slowHeader = ConnectionFlood(style: .slowHeader, target: api, firstAddress: firstAddress + idle.count, perAddress: spread(options.slowConnections))
        let slowBody = ConnectionFlood(
            style: .slowBody, target: api, firstAddress: firstAddress + idle.count + slowAddresses, perAddress: spread(options.slowConnections))
        usleep(500_000)
        return [ConnectionFlood(style: .idle, target: api, firstAddress: firstAddress, perAddress: idle), slowHeader, slowBody]
    }

    /// After the floods: the over-cap address was refused with 503 beyond the cap,
    /// and every slow connection was closed by the node within its deadline (when the
    /// phase lasted long enough to see it).
    func checkFloods(_ floods: [ConnectionFlood], report: AttackReport) {
        guard floods.count == 3 else { return }
        let idle = floods[0].snapshot
        let bySource = Dictionary(grouping: idle, by: \.source)
        let overCap = bySource[idle.first!.source] ?? []
        let refused = overCap.filter { $0.statusCode == 503 }.count
        let accepted = overCap.count - refused
        report.count("idle opened", idle.count)
        report.count("idle closed by the node", idle.filter { $0.closedAt != nil }.count)
        report.count("idle refused 503", idle.filter { $0.statusCode == 503 }.count)
        report.add(CheckResult(
            name: "connections: one address over the per-address cap (\(Self.maxConnectionsPerAddress)) is refused beyond it",
            passed: refused >= overCap.count - Self.maxConnectionsPerAddress,
            detail: "\(overCap.count) opened from \(idle.first!.source): \(refused) answered 503, \(accepted) held"))
        for (flood, limit) in [(floods[1], Self.headerTimeoutSeconds), (floods[2], Self.bodyTimeoutSeconds)] {
            let connections = flood.snapshot
            let bound = limit + Self.deadlineGraceSeconds
            let name = "connections: every \(flood.style.rawValue) connection closed by the node within \(Int(limit)) s (+\(Int(Self.deadlineGraceSeconds)) s)"
            let heldSeconds = (flood.stoppedAt ?? monotonicNow()) - flood.startedAt
            guard heldSeconds > bound else {
                report.add(CheckResult(name: name, passed: true, detail: String(format: "not checked: held %.0f s, less than %.0f s", heldSeconds, bound)))
                continue
            }
            let late = connections.filter { ($0.closedAt ?? flood.stoppedAt ?? monotonicNow()) - $0.openedAt > bound }
            let codes = Dictionary(grouping: connections.compactMap(\.statusCode), by: { $0 }).mapValues(\.count)
            report.count("\(flood.style.rawValue) opened", connections.count)
            report.add(CheckResult(
                name: name, passed: late.isEmpty,
                detail: "\(connections.count) connections, \(late.count) open past the bound; answers \(codes.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" })"))
        }
    }

    /// `GET /txs/{hash}` of committed transfers and `/blocks/latest`, `/blocks/{h}`
    /// as fast as each thread gets answers, nodes in turn; counts answers by status.
    func hammer(_ report: AttackReport, avoid: Int, hashes: @escaping @Sendable () -> [Hash], stop: StopFlag) -> [AttackThread] {
        (0..<options.hammerThreads).map { thread in
            let source = AttackerAddress.of(firstAddress + 300 + thread)
            return AttackThread("hammer-\(thread)") { [cluster] in
                var request = 0
                var known: [Hash] = []
                while !stop.isSet {
                    if request % 50 == 0 { known = hashes() }
                    let path: String
                    switch request % 3 {
                    case 0: path = known.isEmpty ? "/blocks/latest" : "/txs/\(known[request % known.count].hex)"
                    case 1: path = "/blocks/latest"
                    default: path = "/blocks/\(1 + request % 4)"
                    }
                    // Every node but the flooded one (whose API is already full): reads that get answers cost the most.
                    let node = (0..<cluster.validators).filter { $0 != avoid }[request % (cluster.validators - 1)]
                    let response = RawHTTP.request(from: source, host: cluster.host(0), port: cluster.basePort + node, method: "GET", path: path, timeoutSeconds: 5)
                    report.count(response.map { "\($0.status)" } ?? "no_answer")
                    request += 1
                }
            }
        }
    }

    /// `/events` streams from many addresses, each asking for two more than it may hold.
    func eventGrab(target: Int) -> ConnectionFlood {
        ConnectionFlood(
            style: .events, target: ConnectionFlood.Target(host: host, port: cluster.basePort + target), firstAddress: firstAddress + 400,
            perAddress: Array(repeating: Self.maxEventSubscribersPerAddress + 2, count: options.eventAddresses))
    }

    /// `displaced`: streams the node ended to make room for an address holding fewer
    /// (so more than the total cap may have been granted over the run, never at once).
    func checkEventGrab(_ flood: ConnectionFlood, displaced: Int, report: AttackReport) {
        let connections = flood.snapshot
        let accepted = connections.filter { $0.statusCode == 200 }
        let perSource = Dictionary(grouping: accepted, by: \.source).mapValues(\.count)
        let worst = perSource.values.max() ?? 0
        report.count("streams asked", connections.count)
        report.count("streams granted", accepted.count)
        report.count("refused", connections.filter { ($0.statusCode ?? 200) != 200 }.count)
        report.add(CheckResult(
            name: "events: at most \(Self.maxEventSubscribersPerAddress) streams per address, \(Self.maxEventSubscribers) in all",
            passed: worst <= Self.maxEventSubscribersPerAddress && accepted.count - displaced <= Self.maxEventSubscribers,
            detail: "\(accepted.count) of \(connections.count) granted to \(perSource.count) addresses, at most \(worst) to one, \(displaced) displaced"))
    }

    /// Idle connections to every validator's peer port, reopened as soon as a node
    /// closes one (pressure that lasts).
    func peerFloods() -> [ConnectionFlood] {
        (0..<cluster.validators).map { node in
            ConnectionFlood(
                style: .idle, target: ConnectionFlood.Target(host: host, port: cluster.basePort + 100 + node),
                firstAddress: firstAddress + 500 + node * options.peerFloodAddresses,
                perAddress: Array(repeating: options.peerFloodPerAddress, count: options.peerFloodAddresses), reopen: true)
        }
    }
}

/// Crafted block segments for `tally verify`, which must finish within a bound and
/// refuse them (exit 1 or 2), never allocating a file's claimed size.
enum CraftedSegments {
    static let recordMagic: [UInt8] = [0x54, 0x42, 0x4C, 0x4B]  // "TBLK" little-endian 0x4B4C4254

    /// A segment of `bytes` with `headers` fake record headers (right magic, a
    /// plausible length, a wrong checksum) spread through random bytes.
    static func fakeHeaders(bytes: Int, headers: Int, seed: UInt64) -> [UInt8] {
        var random = SplitMix64(seed: seed)
        var data = (0..<bytes).map { _ in UInt8.random(in: 0...255, using: &random) }
        let spacing = max(24, bytes / max(headers, 1))
        var offset = 0
        var height: UInt64 = 1
        while offset + 20 <= bytes {
            data.replaceSubrange(offset..<offset + 4, with: recordMagic)
            let length = UInt32(min(bytes - offset, 4 << 20))
            withUnsafeBytes(of: length.littleEndian) { data.replaceSubrange(offset + 4..<offset + 8, with: $0) }
            withUnsafeBytes(of: height.littleEndian) { data.replaceSubrange(offset + 8..<offset + 16, with: $0) }
            height += 1
            offset += spacing
        }
        return data
    }

    /// Runs `tally verify` on a data directory holding only `segment` (or a sparse
    /// file of `sparseBytes`), with `genesis`; kills it past `boundSeconds`.
    static func verify(
        tally: URL, genesis: Genesis, directory: URL, name: String, segment: [UInt8]?, sparseBytes: Int64?, boundSeconds: Double
    ) throws -> CheckResult {
        let data = directory.appendingPathComponent(name)
        let blocks = data.appendingPathComponent("blocks")
        try? FileManager.default.removeItem(at: data)
        try FileManager.default.createDirectory(at: blocks, withIntermediateDirectories: true)
        let file = blocks.appendingPathComponent("segment-00000001.tblk")
        if let segment { try Data(segment).write(to: file) }
        if let sparseBytes {
            _ = FileManager.default.createFile(atPath: file.path, contents: Data(fakeHeaders(bytes: 4096, headers: 64, seed: 7)))
            guard truncate(file.path, off_t(sparseBytes)) == 0 else { throw TestbedError("truncate \(file.path): errno \(errno)") }
        }
        let genesisFile = directory.appendingPathComponent("\(name)-genesis.json")
        try genesis.jsonData().write(to: genesisFile)
        let process = Process()
        process.executableURL = tally
        process.arguments = ["verify", "--data", data.path, "--genesis", genesisFile.path, "--json"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        let started = monotonicNow()
        try process.run()
        while process.isRunning && monotonicNow() - started < boundSeconds { usleep(50_000) }
        let killed = process.isRunning
        if killed { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let seconds = monotonicNow() - started
        var usage = rusage()
        getrusage(RUSAGE_CHILDREN.rawValue, &usage)
        let peakMiB = Double(usage.ru_maxrss) / 1024
        let refused = !killed && process.terminationReason == .exit && (process.terminationStatus == 1 || process.terminationStatus == 2)
        try? FileManager.default.removeItem(at: data)
        let what = segment.map { "\($0.count) B segment" } ?? "sparse segment of \(sparseBytes ?? 0) B"
        return CheckResult(
            name: "verify: tally verify refuses a crafted \(name) segment within \(Int(boundSeconds)) s",
            passed: refused,
            detail: String(format: "%@: %@ after %.1f s (children's peak RSS so far %.0f MiB)", what,
                           killed ? "still running, killed" : "\(process.terminationReason == .exit ? "exit" : "signal") \(process.terminationStatus)",
                           seconds, peakMiB))
    }
}
