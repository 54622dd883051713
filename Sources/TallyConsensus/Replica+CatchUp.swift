import TallyCrypto
import TallyTypes

// Catching up: finding out the replica is behind, and syncing certified blocks from peers.
extension Replica {
    // MARK: Catching up

    mutating func onSyncRequest(fromHeight: UInt64, toHeight: UInt64, from: ValidatorIndex) {
        guard fromHeight >= 1, fromHeight <= toHeight, fromHeight <= committedHeight else { return drop(.unexpectedSync) }
        // Each answer reads and sends up to `maxSyncBlocks` blocks for a 17-byte request.
        let answered = syncAnswersThisInterval[from, default: 0]
        guard answered < ConsensusLimits.maxSyncAnswersPerInterval else { return drop(.rateLimited) }
        syncAnswersThisInterval[from] = answered + 1
        let last = min(toHeight, committedHeight, fromHeight + UInt64(ConsensusLimits.maxSyncBlocks) - 1)
        sendActions.append(.sendBlocks(heights: fromHeight...last, to: from))
    }

    mutating func requestSync(to target: UInt64, peers: [ValidatorIndex]) {
        guard target > committedHeight else { return }
        let peers = peers.filter { $0 != selfIndex && Int($0) < configuration.validatorCount }
        guard !peers.isEmpty else { return }
        if var current = sync {
            if target > current.target { current.target = target }
            current.peers = Array(Set(current.peers + peers)).sorted()
            sync = current
            return
        }
        sync = SyncState(target: target, peers: peers.sorted())
        sendSyncRequest()
    }

    mutating func sendSyncRequest() {
        guard var state = sync else { return }
        state.ticksWaiting = 0
        sync = state
        let peer = state.peers[state.attempt % state.peers.count]
        // Ask for a full batch, not only up to the claimed checkpoint: the peer sends
        // what it has committed, so a node that restarts on an idle chain also gets
        // the blocks above the last checkpoint instead of waiting for new traffic.
        let batchEnd = committedHeight + UInt64(ConsensusLimits.maxSyncBlocks)
        send(.syncRequest(fromHeight: committedHeight + 1, toHeight: max(state.target, batchEnd)), to: peer)
    }

    mutating func onSyncResponse(_ blocks: [CertifiedBlock]) {
        guard sync != nil else { return drop(.unexpectedSync) }
        let before = committedHeight
        for certified in blocks where certified.block.height > committedHeight {
            let block = certified.block
            guard block.height == committedHeight + 1, let parent = committedHashes[committedHeight],
                  block.header.previousHash == parent
            else { return drop(.invalidSyncBlock) }
            let hash = block.hash
            guard checks.isValid(certified.certificate, height: block.height, blockHash: hash) else { return drop(.invalidSyncBlock) }
            checkOwnSignature(in: certified.certificate)
            if slots[block.height]?.proposal?.blockHash != hash,
               case .failure = application.validate(
                   block, parentHash: parent, maxTransactions: Int(configuration.parameters.maxBlockTransactions),
                   origin: .sync(certificateView: certified.certificate.view))
            {
                return drop(.invalidSyncBlock)
            }
            advance(commit(certified, hash: hash))
        }
        guard let state = sync else { return }
        if committedHeight >= state.target {
            sync = nil
        } else if committedHeight > before {
            sync!.attempt = 0
            sendSyncRequest()
        }
        advance(.execute)
        checkQuarantine()
    }

    // MARK: Falling behind

    /// A peer's committed tip: when it is above ours, its certificate (once checked)
    /// proves the block committed, so fetch up to it. One claim per peer and interval
    /// is checked (each costs a quorum of signature checks); lower claims cost nothing.
    mutating func onCommittedTip(_ certificate: CommitCertificate, from: ValidatorIndex) {
        guard certificate.height > committedHeight, certificate.height > (sync?.target ?? 0) else { return }
        guard tipClaimsCheckedThisInterval.insert(from).inserted else { return drop(.rateLimited) }
        guard checks.isValid(certificate, height: certificate.height, blockHash: certificate.blockHash) else {
            return drop(.invalidCommittedTip)
        }
        checkOwnSignature(in: certificate)
        requestSync(to: certificate.height, peers: [from] + certificate.signatures.map(\.validatorIndex))
    }

    /// Asks for blocks when f+1 validators (so at least one honest) claim a
    /// checkpoint above us, or a commit quorum sits above a height we cannot execute.
    mutating func detectBehind() {
        guard sync == nil else { return }
        let stuck = ticksSinceCommit >= configuration.retransmitIntervalTicks
        let claims = reportedHeights.filter { $0.key != selfIndex }.values.sorted(by: >)
        if claims.count > configuration.maxFaulty {
            let height = claims[configuration.maxFaulty]
            if height > committedHeight && (stuck || height > committedHeight + configuration.parameters.maxBlocksInFlight) {
                let peers = reportedHeights.filter { $0.value >= height }.map(\.key)
                return requestSync(to: height, peers: peers)
            }
        }
        staleViewCommits = staleViewCommits.filter { $0.key > committedHeight }
        guard stuck else { return }
        for height in slots.keys.sorted(by: >) where height > committedHeight {
            var byHash: [Hash: [ValidatorIndex]] = [:]
            for vote in slots[height]!.commits.values { byHash[vote.target.blockHash, default: []].append(vote.validator) }
            if let signers = byHash.values.first(where: { $0.count >= quorum }) {
                return requestSync(to: height, peers: signers)
            }
        }
        for height in staleViewCommits.keys.sorted(by: >) {
            var byTarget: [VoteTarget: [ValidatorIndex]] = [:]
            for vote in staleViewCommits[height]!.values { byTarget[vote.target, default: []].append(vote.validator) }
            if let signers = byTarget.values.first(where: { $0.count >= quorum }) {
                return requestSync(to: height, peers: signers)
            }
        }
    }
}
