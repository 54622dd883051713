import Logging
import TallyCrypto
import TallyLedger
import TallyTypes

/// A ledger snapshot at `height`: the ledger's image (`LedgerImage`) as flat sections,
/// so a restart loads it with bulk reads and no per-account decoding, hashing or
/// allocation. Version 2 (written):
/// ```
/// magic: u32 = 0x504E5354 ("TSNP") | version: u32 = 2 | height: u64
/// | state_root: 32 | block_hash: 32 (of the block at `height`; genesis hash at 0)
/// | count: u64
/// | addresses: count × 20            (creation order = state-tree leaf order)
/// | accounts: count × (balance: u64 | nonce: u64)
/// | address_order: count × u32       (leaf indices sorted by address)
/// | tree: levels 0…depth of the state tree, level k ⌈count / 2^k⌉ × 32 (`StateTree`)
/// | checksum: u32 (CRC-32C of everything before it)
/// ```
/// Version 1 (still read, then rewritten as version 2 by `SnapshotStore.loadLatest`):
/// the same header, then `count × (address: 20 | balance: u64 | nonce: u64)` and the
/// checksum; restoring it rehashes every account and rebuilds the tree.
/// A snapshot is local derived state (the blocks can always rebuild it): the checksum
/// detects damage, `Ledger(genesis:height:image:)` checks sizes, order, supply and a
/// sample of the tree, and the caller checks the state root against the block header.
/// At most `maxAccounts` accounts; read back in bounded pieces (`read(size:maxAccounts:_:)`).
public struct Snapshot: Sendable {
    public let height: UInt64
    public let stateRoot: Hash
    public let blockHash: Hash
    /// The format it was read in (`version` when made from a ledger).
    public let formatVersion: UInt32

    enum Content: Sendable {
        case image(LedgerImage)
        /// Version 1's accounts in creation order.
        case accounts([(address: Address, account: Account)])
    }
    let content: Content

    public init(ledger: Ledger, blockHash: Hash) {
        height = ledger.height
        stateRoot = ledger.stateRoot
        self.blockHash = blockHash
        formatVersion = Snapshot.version
        content = .image(ledger.image)
    }

    /// A version-1 snapshot (for the format's tests and its conversion).
    init(height: UInt64, stateRoot: Hash, blockHash: Hash, accounts: [(address: Address, account: Account)]) {
        self.height = height
        self.stateRoot = stateRoot
        self.blockHash = blockHash
        formatVersion = 1
        content = .accounts(accounts)
    }

    init(height: UInt64, stateRoot: Hash, blockHash: Hash, image: LedgerImage) {
        self.height = height
        self.stateRoot = stateRoot
        self.blockHash = blockHash
        formatVersion = Snapshot.version
        content = .image(image)
    }

    public var accountCount: Int {
        switch content {
        case .image(let image): return image.accounts.count
        case .accounts(let accounts): return accounts.count
        }
    }

    /// All accounts in creation order (built on demand: for audits and tests).
    public var accounts: [(address: Address, account: Account)] {
        switch content {
        case .accounts(let accounts): return accounts
        case .image(let image):
            return image.accounts.indices.map { index in
                (Address(bytes: Array(image.addressBytes[index * Address.byteCount..<(index + 1) * Address.byteCount]))!,
                 image.accounts[index])
            }
        }
    }

    static let magic: UInt32 = 0x504E_5354
    /// The version written. Version 1 is read too (see above).
    static let version: UInt32 = 2
    /// A version-1 account record; also the unit of the bounded reads below.
    static let accountBytes = 36
    /// Bytes per account in version 2 outside the tree: address, balance, nonce, order entry.
    static let imageAccountBytes = Address.byteCount + 16 + 4

    func encodeHeader(version: UInt32, into bytes: inout [UInt8]) {
        RecordFormat.appendLittleEndian(Snapshot.magic, to: &bytes)
        RecordFormat.appendLittleEndian(version, to: &bytes)
        RecordFormat.appendLittleEndian(height, to: &bytes)
        bytes.append(contentsOf: stateRoot.bytes)
        bytes.append(contentsOf: blockHash.bytes)
        RecordFormat.appendLittleEndian(UInt64(accountCount), to: &bytes)
    }

    /// The file's bytes: version 2 for a snapshot of a ledger; version 1 for one made
    /// of version 1's account list (its tests, and what nodes before version 2 wrote).
    func encode() -> [UInt8] {
        switch content {
        case .image(let image): return Snapshot.encode(image, header: self)
        case .accounts(let accounts): return encodeVersion1(accounts)
        }
    }

    private static func encode(_ image: LedgerImage, header: Snapshot) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(Snapshot.fileBytes(count: image.accounts.count))
        header.encodeHeader(version: Snapshot.version, into: &bytes)
        bytes.append(contentsOf: image.addressBytes)
        for account in image.accounts {
            RecordFormat.appendLittleEndian(account.balance, to: &bytes)
            RecordFormat.appendLittleEndian(account.nonce, to: &bytes)
        }
        for index in image.addressOrder { RecordFormat.appendLittleEndian(index, to: &bytes) }
        for level in image.treeLevels { bytes.append(contentsOf: level) }
        RecordFormat.appendLittleEndian(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    private func encodeVersion1(_ accounts: [(address: Address, account: Account)]) -> [UInt8] {
        var bytes = [UInt8]()
        encodeHeader(version: 1, into: &bytes)
        for entry in accounts {
            bytes.append(contentsOf: entry.address.bytes)
            RecordFormat.appendLittleEndian(entry.account.balance, to: &bytes)
            RecordFormat.appendLittleEndian(entry.account.nonce, to: &bytes)
        }
        RecordFormat.appendLittleEndian(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    /// Bytes before the accounts: magic, version, height, state root, block hash, count.
    static let fixedBytes = 4 + 4 + 8 + 32 + 32 + 8
    /// Most accounts a snapshot may hold (a version-2 file of about 5.2 GB): a file
    /// that claims more, or is bigger, is damage and is not read (`SnapshotStore`
    /// skips it).
    public static let maxAccounts = 50_000_000
    /// Accounts per read of version 1: a snapshot is read in pieces of about 1 MiB
    /// (`pieceBytes`), never whole, so a huge or sparse file costs no allocation of its size.
    static let accountsPerRead = (1 << 20) / accountBytes
    /// Largest single read.
    static let pieceBytes = accountsPerRead * accountBytes

    /// Size of a version-2 snapshot of `count` accounts.
    static func fileBytes(count: Int) -> Int {
        fixedBytes + count * imageAccountBytes + StateTree.totalNodeCount(leaves: count) * Hash.byteCount + 4
    }

    /// Size of a version-1 snapshot of `count` accounts.
    static func fileBytesVersion1(count: Int) -> Int { fixedBytes + count * accountBytes + 4 }

    /// Largest file of at most `maxAccounts` accounts (in the current version, the larger).
    static func maxFileBytes(maxAccounts: Int) -> Int { fileBytes(count: maxAccounts) }

    static func decode(_ bytes: [UInt8]) -> Result<Snapshot, DurableStateFile.DecodeFailure> {
        // Reading from memory cannot fail.
        try! read(size: bytes.count, maxAccounts: maxAccounts) { offset, count in
            Array(bytes[min(offset, bytes.count)..<min(offset + count, bytes.count)])
        }
    }

    /// Reads a snapshot of `size` bytes through `read` (the bytes at an offset, fewer
    /// only at the end of the file) with bounded work: the size and the header's
    /// account count are checked against `maxAccounts` first, then the checksum is
    /// computed over the file in pieces, and only then are the sections read (in
    /// pieces too), so a damaged file allocates nothing in proportion to what it claims.
    static func read(
        size: Int, maxAccounts: Int, _ read: (_ offset: Int, _ count: Int) throws(FileSystemError) -> [UInt8]
    ) throws(FileSystemError) -> Result<Snapshot, DurableStateFile.DecodeFailure> {
        typealias Failure = DurableStateFile.DecodeFailure
        guard size >= fixedBytes + 4 else { return .failure(Failure("file too short")) }
        let maxBytes = max(maxFileBytes(maxAccounts: maxAccounts), fileBytesVersion1(count: maxAccounts))
        guard size <= maxBytes else {
            return .failure(Failure("file of \(size) bytes is over the limit of \(maxBytes) (\(maxAccounts) accounts)"))
        }
        let header = try read(0, fixedBytes)
        guard header.count == fixedBytes else { return .failure(Failure("file too short")) }
        guard RecordFormat.readLittleEndian(UInt32.self, header, 0) == magic else { return .failure(Failure("bad magic")) }
        let version = RecordFormat.readLittleEndian(UInt32.self, header, 4)
        guard version == 1 || version == Snapshot.version else { return .failure(Failure("unknown version \(version)")) }
        let claimed = RecordFormat.readLittleEndian(UInt64.self, header, 80)
        guard claimed <= UInt64(maxAccounts) else {
            return .failure(Failure("account count \(claimed) is over the limit of \(maxAccounts)"))
        }
        let count = Int(claimed)
        guard (version == 1 ? fileBytesVersion1(count: count) : fileBytes(count: count)) == size else {
            return .failure(Failure("account count \(count) does not match the file size"))
        }
        var checksum: UInt32 = 0
        var offset = 0
        while offset < size - 4 {
            let piece = try read(offset, min(pieceBytes, size - 4 - offset))
            guard !piece.isEmpty else { return .failure(Failure("file too short")) }
            checksum = CRC32C.checksum(piece, initial: checksum)
            offset += piece.count
        }
        let trailer = try read(size - 4, 4)
        guard trailer.count == 4, checksum == RecordFormat.readLittleEndian(UInt32.self, trailer, 0) else {
            return .failure(Failure("checksum mismatch"))
        }
        let height = RecordFormat.readLittleEndian(UInt64.self, header, 8)
        let stateRoot = Hash(bytes: Array(header[16..<48]))!
        let blockHash = Hash(bytes: Array(header[48..<80]))!
        if version == 1 {
            guard let accounts = try readVersion1Accounts(count: count, read) else { return .failure(Failure("file too short")) }
            return .success(Snapshot(height: height, stateRoot: stateRoot, blockHash: blockHash, accounts: accounts))
        }
        guard let image = try readImage(count: count, read) else { return .failure(Failure("file too short")) }
        return .success(Snapshot(height: height, stateRoot: stateRoot, blockHash: blockHash, image: image))
    }

    /// Reads `byteCount` bytes from `offset` in pieces of at most `pieceBytes`, each
    /// whole piece passed to `consume`; false when the file ended early (it changed
    /// since the checksum pass).
    private static func readSection(
        at offset: Int, byteCount: Int, unit: Int, _ read: (_ offset: Int, _ count: Int) throws(FileSystemError) -> [UInt8],
        _ consume: ([UInt8]) -> Void
    ) throws(FileSystemError) -> Bool {
        let piece = pieceBytes / unit * unit
        var done = 0
        while done < byteCount {
            let want = min(piece, byteCount - done)
            let bytes = try read(offset + done, want)
            guard bytes.count == want else { return false }
            consume(bytes)
            done += want
        }
        return true
    }

    /// Version 2's sections after the checksum pass: bulk copies, and a fixed-width
    /// load per account and order entry (no allocation per account).
    private static func readImage(
        count: Int, _ read: (_ offset: Int, _ count: Int) throws(FileSystemError) -> [UInt8]
    ) throws(FileSystemError) -> LedgerImage? {
        var offset = fixedBytes
        var addressBytes: [UInt8] = []
        addressBytes.reserveCapacity(count * Address.byteCount)
        guard try readSection(at: offset, byteCount: count * Address.byteCount, unit: Address.byteCount, read, {
            addressBytes.append(contentsOf: $0)
        }) else { return nil }
        offset += count * Address.byteCount
        var accounts: [Account] = []
        accounts.reserveCapacity(count)
        guard try readSection(at: offset, byteCount: count * 16, unit: 16, read, { piece in
            for start in stride(from: 0, to: piece.count, by: 16) {
                accounts.append(Account(
                    balance: RecordFormat.readLittleEndian(UInt64.self, piece, start),
                    nonce: RecordFormat.readLittleEndian(UInt64.self, piece, start + 8)))
            }
        }) else { return nil }
        offset += count * 16
        var order: [UInt32] = []
        order.reserveCapacity(count)
        guard try readSection(at: offset, byteCount: count * 4, unit: 4, read, { piece in
            for start in stride(from: 0, to: piece.count, by: 4) { order.append(RecordFormat.readLittleEndian(UInt32.self, piece, start)) }
        }) else { return nil }
        offset += count * 4
        var levels: [[UInt8]] = []
        for level in 0...StateTree.depth(for: count) {
            let levelBytes = StateTree.nodeCount(level: level, leaves: count) * Hash.byteCount
            var nodes: [UInt8] = []
            nodes.reserveCapacity(levelBytes)
            guard try readSection(at: offset, byteCount: levelBytes, unit: Hash.byteCount, read, { nodes.append(contentsOf: $0) })
            else { return nil }
            levels.append(nodes)
            offset += levelBytes
        }
        return LedgerImage(addressBytes: addressBytes, accounts: accounts, addressOrder: order, treeLevels: levels)
    }

    private static func readVersion1Accounts(
        count: Int, _ read: (_ offset: Int, _ count: Int) throws(FileSystemError) -> [UInt8]
    ) throws(FileSystemError) -> [(address: Address, account: Account)]? {
        var accounts: [(address: Address, account: Account)] = []
        accounts.reserveCapacity(count)
        guard try readSection(at: fixedBytes, byteCount: count * accountBytes, unit: accountBytes, read, { piece in
            for start in stride(from: 0, to: piece.count, by: accountBytes) {
                accounts.append((
                    Address(bytes: Array(piece[start..<start + 20]))!,
                    Account(
                        balance: RecordFormat.readLittleEndian(UInt64.self, piece, start + 20),
                        nonce: RecordFormat.readLittleEndian(UInt64.self, piece, start + 28))))
            }
        }) else { return nil }
        return accounts
    }

    /// The ledger this snapshot describes, checked (`Ledger(genesis:height:image:)`,
    /// or for version 1 every account rehashed), and its state root equal to the
    /// recorded one.
    public func restore(genesis: Genesis) throws(SnapshotStore.LoadError) -> Ledger {
        let ledger: Ledger
        do {
            switch content {
            case .image(let image): ledger = try Ledger(genesis: genesis, height: height, image: image)
            case .accounts(let accounts): ledger = try Ledger(genesis: genesis, height: height, accounts: accounts)
            }
        } catch {
            throw .inconsistent(height: height, reason: error.description)
        }
        guard ledger.stateRoot == stateRoot else {
            throw .inconsistent(height: height, reason: "accounts hash to \(ledger.stateRoot.hex), the snapshot records \(stateRoot.hex)")
        }
        return ledger
    }
}

/// Snapshots at stable checkpoints under `DATA/snapshots/`, one file per height
/// (`snapshot-00000000000000000016.tsnap`), each written with the temp + fsync +
/// rename + directory-fsync protocol. The newest `retained` are kept. A restart loads
/// the newest snapshot that reads back intact and replays only the blocks above it;
/// snapshots can always be rebuilt from the blocks, so a damaged one is logged and
/// skipped, never fatal.
///
/// Thread-safety: not thread-safe; one owner.
public final class SnapshotStore {
    public enum LoadError: Error, Equatable, CustomStringConvertible {
        case inconsistent(height: UInt64, reason: String)
        public var description: String {
            switch self {
            case .inconsistent(let height, let reason): return "snapshot at height \(height) is inconsistent: \(reason)"
            }
        }
    }

    public let directory: String
    let fileSystem: any FileSystem
    let logger: Logger
    public let retained: Int
    /// Largest snapshot written or read (`Snapshot.maxAccounts`; tests lower it).
    let maxAccounts: Int

    public convenience init(
        dataDirectory: String, fileSystem: any FileSystem = PosixFileSystem(), retained: Int = 2,
        logger: Logger = Logger(label: "tally.store")
    ) throws(StoreError) {
        try self.init(
            dataDirectory: dataDirectory, fileSystem: fileSystem, retained: retained, maxAccounts: Snapshot.maxAccounts, logger: logger)
    }

    init(
        dataDirectory: String, fileSystem: any FileSystem, retained: Int = 2, maxAccounts: Int,
        logger: Logger = Logger(label: "tally.store")
    ) throws(StoreError) {
        precondition(retained >= 1 && maxAccounts >= 0)
        directory = dataDirectory + "/snapshots"
        self.fileSystem = fileSystem
        self.retained = retained
        self.maxAccounts = maxAccounts
        self.logger = logger
        do {
            try fileSystem.createDirectory(directory)
            // A crash in the middle of `write` can leave a temp file behind.
            for name in try fileSystem.listDirectory(directory) where name.hasSuffix(".tmp") {
                try fileSystem.remove(directory + "/" + name)
            }
        } catch { throw .io(error) }
    }

    static let prefix = "snapshot-"
    static let suffix = ".tsnap"

    func path(height: UInt64) -> String {
        let digits = String(height)
        return directory + "/" + SnapshotStore.prefix + String(repeating: "0", count: max(0, 20 - digits.count)) + digits
            + SnapshotStore.suffix
    }

    /// Heights of the snapshot files present, newest first.
    public func heights() throws(StoreError) -> [UInt64] {
        let names: [String]
        do { names = try fileSystem.listDirectory(directory) } catch { throw .io(error) }
        return names.compactMap { name -> UInt64? in
            guard name.hasPrefix(SnapshotStore.prefix) && name.hasSuffix(SnapshotStore.suffix) else { return nil }
            return UInt64(name.dropFirst(SnapshotStore.prefix.count).dropLast(SnapshotStore.suffix.count))
        }.sorted(by: >)
    }

    /// Writes the snapshot durably, then removes all but the newest `retained`.
    public func write(_ snapshot: Snapshot) throws(StoreError) {
        // One that could not be read back is not written (restarts replay blocks instead).
        guard snapshot.accountCount <= maxAccounts else {
            throw .recordTooLarge(
                bytes: Snapshot.fileBytes(count: snapshot.accountCount), max: Snapshot.maxFileBytes(maxAccounts: maxAccounts))
        }
        do {
            try AtomicReplace.write(snapshot.encode(), to: path(height: snapshot.height), fileSystem: fileSystem)
            let old = try heights().dropFirst(retained)
            for height in old { try fileSystem.remove(path(height: height)) }
            if !old.isEmpty { try fileSystem.syncDirectory(directory) }
        } catch let error as StoreError {
            throw error
        } catch let error as FileSystemError {
            throw .io(error)
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }

    /// The newest snapshot that reads back intact and restores to its recorded state
    /// root, with its ledger; nil when there is none. Damaged ones are logged and skipped.
    /// One in the old format (version 1) is rewritten in the current one at the same
    /// height, so the next start loads it without rehashing every account.
    public func loadLatest(genesis: Genesis) throws(StoreError) -> (snapshot: Snapshot, ledger: Ledger)? {
        for height in try heights() {
            let decoded: Result<Snapshot, DurableStateFile.DecodeFailure>?
            do { decoded = try read(path(height: height)) } catch { throw .io(error) }
            guard let decoded else { continue }
            switch decoded {
            case .failure(let failure):
                logger.warning("skipping a damaged snapshot", metadata: ["file": "\(path(height: height))", "damage": "\(failure)"])
            case .success(let snapshot):
                guard snapshot.height == height else {
                    logger.warning("skipping a snapshot whose name and content disagree", metadata: ["file": "\(path(height: height))"])
                    continue
                }
                let ledger: Ledger
                do { ledger = try snapshot.restore(genesis: genesis) } catch {
                    logger.warning("skipping an inconsistent snapshot", metadata: ["file": "\(path(height: height))", "damage": "\(error)"])
                    continue
                }
                if snapshot.formatVersion != Snapshot.version { convert(ledger: ledger, blockHash: snapshot.blockHash, from: snapshot.formatVersion) }
                return (snapshot, ledger)
            }
        }
        return nil
    }

    /// Rewrites an old-format snapshot in the current format; a failure only costs the
    /// next start the slow restore again.
    private func convert(ledger: Ledger, blockHash: Hash, from version: UInt32) {
        do {
            try write(Snapshot(ledger: ledger, blockHash: blockHash))
            logger.info("rewrote a snapshot in the current format", metadata: [
                "height": "\(ledger.height)", "from_version": "\(version)", "version": "\(Snapshot.version)",
            ])
        } catch {
            logger.warning("could not rewrite a snapshot in the current format", metadata: ["height": "\(ledger.height)", "error": "\(error)"])
        }
    }

    /// The snapshot file at `path` read in bounded pieces (`Snapshot.read`), nil when
    /// it does not exist.
    private func read(_ path: String) throws(FileSystemError) -> Result<Snapshot, DurableStateFile.DecodeFailure>? {
        guard fileSystem.fileExists(path) else { return nil }
        let file = try fileSystem.open(path, mode: .readOnly)
        defer { file.close() }
        return try Snapshot.read(size: try file.size(), maxAccounts: maxAccounts) { offset, count throws(FileSystemError) in
            try file.read(at: offset, count: count)
        }
    }
}
