import Logging
import TallyTypes

/// The node's blocks, each with its commit certificate, in append-only segment
/// files under `DATA/blocks/` (`segment-00000001.tblk`, …; record format in
/// `RecordFormat`), plus `DATA/blocks/index`, a cache from height to (segment,
/// offset, length) that is rebuilt whenever it is missing or disagrees.
///
/// Durability: `append` returns only after the record is fsynced (and, for a new
/// segment, the directory entry too), so a block may be acknowledged to anyone once
/// `append` returns.
///
/// Recovery (`open`): every record's frame, checksum and height are checked. A
/// damaged record at the very end of the last segment with nothing valid after it is
/// a torn write from a crash during `append` (so never acknowledged): it is truncated
/// and logged. Damage anywhere else throws `StoreError.corrupt` naming the file,
/// offset and height; the node must not start on it.
///
/// Thread-safety: not thread-safe. One owner (the node's storage actor) calls it;
/// other threads read through `reader`.
public final class BlockStore {
    public struct Options: Sendable {
        /// A new segment starts when the current one would grow past this.
        public var maxSegmentBytes: Int
        public static let `default` = Options(maxSegmentBytes: 256 << 20)

        public init(maxSegmentBytes: Int) {
            precondition(maxSegmentBytes > RecordFormat.headerBytes, "segment size too small")
            self.maxSegmentBytes = maxSegmentBytes
        }
    }

    public let dataDirectory: String
    public let blocksDirectory: String
    let fileSystem: any FileSystem
    let options: Options
    let logger: Logger

    /// locations[h - 1] is the record of height h.
    private var locations: [RecordLocation] = []
    private var segmentNumber: Int
    private var segmentFile: any StoreFile
    private var segmentSize: Int
    private var index: BlockIndex
    private var failure: String?
    /// What other threads read through; it learns each block after its fsync.
    public let reader: BlockReader

    /// Height of the last stored block (0 when empty).
    public var tipHeight: UInt64 { UInt64(locations.count) }

    /// What `open` logs (warning) when it truncates a torn record, and (info) when it
    /// rewrites the index: the simulator counts its nodes' recoveries by them.
    public static let tornTailTruncatedMessage = "truncated a torn record left by a crash during append"
    public static let indexRebuiltMessage = "rebuilding the block index from the segments"

    /// Opens (creating if needed) the store under `dataDirectory`, recovering from a
    /// crash as described above.
    public static func open(
        dataDirectory: String, fileSystem: any FileSystem = PosixFileSystem(), options: Options = .default,
        logger: Logger = Logger(label: "tally.store")
    ) throws(StoreError) -> BlockStore {
        let blocksDirectory = ChainReader.blocksDirectory(dataDirectory: dataDirectory)
        do { try fileSystem.createDirectory(blocksDirectory) } catch { throw .io(error) }
        var reader = try ChainReader(dataDirectory: dataDirectory, fileSystem: fileSystem)
        var locations: [RecordLocation] = []
        var tornTail: Corruption?
        scan: while true {
            switch try reader.step() {
            case .record(let record): locations.append(record.location)
            case .end: break scan
            case .tornTail(let corruption):
                tornTail = corruption
                break scan
            }
        }
        do {
            let segmentNumber = reader.segments.last ?? 1
            let segmentPath = blocksDirectory + "/" + SegmentNaming.name(segmentNumber)
            let segmentFile = try fileSystem.open(segmentPath, mode: .create)
            if reader.segments.isEmpty { try fileSystem.syncDirectory(blocksDirectory) }
            if let tornTail {
                let size = try segmentFile.size()
                try segmentFile.truncate(to: tornTail.offset)
                try segmentFile.sync()
                logger.warning(
                    "\(tornTailTruncatedMessage)",
                    metadata: [
                        "file": "\(tornTail.file)", "offset": "\(tornTail.offset)", "bytes": "\(size - tornTail.offset)",
                        "height": "\(tornTail.height)", "damage": "\(tornTail.reason)",
                    ])
            }
            let index = try BlockIndex.open(
                path: blocksDirectory + "/index", expected: locations, fileSystem: fileSystem, logger: logger)
            return BlockStore(
                dataDirectory: dataDirectory, blocksDirectory: blocksDirectory, fileSystem: fileSystem, options: options,
                logger: logger, locations: locations, segmentNumber: segmentNumber, segmentFile: segmentFile,
                segmentSize: try segmentFile.size(), index: index)
        } catch { throw .io(error) }
    }

    private init(
        dataDirectory: String, blocksDirectory: String, fileSystem: any FileSystem, options: Options, logger: Logger,
        locations: [RecordLocation], segmentNumber: Int, segmentFile: any StoreFile, segmentSize: Int, index: BlockIndex
    ) {
        self.dataDirectory = dataDirectory
        self.blocksDirectory = blocksDirectory
        self.fileSystem = fileSystem
        self.options = options
        self.logger = logger
        self.locations = locations
        self.segmentNumber = segmentNumber
        self.segmentFile = segmentFile
        self.segmentSize = segmentSize
        self.index = index
        reader = BlockReader(blocksDirectory: blocksDirectory, fileSystem: fileSystem, locations: locations)
    }

    /// Appends the block at `tipHeight + 1` and fsyncs it before returning. The
    /// block's contents are not checked here (the verifier did that).
    public func append(_ block: CertifiedBlock) throws(StoreError) {
        try appendRecord(height: block.block.height, payload: block.canonicalBytes)
    }

    /// Appends already-encoded `CertifiedBlock` bytes (as sync received them).
    public func appendRecord(height: UInt64, payload: [UInt8]) throws(StoreError) {
        if let failure { throw .failed(failure) }
        guard height == tipHeight + 1 else { throw .notNextHeight(expected: tipHeight + 1, found: height) }
        guard payload.count <= RecordFormat.maxPayloadBytes else {
            throw .recordTooLarge(bytes: payload.count, max: RecordFormat.maxPayloadBytes)
        }
        let record = RecordFormat.encode(height: height, payload: payload)
        if segmentSize > 0 && segmentSize + record.count > options.maxSegmentBytes {
            // Nothing is written yet: a failure here (out of file descriptors, say) may
            // pass and leaves the store as it was, so it does not stop the store; the
            // caller retries (the node's `DurableWrite`).
            do { try startSegment() } catch { throw .io(error) }
        }
        do {
            try segmentFile.write(record, at: segmentSize)
            try segmentFile.sync()
        } catch {
            failure = "\(error)"
            throw .io(error)
        }
        let location = RecordLocation(segment: segmentNumber, offset: segmentSize, length: payload.count, height: height)
        segmentSize += record.count
        locations.append(location)
        reader.published(location)
        do { try index.append(location) } catch {
            // The block is durable; only the cache write failed. Later appends would
            // leave the index behind, which the next open repairs, but an I/O error
            // here means the disk is failing: stop writing.
            failure = "\(error)"
            throw .io(error)
        }
    }

    /// Closes the current segment (already durable) and starts the next one; the new
    /// directory entry is fsynced before any block in it is acknowledged.
    private func startSegment() throws(FileSystemError) {
        let next = segmentNumber + 1
        let file = try fileSystem.open(blocksDirectory + "/" + SegmentNaming.name(next), mode: .create)
        do { try fileSystem.syncDirectory(blocksDirectory) } catch {
            file.close()
            throw error
        }
        segmentFile.close()
        segmentFile = file
        segmentNumber = next
        segmentSize = 0
    }

    public func location(at height: UInt64) -> RecordLocation? {
        guard height >= 1 && height <= tipHeight else { return nil }
        return locations[Int(height - 1)]
    }

    /// The stored bytes of the block at `height` (checksum re-checked), nil above the tip.
    public func record(at height: UInt64) throws(StoreError) -> StoredRecord? {
        guard let location = location(at: height) else { return nil }
        let path = blocksDirectory + "/" + SegmentNaming.name(location.segment)
        if location.segment == segmentNumber { return try StoredRecord.read(location, from: segmentFile, path: path) }
        let file: any StoreFile
        do { file = try fileSystem.open(path, mode: .readOnly) } catch { throw .io(error) }
        defer { file.close() }
        return try StoredRecord.read(location, from: file, path: path)
    }

    /// The block at `height`, nil above the tip.
    public func block(at height: UInt64) throws(StoreError) -> CertifiedBlock? {
        try record(at: height)?.decode()
    }

    /// Calls `body` with each block from `start` to the tip, in order.
    public func forEachBlock(from start: UInt64 = 1, _ body: (CertifiedBlock) throws -> Void) throws {
        var height = max(start, 1)
        while height <= tipHeight {
            try body(try block(at: height)!)
            height += 1
        }
    }

    /// fsyncs the index and closes the files. Blocks are already durable.
    public func close() {
        try? index.sync()
        index.close()
        segmentFile.close()
    }

    deinit { segmentFile.close() }
}

/// `DATA/blocks/index`: a cache of record locations.
/// ```
/// magic: u32 = 0x58444954 ("TIDX") | version: u32 = 1
/// then per height h = 1, 2, …: height: u64 | segment: u32 | offset: u64 | length: u32
///                              | checksum: u32 (CRC-32C of the 24 bytes before it)
/// ```
/// Written without fsync after each append; on open it is compared with the
/// segments and rewritten (atomically) when missing or different.
final class BlockIndex {
    static let magic: UInt32 = 0x5844_4954
    static let version: UInt32 = 1
    static let headerBytes = 8
    static let entryBytes = 28

    private let file: any StoreFile
    private var count: Int

    private init(file: any StoreFile, count: Int) {
        self.file = file
        self.count = count
    }

    static func open(path: String, expected: [RecordLocation], fileSystem: any FileSystem, logger: Logger)
        throws(FileSystemError) -> BlockIndex
    {
        let wanted = encode(expected)
        // Read at most what the segments say it must hold: a huge (or sparse) index is
        // simply wrong, and costs no allocation of its size.
        let existing = try AtomicReplace.read(path, maxBytes: wanted.count, fileSystem: fileSystem)
        if existing != wanted {
            let why = existing == nil ? "missing" : "disagrees with the segments"
            if existing != nil || !expected.isEmpty { logger.info("\(BlockStore.indexRebuiltMessage)", metadata: ["reason": "\(why)", "blocks": "\(expected.count)"]) }
            try AtomicReplace.write(wanted, to: path, fileSystem: fileSystem)
        }
        return BlockIndex(file: try fileSystem.open(path, mode: .readWrite), count: expected.count)
    }

    static func encode(_ locations: [RecordLocation]) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(headerBytes + locations.count * entryBytes)
        RecordFormat.appendLittleEndian(magic, to: &bytes)
        RecordFormat.appendLittleEndian(version, to: &bytes)
        for location in locations { bytes.append(contentsOf: entry(location)) }
        return bytes
    }

    static func entry(_ location: RecordLocation) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(entryBytes)
        RecordFormat.appendLittleEndian(location.height, to: &bytes)
        RecordFormat.appendLittleEndian(UInt32(location.segment), to: &bytes)
        RecordFormat.appendLittleEndian(UInt64(location.offset), to: &bytes)
        RecordFormat.appendLittleEndian(UInt32(location.length), to: &bytes)
        RecordFormat.appendLittleEndian(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    func append(_ location: RecordLocation) throws(FileSystemError) {
        try file.write(BlockIndex.entry(location), at: BlockIndex.headerBytes + count * BlockIndex.entryBytes)
        count += 1
    }

    func sync() throws(FileSystemError) { try file.sync() }
    func close() { file.close() }
}
