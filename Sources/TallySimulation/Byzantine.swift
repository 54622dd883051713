import TallyConsensus
import TallyConsensusTesting
import TallyCrypto
import TallyTypes

/// Byzantine behaviours. A Byzantine replica runs the correct replica code; these
/// hooks rewrite what it sends and inject extra messages. It signs only with its own
/// key (the wrong-chain mode also holds signatures captured on another chain, which
/// is exactly the threat chain-id binding answers).
extension Simulation {
    var maxFaulty: Int { (options.validatorCount - 1) / 3 }

    func byzantineSend(_ message: ConsensusMessage, from node: Node, to targets: [ValidatorIndex]) {
        guard let mode = node.mode, node.up else { return transmit(message, from: node, to: targets) }
        let signer = scheme.signer(for: node.validator)
        let activePrimary = node.replica!.isPrimary && !node.replica!.inViewChange
        switch mode {
        case .twins, .wrongChain, .replayOldView, .futureViewFlood, .forgedNewView, .censor:
            transmit(message, from: node, to: targets)
        case .slowPrimary:
            guard activePrimary else { return transmit(message, from: node, to: targets) }
            node.heldMessages.append((message, targets))
            count("byzantine_held_messages")
        case .equivocatingPrimary:
            guard case .prePrepare(let prePrepare) = message, targets.count > 1 else {
                return transmit(message, from: node, to: targets)
            }
            let forged = Forgery.equivocatingPrePrepare(prePrepare, chainID: Simulation.chainID, signer: signer)
            let half = targets.count / 2
            transmit(message, from: node, to: Array(targets.prefix(half)))
            transmit(.prePrepare(forged), from: node, to: Array(targets.dropFirst(half)))
            count("byzantine_equivocations")
        case .invalidSignatures:
            if random.chance(50) {
                count("byzantine_corrupted_signatures")
                return transmit(corruptingSignature(message), from: node, to: targets)
            }
            transmit(message, from: node, to: targets)
        case .forgedPreparedCertificate:
            if activePrimary, case .prePrepare = message { return count("byzantine_silences") }
            if case .viewChange(let viewChange) = message, let forged = forgedViewChange(viewChange, node: node) {
                count("byzantine_forged_certificates")
                transmit(.viewChange(forged), from: node, to: targets)
                // NEW-VIEWs name blocks by hash: the forged (empty) block is pushed every
                // tick (byzantineTick), so a replica that took the certificate gets it.
                if let certificate = forged.prepared.last {
                    node.forgedBlocks = Array((node.forgedBlocks + [Block(header: certificate.proposal.header, transactions: [])]).suffix(4))
                }
                return
            }
            transmit(message, from: node, to: targets)
        case .newViewDropsPrepared:
            if case .newView(let newView) = message, let first = newView.proposals.first {
                count("byzantine_forged_new_views")
                var forged = Forgery.newViewDroppingPrepared(newView, chainID: Simulation.chainID, signer: signer)
                // Where the forger's own tip is the first re-proposed block's parent, it
                // re-proposes an empty block there instead (valid on that state), and
                // pushes its body: a backup that skips the recomputation commits it where
                // others commit the prepared block.
                let tip = storedTip(node)?.block
                if first.header.previousHash == (tip?.hash ?? genesisHash) {
                    let header = BlockHeader(
                        height: first.height, view: first.header.view,
                        timestampMs: (tip?.header.timestampMs ?? genesis.genesisTimeMs) + 3,
                        previousHash: first.header.previousHash, transactionsRoot: Block.transactionsRoot([]),
                        stateRoot: node.app.ledger.stateRoot, proposer: first.header.proposer, transactionCount: 0)
                    let bytes = PrePrepare.signingBytes(chainID: Simulation.chainID, view: newView.view, height: header.height, blockHash: header.hash)
                    let proposals = [SignedProposal(view: newView.view, header: header, signature: signer.sign(bytes))]
                    let bodyHash = NewView.bodyHash(viewChanges: newView.viewChanges, proposals: proposals)
                    forged = NewView(
                        view: newView.view, viewChanges: newView.viewChanges, proposals: proposals,
                        signature: signer.sign(NewView.signingBytes(chainID: Simulation.chainID, view: newView.view, bodyHash: bodyHash)))
                    node.forgedBlocks = Array((node.forgedBlocks + [Block(header: header, transactions: [])]).suffix(4))
                }
                return transmit(.newView(forged), from: node, to: targets)
            }
            transmit(message, from: node, to: targets)
        case .silentPrimary:
            if activePrimary { return count("byzantine_silences") }
            transmit(message, from: node, to: targets)
        case .primaryTalksToF:
            if activePrimary, case .prePrepare = message {
                count("byzantine_partial_sends")
                return transmit(message, from: node, to: Array(targets.prefix(maxFaulty)))
            }
            transmit(message, from: node, to: targets)
        }
    }

    func byzantineTick(_ node: Node) {
        guard let mode = node.mode, node.up else { return }
        let replica = ReplicaSnapshot(
            view: node.replica!.view, committedHeight: node.replica!.committedHeight,
            stableCheckpoint: node.replica!.stableCheckpoint)
        let everyone = (0..<ValidatorIndex(options.validatorCount)).filter { $0 != node.validator }
        switch mode {
        case .invalidSignatures where tick % 3 == 0:
            // A commit quorum in everyone's name for a block that does not exist.
            let height = replica.committedHeight + 1
            let fake = SHA256.hash(Array("forged \(seed) \(tick)".utf8))
            for validator in 0..<ValidatorIndex(options.validatorCount) {
                let target = VoteTarget(phase: .commit, view: replica.view, height: height, blockHash: fake)
                transmit(.commit(Vote(target: target, validator: validator, signature: randomSignature())), from: node, to: everyone)
            }
            count("byzantine_forged_votes", options.validatorCount)
        case .wrongChain where tick % 5 == 0:
            injectCrossChainQuorum(node, replica: replica, to: everyone)
        case .replayOldView where tick % 4 == 0 && !node.recorded.isEmpty:
            for _ in 0..<5 { transmit(random.pick(node.recorded), from: node, to: everyone) }
            count("byzantine_replays", 5)
        case .forgedPreparedCertificate, .newViewDropsPrepared:
            for block in node.forgedBlocks { transmit(.block(block), from: node, to: everyone) }
        case .futureViewFlood:
            floodFutureViews(node, replica: replica, to: everyone)
        case .forgedNewView:
            forgeNewViews(node, replica: replica, to: everyone)
        case .slowPrimary where tick % Simulation.slowPrimaryReleaseTicks == 0:
            for held in node.heldMessages { transmit(held.message, from: node, to: held.targets) }
            node.heldMessages = []
        default:
            break
        }
    }

    /// A slow primary lets what it holds go this often: just inside the view-change
    /// timeout, with room for the commit's own message delays.
    static let slowPrimaryReleaseTicks = Int(SimulationOptions.parameters.viewChangeTimeoutTicks) - 4

    /// The senders a censoring primary leaves out: every other client.
    static let censoredSenders = Set(TransactionPool.clientKeys.enumerated().filter { $0.offset % 2 == 0 }.map {
        Address(publicKey: $0.element.publicKey)
    })

    /// Whether `node` censors `transaction` (drops it on arrival, so it never proposes it).
    func censors(_ node: Node, _ transaction: Transaction) -> Bool {
        node.mode == .censor && Simulation.censoredSenders.contains(transaction.senderAddress)
    }

    func randomSignature() -> Signature {
        Signature(bytes: (0..<8).flatMap { _ in withUnsafeBytes(of: random.next()) { Array($0) } })!
    }

    func corruptingSignature(_ message: ConsensusMessage) -> ConsensusMessage {
        let bad = randomSignature()
        switch message {
        case .prePrepare(let prePrepare): return .prePrepare(PrePrepare(view: prePrepare.view, block: prePrepare.block, signature: bad))
        case .prepare(let vote): return .prepare(Vote(target: vote.target, validator: vote.validator, signature: bad))
        case .commit(let vote): return .commit(Vote(target: vote.target, validator: vote.validator, signature: bad))
        case .checkpoint(let checkpoint):
            return .checkpoint(Checkpoint(height: checkpoint.height, blockHash: checkpoint.blockHash, stateRoot: checkpoint.stateRoot,
                                          validator: checkpoint.validator, signature: bad))
        default: return message
        }
    }

    /// An empty block on top of the Byzantine replica's tip, valid against the state,
    /// with a PRE-PREPARE, PREPAREs and COMMITs of every validator signed for
    /// another chain (captured there): only the chain id in the signing bytes stops it.
    func injectCrossChainQuorum(_ node: Node, replica: ReplicaSnapshot, to targets: [ValidatorIndex]) {
        let tipBlock = storedTip(node)?.block
        let tip = tipBlock?.header
        let height = node.height + 1
        let view = replica.view
        let header = BlockHeader(
            height: height, view: view, timestampMs: (tip?.timestampMs ?? genesis.genesisTimeMs) + 7,
            previousHash: tipBlock?.hash ?? genesisHash, transactionsRoot: Block.transactionsRoot([]),
            stateRoot: node.app.ledger.stateRoot, proposer: ValidatorIndex(genesis.validators.primary(view: view)),
            transactionCount: 0)
        let block = Block(header: header, transactions: [])
        let hash = block.hash
        let otherChain = SimSignatureScheme(validatorCount: options.validatorCount, seed: seed, bindsChainID: options.bindsChainID)
        func capturedSignature(_ validator: ValidatorIndex, _ bytes: [UInt8]) -> Signature {
            otherChain.signer(for: validator).sign(ChainSwappingSigner.swapChainID(bytes, to: Simulation.otherChainID))
        }
        let primary = header.proposer
        let prePrepare = PrePrepare(
            view: view, block: block,
            signature: capturedSignature(primary, PrePrepare.signingBytes(chainID: Simulation.chainID, view: view, height: height, blockHash: hash)))
        transmit(.prePrepare(prePrepare), from: node, to: targets)
        for phase in [VotePhase.prepare, .commit] {
            let target = VoteTarget(phase: phase, view: view, height: height, blockHash: hash)
            let bytes = target.signingBytes(chainID: Simulation.chainID)
            for validator in 0..<ValidatorIndex(options.validatorCount) where !(phase == .prepare && validator == primary) {
                let vote = Vote(target: target, validator: validator, signature: capturedSignature(validator, bytes))
                transmit(phase == .prepare ? .prepare(vote) : .commit(vote), from: node, to: targets)
            }
        }
        count("byzantine_cross_chain_messages", 1 + 2 * options.validatorCount)
    }

    /// A VIEW-CHANGE with a forged prepared certificate right above the Byzantine
    /// replica's own tip (`Forgery.viewChangeWithForgedCertificate`).
    func forgedViewChange(_ viewChange: ViewChange, node: Node) -> ViewChange? {
        let stored = storedTip(node)?.block
        let tip = Forgery.Tip(
            height: node.height, hash: stored?.hash ?? genesisHash,
            timestampMs: stored?.header.timestampMs ?? genesis.genesisTimeMs, stateRoot: node.app.ledger.stateRoot)
        return Forgery.viewChangeWithForgedCertificate(
            viewChange, tip: tip, genesisTimeMs: genesis.genesisTimeMs, validators: genesis.validators,
            checkpointIntervalBlocks: genesis.consensus.checkpointIntervalBlocks, chainID: Simulation.chainID,
            signer: scheme.signer(for: node.validator), randomSignature: randomSignature)
    }

    /// Empty NEW-VIEWs (no VIEW-CHANGEs, so invalid) signed with the node's own key for
    /// views it leads: the next above its view, and the highest view a message may name.
    func forgeNewViews(_ node: Node, replica: ReplicaSnapshot, to targets: [ValidatorIndex]) {
        let signer = scheme.signer(for: node.validator)
        let views = Forgery.viewsLedForForgedNewViews(
            by: node.validator, validatorCount: options.validatorCount, currentView: replica.view)
        for view in views {
            transmit(.newView(Forgery.emptyNewView(view: view, chainID: Simulation.chainID, signer: signer)), from: node, to: targets)
        }
        count("byzantine_forged_new_views", views.count)
    }

    func floodFutureViews(_ node: Node, replica: ReplicaSnapshot, to targets: [ValidatorIndex]) {
        let signer = scheme.signer(for: node.validator)
        let checkpoint = replica.stableCheckpoint
        for offset in 1...3 {
            let newView = replica.view + UInt64(offset) + UInt64(tick % 50)
            let bodyHash = ViewChange.bodyHash(checkpoint: checkpoint, prepared: [])
            let viewChange = ViewChange(
                newView: newView, validator: node.validator, checkpoint: checkpoint, prepared: [],
                signature: signer.sign(ViewChange.signingBytes(
                    chainID: Simulation.chainID, newView: newView, validator: node.validator, bodyHash: bodyHash)))
            transmit(.viewChange(viewChange), from: node, to: targets)
        }
        let target = VoteTarget(
            phase: .prepare, view: replica.view + 2, height: replica.committedHeight + 1 + UInt64(random.below(8)),
            blockHash: SHA256.hash(Array("flood \(tick)".utf8)))
        transmit(.prepare(Vote(target: target, validator: node.validator,
                               signature: signer.sign(target.signingBytes(chainID: Simulation.chainID)))), from: node, to: targets)
        let height = (replica.committedHeight / 4 + 1000) * 4
        let fake = SHA256.hash(Array("far \(tick)".utf8))
        let bytes = Checkpoint.signingBytes(chainID: Simulation.chainID, height: height, blockHash: fake, stateRoot: fake)
        transmit(.checkpoint(Checkpoint(height: height, blockHash: fake, stateRoot: fake, validator: node.validator,
                                        signature: signer.sign(bytes))), from: node, to: targets)
        count("byzantine_flood_messages", 5)
    }
}

/// What the Byzantine injections read of their own replica.
struct ReplicaSnapshot {
    let view: UInt64
    let committedHeight: UInt64
    let stableCheckpoint: CheckpointProof
}
