import Foundation

/// Looking past damage for a later valid record, with bounded work (issue 14).
///
/// Recovery must tell a torn tail (nothing valid after the damage: cut it) from
/// damage in the middle (a valid record after it: refuse). That means trying every
/// offset after the damage where a record's magic appears. A crafted file can hold
/// thousands of fake headers each claiming a near-maximal length (a 10 MB segment
/// with 2,000 of them took `tally verify` 20 s, copying and checksumming 10 MB at
/// each), or be sparse and huge. So the scan reads in `chunkBytes` pieces (never an
/// allocation of the file's size), checksums a candidate's bytes streamed in those
/// pieces (never a copy of its claimed length), and stops after `maxCandidates`
/// checksummed candidates, `maxChecksummedBytes` checksummed or `maxScannedBytes`
/// searched. Stopping early is reported as damage in the middle: refusing to start
/// is recoverable by an operator, truncating acknowledged blocks is not.
enum DamageScan {
    static let chunkBytes = 64 << 10
    static let maxCandidates = 1_024
    static let maxChecksummedBytes = 64 << 20
    static let maxScannedBytes = 1 << 30

    /// What one scan did, for tests and reports.
    struct Work: Equatable {
        var bytesRead = 0
        var largestReadBytes = 0
        var candidatesChecked = 0
        var bytesChecksummed = 0
    }

    enum Result: Equatable {
        case found(offset: Int)
        case none
        /// A bound was reached before the scan was done.
        case gaveUp(String)
    }

    enum Verdict {
        case valid
        case invalid
        case overBudget(String)
    }

    /// Calls `check` at each offset in `start..<size` where `magic` (little-endian)
    /// starts, in order, until it says `.valid` or `.overBudget`.
    static func findRecord(
        in file: any StoreFile, from start: Int, size: Int, magic: UInt32, work: inout Work,
        check: (Int, inout Work) throws(FileSystemError) -> Verdict
    ) throws(FileSystemError) -> Result {
        let pattern = withUnsafeBytes(of: magic.littleEndian) { Array($0) }
        var chunkStart = start
        while chunkStart + pattern.count <= size {
            guard chunkStart - start < maxScannedBytes else {
                return .gaveUp("searched \(maxScannedBytes) bytes after the damage without reaching the end")
            }
            let chunk = try read(file, at: chunkStart, count: min(chunkBytes, size - chunkStart), work: &work)
            guard chunk.count >= pattern.count else { return .none }
            for index in matches(of: pattern, in: chunk) {
                switch try check(chunkStart + index, &work) {
                case .valid: return .found(offset: chunkStart + index)
                case .invalid: continue
                case .overBudget(let why): return .gaveUp(why)
                }
            }
            // The next chunk starts where a magic cut by this chunk's end would.
            chunkStart += chunk.count - (pattern.count - 1)
        }
        return .none
    }

    /// Offsets in `chunk` where the 4-byte `pattern` starts (memchr for its first
    /// byte: the search over a large file is the scan's bulk).
    static func matches(of pattern: [UInt8], in chunk: [UInt8]) -> [Int] {
        precondition(pattern.count == 4)
        return chunk.withUnsafeBytes { raw -> [Int] in
            guard raw.count >= 4, let base = raw.baseAddress else { return [] }
            var found: [Int] = []
            var index = 0
            let last = raw.count - 4
            while index <= last, let hit = memchr(base + index, Int32(pattern[0]), last - index + 1) {
                index = base.distance(to: UnsafeRawPointer(hit))
                if raw[index + 1] == pattern[1] && raw[index + 2] == pattern[2] && raw[index + 3] == pattern[3] {
                    found.append(index)
                }
                index += 1
            }
            return found
        }
    }

    private static let zeros = [UInt8](repeating: 0, count: chunkBytes)

    /// CRC-32C of `count` bytes at `offset`, chained on `initial`, read in chunks;
    /// nil when it would pass the candidate or byte budget (then nothing is read).
    static func checksum(
        _ file: any StoreFile, at offset: Int, count: Int, initial: UInt32, work: inout Work
    ) throws(FileSystemError) -> UInt32? {
        guard work.candidatesChecked < maxCandidates, work.bytesChecksummed + count <= maxChecksummedBytes else { return nil }
        work.candidatesChecked += 1
        var crc = initial
        var done = 0
        while done < count {
            let chunk = try read(file, at: offset + done, count: min(chunkBytes, count - done), work: &work)
            guard !chunk.isEmpty else { break }
            crc = CRC32C.checksum(chunk, initial: crc)
            done += chunk.count
        }
        work.bytesChecksummed += done
        return crc
    }

    static func budgetMessage(_ work: Work) -> String {
        "gave up looking for a valid record after the damage (\(work.candidatesChecked) candidates, "
            + "\(work.bytesChecksummed) bytes checksummed; bounds \(maxCandidates) and \(maxChecksummedBytes))"
    }

    /// One bounded read (at most `chunkBytes`), counted.
    static func read(_ file: any StoreFile, at offset: Int, count: Int, work: inout Work) throws(FileSystemError) -> [UInt8] {
        precondition(count >= 0 && count <= chunkBytes, "damage scan reads are bounded")
        let bytes = try file.read(at: offset, count: count)
        work.bytesRead += bytes.count
        work.largestReadBytes = max(work.largestReadBytes, count)
        return bytes
    }

    /// Whether any byte in `start..<size` is not zero, read in chunks (at most
    /// `maxScannedBytes`; past that it answers true: not provably zeros).
    static func containsNonZero(_ file: any StoreFile, from start: Int, size: Int, work: inout Work) throws(FileSystemError) -> Bool {
        var offset = start
        while offset < size {
            guard offset - start < maxScannedBytes else { return true }
            let chunk = try read(file, at: offset, count: min(chunkBytes, size - offset), work: &work)
            guard !chunk.isEmpty else { return false }
            if memcmp(chunk, zeros, chunk.count) != 0 { return true }
            offset += chunk.count
        }
        return false
    }
}
