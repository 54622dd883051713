import Foundation
import TallyStore

/// Thrown by `SimulatedFileSystem` at its crash point and for every call after it,
/// until `restart`: the process is "dead".
public struct SimulatedCrash: Error, Equatable, CustomStringConvertible {
    public let operation: Int
    public var description: String { "simulated crash at file operation \(operation)" }
}

/// An in-memory file system that models what survives a crash, for fault-injection
/// tests and the deterministic simulator (each simulated node's consensus journal).
///
/// Model: each file has durable bytes (as of its last fsync) and the writes and
/// truncations made since; each directory has durable entries (as of its last
/// directory fsync) and current ones. Every mutating call (create, write, truncate,
/// fsync, rename, remove, directory fsync) is one numbered *operation*. With
/// `crash(atOperation: k)` operation k does not happen and throws `SimulatedCrash`,
/// as does everything after it. `restart(_:)` then rebuilds the state a rebooted
/// machine would see under the chosen `CrashOutcome`. Directories themselves are
/// created durably (`createDirectory` fsyncs the parent, as the real one does).
/// Thread-safe (one lock).
public final class SimulatedFileSystem: FileSystem, @unchecked Sendable {
    /// What of the unsynced state survives the crash.
    public enum CrashOutcome: Sendable, CaseIterable, CustomStringConvertible {
        /// Only what was fsynced: data since the last file fsync and directory changes
        /// since the last directory fsync are gone.
        case loseUnsynced
        /// The page cache happened to reach the disk: everything survives.
        case keepUnsynced
        /// A torn write: directory changes survive, and each file keeps only the first
        /// half of the bytes written since its last fsync.
        case tearUnsynced

        public var description: String {
            switch self {
            case .loseUnsynced: return "lose-unsynced"
            case .keepUnsynced: return "keep-unsynced"
            case .tearUnsynced: return "tear-unsynced"
            }
        }
    }

    enum Change {
        case write(offset: Int, bytes: [UInt8])
        case truncate(size: Int)
    }

    final class Inode {
        var data: [UInt8] = []
        var durable: [UInt8] = []
        var pending: [Change] = []
    }

    private let lock = NSLock()
    private var inodes: [Int: Inode] = [:]
    private var nextInode = 1
    private var entries: [String: Int] = [:]
    private var durableEntries: [String: Int] = [:]
    private var directories: Set<String> = ["/"]
    private var operationCount = 0
    private var crashPoint: Int?
    private var crashed: SimulatedCrash?

    public init() {}

    /// Mutating operations performed so far (across restarts).
    public var operations: Int { locked { operationCount } }

    /// Makes the `count`-th mutating operation from now fail with a crash (1 = the next).
    public func crash(afterOperations count: Int) {
        precondition(count >= 1)
        locked { crashPoint = operationCount + count }
    }

    public func cancelCrash() { locked { crashPoint = nil } }

    public var hasCrashed: Bool { locked { crashed != nil } }

    /// Reboots: keeps what `outcome` says survived and clears the crash.
    public func restart(_ outcome: CrashOutcome) {
        locked {
            switch outcome {
            case .loseUnsynced:
                entries = durableEntries
                for inode in inodes.values { inode.data = inode.durable }
            case .keepUnsynced:
                break
            case .tearUnsynced:
                for inode in inodes.values { inode.data = Self.torn(inode) }
            }
            for inode in inodes.values {
                inode.durable = inode.data
                inode.pending = []
            }
            durableEntries = entries
            crashed = nil
            crashPoint = nil
        }
    }

    /// Durable bytes plus the first half (by bytes written) of the pending changes.
    private static func torn(_ inode: Inode) -> [UInt8] {
        var budget = inode.pending.reduce(0) { total, change in
            if case .write(_, let bytes) = change { return total + bytes.count }
            return total
        } / 2
        var data = inode.durable
        for change in inode.pending {
            switch change {
            case .truncate(let size): apply(.truncate(size: size), to: &data)
            case .write(let offset, let bytes):
                let kept = min(budget, bytes.count)
                budget -= kept
                if kept > 0 { apply(.write(offset: offset, bytes: Array(bytes.prefix(kept))), to: &data) }
                if kept < bytes.count { return data }
            }
        }
        return data
    }

    static func apply(_ change: Change, to data: inout [UInt8]) {
        switch change {
        case .truncate(let size):
            if size < data.count { data.removeLast(data.count - size) } else {
                data.append(contentsOf: [UInt8](repeating: 0, count: size - data.count))
            }
        case .write(let offset, let bytes):
            if data.count < offset + bytes.count {
                data.append(contentsOf: [UInt8](repeating: 0, count: offset + bytes.count - data.count))
            }
            data.replaceSubrange(offset..<offset + bytes.count, with: bytes)
        }
    }

    // MARK: Direct access for tests (not crash points)

    /// The current bytes of a file, nil if absent.
    public func contents(_ path: String) -> [UInt8]? {
        locked { entries[Self.normalize(path)].map { inodes[$0]!.data } }
    }

    /// Replaces a file's bytes durably (for planting corruption).
    public func setContents(_ path: String, _ bytes: [UInt8]) {
        locked {
            let key = Self.normalize(path)
            let id = entries[key] ?? newInode()
            entries[key] = id
            durableEntries[key] = id
            inodes[id]!.data = bytes
            inodes[id]!.durable = bytes
            inodes[id]!.pending = []
        }
    }

    // MARK: FileSystem

    public func createDirectory(_ path: String) throws(FileSystemError) {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            var current = ""
            for component in Self.normalize(path).split(separator: "/") {
                current += "/" + component
                if entries[current] != nil {
                    throw FileSystemError(operation: "create directory", path: current, reason: "a file is in the way")
                }
                directories.insert(current)
            }
        }
    }

    public func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            let directory = Self.normalize(path)
            guard directories.contains(directory) else { throw notFound("list", path) }
            let prefix = directory == "/" ? "/" : directory + "/"
            var names = Set<String>()
            for key in entries.keys where key.hasPrefix(prefix) {
                let rest = key.dropFirst(prefix.count)
                if !rest.contains("/") { names.insert(String(rest)) }
            }
            for key in directories where key.hasPrefix(prefix) && key != directory {
                let rest = key.dropFirst(prefix.count)
                if !rest.contains("/") { names.insert(String(rest)) }
            }
            return names.sorted()
        }
    }

    public func fileExists(_ path: String) -> Bool {
        locked { entries[Self.normalize(path)] != nil || directories.contains(Self.normalize(path)) }
    }

    public func open(_ path: String, mode: FileOpenMode) throws(FileSystemError) -> any StoreFile {
        try lockedThrowing { () throws(FileSystemError) -> any StoreFile in
            try checkAlive()
            let key = Self.normalize(path)
            if let id = entries[key] { return SimulatedFile(fileSystem: self, inode: id, path: key, writable: mode != .readOnly) }
            guard mode == .create else { throw notFound("open", path) }
            guard directories.contains(Self.parentDirectory(of: key)) else { throw notFound("open", path) }
            try countOperation()
            let id = newInode()
            entries[key] = id
            return SimulatedFile(fileSystem: self, inode: id, path: key, writable: true)
        }
    }

    public func rename(_ source: String, to destination: String) throws(FileSystemError) {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            guard let id = entries[Self.normalize(source)] else { throw notFound("rename", source) }
            try countOperation()
            entries[Self.normalize(source)] = nil
            entries[Self.normalize(destination)] = id
        }
    }

    public func remove(_ path: String) throws(FileSystemError) {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            guard entries[Self.normalize(path)] != nil else { throw notFound("remove", path) }
            try countOperation()
            entries[Self.normalize(path)] = nil
        }
    }

    public func syncDirectory(_ path: String) throws(FileSystemError) {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            let directory = Self.normalize(path)
            guard directories.contains(directory) else { throw notFound("fsync directory", path) }
            try countOperation()
            let prefix = directory == "/" ? "/" : directory + "/"
            func inDirectory(_ key: String) -> Bool { key.hasPrefix(prefix) && !key.dropFirst(prefix.count).contains("/") }
            for key in durableEntries.keys where inDirectory(key) && entries[key] == nil { durableEntries[key] = nil }
            for (key, id) in entries where inDirectory(key) { durableEntries[key] = id }
        }
    }

    // MARK: File operations (called by SimulatedFile)

    func size(_ id: Int) throws(FileSystemError) -> Int {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            return inodes[id]!.data.count
        }
    }

    func read(_ id: Int, at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            let data = inodes[id]!.data
            guard offset < data.count else { return [] }
            return Array(data[offset..<min(data.count, offset + count)])
        }
    }

    func change(_ id: Int, _ change: Change) throws(FileSystemError) {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            try countOperation()
            let inode = inodes[id]!
            Self.apply(change, to: &inode.data)
            inode.pending.append(change)
        }
    }

    func sync(_ id: Int) throws(FileSystemError) {
        try lockedThrowing { () throws(FileSystemError) in
            try checkAlive()
            try countOperation()
            let inode = inodes[id]!
            inode.durable = inode.data
            inode.pending = []
        }
    }

    // MARK: Helpers (lock held)

    private func newInode() -> Int {
        let id = nextInode
        nextInode += 1
        inodes[id] = Inode()
        return id
    }

    private func checkAlive() throws(FileSystemError) {
        if let crashed { throw FileSystemError(operation: "any", path: "", reason: crashed.description) }
    }

    /// Counts one mutating operation; at the crash point the process dies instead.
    private func countOperation() throws(FileSystemError) {
        operationCount += 1
        if let crashPoint, operationCount >= crashPoint {
            crashed = SimulatedCrash(operation: operationCount)
            throw FileSystemError(operation: "crash", path: "", reason: crashed!.description)
        }
    }

    private func notFound(_ operation: String, _ path: String) -> FileSystemError {
        FileSystemError(operation: operation, path: path, reason: String(cString: strerror(ENOENT)))
    }

    /// The directory holding `path` (as the store's atomic replace names it).
    static func parentDirectory(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty ? "." : parent
    }

    static func normalize(_ path: String) -> String {
        let parts = path.split(separator: "/").filter { $0 != "." }
        return "/" + parts.joined(separator: "/")
    }

    private func locked<T>(_ body: () -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    private func lockedThrowing<T>(_ body: () throws(FileSystemError) -> T) throws(FileSystemError) -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }
}

final class SimulatedFile: StoreFile {
    private let fileSystem: SimulatedFileSystem
    private let inode: Int
    private let path: String
    private let writable: Bool

    init(fileSystem: SimulatedFileSystem, inode: Int, path: String, writable: Bool) {
        self.fileSystem = fileSystem
        self.inode = inode
        self.path = path
        self.writable = writable
    }

    func size() throws(FileSystemError) -> Int { try fileSystem.size(inode) }

    func read(at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] {
        try fileSystem.read(inode, at: offset, count: count)
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(FileSystemError) {
        guard writable else { throw FileSystemError(operation: "write", path: path, reason: "opened read-only") }
        try fileSystem.change(inode, .write(offset: offset, bytes: bytes))
    }

    func truncate(to size: Int) throws(FileSystemError) {
        guard writable else { throw FileSystemError(operation: "truncate", path: path, reason: "opened read-only") }
        try fileSystem.change(inode, .truncate(size: size))
    }

    func sync() throws(FileSystemError) { try fileSystem.sync(inode) }
    /// Durable data and size are all this model has: the same as `sync`.
    func syncData() throws(FileSystemError) { try fileSystem.sync(inode) }

    func close() {}
}
