import TallyConsensus
import TallyStore

/// The replica driver's durable write: the consensus journal (with the blocks it refers
/// to) and the signing mark beside it. A vote that is not durable must never be sent:
/// if this write fails (after retries) the node cannot go on safely.
struct ConsensusJournal {
    let consensusState: ConsensusStateStore
    /// HOME/signing-mark, outside the data directory (SigningSafety.swift).
    let signingMarkFile: SigningMarkFile
    let durableWrite: DurableWrite
    let metrics: NodeMetrics

    func persist(_ state: DurableState) throws {
        let blocks = state.referencedBlocks
        let start = ContinuousClock.now
        // Nothing signed past the mark on disk is sent before the mark is durable: the
        // driver sends only after this returns. The mark file is written while the
        // journal record is (`raise(to:alongside:)`).
        try signingMarkFile.raise(to: state.signingMark, durableWrite: durableWrite) { () throws(DurableWrite.GaveUp) in
            try durableWrite.run("persist consensus state") {
                try consensusState.write(state: state.compactBytes, referenced: Set(blocks.keys)) { blocks[$0]!.canonicalBytes }
            }
            metrics.consensusPersist.record(duration: ContinuousClock.now - start)
        }
    }
}
