import TallyCrypto
import TallyTypes

// The normal case: proposals, PRE-PREPARE, PREPARE, COMMIT and execution in height order.
extension Replica {
    // MARK: Normal case

    /// The hash of the block at `height` this replica builds on: committed, or
    /// accepted in the current view.
    func knownHash(at height: UInt64) -> Hash? {
        if height <= committedHeight { return committedHashes[height] }
        return slots[height]?.proposal?.blockHash
    }

    var highWaterMark: UInt64 { stableCheckpoint.height + configuration.logWindow }

    // MARK: Progress

    /// One thing the normal case may now be able to do. A step that makes progress
    /// returns what that progress may unblock, in the order it must be tried.
    enum Progress: Equatable {
        case accept(UInt64)
        case checkPrepared(UInt64)
        case commitVote(UInt64)
        case execute
        case propose
    }

    /// Runs `work` and everything it unblocks, depth first: what a step returns is
    /// tried before the rest of the list, so actions come out in the order of the
    /// protocol's chain (accept → prepared → COMMIT → execute → next height) without
    /// the steps calling one another. Every step that returns work made progress of
    /// one of five kinds (accepted, prepared, COMMIT-ed, committed or proposed) at a
    /// height of the log window, which does not move during the loop, and returns at
    /// most four entries for the one it took: the list holds fewer than 16 per height.
    mutating func advance(_ work: Progress...) { advance(work) }

    mutating func advance(_ work: [Progress]) {
        var pending = Array(work.reversed())
        let bound = 16 * Int(configuration.logWindow) + 16
        while let next = pending.popLast() {
            let unblocked: [Progress]
            switch next {
            case .accept(let height): unblocked = acceptCandidate(at: height)
            case .checkPrepared(let height): unblocked = checkPrepared(height)
            case .commitVote(let height): unblocked = sendCommitVote(at: height)
            case .execute: unblocked = executeNext()
            case .propose: unblocked = proposeNext()
            }
            pending += unblocked.reversed()
            precondition(pending.count <= bound, "normal-case work list outgrew the log window")
        }
    }

    /// Proposes the next block when this replica is the primary and may (in the log
    /// window, within `maxBlocksInFlight`, transactions pending or an empty block due).
    mutating func proposeNext() -> [Progress] {
        guard !inViewChange, isPrimary else { return [] }
        nextProposalHeight = max(nextProposalHeight, committedHeight + 1, stableCheckpoint.height + 1)
        let proposalLimit = min(highWaterMark, committedHeight + configuration.parameters.maxBlocksInFlight)
        while nextProposalHeight <= proposalLimit, slots[nextProposalHeight]?.proposal != nil { nextProposalHeight += 1 }
        let height = nextProposalHeight
        guard height <= proposalLimit, let parent = knownHash(at: height - 1) else { return [] }
        let allowEmpty = configuration.emptyBlockIntervalTicks.map { ticksSinceProposal >= $0 } ?? false
        guard allowEmpty || application.hasPendingTransactions else { return [] }
        guard let block = application.propose(
            height: height, view: view, proposer: selfIndex, parentHash: parent,
            maxTransactions: Int(configuration.parameters.maxBlockTransactions), allowEmpty: allowEmpty)
        else { return [] }
        precondition(block.height == height && block.header.previousHash == parent, "application built a wrong block")
        guard let proposal = signProposal(block.header) else { return [] }
        slots[height, default: Slot()].proposal = proposal
        slots[height]!.body = block
        nextProposalHeight = height + 1
        ticksSinceProposal = 0
        broadcast(.prePrepare(PrePrepare(view: view, block: block, signature: proposal.signature, blockHash: proposal.blockHash)))
        return [.checkPrepared(height), .propose]
    }

    mutating func onPrePrepare(_ prePrepare: PrePrepare) {
        let primary = configuration.primary(of: prePrepare.view)
        guard verify(prePrepare.signature, by: primary, prePrepare.signingBytes(chainID: configuration.chainID)) else {
            return drop(.invalidSignature)
        }
        guard checkView(prePrepare.view) else { return }
        let height = prePrepare.height
        guard checkWaterMarks(height) else { return }
        let header = prePrepare.block.header
        // A block re-proposed by a NEW-VIEW (and retransmitted) keeps its original
        // header, so its view may be older; its proposer must match that view.
        guard header.view <= prePrepare.view, header.proposer == configuration.primary(of: header.view),
              header.transactionCount <= configuration.parameters.maxBlockTransactions
        else { return drop(.malformedBlock) }
        var slot = slots[height, default: Slot()]
        if let existing = slot.proposal ?? slot.candidate {
            guard existing.blockHash != prePrepare.blockHash else {
                // The NEW-VIEW's proposal arrived first, without its block: this is it.
                if slot.proposal == nil, slot.candidateBody == nil { return receivedBody(prePrepare.block, hash: prePrepare.blockHash) }
                return drop(.duplicate)
            }
            drop(.equivocation)
            recordEquivocation(
                .prePrepare, by: primary, view: prePrepare.view, height: height,
                first: .init(blockHash: existing.blockHash, stateRoot: nil, signature: existing.signature),
                second: .init(blockHash: prePrepare.blockHash, stateRoot: nil, signature: prePrepare.signature))
            guard !defences.rejectEquivocation else { return }
            slot = Slot(prepares: slot.prepares, commits: slot.commits)
        }
        slot.candidate = prePrepare.proposal
        slot.candidateBody = prePrepare.block
        slots[height] = slot
        advance(.accept(height))
    }

    /// True when `messageView` is the current, active view; counts the drop otherwise.
    mutating func checkView(_ messageView: UInt64) -> Bool {
        if messageView < view && defences.dropStaleViews { drop(.staleView); return false }
        if messageView > view { drop(.futureView); return false }
        if inViewChange { drop(.inViewChange); return false }
        return true
    }

    mutating func checkWaterMarks(_ height: UInt64) -> Bool {
        if height <= stableCheckpoint.height { drop(.belowLowWaterMark); return false }
        if height > highWaterMark { drop(.aboveHighWaterMark); return false }
        return true
    }

    /// Validates and accepts the candidate PRE-PREPARE at `height` once its parent is
    /// known, then votes; the next height may have waited on this one.
    mutating func acceptCandidate(at height: UInt64) -> [Progress] {
        guard let slot = slots[height], let candidate = slot.candidate, slot.proposal == nil else { return [] }
        var accepted = slot
        accepted.candidate = nil
        accepted.candidateBody = nil
        if height <= committedHeight {
            // Already executed here: the hash identifies the block and its chain.
            guard let known = committedHashes[height] else { return [] }
            guard known == candidate.blockHash else {
                slots[height] = accepted
                drop(.wrongParent)
                return []
            }
            missingBlocks[candidate.blockHash] = nil
        } else {
            guard let parent = knownHash(at: height - 1) else { return [] }
            guard candidate.header.previousHash == parent else {
                slots[height] = accepted
                drop(.wrongParent)
                return []
            }
            // A NEW-VIEW names the block by hash; it is fetched (`missingBlocks`).
            guard let body = slot.candidateBody else { return [] }
            if case .failure = application.validate(
                body, parentHash: parent, maxTransactions: Int(configuration.parameters.maxBlockTransactions),
                origin: .prePrepare(view: candidate.view))
            {
                slots[height] = accepted
                drop(.invalidBlock)
                return []
            }
            accepted.body = body
        }
        accepted.proposal = candidate
        accepted.acceptedAtTick = tickCount
        slots[height] = accepted
        if configuration.primary(of: view) != selfIndex,
           let vote = signVote(.prepare, height: height, blockHash: candidate.blockHash)
        {
            slots[height]!.ownPrepare = vote
            slots[height]!.prepares[selfIndex] = vote
            broadcast(.prepare(vote))
        }
        return [.checkPrepared(height), .execute, .accept(height + 1)]
    }

    mutating func onVote(_ vote: Vote, phase: VotePhase) {
        guard vote.target.phase == phase, Int(vote.validator) < configuration.validatorCount else {
            return drop(.unknownValidator)
        }
        guard verify(vote.signature, by: vote.validator, vote.target.signingBytes(chainID: configuration.chainID)) else {
            return drop(.invalidSignature)
        }
        // A signed COMMIT for h, in any view, says its signer has every block below h:
        // a replica that restarts empty on an idle chain learns from the votes peers
        // retransmit that it is behind, even below the first checkpoint.
        if phase == .commit, vote.target.height > 1 {
            reportedHeights[vote.validator] = max(reportedHeights[vote.validator] ?? 0, vote.target.height - 1)
        }
        if phase == .commit, vote.target.view < view { keepStaleViewCommit(vote) }
        guard checkView(vote.target.view) else { return }
        let height = vote.target.height
        guard checkWaterMarks(height) else { return }
        var slot = slots[height, default: Slot()]
        let existing = phase == .prepare ? slot.prepares[vote.validator] : slot.commits[vote.validator]
        if let existing {
            guard existing.target != vote.target else { return drop(.duplicate) }
            recordEquivocation(
                phase == .prepare ? .prepare : .commit, by: vote.validator, view: vote.target.view, height: height,
                first: .init(blockHash: existing.target.blockHash, stateRoot: nil, signature: existing.signature),
                second: .init(blockHash: vote.target.blockHash, stateRoot: nil, signature: vote.signature))
            return drop(.conflictingVote)
        }
        if phase == .prepare { slot.prepares[vote.validator] = vote } else { slot.commits[vote.validator] = vote }
        slots[height] = slot
        advance(phase == .prepare ? .checkPrepared(height) : .execute)
    }

    mutating func keepStaleViewCommit(_ vote: Vote) {
        let height = vote.target.height
        guard height > committedHeight, height <= committedHeight + configuration.parameters.maxBlocksInFlight else { return }
        if let kept = staleViewCommits[height]?[vote.validator], kept.target.view >= vote.target.view { return }
        staleViewCommits[height, default: [:]][vote.validator] = vote
    }

    /// Marks `height` prepared once 2f PREPAREs from backups match its PRE-PREPARE,
    /// and keeps the prepared certificate (persisted before the COMMIT it allows).
    mutating func checkPrepared(_ height: UInt64) -> [Progress] {
        guard let slot = slots[height], let prePrepare = slot.proposal, !slot.prepared else { return [] }
        let primary = configuration.primary(of: view)
        let matching = slot.prepares.values
            .filter { $0.target.blockHash == prePrepare.blockHash && $0.validator != primary }
            .sorted { $0.validator < $1.validator }
        guard matching.count >= quorum - 1 else { return [] }
        slots[height]!.prepared = true
        if (preparedCertificates[height]?.view ?? 0) <= view {
            if let replaced = preparedCertificates[height] { preparedBlocks[replaced.blockHash] = nil }
            preparedCertificates[height] = PreparedCertificate(proposal: prePrepare, prepares: matching)
            if let body = slot.body { preparedBlocks[prePrepare.blockHash] = body }
            durableDirty = true
        }
        return [.commitVote(height)]
    }

    /// COMMIT for `height` once prepared and the parent is committed or COMMIT-ed in
    /// this view (what makes NEW-VIEW's chain rule safe).
    mutating func sendCommitVote(at height: UInt64) -> [Progress] {
        guard let slot = slots[height], slot.prepared, slot.ownCommit == nil, let prePrepare = slot.proposal,
              height - 1 <= committedHeight || slots[height - 1]?.ownCommit != nil,
              let vote = signVote(.commit, height: height, blockHash: prePrepare.blockHash)
        else { return [] }
        slots[height]!.ownCommit = vote
        slots[height]!.commits[selfIndex] = vote
        broadcast(.commit(vote))
        return [.execute, .commitVote(height + 1)]
    }

    /// Commits the next height once 2f+1 COMMITs for its accepted block are in.
    mutating func executeNext() -> [Progress] {
        guard let slot = slots[committedHeight + 1], let prePrepare = slot.proposal else { return [] }
        // The gate is the parent, not only the height: a slot accepted on a block
        // that lost its height (to a sync) must never execute on the one that won.
        guard prePrepare.header.previousHash == committedHashes[committedHeight] else {
            dropSlotsOffTheCommittedChain()
            drop(.wrongParent)
            return []
        }
        let signers = slot.commits.values
            .filter { $0.target.blockHash == prePrepare.blockHash }
            .sorted { $0.validator < $1.validator }
        guard signers.count >= quorum else { return [] }
        let certificate = CommitCertificate(
            view: signers[0].target.view, height: prePrepare.height, blockHash: prePrepare.blockHash,
            signatures: signers.map { CommitCertificate.Entry(validatorIndex: $0.validator, signature: $0.signature) })
        guard let body = slot.body else { preconditionFailure("accepted above the committed height without its block") }
        return commit(CertifiedBlock(block: body, certificate: certificate), hash: prePrepare.blockHash) + [.execute]
    }

    /// Hands `certified` out for execution; returns what the commit may unblock: the
    /// next height's COMMIT and acceptance, and a proposal.
    mutating func commit(_ certified: CertifiedBlock, hash: Hash) -> [Progress] {
        let height = certified.block.height
        precondition(height == committedHeight + 1, "blocks commit in height order")
        committedHeight = height
        committedHashes[height] = hash
        tipCertificate = certified.certificate
        pendingStateRoots[height] = certified.block.header.stateRoot
        if let accepted = slots[height]?.proposal, accepted.blockHash != hash { dropSlotsOffTheCommittedChain() }
        executeActions.append(.execute(certified))
        noteCommitForTransactionTimer(certified.block, acceptedAtTick: slots[height]?.acceptedAtTick)
        viewTimerTicks = 0
        ticksSinceCommit = 0
        if !inViewChange { viewChangeAttempts = 0 }
        return [.commitVote(height + 1), .accept(height + 1), .propose]
    }

    /// Clears the slots that no longer build on the committed chain (a sync committed
    /// another block where this replica had accepted one): from the first accepted
    /// block that does not link, every slot above the committed height. Their votes
    /// are for blocks that can no longer commit here.
    mutating func dropSlotsOffTheCommittedChain() {
        var parent = committedHashes[committedHeight]
        if let accepted = slots[committedHeight]?.proposal, accepted.blockHash != parent { slots[committedHeight] = nil }
        var height = committedHeight + 1
        while let accepted = slots[height]?.proposal, accepted.header.previousHash == parent {
            parent = accepted.blockHash
            height += 1
        }
        for stale in slots.keys where stale >= height && slots[stale]?.proposal != nil { slots[stale] = nil }
    }
}
