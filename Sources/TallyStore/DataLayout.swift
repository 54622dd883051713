/// Where things live under a node's data directory:
/// ```
/// DATA/blocks/segment-00000001.tblk …   blocks with certificates (BlockStore)
/// DATA/blocks/index                      height → location cache (rebuilt when wrong)
/// DATA/snapshots/snapshot-<height>.tsnap ledger snapshots (SnapshotStore)
/// DATA/account-index/positions, heads     each account's transactions (TallyNode's AccountTransactions; derived, rebuildable)
/// DATA/state/signer                      signer guard's last-signed record (DurableStateFile)
/// DATA/state/consensus.journal           consensus replica's persisted state and prepared blocks (ConsensusStateStore)
/// DATA/state/consensus, state/prepared/  the same in the previous layout (read, then replaced by the journal)
/// ```
public enum DataLayout {
    public static func stateDirectory(_ dataDirectory: String) -> String { dataDirectory + "/state" }

    /// The durable file `DATA/state/<name>`, creating `DATA/state` if needed.
    public static func stateFile(
        _ dataDirectory: String, name: String, fileSystem: any FileSystem = PosixFileSystem()
    ) throws(StoreError) -> DurableStateFile {
        precondition(!name.isEmpty && !name.contains("/") && !name.hasSuffix(".tmp"), "state file name must be a plain name")
        do { try fileSystem.createDirectory(stateDirectory(dataDirectory)) } catch { throw .io(error) }
        return DurableStateFile(path: stateDirectory(dataDirectory) + "/" + name, fileSystem: fileSystem)
    }

    /// The consensus replica's journal (reading the previous layout's files too).
    public static func consensusStateStore(
        _ dataDirectory: String, fileSystem: any FileSystem = PosixFileSystem(),
        compactionBytes: Int = ConsensusStateStore.defaultCompactionBytes,
        preallocationBytes: Int = ConsensusStateStore.defaultPreallocationBytes
    ) throws(StoreError) -> ConsensusStateStore {
        let legacy = try stateFile(dataDirectory, name: consensusStateName, fileSystem: fileSystem)
        return try ConsensusStateStore(
            journalPath: stateDirectory(dataDirectory) + "/" + consensusJournalName, legacyStateFile: legacy,
            legacyBlocksDirectory: stateDirectory(dataDirectory) + "/" + preparedBlocksName, fileSystem: fileSystem,
            compactionBytes: compactionBytes, preallocationBytes: preallocationBytes)
    }

    public static let consensusJournalName = "consensus.journal"
    public static let preparedBlocksName = "prepared"
    public static let signerStateName = "signer"
    public static let consensusStateName = "consensus"
}
