import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Logs lines that anyone who can reach the peer port or the HTTP API can trigger
/// (refused, evicted or failed connections) at a bounded rate: at most
/// `maxLinesPerInterval` lines per reason per `intervalMs`. Lines over the budget are not written but counted, and the first
/// line of the reason's next interval carries that count (`suppressed` metadata and a
/// "suppressed K similar" suffix), so a flood costs a few lines, not one per connection.
/// The counts that matter for monitoring are in the network metrics regardless.
package final class RateLimitedLogger: Sendable {
    let logger: Logger
    let maxLinesPerInterval: Int
    let intervalNanoseconds: Int64
    private let now: @Sendable () -> NIODeadline
    private let windows = NIOLockedValueBox<[String: Window]>([:])

    private struct Window {
        var start: NIODeadline
        var lines = 0
        var suppressed = 0
    }

    package init(logger: Logger, maxLinesPerInterval: Int, intervalMs: Int64, now: @escaping @Sendable () -> NIODeadline = { .now() }) {
        precondition(maxLinesPerInterval >= 1 && intervalMs >= 1, "log budget must be positive")
        self.logger = logger
        self.maxLinesPerInterval = maxLinesPerInterval
        intervalNanoseconds = intervalMs.multipliedReportingOverflow(by: 1_000_000).partialValue
        self.now = now
    }

    /// Writes the line unless `reason` used up its budget for this interval. `reason` must
    /// come from a fixed set (a close reason's raw value, not peer data): it keys the table.
    package func log(
        _ level: Logger.Level, _ message: @autoclosure () -> String, reason: String,
        metadata: @autoclosure () -> Logger.Metadata = [:]
    ) {
        guard let suppressedBefore = admit(reason) else { return }
        var lineMetadata = metadata()
        lineMetadata["reason"] = "\(reason)"
        var text = message()
        if suppressedBefore > 0 {
            lineMetadata["suppressed"] = "\(suppressedBefore)"
            text += " (suppressed \(suppressedBefore) similar)"
        }
        logger.log(level: level, "\(text)", metadata: lineMetadata)
    }

    /// nil when the line is over budget; otherwise how many lines of this reason were
    /// suppressed in its previous interval.
    private func admit(_ reason: String) -> Int? {
        let now = now()
        return windows.withLockedValue { windows in
            var window = windows[reason] ?? Window(start: now)
            var carried = 0
            if now.uptimeNanoseconds &- window.start.uptimeNanoseconds >= UInt64(intervalNanoseconds) {
                carried = window.suppressed
                window = Window(start: now)
            }
            defer { windows[reason] = window }
            guard window.lines < maxLinesPerInterval else {
                window.suppressed += 1
                return nil
            }
            window.lines += 1
            return carried
        }
    }
}
