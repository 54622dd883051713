import TallyConsensus
import TallyCrypto
import TallyTypes

/// Messages a Byzantine validator forges, shared by the simulator's Byzantine modes
/// and the `tally-byzantine` test executable. Test support (TallyConsensusTesting): no
/// shipped product links it. Pure like the rest of consensus: randomness (for signatures nobody made) is
/// passed in. Each forgery is signed with the caller's own key only, except where a
/// signature is deliberately garbage (`randomSignature`).
package enum Forgery {
    /// What the forger knows of its own chain: its executed tip.
    package struct Tip: Sendable {
        package let height: UInt64
        package let hash: Hash
        /// The tip block's timestamp (the genesis time at height 0).
        package let timestampMs: UInt64
        /// The state after the tip.
        package let stateRoot: Hash

        package init(height: UInt64, hash: Hash, timestampMs: UInt64, stateRoot: Hash) {
            self.height = height
            self.hash = hash
            self.timestampMs = timestampMs
            self.stateRoot = stateRoot
        }
    }

    /// A PRE-PREPARE for `block` in `view`, signed by `signer`.
    package static func prePrepare(view: UInt64, block: Block, chainID: String, signer: some ConsensusSigner) -> PrePrepare {
        PrePrepare(
            view: view, block: block,
            signature: signer.sign(PrePrepare.signingBytes(chainID: chainID, view: view, height: block.height, blockHash: block.hash)))
    }

    /// A vote for `target` by `validator`, signed by `signer`.
    package static func vote(_ target: VoteTarget, validator: ValidatorIndex, chainID: String, signer: some ConsensusSigner) -> Vote {
        Vote(target: target, validator: validator, signature: signer.sign(target.signingBytes(chainID: chainID)))
    }

    /// An equivocation: a second valid PRE-PREPARE for the same view and height, whose
    /// block differs only in its timestamp (one millisecond later), so it is just as
    /// valid against the state and has another hash.
    package static func equivocatingPrePrepare(_ original: PrePrepare, chainID: String, signer: some ConsensusSigner) -> PrePrepare {
        var header = original.block.header
        header.timestampMs += 1
        let other = Block(header: header, transactions: original.block.transactions)
        return prePrepare(view: original.view, block: other, chainID: chainID, signer: signer)
    }

    /// The same vote for another block (`blockHash`), signed by `signer`.
    package static func conflictingVote(_ original: Vote, blockHash: Hash, chainID: String, signer: some ConsensusSigner) -> Vote {
        let target = VoteTarget(
            phase: original.target.phase, view: original.target.view, height: original.target.height, blockHash: blockHash)
        return vote(target, validator: original.validator, chainID: chainID, signer: signer)
    }

    /// `viewChange` (re-signed by `signer`) with a prepared certificate added that
    /// claims an empty block was prepared in the view just before the new one, right
    /// above the forger's tip (where honest replicas may have a block in flight or even
    /// committed). The certificate's signatures are `randomSignature()`s: nobody made
    /// them. Nil when there is no earlier view or the height is outside the log window.
    package static func viewChangeWithForgedCertificate(
        _ viewChange: ViewChange, tip: Tip, genesisTimeMs: UInt64, validators: ValidatorSet, checkpointIntervalBlocks: UInt64,
        chainID: String, signer: some ConsensusSigner, randomSignature: () -> Signature
    ) -> ViewChange? {
        guard viewChange.newView >= 1 else { return nil }
        let checkpoint = viewChange.checkpoint
        let height = max(checkpoint.height, tip.height) + 1
        guard height <= checkpoint.height + 2 * checkpointIntervalBlocks else { return nil }
        let onCheckpoint = height - 1 == checkpoint.height
        let certificateView = viewChange.newView - 1
        let primary = ValidatorIndex(validators.primary(view: certificateView))
        let header = BlockHeader(
            height: height, view: certificateView,
            timestampMs: (tip.height >= checkpoint.height ? tip.timestampMs : genesisTimeMs) + 3,
            previousHash: onCheckpoint ? checkpoint.blockHash : tip.hash, transactionsRoot: Block.transactionsRoot([]),
            stateRoot: onCheckpoint ? checkpoint.stateRoot : tip.stateRoot, proposer: primary, transactionCount: 0)
        let block = Block(header: header, transactions: [])
        let forgedProposal = SignedProposal(view: certificateView, header: block.header, signature: randomSignature())
        let prepares = (0..<ValidatorIndex(validators.count)).filter { $0 != primary }.prefix(2 * validators.maxFaulty).map {
            Vote(target: VoteTarget(phase: .prepare, view: certificateView, height: height, blockHash: block.hash),
                 validator: $0, signature: randomSignature())
        }
        let forgedCertificate = PreparedCertificate(proposal: forgedProposal, prepares: Array(prepares))
        let prepared = viewChange.prepared.filter { $0.height < height } + [forgedCertificate]
        let bodyHash = ViewChange.bodyHash(checkpoint: checkpoint, prepared: prepared)
        return ViewChange(
            newView: viewChange.newView, validator: viewChange.validator, checkpoint: checkpoint, prepared: prepared,
            signature: signer.sign(ViewChange.signingBytes(
                chainID: chainID, newView: viewChange.newView, validator: viewChange.validator, bodyHash: bodyHash)))
    }

    /// An empty NEW-VIEW (no VIEW-CHANGEs, so invalid) for `view`, signed by `signer`.
    package static func emptyNewView(view: UInt64, chainID: String, signer: some ConsensusSigner) -> NewView {
        let bodyHash = NewView.bodyHash(viewChanges: [], proposals: [])
        return NewView(
            view: view, viewChanges: [], proposals: [],
            signature: signer.sign(NewView.signingBytes(chainID: chainID, view: view, bodyHash: bodyHash)))
    }

    /// The views a forged NEW-VIEW of `validator` (of `validatorCount`) targets: the next
    /// view it leads above `currentView`, and the highest view a message may name that it leads.
    package static func viewsLedForForgedNewViews(
        by validator: ValidatorIndex, validatorCount: Int, currentView: UInt64
    ) -> [UInt64] {
        let count = UInt64(validatorCount)
        let own = UInt64(validator)
        let next = currentView + 1 + (own + count - (currentView + 1) % count) % count
        let top = ConsensusLimits.maxView - (ConsensusLimits.maxView % count + count - own) % count
        return [next, top]
    }

    /// `newView` without its re-proposals, re-signed by `signer`: the prepared blocks
    /// are dropped (the new primary would propose new blocks at their heights, where
    /// some replicas may already have committed them), which a backup recomputing the
    /// NEW-VIEW must refuse.
    package static func newViewDroppingPrepared(_ newView: NewView, chainID: String, signer: some ConsensusSigner) -> NewView {
        let bodyHash = NewView.bodyHash(viewChanges: newView.viewChanges, proposals: [])
        return NewView(
            view: newView.view, viewChanges: newView.viewChanges, proposals: [],
            signature: signer.sign(NewView.signingBytes(chainID: chainID, view: newView.view, bodyHash: bodyHash)))
    }
}
