import TallyCrypto

/// The consensus replica's persisted state as two parts: a small state file (a
/// `DurableStateFile`, rewritten on every persist) and the blocks it refers to by
/// hash, each in its own file `<blocks>/<hash hex>.blk`, written once. A persist then
/// costs a few kilobytes instead of every prepared block in the log window.
///
/// Write order, which keeps a crash safe: new block files are written and fsynced and
/// their directory fsynced, then the state file is replaced atomically, then block
/// files it no longer refers to are removed. So the durable state never refers to a
/// block file that is not durable; a crash leaves at most unreferenced files, which
/// `retainOnly` removes at the next start.
///
/// Block file format: the `DurableStateFile` framing (magic "TDUR", version, length,
/// payload, CRC-32C); the payload is opaque here (the caller's block bytes).
///
/// Thread-safety: not thread-safe; one owner.
public final class ConsensusStateStore {
    public let stateFile: DurableStateFile
    public let blocksDirectory: String
    let fileSystem: any FileSystem
    /// Block files known to be durable and referenced by the last written state.
    private var durableBlocks: Set<Hash> = []

    public init(stateFile: DurableStateFile, blocksDirectory: String, fileSystem: any FileSystem = PosixFileSystem()) throws(StoreError) {
        self.stateFile = stateFile
        self.blocksDirectory = blocksDirectory
        self.fileSystem = fileSystem
        do { try fileSystem.createDirectory(blocksDirectory) } catch { throw .io(error) }
    }

    /// The last written state bytes, nil if never written.
    public func readState() throws(StoreError) -> [UInt8]? { try stateFile.read() }

    /// The bytes of the block file for `hash`, nil if there is none; a damaged file
    /// throws `.corrupt`.
    public func readBlock(_ hash: Hash) throws(StoreError) -> [UInt8]? {
        // A block file has the state file's framing and checksum.
        try DurableStateFile(path: blockPath(hash), fileSystem: fileSystem).read()
    }

    /// After reading the state at start: `referenced` are the blocks it refers to (all
    /// read back intact). Every other block file (left by a crash) is removed.
    public func retainOnly(_ referenced: Set<Hash>) throws(StoreError) {
        let names: [String]
        do { names = try fileSystem.listDirectory(blocksDirectory) } catch { throw .io(error) }
        let keep = Set(referenced.map(Self.fileName))
        for name in names where !keep.contains(name) {
            do { try fileSystem.remove(blocksDirectory + "/" + name) } catch { throw .io(error) }
        }
        durableBlocks = referenced
    }

    /// Makes the blocks in `referenced` durable (those not written before, with bytes
    /// from `blockBytes`), then replaces the state with `state`, then removes block
    /// files `state` no longer refers to. Durable when this returns.
    public func write(state: [UInt8], referenced: Set<Hash>, blockBytes: (Hash) -> [UInt8]) throws(StoreError) {
        let new = referenced.subtracting(durableBlocks)
        do {
            for hash in new.sorted(by: { $0.bytes.lexicographicallyPrecedes($1.bytes) }) {
                let path = blockPath(hash)
                // A file of that name not known as durable is a crash leftover: replace it.
                if fileSystem.fileExists(path) { try fileSystem.remove(path) }
                let file = try fileSystem.open(path, mode: .create)
                defer { file.close() }
                let bytes = blockBytes(hash)
                precondition(bytes.count <= DurableStateFile.maxPayloadBytes, "prepared block over its bound")
                try file.write(DurableStateFile.encode(bytes), at: 0)
                try file.sync()
            }
            if !new.isEmpty { try fileSystem.syncDirectory(blocksDirectory) }
        } catch { throw .io(error) }
        try stateFile.write(state)
        durableBlocks.formUnion(new)
        for hash in durableBlocks.subtracting(referenced) {
            // Unreferenced now; a crash before the remove leaves a file `retainOnly` removes.
            do { try fileSystem.remove(blockPath(hash)) } catch { throw .io(error) }
            durableBlocks.remove(hash)
        }
    }

    static func fileName(_ hash: Hash) -> String { hash.hex + ".blk" }
    func blockPath(_ hash: Hash) -> String { blocksDirectory + "/" + Self.fileName(hash) }
}
