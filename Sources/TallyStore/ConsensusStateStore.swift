import TallyCrypto

/// The consensus replica's persisted state and the prepared blocks it refers to, as
/// an append-only journal `DATA/state/consensus.journal`: each persist appends ONE
/// record (the blocks not written before, then the state) and fsyncs once. The
/// previous layout (a state file replaced by rename plus one file per block) cost
/// four fsyncs, a create, a rename and an unlink per persist, and a validator
/// persists before every vote: the journal is what keeps commit latency low.
///
/// Record layout (integers little-endian):
/// ```
/// magic: u32 = 0x4C4E4A54 ("TJNL") | sequence: u64 | length: u32 | payload (length bytes)
/// | checksum: u32 (CRC-32C of everything before it in the record)
/// payload = block count: u32 | per block: hash (32) | size: u32 | bytes (size) | state bytes (the rest)
/// ```
/// Sequences increase by one from record to record. The last valid record holds the
/// current state; the blocks it refers to are in it or in earlier records.
///
/// Why this is crash safe: a persist is one write of one record followed by one
/// fsync, so a crash can only damage the record being written (never acknowledged:
/// nothing was sent that depends on it). At open, an invalid record with no valid
/// record after it is such a torn tail: it is cut off (and the cut fsynced). An
/// invalid record followed by a valid one of a higher sequence (or a valid record
/// that skips sequences) is real damage: `.corrupt`, never a silent roll-back (a
/// validator that forgot what it signed could sign twice). The journal gets its
/// name only once its first record is fsynced, so an empty journal or an invalid
/// first record is `.corrupt` too. Open fsyncs what it read (see `openJournal`).
///
/// Preallocation: the journal is followed by zeros (`preallocationBytes`, written
/// with the record that needs them, then fsynced); a record that fits in them is
/// written over them and fdatasynced. At open, zeros after the last record are that
/// space, not a torn tail.
///
/// Compaction: once the journal is over `compactionBytes` (and twice its size after
/// the last compaction, which is its first record's size, also after a restart), the
/// next persist writes a fresh journal holding one record (every referenced block and
/// the state) to `consensus.journal.tmp`, fsyncs it, renames it over the journal and
/// fsyncs the directory.
///
/// Upgrade: a data directory of the previous layout (`DATA/state/consensus`, a
/// `DurableStateFile`, and `DATA/state/prepared/<hash>.blk`) is read as it is; the
/// first persist writes the journal by compaction, then removes the old files. A
/// journal always wins over old files (a crash between the two leaves both).
///
/// Thread-safety: not thread-safe; one owner.
public final class ConsensusStateStore {
    static let magic: UInt32 = 0x4C4E_4A54
    static let headerBytes = 16
    static let checksumBytes = 4
    /// Journal size from which a persist compacts it first.
    public static let defaultCompactionBytes = 32 << 20
    /// Zeros written ahead of the records: most persists then overwrite bytes the file
    /// already has, and their fdatasync changes neither size nor allocation, so it
    /// needs no file-system journal commit (on ext4 those serialize with every other
    /// process's fsyncs and made each persist wait milliseconds on a busy machine).
    public static let defaultPreallocationBytes = 4 << 20
    /// One record at most (state ≤ 16 MiB plus the blocks of the log window).
    static let maxRecordBytes = 512 << 20

    public let journalPath: String
    let legacyStateFile: DurableStateFile
    let legacyBlocksDirectory: String
    let fileSystem: any FileSystem
    let compactionBytes: Int
    let preallocationBytes: Int

    private var journal: (any StoreFile)?
    /// End of the last valid record (where the next one goes).
    private var journalBytes = 0
    /// The journal file's size: records, then zeros.
    private var allocatedBytes = 0
    /// Journal size right after the last compaction (or open).
    private var compactedBytes = 0
    private var nextSequence: UInt64 = 1
    /// Where each block of the current journal is (offset and size of its bytes).
    private var blockLocations: [Hash: (offset: Int, size: Int)] = [:]
    /// The state of the last valid record.
    private var lastState: [UInt8]?
    /// True while the state comes from the previous layout's files.
    private var readingLegacy = false

    public init(
        journalPath: String, legacyStateFile: DurableStateFile, legacyBlocksDirectory: String,
        fileSystem: any FileSystem = PosixFileSystem(), compactionBytes: Int = ConsensusStateStore.defaultCompactionBytes,
        preallocationBytes: Int = ConsensusStateStore.defaultPreallocationBytes
    ) throws(StoreError) {
        precondition(preallocationBytes >= 0, "negative preallocation")
        self.journalPath = journalPath
        self.legacyStateFile = legacyStateFile
        self.legacyBlocksDirectory = legacyBlocksDirectory
        self.fileSystem = fileSystem
        self.compactionBytes = compactionBytes
        self.preallocationBytes = preallocationBytes
        if fileSystem.fileExists(journalPath) {
            try openJournal()
        } else {
            readingLegacy = try legacyStateFile.read() != nil
        }
    }

    deinit { journal?.close() }

    /// The last written state bytes, nil if never written.
    public func readState() throws(StoreError) -> [UInt8]? {
        readingLegacy ? try legacyStateFile.read() : lastState
    }

    /// The bytes of a block the state refers to, nil if there is none.
    public func readBlock(_ hash: Hash) throws(StoreError) -> [UInt8]? {
        if readingLegacy {
            return try DurableStateFile(path: legacyBlockPath(hash), fileSystem: fileSystem).read()
        }
        guard let location = blockLocations[hash], let journal else { return nil }
        do { return try journal.read(at: location.offset, count: location.size) } catch { throw .io(error) }
    }

    /// After reading the state at start: `referenced` are the blocks it refers to.
    /// Leftovers of the previous layout are removed once a journal exists; blocks of
    /// the journal that nothing refers to go at the next compaction.
    public func retainOnly(_ referenced: Set<Hash>) throws(StoreError) {
        if !readingLegacy { try removeLegacyFiles() }
    }

    /// Appends one record with the blocks of `referenced` not in the journal yet
    /// (bytes from `blockBytes`) and `state`, and fsyncs it; compacts first when the
    /// journal has grown past its bound. Durable when this returns.
    public func write(state: [UInt8], referenced: Set<Hash>, blockBytes: (Hash) -> [UInt8]) throws(StoreError) {
        if readingLegacy || journal == nil || shouldCompact {
            return try compact(state: state, referenced: referenced, blockBytes: blockBytes)
        }
        let new = referenced.filter { blockLocations[$0] == nil }
        let (record, blocks) = Self.encodeRecord(
            sequence: nextSequence, blocks: Self.sorted(new).map { ($0, blockBytes($0)) }, state: state)
        let end = journalBytes + record.count
        do {
            if end <= allocatedBytes {
                try journal!.write(record, at: journalBytes)
                try journal!.syncData()
            } else {
                // One write: the record and the next stretch of zeros.
                try journal!.write(record + [UInt8](repeating: 0, count: preallocationBytes), at: journalBytes)
                try journal!.sync()
                allocatedBytes = end + preallocationBytes
            }
        } catch { throw .io(error) }
        for block in blocks { blockLocations[block.hash] = (journalBytes + block.offset, block.size) }
        journalBytes += record.count
        nextSequence += 1
        lastState = state
    }

    var shouldCompact: Bool { journalBytes >= max(compactionBytes, 2 * compactedBytes) }

    // MARK: Record format

    /// One record; also where each block's bytes sit in it.
    static func encodeRecord(
        sequence: UInt64, blocks: [(hash: Hash, bytes: [UInt8])], state: [UInt8]
    ) -> (record: [UInt8], blocks: [(hash: Hash, offset: Int, size: Int)]) {
        let payloadBytes = 4 + blocks.reduce(0) { $0 + 36 + $1.bytes.count } + state.count
        precondition(headerBytes + payloadBytes + checksumBytes <= maxRecordBytes, "consensus journal record over its bound")
        var record = [UInt8]()
        record.reserveCapacity(headerBytes + payloadBytes + checksumBytes)
        RecordFormat.appendLittleEndian(magic, to: &record)
        RecordFormat.appendLittleEndian(sequence, to: &record)
        RecordFormat.appendLittleEndian(UInt32(payloadBytes), to: &record)
        RecordFormat.appendLittleEndian(UInt32(blocks.count), to: &record)
        var locations: [(hash: Hash, offset: Int, size: Int)] = []
        for block in blocks {
            record.append(contentsOf: block.hash.bytes)
            RecordFormat.appendLittleEndian(UInt32(block.bytes.count), to: &record)
            locations.append((block.hash, record.count, block.bytes.count))
            record.append(contentsOf: block.bytes)
        }
        record.append(contentsOf: state)
        RecordFormat.appendLittleEndian(CRC32C.checksum(record), to: &record)
        return (record, locations)
    }

    struct DecodedRecord {
        let sequence: UInt64
        let byteCount: Int
        /// Offsets relative to the record's start.
        let blocks: [(hash: Hash, offset: Int, size: Int)]
        let state: [UInt8]
    }

    /// The record at `offset` of `bytes`, nil if there is no valid one there.
    static func decodeRecord(_ bytes: [UInt8], at offset: Int) -> DecodedRecord? {
        guard bytes.count - offset >= headerBytes + 4 + checksumBytes,
              RecordFormat.readLittleEndian(UInt32.self, bytes, offset) == magic
        else { return nil }
        let sequence = RecordFormat.readLittleEndian(UInt64.self, bytes, offset + 4)
        let payloadBytes = Int(RecordFormat.readLittleEndian(UInt32.self, bytes, offset + 12))
        let end = offset + headerBytes + payloadBytes
        guard payloadBytes >= 4, end + checksumBytes <= bytes.count,
              CRC32C.checksum(bytes[offset..<end]) == RecordFormat.readLittleEndian(UInt32.self, bytes, end)
        else { return nil }
        var cursor = offset + headerBytes
        let blockCount = Int(RecordFormat.readLittleEndian(UInt32.self, bytes, cursor))
        cursor += 4
        var blocks: [(hash: Hash, offset: Int, size: Int)] = []
        for _ in 0..<blockCount {
            guard end - cursor >= 36 else { return nil }
            let hash = Hash(bytes: Array(bytes[cursor..<cursor + 32]))!
            let size = Int(RecordFormat.readLittleEndian(UInt32.self, bytes, cursor + 32))
            cursor += 36
            guard end - cursor >= size else { return nil }
            blocks.append((hash, cursor - offset, size))
            cursor += size
        }
        return DecodedRecord(
            sequence: sequence, byteCount: end + checksumBytes - offset, blocks: blocks, state: Array(bytes[cursor..<end]))
    }

    // MARK: Opening, compaction, upgrade

    /// Reads every valid record; cuts off a torn tail; refuses real damage. Reads one
    /// record at a time (its length checked against the file and `maxRecordBytes`
    /// before anything is allocated) and looks past damage with bounded work
    /// (`DamageScan`), so a huge, sparse or crafted journal costs neither memory of
    /// its size nor hours.
    private func openJournal() throws(StoreError) {
        let file: any StoreFile
        let size: Int
        do {
            file = try fileSystem.open(journalPath, mode: .readWrite)
            size = try file.size()
        } catch { throw .io(error) }
        journal = file
        var offset = 0
        var lastSequence: UInt64?
        var firstRecordBytes = 0
        do {
            while let record = try Self.readRecord(file, at: offset, size: size),
                  lastSequence.map({ record.sequence == $0 + 1 }) ?? true
            {
                for block in record.blocks { blockLocations[block.hash] = (offset + block.offset, block.size) }
                lastState = record.state
                lastSequence = record.sequence
                if offset == 0 { firstRecordBytes = record.byteCount }
                offset += record.byteCount
            }
        } catch { throw .io(error) }
        // The first record was written whole before the journal got its name: an
        // empty journal or an invalid first record is damage, not a torn write.
        if offset == 0 {
            throw .corrupt(Corruption(file: journalPath, offset: 0, height: 0, reason: "the journal's first record is invalid"))
        }
        allocatedBytes = size
        var work = DamageScan.Work()
        defer { damageScanWork = work }
        var damaged = false
        if offset < size {
            do { damaged = try DamageScan.containsNonZero(file, from: offset, size: size, work: &work) } catch { throw .io(error) }
        }
        if damaged {
            let scan: DamageScan.Result
            do { scan = try Self.findValidRecord(file, from: offset, size: size, sequenceAbove: lastSequence ?? 0, work: &work) } catch {
                throw .io(error)
            }
            switch scan {
            case .found(let damage):
                throw .corrupt(Corruption(
                    file: journalPath, offset: offset, height: 0,
                    reason: "invalid record before a valid one at offset \(damage): the journal is damaged, not torn"))
            case .gaveUp(let why):
                throw .corrupt(Corruption(file: journalPath, offset: offset, height: 0, reason: "invalid record; \(why)"))
            case .none:
                // A torn tail: the last persist never completed (nothing depended on it).
                do { try file.truncate(to: offset) } catch { throw .io(error) }
                allocatedBytes = offset
            }
        }
        // Durable before anything depends on it (the cut too): after a process crash
        // between a persist's write and its fsync, with no reboot, the last record may
        // still be in the page cache only; the replica must not act on it (resend its
        // votes) and then lose it to a power failure.
        do { try file.sync() } catch { throw .io(error) }
        journalBytes = offset
        // A journal is born by compaction: its first record is what the last
        // compaction wrote. (Counting the whole journal here would let it grow
        // without bound across restarts: each open would raise the threshold.)
        compactedBytes = firstRecordBytes
        nextSequence = (lastSequence ?? 0) + 1
    }

    /// What the last open's look past the records did (bounded; see `DamageScan`).
    private(set) var damageScanWork = DamageScan.Work()

    /// The header at `offset` if it could start a record that fits in the file and in
    /// `maxRecordBytes`: (sequence, payload length). Reads 16 bytes.
    static func readHeader(_ file: any StoreFile, at offset: Int, size: Int, work: inout DamageScan.Work)
        throws(FileSystemError) -> (sequence: UInt64, payloadBytes: Int)?
    {
        guard size - offset >= headerBytes + 4 + checksumBytes else { return nil }
        let header = try DamageScan.read(file, at: offset, count: headerBytes, work: &work)
        guard header.count == headerBytes, RecordFormat.readLittleEndian(UInt32.self, header, 0) == magic else { return nil }
        let payloadBytes = Int(RecordFormat.readLittleEndian(UInt32.self, header, 12))
        let recordBytes = headerBytes + payloadBytes + checksumBytes
        guard payloadBytes >= 4, recordBytes <= maxRecordBytes, recordBytes <= size - offset else { return nil }
        return (RecordFormat.readLittleEndian(UInt64.self, header, 4), payloadBytes)
    }

    /// The valid record at `offset`, nil if there is none. Allocates only a record
    /// whose length fits in the file and in `maxRecordBytes`.
    static func readRecord(_ file: any StoreFile, at offset: Int, size: Int) throws(FileSystemError) -> DecodedRecord? {
        var work = DamageScan.Work()
        guard let header = try readHeader(file, at: offset, size: size, work: &work) else { return nil }
        let bytes = try file.read(at: offset, count: headerBytes + header.payloadBytes + checksumBytes)
        return decodeRecord(bytes, at: 0)
    }

    /// The offset of a valid record at or after `offset` with a sequence above
    /// `sequenceAbove`, if any. The record at `offset` itself counts: a valid record
    /// that skips sequences means records in between were lost. Bounded work: the
    /// sequence and length are checked before a candidate is checksummed (streamed),
    /// and only one whose checksum matches is read whole.
    static func findValidRecord(
        _ file: any StoreFile, from offset: Int, size: Int, sequenceAbove: UInt64, work: inout DamageScan.Work
    ) throws(FileSystemError) -> DamageScan.Result {
        try DamageScan.findRecord(in: file, from: offset, size: size, magic: magic, work: &work) {
            (candidate: Int, work: inout DamageScan.Work) throws(FileSystemError) -> DamageScan.Verdict in
            guard let header = try readHeader(file, at: candidate, size: size, work: &work),
                  header.sequence > sequenceAbove
            else { return .invalid }
            let coveredBytes = headerBytes + header.payloadBytes
            guard let checksum = try DamageScan.checksum(file, at: candidate, count: coveredBytes, initial: 0, work: &work) else {
                return .overBudget(DamageScan.budgetMessage(work))
            }
            let stored = try DamageScan.read(file, at: candidate + coveredBytes, count: checksumBytes, work: &work)
            guard stored.count == checksumBytes, checksum == RecordFormat.readLittleEndian(UInt32.self, stored, 0) else {
                return .invalid
            }
            // The checksum matched (the bytes were within the budget): check its structure.
            return try readRecord(file, at: candidate, size: size) != nil ? .valid : .invalid
        }
    }

    /// Replaces the journal with one record holding every referenced block and the
    /// state (temporary file, fsync, rename, directory fsync), then drops the old
    /// layout's files.
    private func compact(state: [UInt8], referenced: Set<Hash>, blockBytes: (Hash) -> [UInt8]) throws(StoreError) {
        let (record, blocks) = Self.encodeRecord(
            sequence: nextSequence, blocks: Self.sorted(referenced).map { ($0, blockBytes($0)) }, state: state)
        let temporary = journalPath + ".tmp"
        let file: any StoreFile
        do {
            if fileSystem.fileExists(temporary) { try fileSystem.remove(temporary) }
            file = try fileSystem.open(temporary, mode: .create)
        } catch { throw .io(error) }
        do {
            try file.write(record + [UInt8](repeating: 0, count: preallocationBytes), at: 0)
            try file.sync()
            try fileSystem.rename(temporary, to: journalPath)
            try fileSystem.syncDirectory(AtomicReplace.directory(of: journalPath))
        } catch {
            // The caller retries (the node's `DurableWrite`), compacting again: each
            // failed attempt must not keep a descriptor (they may be what ran out).
            file.close()
            throw .io(error)
        }
        journal?.close()
        journal = file
        blockLocations = Dictionary(uniqueKeysWithValues: blocks.map { ($0.hash, ($0.offset, $0.size)) })
        journalBytes = record.count
        allocatedBytes = record.count + preallocationBytes
        compactedBytes = record.count
        nextSequence += 1
        lastState = state
        if readingLegacy {
            readingLegacy = false
            try removeLegacyFiles()
        }
    }

    /// Removes the previous layout's state file (and its temporary) and block files
    /// (no-op when gone).
    private func removeLegacyFiles() throws(StoreError) {
        do {
            // The previous layout's state file, and its temporary left by a crash mid-replace.
            for path in [legacyStateFile.path, AtomicReplace.temporaryPath(for: legacyStateFile.path)]
            where fileSystem.fileExists(path) {
                try fileSystem.remove(path)
            }
            if fileSystem.fileExists(legacyBlocksDirectory) {
                for name in try fileSystem.listDirectory(legacyBlocksDirectory) {
                    try fileSystem.remove(legacyBlocksDirectory + "/" + name)
                }
            }
        } catch { throw .io(error) }
    }

    static func sorted(_ hashes: Set<Hash>) -> [Hash] { hashes.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) } }
    static func legacyFileName(_ hash: Hash) -> String { hash.hex + ".blk" }
    func legacyBlockPath(_ hash: Hash) -> String { legacyBlocksDirectory + "/" + Self.legacyFileName(hash) }
}
