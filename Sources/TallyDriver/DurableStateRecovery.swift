import TallyConsensus
import TallyStore
import TallyTypes

extension ConsensusStateStore {
    /// The replica's last persisted state with its prepared blocks (either stored
    /// form); removes block files it does not refer to. Damage is an error: a replica
    /// that forgot what it signed could sign twice. Nil when never written. The node
    /// and the simulator both read their journal with this at start.
    public func readDurableState() throws -> DurableState? {
        guard let bytes = try readState() else {
            try retainOnly([])
            return nil
        }
        var failure: (any Error)?
        let state = try DurableState(storedBytes: bytes) { hash in
            do { return try readBlock(hash).map { try Block(canonicalBytes: $0) } } catch {
                failure = error
                return nil
            }
        }
        if let failure { throw failure }
        try retainOnly(Set(state.referencedBlocks.keys))
        return state
    }
}
