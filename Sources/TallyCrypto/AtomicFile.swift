import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Crash-safe replace of a whole file: write a temp file beside it, fsync it,
/// rename over the target, fsync the directory. A reader sees the old file or the
/// new one, never a mix; after the call returns the new one survives power loss.
public enum AtomicFile {
    public struct Failure: Error, CustomStringConvertible {
        public let step: String
        public let path: String
        public let code: Int32
        public var description: String { "\(step) \(path): \(String(cString: strerror(code)))" }
    }

    public static func write(_ data: Data, to path: String, mode: mode_t = 0o644) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure(step: "create", path: temporary, code: errno) }
        var closed = false
        defer { if !closed { close(fd); unlink(temporary) } }
        // open() applies the umask; fchmod makes the mode exact (0600 stays 0600).
        guard fchmod(fd, mode) == 0 else { throw Failure(step: "chmod", path: temporary, code: errno) }
        try data.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    throw Failure(step: "write", path: temporary, code: errno)
                }
                offset += written
            }
        }
        guard fsync(fd) == 0 else { throw Failure(step: "fsync", path: temporary, code: errno) }
        closed = true
        guard close(fd) == 0 else { unlink(temporary); throw Failure(step: "close", path: temporary, code: errno) }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw Failure(step: "rename", path: path, code: code)
        }
        try syncDirectory(directory.isEmpty ? "." : directory)
    }

    /// fsync on a directory makes a rename or a new file in it durable.
    public static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(step: "open directory", path: directory, code: errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw Failure(step: "fsync directory", path: directory, code: errno) }
    }
}
