import TallyTypes

/// Damage found in a store file: where, at which height, and what.
public struct Corruption: Error, Equatable, Sendable, CustomStringConvertible {
    public let file: String
    public let offset: Int
    /// The height the damaged record holds or should hold (the one after the last
    /// good record).
    public let height: UInt64
    public let reason: String

    public init(file: String, offset: Int, height: UInt64, reason: String) {
        self.file = file
        self.offset = offset
        self.height = height
        self.reason = reason
    }

    public var description: String { "\(file) at offset \(offset), height \(height): \(reason)" }
}

public enum StoreError: Error, Equatable, CustomStringConvertible {
    /// The operating system refused an operation (or a simulated crash happened).
    case io(FileSystemError)
    /// A file is damaged somewhere other than a torn tail: the node must not start.
    case corrupt(Corruption)
    /// `append` was given a block that does not extend the chain.
    case notNextHeight(expected: UInt64, found: UInt64)
    case recordTooLarge(bytes: Int, max: Int)
    /// A record's checksum is fine but its bytes are not a certified block.
    case undecodable(height: UInt64, CanonicalDecodingError)
    /// An earlier write or fsync failed; the store refuses further writes (after a
    /// failed fsync the page cache may be lying: restart and recover instead).
    case failed(String)

    public var description: String {
        switch self {
        case .io(let error): return "storage I/O failed: \(error)"
        case .corrupt(let corruption): return "store is damaged: \(corruption)"
        case .notNextHeight(let expected, let found): return "cannot append height \(found): the next height is \(expected)"
        case .recordTooLarge(let bytes, let max): return "record of \(bytes) bytes exceeds the limit of \(max)"
        case .undecodable(let height, let error): return "stored block at height \(height) does not decode: \(error)"
        case .failed(let reason): return "store stopped after an earlier failure: \(reason)"
        }
    }
}
