import Foundation

/// Reads small files given on the command line (key, password, seed and genesis
/// files) without trusting their size: at most `maxBytes + 1` bytes are read, so a
/// huge or sparse file costs no allocation of its size and is still told apart
/// from one that fits. Nil when the file cannot be opened or read.
enum BoundedRead {
    static func contents(of path: String, maxBytes: Int) -> Data? {
        precondition(maxBytes >= 0 && maxBytes < Int.max)
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: maxBytes + 1)).map { $0 ?? Data() }
    }
}
