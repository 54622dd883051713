import TallyCrypto
import TallyTypes

// Checkpoints: signing them and making them stable (their proofs are checked in CertificateChecks.swift).
extension Replica {
    // MARK: Checkpoints

    mutating func onBlockExecuted(height: UInt64, stateRoot: Hash) {
        precondition(height == executedHeight + 1 && height <= committedHeight, "blocks execute in order, once")
        if let expected = pendingStateRoots.removeValue(forKey: height) {
            precondition(expected == stateRoot, "executed state root differs from the committed header's")
        }
        executedHeight = height
        sampleProposalDelay(height: height)
        guard height % configuration.checkpointInterval == 0, height > stableCheckpoint.height,
              let blockHash = committedHashes[height]
        else { return }
        let bytes = Checkpoint.signingBytes(chainID: configuration.chainID, height: height, blockHash: blockHash, stateRoot: stateRoot)
        let key = SignerGuard.Key(view: 0, height: height, phase: .checkpoint)
        guard let signature = signGuarded(key, content: SHA256.hash(bytes), bytes) else { return }
        let checkpoint = Checkpoint(height: height, blockHash: blockHash, stateRoot: stateRoot, validator: selfIndex, signature: signature)
        ownCheckpoint = checkpoint
        checkpointVotes[height, default: [:]][selfIndex] = checkpoint
        broadcast(.checkpoint(checkpoint))
        checkStable(height)
    }

    /// Checkpoints further ahead than this are only remembered as a height claim.
    var checkpointLookahead: UInt64 { 2 * configuration.logWindow }

    mutating func onCheckpoint(_ checkpoint: Checkpoint) {
        guard Int(checkpoint.validator) < configuration.validatorCount else { return drop(.unknownValidator) }
        guard verify(checkpoint.signature, by: checkpoint.validator, checkpoint.signingBytes(chainID: configuration.chainID))
        else { return drop(.invalidSignature) }
        guard checkpoint.height > 0, checkpoint.height % configuration.checkpointInterval == 0 else {
            return drop(.invalidCheckpoint)
        }
        reportedHeights[checkpoint.validator] = max(reportedHeights[checkpoint.validator] ?? 0, checkpoint.height)
        guard checkpoint.height > stableCheckpoint.height else { return drop(.belowLowWaterMark) }
        guard checkpoint.height <= stableCheckpoint.height + checkpointLookahead else { return }
        if let existing = checkpointVotes[checkpoint.height]?[checkpoint.validator] {
            guard existing != checkpoint else { return drop(.duplicate) }
            if existing.blockHash != checkpoint.blockHash || existing.stateRoot != checkpoint.stateRoot {
                recordEquivocation(
                    .checkpoint, by: checkpoint.validator, view: 0, height: checkpoint.height,
                    first: .init(blockHash: existing.blockHash, stateRoot: existing.stateRoot, signature: existing.signature),
                    second: .init(blockHash: checkpoint.blockHash, stateRoot: checkpoint.stateRoot, signature: checkpoint.signature))
            }
            return drop(.conflictingVote)
        }
        checkpointVotes[checkpoint.height, default: [:]][checkpoint.validator] = checkpoint
        checkStable(checkpoint.height)
    }

    mutating func checkStable(_ height: UInt64) {
        guard let votes = checkpointVotes[height] else { return }
        var groups: [[Hash]: [Checkpoint]] = [:]
        for vote in votes.values { groups[[vote.blockHash, vote.stateRoot], default: []].append(vote) }
        guard let group = groups.values.first(where: { $0.count >= quorum }) else { return }
        let sorted = group.sorted { $0.validator < $1.validator }
        let proof = CheckpointProof(
            height: height, blockHash: sorted[0].blockHash, stateRoot: sorted[0].stateRoot,
            signatures: sorted.map { CheckpointProof.Entry(validator: $0.validator, signature: $0.signature) })
        adoptStable(proof)
    }

    /// Makes a verified checkpoint proof stable: collects garbage below it and, when
    /// this replica is behind it, fetches the blocks.
    mutating func adoptStable(_ proof: CheckpointProof) {
        guard proof.height > stableCheckpoint.height else { return }
        if proof.height <= committedHeight, let own = committedHashes[proof.height], own != proof.blockHash {
            return drop(.invalidCheckpoint)
        }
        stableCheckpoint = proof
        durableDirty = true
        let height = proof.height
        slots = slots.filter { $0.key > height }
        preparedCertificates = preparedCertificates.filter { $0.key > height }
        let kept = Set(preparedCertificates.values.map(\.blockHash))
        preparedBlocks = preparedBlocks.filter { kept.contains($0.key) }
        checkpointVotes = checkpointVotes.filter { $0.key > height }
        let keepFrom = min(height, committedHeight)
        committedHashes = committedHashes.filter { $0.key >= keepFrom }
        if committedHeight >= height { committedHashes[height] = proof.blockHash }
        signerGuard.prune(currentView: view, stableHeight: height)
        if committedHeight < height {
            requestSync(to: height, peers: proof.signatures.map(\.validator))
        }
        advance(.propose)
    }

}
