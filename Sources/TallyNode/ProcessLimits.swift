import Foundation
import Logging
import Metrics
import NIOCore

/// The process's open-descriptor limit. The default soft limit (often 1,024) is
/// far below what a node's API connections, peers and segment files can need; the
/// hard limit is what the administrator allows.
public enum DescriptorLimit {
    public struct Change: Equatable, Sendable {
        public let previousSoft: UInt64
        public let soft: UInt64
        public let hard: UInt64
    }

    /// Raises RLIMIT_NOFILE's soft limit to its hard limit (to the kernel's
    /// `fs.nr_open` when the hard limit is unlimited). Returns what it was and is.
    public static func raiseToHard() -> Change {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return Change(previousSoft: 0, soft: 0, hard: 0) }
        let previous = UInt64(limit.rlim_cur)
        var target = limit.rlim_max
        if target == rlim_t.max, let ceiling = kernelMaximum() { target = rlim_t(ceiling) }
        if target > limit.rlim_cur {
            var raised = limit
            raised.rlim_cur = target
            if setrlimit(resource, &raised) != 0 { _ = getrlimit(resource, &limit) } else { limit = raised }
        }
        return Change(previousSoft: previous, soft: UInt64(limit.rlim_cur), hard: UInt64(limit.rlim_max))
    }

    /// Sets the soft limit (tests).
    public static func setSoft(_ soft: UInt64) -> Bool {
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else { return false }
        limit.rlim_cur = rlim_t(soft)
        return setrlimit(resource, &limit) == 0
    }

    public static var soft: UInt64 {
        var limit = rlimit()
        return getrlimit(resource, &limit) == 0 ? UInt64(limit.rlim_cur) : 0
    }

    #if canImport(Glibc)
    private static let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let resource = RLIMIT_NOFILE
    #endif

    private static func kernelMaximum() -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8) else { return nil }
        return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
