import TallyCrypto
import TallyStore
import TallyTypes

/// The files of the persisted account index (`AccountTransactions`), under
/// `DATA/account-index/`. Derived data, never consensus input: both files can be
/// rebuilt from the blocks, and every byte read back is checked before it is used.
///
/// `positions`: append-only, one fixed-size record per (transaction, account it
/// touches), in chain order. Each record links to the same account's previous record
/// and to a farther one (a skew-binary jump pointer, Myers 1983), so an account's list
/// is a chain on disk that a page walks from its newest record, and a cursor anywhere
/// in it is reached in O(log n) reads. Fixed-size records make record n's offset
/// `n * byteCount` and a torn tail a partial record.
///
/// `heads`: a checkpoint of each account's newest record (what the node otherwise
/// keeps only in memory), written atomically every so often and at a clean stop, with
/// the record count and block height it covers. A start loads it and replays only the
/// records written after it, then indexes only the blocks after those: start-up does
/// not read the chain.
enum AccountIndexFormat {
    static let directoryName = "account-index"
    static let positionsName = "positions"
    static let headsName = "heads"
    /// `TLYAIX1` and a version byte.
    static let headsMagic: [UInt8] = Array("TLYAIX1".utf8) + [1]
    /// magic 8 | record count 8 | indexed height 8 | block hash at that height 32 | entry count 8.
    static let headsHeaderBytes = 64
    /// address 20 | record 8 | depth 8 | jump 8.
    static let headsEntryBytes = 44
}

/// One record of `positions` (big-endian):
/// address 20 | height 8 | index 4 | depth 8 | previous 8 | jump 8 | CRC-32C 4 (of the first 56).
struct AccountIndexRecord: Equatable {
    static let byteCount = 60

    let address: Address
    let position: TransactionPosition
    /// 1 for an account's first record, then one more per record.
    let depth: UInt64
    /// Record number + 1 of the account's previous record; 0 for its first.
    let previous: UInt64
    /// Record number + 1 of the account's record at depth `jumpDepth(depth)`; 0 when that is 0.
    let jump: UInt64

    init(address: Address, position: TransactionPosition, depth: UInt64, previous: UInt64, jump: UInt64) {
        self.address = address
        self.position = position
        self.depth = depth
        self.previous = previous
        self.jump = jump
    }

    var bytes: [UInt8] {
        var bytes = address.bytes
        bytes.reserveCapacity(Self.byteCount)
        bytes.appendBigEndian(position.height)
        bytes.appendBigEndian(position.index)
        bytes.appendBigEndian(depth)
        bytes.appendBigEndian(previous)
        bytes.appendBigEndian(jump)
        bytes.appendBigEndian(CRC32C.checksum(bytes))
        return bytes
    }

    /// Nil for anything but a well-formed record: wrong size or checksum, depth 0, or
    /// links that cannot belong to a record at depth `depth`.
    init?(bytes: ArraySlice<UInt8>) {
        guard bytes.count == Self.byteCount else { return nil }
        let base = bytes.startIndex
        guard CRC32C.checksum(bytes[base..<base + 56]) == bytes.readBigEndian(at: base + 56, as: UInt32.self),
              let address = Address(bytes: Array(bytes[base..<base + 20]))
        else { return nil }
        let depth = bytes.readBigEndian(at: base + 32, as: UInt64.self)
        let previous = bytes.readBigEndian(at: base + 40, as: UInt64.self)
        let jump = bytes.readBigEndian(at: base + 48, as: UInt64.self)
        guard depth >= 1, (previous == 0) == (depth == 1), (jump == 0) == (Self.jumpDepth(depth) == 0) else { return nil }
        self.init(
            address: address,
            position: TransactionPosition(
                height: bytes.readBigEndian(at: base + 20, as: UInt64.self), index: bytes.readBigEndian(at: base + 28, as: UInt32.self)),
            depth: depth, previous: previous, jump: jump)
    }

    /// The depth a record at `depth` (≥ 1) jumps to: `depth` minus the smallest term of
    /// its greedy decomposition into numbers 2^k − 1 (skew binary). It is Myers' jump
    /// rule written as a function of the depth alone (a record jumps to its parent, or
    /// to its parent's jump's jump), and with it a walk from any record to the first
    /// older than a cursor takes O(log depth) reads.
    static func jumpDepth(_ depth: UInt64) -> UInt64 {
        precondition(depth >= 1)
        var remaining = depth
        var smallest: UInt64 = 1
        while remaining > 0 {
            let bits = UInt64.bitWidth - remaining.leadingZeroBitCount
            var term = bits == UInt64.bitWidth ? UInt64.max : (UInt64(1) << bits) - 1
            if term > remaining { term >>= 1 }
            remaining -= term
            smallest = term
        }
        return depth - smallest
    }
}

/// An account's newest record, kept in memory (and in the `heads` checkpoint).
struct AccountIndexHead: Equatable {
    /// Its record number.
    var record: UInt64
    var depth: UInt64
    /// The record's `jump` (record number + 1, or 0).
    var jump: UInt64
}

extension [UInt8] {
    mutating func appendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}

extension ArraySlice<UInt8> {
    /// The integer at `offset` (an index of this slice); the caller checked the bounds.
    func readBigEndian<T: FixedWidthInteger>(at offset: Int, as: T.Type) -> T {
        var value: T = 0
        for byte in self[offset..<offset + MemoryLayout<T>.size] { value = value << 8 | T(byte) }
        return value
    }
}
