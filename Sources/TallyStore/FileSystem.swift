import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few file operations the store needs, behind a protocol so tests can run the
/// store on `SimulatedFileSystem` (in the test-support target TallyStoreTesting),
/// which crashes at a chosen operation and then keeps only what was made durable.
/// Every write, truncate, fsync, rename, remove and directory fsync is a distinct
/// operation: a crash point.
public protocol FileSystem: Sendable {
    /// Creates `path` and missing parents (mkdir -p), then fsyncs the parent so the
    /// new directory survives a crash.
    func createDirectory(_ path: String) throws(FileSystemError)
    /// Names (not paths) of the entries in `path`.
    func listDirectory(_ path: String) throws(FileSystemError) -> [String]
    func fileExists(_ path: String) -> Bool
    func open(_ path: String, mode: FileOpenMode) throws(FileSystemError) -> any StoreFile
    func rename(_ source: String, to destination: String) throws(FileSystemError)
    func remove(_ path: String) throws(FileSystemError)
    /// fsync of a directory: makes creates, renames and removes in it durable.
    func syncDirectory(_ path: String) throws(FileSystemError)
}

public enum FileOpenMode: Sendable {
    case readOnly
    case readWrite
    /// Read-write, created empty if missing (a create is a crash point).
    case create
}

/// An open file. Not thread-safe: one owner at a time.
public protocol StoreFile: AnyObject {
    func size() throws(FileSystemError) -> Int
    /// Reads exactly `count` bytes at `offset`, fewer only at the end of the file.
    func read(at offset: Int, count: Int) throws(FileSystemError) -> [UInt8]
    func write(_ bytes: [UInt8], at offset: Int) throws(FileSystemError)
    func truncate(to size: Int) throws(FileSystemError)
    /// fsync: everything written so far survives a crash once this returns.
    func sync() throws(FileSystemError)
    /// fdatasync: the same for the file's data and size, without flushing other
    /// metadata (timestamps); cheaper when the writes only overwrote allocated bytes.
    func syncData() throws(FileSystemError)
    func close()
}

public struct FileSystemError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let reason: String

    public init(operation: String, path: String, reason: String) {
        self.operation = operation
        self.path = path
        self.reason = reason
    }

    static func errno(_ operation: String, _ path: String, _ code: Int32 = Glibc.errno) -> FileSystemError {
        FileSystemError(operation: operation, path: path, reason: String(cString: strerror(code)))
    }

    public var isNotFound: Bool { reason == String(cString: strerror(ENOENT)) }

    public var description: String { "\(operation) \(path): \(reason)" }
}

/// The real file system (POSIX calls, no buffering of our own).
public struct PosixFileSystem: FileSystem {
    public init() {}

    public func createDirectory(_ path: String) throws(FileSystemError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw FileSystemError(operation: "create directory", path: path, reason: "a file is in the way")
            }
            return
        }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try createDirectory(parent) }
        guard mkdir(path, 0o755) == 0 || Glibc.errno == EEXIST else { throw .errno("create directory", path) }
        try syncDirectory(parent.isEmpty ? "." : parent)
    }

    public func listDirectory(_ path: String) throws(FileSystemError) -> [String] {
        do { return try FileManager.default.contentsOfDirectory(atPath: path) } catch {
            if !FileManager.default.fileExists(atPath: path) { throw .errno("list", path, ENOENT) }
            throw FileSystemError(operation: "list", path: path, reason: "\(error)")
        }
    }

    public func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    public func open(_ path: String, mode: FileOpenMode) throws(FileSystemError) -> any StoreFile {
        let flags: Int32
        switch mode {
        case .readOnly: flags = O_RDONLY
        case .readWrite: flags = O_RDWR
        case .create: flags = O_RDWR | O_CREAT
        }
        let descriptor = Glibc.open(path, flags | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw .errno("open", path) }
        return PosixFile(descriptor: descriptor, path: path)
    }

    public func rename(_ source: String, to destination: String) throws(FileSystemError) {
        guard Glibc.rename(source, destination) == 0 else { throw .errno("rename", "\(source) -> \(destination)") }
    }

    public func remove(_ path: String) throws(FileSystemError) {
        guard unlink(path) == 0 else { throw .errno("remove", path) }
    }

    public func syncDirectory(_ path: String) throws(FileSystemError) {
        do { try AtomicFileSupport.syncDirectory(path) } catch { throw error }
    }
}

enum AtomicFileSupport {
    static func syncDirectory(_ path: String) throws(FileSystemError) {
        let descriptor = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .errno("open directory", path) }
        defer { Glibc.close(descriptor) }
        guard fsync(descriptor) == 0 else { throw .errno("fsync directory", path) }
    }
}

final class PosixFile: StoreFile {
    private var descriptor: Int32
    let path: String

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    deinit { close() }

    func size() throws(FileSystemError) -> Int {
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw .errno("stat", path) }
        return Int(status.st_size)
    }

    func read(at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        var failure: Int32 = 0
        buffer.withUnsafeMutableBytes { raw in
            while done < count {
                let got = pread(descriptor, raw.baseAddress! + done, count - done, off_t(offset + done))
                if got < 0 {
                    if Glibc.errno == EINTR { continue }
                    failure = Glibc.errno
                    return
                }
                if got == 0 { return }
                done += got
            }
        }
        if failure != 0 { throw .errno("read", path, failure) }
        if done < count { buffer.removeLast(count - done) }
        return buffer
    }

    func write(_ bytes: [UInt8], at offset: Int) throws(FileSystemError) {
        var done = 0
        var failure: Int32 = 0
        bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let wrote = pwrite(descriptor, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                if wrote < 0 {
                    if Glibc.errno == EINTR { continue }
                    failure = Glibc.errno
                    return
                }
                done += wrote
            }
        }
        if failure != 0 { throw .errno("write", path, failure) }
    }

    func truncate(to size: Int) throws(FileSystemError) {
        guard ftruncate(descriptor, off_t(size)) == 0 else { throw .errno("truncate", path) }
    }

    func sync() throws(FileSystemError) {
        guard fsync(descriptor) == 0 else { throw .errno("fsync", path) }
    }

    func syncData() throws(FileSystemError) {
        guard fdatasync(descriptor) == 0 else { throw .errno("fdatasync", path) }
    }

    func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
    }
}

/// Crash-safe whole-file replace over any `FileSystem`: write `path.tmp`, fsync it,
/// rename it over `path`, fsync the directory. A reader sees the old content or the
/// new, never a mix; once this returns the new content survives power loss. (The
/// same protocol as TallyCrypto's `AtomicFile`, routed through the file layer so the
/// fault-injection tests reach every step.)
enum AtomicReplace {
    static func temporaryPath(for path: String) -> String { path + ".tmp" }

    static func write(_ bytes: [UInt8], to path: String, fileSystem: any FileSystem) throws(FileSystemError) {
        let temporary = temporaryPath(for: path)
        if fileSystem.fileExists(temporary) { try fileSystem.remove(temporary) }
        let file = try fileSystem.open(temporary, mode: .create)
        defer { file.close() }
        try file.write(bytes, at: 0)
        try file.sync()
        try fileSystem.rename(temporary, to: path)
        try fileSystem.syncDirectory(directory(of: path))
    }

    /// The whole file, or nil when it does not exist.
    static func read(_ path: String, fileSystem: any FileSystem) throws(FileSystemError) -> [UInt8]? {
        guard fileSystem.fileExists(path) else { return nil }
        let file = try fileSystem.open(path, mode: .readOnly)
        defer { file.close() }
        return try file.read(at: 0, count: try file.size())
    }

    /// The file's first `maxBytes + 1` bytes at most (so a bigger file is told apart
    /// without reading it), or nil when it does not exist.
    static func read(_ path: String, maxBytes: Int, fileSystem: any FileSystem) throws(FileSystemError) -> [UInt8]? {
        guard fileSystem.fileExists(path) else { return nil }
        let file = try fileSystem.open(path, mode: .readOnly)
        defer { file.close() }
        return try file.read(at: 0, count: min(try file.size(), maxBytes + 1))
    }

    static func directory(of path: String) -> String {
        let parent = (path as NSString).deletingLastPathComponent
        return parent.isEmpty ? "." : parent
    }
}
