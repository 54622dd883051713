import Foundation
import Logging

/// One line a `LogCapture` recorded: its level, message text, and the logger's
/// metadata merged with the line's own (the line's win).
public struct CapturedLogLine: Sendable {
    public let level: Logger.Level
    public let message: String
    public let metadata: Logger.Metadata
}

/// Records every line logged through its loggers, so a test can check what a
/// component reported and count what a flood writes (rate-limited logging).
public final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [CapturedLogLine] = []

    public init() {}

    /// Every line so far, oldest first.
    public var lines: [CapturedLogLine] { lock.withLock { recorded } }

    /// The message text of every line so far, oldest first.
    public var messages: [String] { lines.map(\.message) }

    /// A logger that records the lines at `level` and above.
    public func logger(level: Logger.Level = .trace) -> Logger {
        var logger = Logger(label: "tally.test.captured") { _ in Handler(capture: self) }
        logger.logLevel = level
        return logger
    }

    fileprivate func append(_ line: CapturedLogLine) {
        lock.withLock { recorded.append(line) }
    }

    private struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append(CapturedLogLine(level: event.level, message: "\(event.message)", metadata: merged))
        }
    }
}
