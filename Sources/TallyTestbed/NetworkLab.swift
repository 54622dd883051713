import CTallyTun
import Foundation

#if canImport(Glibc)
import Glibc
#endif

public struct TestbedError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Each validator in its own network namespace with its own IPv4 address, joined by
/// TUN devices to an in-process userspace packet switch (this kernel has no netem, so
/// delay, jitter, loss and duplication happen in `PacketSwitch`). Port 0 is the
/// harness itself (a TUN in the root namespace: load generator, HTTP API, wallet);
/// port `i + 1` is validator `i`.
///
/// Addresses: subnet `10.77.S.0/24` (S picked free at start), harness `.1`,
/// validator `i` at `.(i + 2)`. Names carry the owner's pid (`tally-PID-vI`
/// namespaces, `tlyPIDvI` / `tlyPIDh` devices), so a lab whose process died is
/// recognised and removed by the next one, and two live labs do not collide.
/// Needs root, /dev/net/tun and iproute2.
public final class NetworkLab: @unchecked Sendable {
    public static let namespacePrefix = "tally-"
    public static let subnetPrefix = "10.77"
    /// Large MTU: far fewer packets through the switch for the same bytes.
    public static let defaultMTU = 65_000
    public static let defaultMaxQueuedPackets = 100_000
    /// 25 ms of a saturated 1 GB/s path fits; more than that is a fault's backlog.
    public static let defaultMaxQueuedBytes = 64 << 20

    public let validators: Int
    public let subnet: Int
    public let mtu: Int
    private let owner = getpid()
    private var descriptors: [Int32] = []
    private var namespaces: [String] = []
    private let packetSwitch: PacketSwitch
    private let lock = NSLock()
    private var stopped = false

    /// Why a lab cannot run here, or nil when it can.
    public static func unavailableReason() -> String? {
        if getuid() != 0 { return "network faults need root (network namespaces, TUN devices); run as root" }
        if !FileManager.default.fileExists(atPath: "/dev/net/tun") { return "/dev/net/tun is missing" }
        if ipPath == nil { return "iproute2 (`ip`) is not installed" }
        return namespaceProbeFailure
    }

    /// Root in a container without CAP_NET_ADMIN cannot make namespaces: try once.
    static let namespaceProbeFailure: String? = {
        let probe = "\(namespacePrefix)probe-\(getpid())"
        do {
            _ = try ip(["netns", "add", probe])
            _ = try? ip(["netns", "del", probe])
            return nil
        } catch {
            return "cannot create a network namespace: \(error)"
        }
    }()

    static let ipPath: String? = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    public init(
        validators: Int, seed: UInt64, mtu: Int = NetworkLab.defaultMTU, maxQueuedPackets: Int = NetworkLab.defaultMaxQueuedPackets,
        maxQueuedBytes: Int = NetworkLab.defaultMaxQueuedBytes
    ) throws {
        precondition(validators >= 1 && validators <= 200 && (576...PacketSwitch.maxPacketBytes - 1).contains(mtu))
        if let reason = Self.unavailableReason() { throw TestbedError(reason) }
        self.validators = validators
        self.mtu = mtu
        Self.removeStale()
        subnet = try Self.freeSubnet()
        var portByAddress: [UInt32: Int] = [:]
        for port in 0...validators { portByAddress[Self.address(subnet: subnet, port: port)] = port }
        var opened: [Int32] = []
        var made: [String] = []
        do {
            let harness = try Self.openTun("tly\(owner)h")
            opened.append(harness)
            try Self.ip(["addr", "add", "\(Self.dotted(subnet: subnet, port: 0))/24", "dev", "tly\(owner)h"])
            try Self.ip(["link", "set", "tly\(owner)h", "mtu", "\(mtu)", "up"])
            for index in 0..<validators {
                let device = "tly\(owner)v\(index)", namespace = "\(Self.namespacePrefix)\(owner)-v\(index)"
                opened.append(try Self.openTun(device))
                try Self.ip(["netns", "add", namespace])
                made.append(namespace)
                try Self.ip(["link", "set", device, "netns", namespace])
                try Self.ip(["-n", namespace, "addr", "add", "\(Self.dotted(subnet: subnet, port: index + 1))/24", "dev", device])
                try Self.ip(["-n", namespace, "link", "set", device, "mtu", "\(mtu)", "up"])
                try Self.ip(["-n", namespace, "link", "set", "lo", "up"])
            }
        } catch {
            for descriptor in opened { close(descriptor) }
            for namespace in made { _ = try? Self.ip(["netns", "del", namespace]) }
            throw error
        }
        descriptors = opened
        namespaces = made
        packetSwitch = PacketSwitch(
            descriptors: opened, portByAddress: portByAddress, seed: seed, maxQueuedPackets: maxQueuedPackets, maxQueuedBytes: maxQueuedBytes)
        packetSwitch.start()
    }

    deinit { stop() }

    /// Stops the switch, closes the devices (which removes them) and deletes the
    /// namespaces. Kill the validators first.
    public func stop() {
        let first = lock.withLock {
            defer { stopped = true }
            return !stopped
        }
        guard first else { return }
        packetSwitch.stop()
        for descriptor in descriptors { close(descriptor) }
        for namespace in namespaces { _ = try? Self.ip(["netns", "del", namespace]) }
    }

    // MARK: addresses

    public static let harnessPort = 0
    public static func port(validator: Int) -> Int { validator + 1 }

    public var harnessAddress: String { Self.dotted(subnet: subnet, port: 0) }
    public func address(validator index: Int) -> String { Self.dotted(subnet: subnet, port: index + 1) }
    public func namespace(validator index: Int) -> String { "\(Self.namespacePrefix)\(owner)-v\(index)" }

    /// The command that runs `arguments` inside validator `index`'s namespace.
    public func command(validator index: Int, _ arguments: [String]) -> (executable: URL, arguments: [String]) {
        (URL(fileURLWithPath: Self.ipPath!), ["netns", "exec", namespace(validator: index)] + arguments)
    }

    static func address(subnet: Int, port: Int) -> UInt32 { UInt32(10) << 24 | UInt32(77) << 16 | UInt32(subnet) << 8 | UInt32(port + 1) }
    static func dotted(subnet: Int, port: Int) -> String { "\(subnetPrefix).\(subnet).\(port + 1)" }

    /// A new socket inside validator `index`'s namespace (tests and measurements of the
    /// switch, without a process in the namespace).
    public func socket(validator index: Int, type: Int32) throws -> Int32 {
        let descriptor = ctally_socket_in_netns("/var/run/netns/\(namespace(validator: index))", AF_INET, type, 0)
        guard descriptor >= 0 else { throw TestbedError("socket in \(namespace(validator: index)): \(String(cString: strerror(-descriptor)))") }
        return descriptor
    }

    // MARK: link policies

    /// Policy of the directed link between two ports (`harnessPort`, `port(validator:)`).
    public func setPolicy(_ policy: LinkPolicy, from: Int, to: Int) { packetSwitch.setPolicy(policy, for: Link(from: from, to: to)) }
    public func policy(from: Int, to: Int) -> LinkPolicy { packetSwitch.policy(Link(from: from, to: to)) }

    /// Sets every validator↔validator link (both directions) at once; links to the
    /// harness stay as they are.
    public func setValidatorLinks(_ policy: (_ from: Int, _ to: Int) -> LinkPolicy) {
        for from in 0..<validators {
            for to in 0..<validators where from != to {
                setPolicy(policy(from, to), from: Self.port(validator: from), to: Self.port(validator: to))
            }
        }
    }

    /// Cuts validator `index` off from every other validator (the harness still reaches it).
    public func isolate(_ index: Int) {
        for other in 0..<validators where other != index {
            setPolicy(.partitioned, from: Self.port(validator: index), to: Self.port(validator: other))
            setPolicy(.partitioned, from: Self.port(validator: other), to: Self.port(validator: index))
        }
    }

    /// Validators in different groups cannot reach each other; within a group, clear.
    public func split(_ groups: [[Int]]) {
        var group: [Int: Int] = [:]
        for (number, members) in groups.enumerated() { for member in members { group[member] = number } }
        setValidatorLinks { from, to in group[from] == group[to] ? .clear : .partitioned }
    }

    /// Every link clear.
    public func healAll() { packetSwitch.healAll() }

    public struct Statistics: Sendable, CustomStringConvertible {
        public let accepted: Int
        public let delivered: Int
        public let duplicated: Int
        public let queued: Int
        public let drops: [DropReason: Int]
        public var description: String {
            "\(accepted) packets accepted, \(delivered) delivered, \(duplicated) duplicated, \(queued) queued; dropped "
                + DropReason.allCases.map { "\($0.rawValue) \(drops[$0] ?? 0)" }.joined(separator: ", ")
        }
    }

    public var statistics: Statistics {
        let raw = packetSwitch.statistics
        return Statistics(accepted: raw.accepted, delivered: raw.delivered, duplicated: raw.duplicated, queued: raw.queued, drops: raw.drops)
    }

    // MARK: setup and cleanup

    static func openTun(_ name: String) throws -> Int32 {
        let descriptor = ctally_tun_open(name)
        guard descriptor >= 0 else { throw TestbedError("cannot create TUN device \(name): \(String(cString: strerror(-descriptor)))") }
        return descriptor
    }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> String {
        let result = try runProcess(URL(fileURLWithPath: ipPath!), arguments)
        guard result.status == 0 else {
            throw TestbedError("ip \(arguments.joined(separator: " ")) failed (exit \(result.status)): \(result.output)")
        }
        return result.output
    }

    /// The lowest `10.77.S.0/24` no address in this namespace is in (another live lab's harness).
    static func freeSubnet() throws -> Int {
        let text = try ip(["-4", "-o", "addr", "show"])
        var used = Set<Int>()
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) where word.hasPrefix(subnetPrefix + ".") {
            let parts = word.split(separator: ".")
            if parts.count >= 3, let third = Int(parts[2]) { used.insert(third) }
        }
        guard let free = (1...250).first(where: { !used.contains($0) }) else { throw TestbedError("no free 10.77.S.0/24 subnet") }
        return free
    }

    /// Deletes namespaces of labs whose owner process is gone, killing what still runs
    /// in them (validators a crashed harness left behind).
    public static func removeStale() {
        guard let text = try? ip(["netns", "list"]) else { return }
        for line in text.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(namespacePrefix), let ownerText = name.dropFirst(namespacePrefix.count).split(separator: "-").first,
                let ownerPid = Int32(ownerText), ownerPid != getpid()
            else { continue }
            if kill(ownerPid, 0) == 0 || errno != ESRCH { continue }
            if let pids = try? ip(["netns", "pids", name]) {
                for pid in pids.split(separator: "\n").compactMap({ Int32($0) }) { kill(pid, SIGKILL) }
            }
            _ = try? ip(["netns", "del", name])
        }
    }
}

/// Runs a process to completion; returns its exit status and its output (stdout and stderr).
public func runProcess(_ executable: URL, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = executable
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
