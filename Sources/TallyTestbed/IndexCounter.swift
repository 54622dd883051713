import Foundation

/// Hands out 0, 1, 2, … below a limit to concurrent posting lanes (the bench's and the
/// chaos suite's batch posters), each index once.
public final class IndexCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    public init() {}

    /// The next index, or nil once `limit` indices were handed out.
    public func take(below limit: Int) -> Int? {
        lock.withLock {
            guard value < limit else { return nil }
            defer { value += 1 }
            return value
        }
    }
}
