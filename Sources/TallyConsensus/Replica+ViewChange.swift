import TallyCrypto
import TallyTypes

// View change and NEW-VIEW, and fetching the blocks a NEW-VIEW re-proposes.
extension Replica {
    // MARK: View change

    mutating func startViewChange(to target: UInt64) {
        precondition(target > view, "views only move forward")
        view = target
        inViewChange = true
        viewChangesStarted += 1
        ticksInViewChange = 0
        slots = [:]
        missingBlocks = [:]
        currentNewView = nil
        durableDirty = true
        signerGuard.prune(currentView: view, stableHeight: stableCheckpoint.height)
        sendOwnViewChange()
    }

    /// Signs and broadcasts this replica's VIEW-CHANGE for the view it is changing to.
    mutating func sendOwnViewChange() {
        let target = view
        let prepared = preparedCertificates.keys.sorted().map { preparedCertificates[$0]! }
        let bodyHash = ViewChange.bodyHash(checkpoint: stableCheckpoint, prepared: prepared)
        let key = SignerGuard.Key(view: target, height: 0, phase: .viewChange)
        let bytes = ViewChange.signingBytes(chainID: configuration.chainID, newView: target, validator: selfIndex, bodyHash: bodyHash)
        guard let signature = signGuarded(key, content: bodyHash, bytes) else { return }
        let viewChange = ViewChange(
            newView: target, validator: selfIndex, checkpoint: stableCheckpoint, prepared: prepared, signature: signature)
        ownViewChange = viewChange
        viewChanges[selfIndex] = viewChange
        broadcast(.viewChange(viewChange))
        tryNewView()
    }

    mutating func onViewChange(_ viewChange: ViewChange, from: ValidatorIndex) {
        let sender = viewChange.validator
        guard Int(sender) < configuration.validatorCount, sender != selfIndex else { return drop(.unknownValidator) }
        if viewChange.newView < view || (viewChange.newView == view && !inViewChange) {
            // The sender is still looking for a view this replica already entered: its
            // primary answers with the NEW-VIEW that started it, once the request is
            // shown to be the sender's and at most once per retransmit interval (a
            // NEW-VIEW is large, the request is cheap to replay).
            if !inViewChange, isPrimary, let newView = currentNewView {
                guard verify(viewChange.signature, by: sender, viewChange.signingBytes(chainID: configuration.chainID)) else {
                    return drop(.invalidSignature)
                }
                if let last = newViewResentAtTick[from], tickCount - last < configuration.retransmitIntervalTicks {
                    return drop(.rateLimited)
                }
                newViewResentAtTick[from] = tickCount
                send(.newView(newView), to: from)
            }
            return drop(.staleView)
        }
        if let existing = viewChanges[sender], existing.newView >= viewChange.newView {
            return drop(existing == viewChange ? .duplicate : .staleView)
        }
        guard checks.isValid(viewChange) else { return drop(.invalidViewChange) }
        viewChanges[sender] = viewChange
        if viewChange.checkpoint.height > stableCheckpoint.height { adoptStable(viewChange.checkpoint) }
        joinHigherViewIfSupported()
        tryNewView()
    }

    /// PBFT: f+1 validators asking for views above ours include an honest one, so join
    /// the highest view that f+1 of them reached.
    mutating func joinHigherViewIfSupported() {
        let higher = viewChanges.values.map(\.newView).filter { $0 > view }.sorted(by: >)
        let needed = defences.joinViewChangeNeedsFPlusOne ? configuration.maxFaulty + 1 : 1
        guard higher.count >= needed else { return }
        startViewChange(to: higher[needed - 1])
    }

    /// The chain a NEW-VIEW must re-propose, computed from its VIEW-CHANGEs: the
    /// highest checkpoint, then per height the prepared certificate of the highest
    /// view, while each links to the previous block.
    static func newViewPlan(_ viewChanges: [ViewChange]) -> (checkpoint: CheckpointProof, blocks: [BlockHeader]) {
        var checkpoint = viewChanges[0].checkpoint
        for viewChange in viewChanges where viewChange.checkpoint.height > checkpoint.height {
            checkpoint = viewChange.checkpoint
        }
        var best: [UInt64: PreparedCertificate] = [:]
        for viewChange in viewChanges {
            for certificate in viewChange.prepared where certificate.height > checkpoint.height {
                if let current = best[certificate.height] {
                    let better = certificate.view > current.view
                        || (certificate.view == current.view && certificate.blockHash < current.blockHash)
                    if !better { continue }
                }
                best[certificate.height] = certificate
            }
        }
        var blocks: [BlockHeader] = []
        var parent = checkpoint.blockHash
        var height = checkpoint.height + 1
        while let certificate = best[height], certificate.proposal.header.previousHash == parent {
            blocks.append(certificate.proposal.header)
            parent = certificate.blockHash
            height += 1
        }
        return (checkpoint, blocks)
    }

    mutating func tryNewView() {
        guard inViewChange, isPrimary else { return }
        let set = viewChanges.values.filter { $0.newView == view }.sorted { $0.validator < $1.validator }
        guard set.count >= quorum else { return }
        let chosen = Array(set.prefix(quorum))
        let plan = Replica.newViewPlan(chosen)
        var proposals: [SignedProposal] = []
        for header in plan.blocks {
            guard let proposal = signProposal(header) else { return }
            proposals.append(proposal)
        }
        let bodyHash = NewView.bodyHash(viewChanges: chosen, proposals: proposals)
        let key = SignerGuard.Key(view: view, height: 0, phase: .newView)
        let bytes = NewView.signingBytes(chainID: configuration.chainID, view: view, bodyHash: bodyHash)
        guard let signature = signGuarded(key, content: bodyHash, bytes) else { return }
        let newView = NewView(view: view, viewChanges: chosen, proposals: proposals, signature: signature)
        broadcast(.newView(newView))
        enterView(newView, checkpoint: plan.checkpoint)
    }

    mutating func onNewView(_ newView: NewView) {
        let primary = configuration.primary(of: newView.view)
        guard primary != selfIndex else { return drop(.notFromPrimary) }
        guard verify(newView.signature, by: primary, newView.signingBytes(chainID: configuration.chainID)) else {
            return drop(.invalidSignature)
        }
        if newView.view < view || (newView.view == view && !inViewChange) {
            return drop(newView.view == view ? .duplicate : .staleView)
        }
        guard let checkpoint = checks.check(newView) else {
            drop(.invalidNewView)
            // A replica leaves a view only on its own timer, on f+1 VIEW-CHANGEs or on
            // a NEW-VIEW that checks out. An invalid NEW-VIEW proves its signer faulty,
            // which matters only when the signer leads the view this replica is
            // changing to; for any other view it is dropped and moves nobody.
            if !defences.invalidNewViewBlamesOnlyItsView {
                startViewChange(to: newView.view + 1)
            } else if inViewChange, newView.view == view {
                startViewChange(to: view + 1)
            }
            return
        }
        enterView(newView, checkpoint: checkpoint)
    }

    mutating func enterView(_ newView: NewView, checkpoint: CheckpointProof) {
        view = newView.view
        inViewChange = false
        currentNewView = newView
        durableDirty = true
        slots = [:]
        viewTimerTicks = 0
        ticksSinceProposal = 0
        restartTransactionTimer()
        viewChanges = viewChanges.filter { $0.value.newView > view }
        signerGuard.prune(currentView: view, stableHeight: stableCheckpoint.height)
        if checkpoint.height > stableCheckpoint.height { adoptStable(checkpoint) }
        var top = stableCheckpoint.height
        missingBlocks = [:]
        for proposal in newView.proposals where proposal.height > stableCheckpoint.height {
            guard proposal.height <= highWaterMark else { break }
            slots[proposal.height, default: Slot()].candidate = proposal
            top = max(top, proposal.height)
            guard proposal.height > committedHeight else { continue }
            if let body = preparedBlocks[proposal.blockHash] {
                slots[proposal.height]!.candidateBody = body
            } else {
                // Who certified it in a VIEW-CHANGE holds it (persisted with its certificate).
                let holders = newView.viewChanges.filter { viewChange in
                    viewChange.prepared.contains { $0.blockHash == proposal.blockHash }
                }.map(\.validator)
                // Then everyone: an honest validator that prepared it may not be in the set.
                var sources: [ValidatorIndex] = []
                let everyone = (0..<ValidatorIndex(configuration.validatorCount)).map { $0 }
                for source in [configuration.primary(of: newView.view)] + holders + everyone
                where source != selfIndex && !sources.contains(source) {
                    sources.append(source)
                }
                missingBlocks[proposal.blockHash] = (sources, 0)
            }
        }
        requestMissingBlocks()
        nextProposalHeight = max(committedHeight, top) + 1
        advance(.accept(stableCheckpoint.height + 1))
        if stableCheckpoint.height >= committedHeight { advance(.accept(committedHeight + 1)) }
        advance(.propose)
    }

    // MARK: Blocks of a NEW-VIEW

    /// Asks, for each block a NEW-VIEW re-proposed that this replica lacks, the next
    /// validator that should hold it (again each retransmit interval, rotating).
    mutating func requestMissingBlocks() {
        let awaited = Set(slots.values.compactMap { $0.candidateBody == nil ? $0.candidate?.blockHash : nil })
        missingBlocks = missingBlocks.filter { awaited.contains($0.key) }
        var byPeer: [ValidatorIndex: [Hash]] = [:]
        for (hash, entry) in missingBlocks where !entry.sources.isEmpty {
            byPeer[entry.sources[entry.attempt % entry.sources.count], default: []].append(hash)
            missingBlocks[hash]!.attempt += 1
        }
        for peer in byPeer.keys.sorted() { send(.blockRequest(byPeer[peer]!.sorted()), to: peer) }
    }

    /// Sends the requested blocks this replica holds (those it prepared, or has in its
    /// slots), one message each; at most `logWindow` a peer per retransmit interval.
    mutating func onBlockRequest(_ hashes: [Hash], from: ValidatorIndex) {
        for hash in hashes {
            let answered = blockAnswersThisInterval[from, default: 0]
            guard answered < Int(configuration.logWindow) else { return drop(.rateLimited) }
            guard let block = preparedBlocks[hash] ?? slots.values.lazy.compactMap({ slot in
                slot.body?.hash == hash ? slot.body : slot.candidateBody?.hash == hash ? slot.candidateBody : nil
            }).first else { continue }
            blockAnswersThisInterval[from] = answered + 1
            send(.block(block), to: from)
        }
    }

    mutating func onBlock(_ block: Block) {
        let hash = block.hash
        guard missingBlocks[hash] != nil else { return drop(.unexpectedBlock) }
        receivedBody(block, hash: hash)
    }

    /// A block for a NEW-VIEW candidate: checked against the header's transactions
    /// (the hash covers the header only), then the candidate can be validated.
    mutating func receivedBody(_ block: Block, hash: Hash) {
        guard let height = slots.first(where: { $0.value.candidate?.blockHash == hash && $0.value.candidateBody == nil })?.key
        else { return drop(.unexpectedBlock) }
        guard block.transactions.count == Int(block.header.transactionCount),
              Block.transactionsRoot(block.transactions) == block.header.transactionsRoot
        else { return drop(.malformedBlock) }
        missingBlocks[hash] = nil
        slots[height]!.candidateBody = block
        advance(.accept(height))
    }
}
