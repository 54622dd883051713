import CTallyTun
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Nanoseconds on the monotonic clock.
func monotonicNanoseconds() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
}

/// The userspace switch between TUN devices: one thread reads IPv4 packets from every
/// port's descriptor, routes each by its destination address, passes it through the
/// `PacketScheduler` (the link's delay, jitter, loss, duplication or block) and writes
/// it to the destination port's descriptor when it is due.
final class PacketSwitch: @unchecked Sendable {
    /// Largest packet read or written (the TUN MTU is at most this).
    static let maxPacketBytes = 65_536
    /// Packets read from one port before the thread looks at the others (fairness).
    static let maxReadsPerPortPerRound = 64
    /// The thread wakes at least this often to notice `stop()`.
    static let idleWakeMilliseconds: Int32 = 50

    private let descriptors: [Int32]
    private let portByAddress: [UInt32: Int]
    private let lock = NSLock()
    private var scheduler: PacketScheduler<[UInt8]>
    private var stopping = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    private var delivered = 0

    /// `descriptors[port]` is the TUN descriptor of the port whose IPv4 address is
    /// the key of `portByAddress` mapping to `port`.
    init(descriptors: [Int32], portByAddress: [UInt32: Int], seed: UInt64, maxQueuedPackets: Int, maxQueuedBytes: Int) {
        self.descriptors = descriptors
        self.portByAddress = portByAddress
        scheduler = PacketScheduler(seed: seed, maxQueuedPackets: maxQueuedPackets, maxQueuedBytes: maxQueuedBytes)
    }

    func start() {
        let thread = Thread { [self] in
            run()
            finished.signal()
        }
        thread.name = "tally-packet-switch"
        thread.stackSize = 1 << 20
        self.thread = thread
        thread.start()
    }

    func stop() {
        let wasRunning = lock.withLock {
            let running = thread != nil && !stopping
            stopping = true
            return running
        }
        if wasRunning { finished.wait() }
    }

    func setPolicy(_ policy: LinkPolicy, for link: Link) { lock.withLock { scheduler.setPolicy(policy, for: link) } }
    func policy(_ link: Link) -> LinkPolicy { lock.withLock { scheduler.policy(link) } }
    func healAll() { lock.withLock { scheduler.healAll() } }

    struct Statistics: Sendable {
        let accepted: Int
        let delivered: Int
        let duplicated: Int
        let queued: Int
        let drops: [DropReason: Int]
    }

    var statistics: Statistics {
        lock.withLock {
            Statistics(accepted: scheduler.accepted, delivered: delivered, duplicated: scheduler.duplicated, queued: scheduler.queuedCount,
                       drops: scheduler.drops)
        }
    }

    // MARK: the thread

    private func run() {
        var pollSet = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.maxPacketBytes, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let timeout: Int32 = lock.withLock {
                guard let due = scheduler.nextDueNanoseconds else { return Self.idleWakeMilliseconds }
                let now = monotonicNanoseconds()
                if due <= now { return 0 }
                // Round up: never wake before the packet is due.
                return min(Self.idleWakeMilliseconds, Int32((due - now + 999_999) / 1_000_000))
            }
            if lock.withLock({ stopping }) { return }
            let ready = poll(&pollSet, nfds_t(pollSet.count), timeout)
            if ready > 0 {
                for port in pollSet.indices where pollSet[port].revents & Int16(POLLIN) != 0 {
                    readPackets(from: port, buffer: buffer)
                }
            }
            deliverDue()
        }
    }

    private func readPackets(from port: Int, buffer: UnsafeMutableRawBufferPointer) {
        for _ in 0..<Self.maxReadsPerPortPerRound {
            let count = read(descriptors[port], buffer.baseAddress, buffer.count)
            if count <= 0 { return }  // EAGAIN: drained
            let bytes = UnsafeRawBufferPointer(rebasing: buffer[0..<count])
            let now = monotonicNanoseconds()
            guard let destination = Self.destination(bytes), let target = portByAddress[destination], target != port else {
                lock.withLock { scheduler.drop(.unroutable) }
                continue
            }
            let packet = [UInt8](bytes)
            lock.withLock { scheduler.submit(packet, bytes: count, on: Link(from: port, to: target), nowNanoseconds: now) }
        }
    }

    private func deliverDue() {
        while true {
            let next = lock.withLock { scheduler.popDue(nowNanoseconds: monotonicNanoseconds()) }
            guard let (port, packet) = next else { return }
            let written = packet.withUnsafeBytes { write(descriptors[port], $0.baseAddress, $0.count) }
            lock.withLock { if written == packet.count { delivered += 1 } else { scheduler.drop(.writeFailed) } }
        }
    }

    /// The IPv4 destination address (host order), or nil for anything that is not a
    /// well-formed IPv4 header.
    static func destination(_ packet: UnsafeRawBufferPointer) -> UInt32? {
        guard packet.count >= 20, packet[0] >> 4 == 4 else { return nil }
        return UInt32(packet[16]) << 24 | UInt32(packet[17]) << 16 | UInt32(packet[18]) << 8 | UInt32(packet[19])
    }
}
