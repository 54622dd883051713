import Logging
import TallyCrypto
import TallyLedger
import TallyTypes

/// A ledger snapshot: all accounts in creation order at `height`.
/// ```
/// magic: u32 = 0x504E5354 ("TSNP") | version: u32 = 1 | height: u64
/// | state_root: 32 | block_hash: 32 (of the block at `height`; genesis hash at 0)
/// | count: u64 | (address: 20 | balance: u64 | nonce: u64)…
/// | checksum: u32 (CRC-32C of everything before it)
/// ```
/// At most `maxAccounts` accounts; read back in bounded pieces (`read(size:maxAccounts:_:)`).
public struct Snapshot: Sendable {
    public let height: UInt64
    public let stateRoot: Hash
    public let blockHash: Hash
    public let accounts: [(address: Address, account: Account)]

    public init(ledger: Ledger, blockHash: Hash) {
        height = ledger.height
        stateRoot = ledger.stateRoot
        self.blockHash = blockHash
        accounts = ledger.allAccounts
    }

    init(height: UInt64, stateRoot: Hash, blockHash: Hash, accounts: [(address: Address, account: Account)]) {
        self.height = height
        self.stateRoot = stateRoot
        self.blockHash = blockHash
        self.accounts = accounts
    }

    static let magic: UInt32 = 0x504E_5354
    static let version: UInt32 = 1
    static let accountBytes = 36

    func encode() -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(92 + accounts.count * Snapshot.accountBytes)
        RecordFormat.appendLittleEndian(Snapshot.magic, to: &bytes)
        RecordFormat.appendLittleEndian(Snapshot.version, to: &bytes)
        RecordFormat.appendLittleEndian(height, to: &bytes)
        bytes.append(contentsOf: stateRoot.bytes)
        bytes.append(contentsOf: blockHash.bytes)
        RecordFormat.appendLittleEndian(UInt64(accounts.count), to: &bytes)
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
    /// Most accounts a snapshot may hold (a file of about 3.6 GB): a file that claims
    /// more, or is bigger, is damage and is not read (`SnapshotStore` skips it).
    public static let maxAccounts = 100_000_000
    /// Accounts decoded per read: a snapshot is read in pieces of about 1 MiB, never
    /// whole, so a huge or sparse file costs no allocation of its size.
    static let accountsPerRead = (1 << 20) / accountBytes

    static func maxFileBytes(maxAccounts: Int) -> Int { fixedBytes + maxAccounts * accountBytes + 4 }

    static func decode(_ bytes: [UInt8]) -> Result<Snapshot, DurableStateFile.DecodeFailure> {
        // Reading from memory cannot fail.
        try! read(size: bytes.count, maxAccounts: maxAccounts) { offset, count in
            Array(bytes[min(offset, bytes.count)..<min(offset + count, bytes.count)])
        }
    }

    /// Reads a snapshot of `size` bytes through `read` (the bytes at an offset, fewer
    /// only at the end of the file) with bounded work: the size and the header's
    /// account count are checked against `maxAccounts` first, then the checksum is
    /// computed over the file in pieces, and only then are the accounts decoded (in
    /// pieces too), so a damaged file allocates nothing in proportion to what it claims.
    static func read(
        size: Int, maxAccounts: Int, _ read: (_ offset: Int, _ count: Int) throws(FileSystemError) -> [UInt8]
    ) throws(FileSystemError) -> Result<Snapshot, DurableStateFile.DecodeFailure> {
        typealias Failure = DurableStateFile.DecodeFailure
        guard size >= fixedBytes + 4 else { return .failure(Failure("file too short")) }
        let maxBytes = maxFileBytes(maxAccounts: maxAccounts)
        guard size <= maxBytes else {
            return .failure(Failure("file of \(size) bytes is over the limit of \(maxBytes) (\(maxAccounts) accounts)"))
        }
        let header = try read(0, fixedBytes)
        guard header.count == fixedBytes else { return .failure(Failure("file too short")) }
        guard RecordFormat.readLittleEndian(UInt32.self, header, 0) == magic else { return .failure(Failure("bad magic")) }
        guard RecordFormat.readLittleEndian(UInt32.self, header, 4) == version else { return .failure(Failure("unknown version")) }
        let count = RecordFormat.readLittleEndian(UInt64.self, header, 80)
        guard count <= UInt64(maxAccounts), UInt64(fixedBytes) + count * UInt64(accountBytes) + 4 == UInt64(size) else {
            return .failure(Failure("account count \(count) does not match the file size"))
        }
        let pieceBytes = accountsPerRead * accountBytes
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
        var accounts: [(address: Address, account: Account)] = []
        accounts.reserveCapacity(Int(count))
        while accounts.count < Int(count) {
            let batch = min(accountsPerRead, Int(count) - accounts.count)
            let piece = try read(fixedBytes + accounts.count * accountBytes, batch * accountBytes)
            // Changed since the checksum pass.
            guard piece.count == batch * accountBytes else { return .failure(Failure("file too short")) }
            for start in stride(from: 0, to: piece.count, by: accountBytes) {
                accounts.append((
                    Address(bytes: Array(piece[start..<start + 20]))!,
                    Account(
                        balance: RecordFormat.readLittleEndian(UInt64.self, piece, start + 20),
                        nonce: RecordFormat.readLittleEndian(UInt64.self, piece, start + 28))))
            }
        }
        return .success(Snapshot(
            height: RecordFormat.readLittleEndian(UInt64.self, header, 8), stateRoot: Hash(bytes: Array(header[16..<48]))!,
            blockHash: Hash(bytes: Array(header[48..<80]))!, accounts: accounts))
    }

    /// The ledger this snapshot describes, checked: no duplicate address, the genesis
    /// supply, and the recomputed state root equal to the recorded one.
    public func restore(genesis: Genesis) throws(SnapshotStore.LoadError) -> Ledger {
        let ledger: Ledger
        do { ledger = try Ledger(genesis: genesis, height: height, accounts: accounts) } catch {
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
        guard snapshot.accounts.count <= maxAccounts else {
            throw .recordTooLarge(
                bytes: Snapshot.maxFileBytes(maxAccounts: snapshot.accounts.count), max: Snapshot.maxFileBytes(maxAccounts: maxAccounts))
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
                do { return (snapshot, try snapshot.restore(genesis: genesis)) } catch {
                    logger.warning("skipping an inconsistent snapshot", metadata: ["file": "\(path(height: height))", "damage": "\(error)"])
                }
            }
        }
        return nil
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
