import ArgumentParser
import Logging
import TallyNode
import TallyConsensus
import TallyConsensusTesting
import TallyCrypto
import TallyNetwork
import TallyTypes

/// The misbehaviours `tally-byzantine` can run, after the simulator's Byzantine modes.
enum Misbehaviour: String, CaseIterable, ExpressibleByArgument {
    /// As the active primary, sends the real PRE-PREPARE to some backups and a second,
    /// equally valid one (another block for the same view and height) to the others,
    /// then the other one to the first group too.
    case equivocate
    /// Sends its real PREPARE/COMMIT to some peers; the others first get a vote for
    /// another block (signed, same view and height), then the real one.
    case conflictingVotes = "conflicting-votes"
    /// Silent as the primary (to force a view change); its VIEW-CHANGEs carry a forged
    /// prepared certificate for a block of its own, and it keeps sending such forged
    /// VIEW-CHANGEs for the next view; as a new primary its NEW-VIEW drops the
    /// prepared blocks.
    case forgedViewChange = "forged-view-change"
    /// Otherwise honest, keeps sending random and truncated payloads and gossip with a
    /// forged transaction signature over its authenticated connections, and now and
    /// then a frame over the peers' size limit.
    case garbageFrames = "garbage-frames"
    /// Sends nothing at all: no consensus message, no sync response, no gossip.
    case silent
    /// Otherwise honest; keeps sending NEW-VIEWs without VIEW-CHANGEs (invalid) for the
    /// next view it leads and for the highest view a message may name.
    case forgedNewView = "forged-new-view"
    /// Otherwise honest; keeps the transactions of chosen senders (those whose address
    /// ends in an even byte) out of its mempool, so as primary it proposes the others
    /// only; it still gossips a client's submission on, so the backups hold it.
    case censor
}

/// Rewrites the node's outbound traffic (`PeerOutbound`) for one misbehaviour. Called
/// only on the node's actor (one call at a time), hence the unchecked Sendable.
final class ByzantineOutbound: PeerOutbound, @unchecked Sendable {
    let misbehaviour: Misbehaviour
    let signer: Ed25519Signer
    let chainID: String
    let genesis: Genesis
    let logger = Logger(label: "tally.byzantine")
    /// Messages per act, and how many times each act happened.
    private var counts: [String: Int] = [:]
    private var acts: [String: Int] = [:]
    private var ticks: UInt64 = 0
    private var random = SystemRandomNumberGenerator()

    /// Ticks between forged VIEW-CHANGEs for the next view (forged-view-change).
    static let forgedViewChangeIntervalTicks: UInt64 = 20
    /// Ticks between rounds of forged NEW-VIEWs (forged-new-view).
    static let forgedNewViewIntervalTicks: UInt64 = 5
    /// Ticks between rounds of garbage payloads (garbage-frames).
    static let garbageIntervalTicks: UInt64 = 10
    /// Garbage rounds between oversize frames (garbage-frames).
    static let oversizeEveryRounds: UInt64 = 10
    /// Random payloads per peer per round (garbage-frames).
    static let randomPayloadsPerRound = 8
    /// Largest random garbage payload.
    static let maxGarbageBytes = 512

    init(misbehaviour: Misbehaviour, key: SigningKey, genesis: Genesis) {
        self.misbehaviour = misbehaviour
        signer = Ed25519Signer(key: key)
        chainID = genesis.chainID
        self.genesis = genesis
        logger.warning("TEST-ONLY Byzantine validator", metadata: ["misbehaviour": "\(misbehaviour.rawValue)"])
    }

    func gossip(_ transactions: [Transaction], link: OutboundLink) {
        guard misbehaviour == .silent else {
            for peer in link.others { link.sendGossip(transactions, to: peer) }
            return
        }
        count("silenced", "gossip of \(transactions.count) transactions")
    }

    func admits(_ transaction: Transaction) -> Bool {
        guard misbehaviour == .censor, Self.isCensored(transaction.senderAddress) else { return true }
        count("censored", "transaction \(transaction.hash.hex.prefix(12)) from \(transaction.senderAddress)")
        return false
    }

    /// The senders a censor leaves out.
    static func isCensored(_ sender: Address) -> Bool { sender.bytes.last.map { $0 % 2 == 0 } ?? false }

    /// Counts one misbehaving act (`amount` messages) and logs it: the first five
    /// times, then whenever the total passes a multiple of 50.
    private func count(_ act: String, _ details: @autoclosure () -> String, by amount: Int = 1) {
        let before = counts[act, default: 0]
        let total = before + amount
        counts[act] = total
        acts[act, default: 0] += 1
        if acts[act]! <= 5 || total / 50 != before / 50 {
            logger.notice("byzantine \(act) total=\(total) \(details())", metadata: ["misbehaviour": "\(misbehaviour.rawValue)"])
        }
    }

    func send(_ message: ConsensusMessage, to targets: [ValidatorIndex], link: OutboundLink) {
        switch (misbehaviour, message) {
        case (.silent, _):
            count("silenced", "\(message.kind) to \(targets)")
        case (.equivocate, .prePrepare(let prePrepare)) where targets.count > 1:
            let forged = Forgery.equivocatingPrePrepare(prePrepare, chainID: chainID, signer: signer)
            let half = targets.count / 2
            link.send(message, to: Array(targets.prefix(half)))
            link.send(.prePrepare(forged), to: Array(targets.dropFirst(half)))
            // The first group sees both: the second one must be dropped as an equivocation.
            link.send(.prePrepare(forged), to: Array(targets.prefix(half)))
            count("equivocation", "view=\(prePrepare.view) height=\(prePrepare.height) \(prePrepare.blockHash.hex.prefix(12)) vs \(forged.blockHash.hex.prefix(12))")
        case (.conflictingVotes, .prepare(let vote)), (.conflictingVotes, .commit(let vote)):
            let other = Forgery.conflictingVote(
                vote, blockHash: SHA256.hash(Array("conflict \(vote.target.view) \(vote.target.height)".utf8)), chainID: chainID,
                signer: signer)
            let half = targets.count / 2
            let isPrepare = if case .prepare = message { true } else { false }
            link.send(isPrepare ? .prepare(other) : .commit(other), to: Array(targets.dropFirst(half)))
            link.send(message, to: targets)
            count("conflicting_vote", "\(message.kind) view=\(vote.target.view) height=\(vote.target.height) to \(Array(targets.dropFirst(half)))")
        case (.forgedViewChange, .prePrepare(let prePrepare)) where link.isPrimary && !link.inViewChange:
            count("silent_primary", "withheld pre_prepare view=\(prePrepare.view) height=\(prePrepare.height)")
        case (.forgedViewChange, .viewChange(let viewChange)):
            guard let forged = forge(viewChange, link: link) else { return link.send(message, to: targets) }
            link.send(.viewChange(forged), to: targets)
            count("forged_view_change", "new_view=\(viewChange.newView) certificates=\(forged.prepared.count)")
        case (.forgedViewChange, .newView(let newView)) where !newView.proposals.isEmpty:
            link.send(.newView(Forgery.newViewDroppingPrepared(newView, chainID: chainID, signer: signer)), to: targets)
            count("forged_new_view", "view=\(newView.view) proposals=\(newView.proposals.count)")
        default:
            link.send(message, to: targets)
        }
    }

    func tick(link: OutboundLink) {
        ticks += 1
        switch misbehaviour {
        case .forgedViewChange where ticks % Self.forgedViewChangeIntervalTicks == 0 && !link.inViewChange:
            // A VIEW-CHANGE for the next view, unprompted, carrying a forged certificate.
            let newView = link.view + 1
            let checkpoint = link.stableCheckpoint
            let honest = ViewChange(
                newView: newView, validator: link.selfIndex, checkpoint: checkpoint, prepared: [],
                signature: signer.sign(ViewChange.signingBytes(
                    chainID: chainID, newView: newView, validator: link.selfIndex,
                    bodyHash: ViewChange.bodyHash(checkpoint: checkpoint, prepared: []))))
            guard let forged = forge(honest, link: link) else { return }
            link.send(.viewChange(forged), to: link.others)
            count("forged_view_change", "unprompted new_view=\(newView) height=\(forged.prepared.last?.height ?? 0)")
        case .forgedNewView where ticks % Self.forgedNewViewIntervalTicks == 0:
            let views = Forgery.viewsLedForForgedNewViews(
                by: link.selfIndex, validatorCount: genesis.validators.count, currentView: link.view)
            for view in views { link.send(.newView(Forgery.emptyNewView(view: view, chainID: chainID, signer: signer)), to: link.others) }
            count("forged_new_view", "empty NEW-VIEWs for views \(views) to \(link.others)", by: views.count * link.others.count)
        case .garbageFrames where ticks % Self.garbageIntervalTicks == 0:
            sendGarbage(link: link, round: ticks / Self.garbageIntervalTicks)
        default:
            break
        }
    }

    private lazy var tamperedGossipSender: SigningKey? = Self.fundedDevnetKey(in: genesis)

    /// The last devnet account key the genesis funds (the least likely to have sent
    /// anything, so nonce 0 is still its next one).
    static func fundedDevnetKey(in genesis: Genesis) -> SigningKey? {
        let funded = Set(genesis.accounts.filter { $0.balance > 0 }.map(\.address))
        return (0..<256).reversed().lazy.map(DevnetKeys.accountKey).first { funded.contains(Address(publicKey: $0.publicKey)) }
    }

    private func forge(_ viewChange: ViewChange, link: OutboundLink) -> ViewChange? {
        Forgery.viewChangeWithForgedCertificate(
            viewChange, tip: Forgery.Tip(link), genesisTimeMs: genesis.genesisTimeMs, validators: genesis.validators,
            checkpointIntervalBlocks: genesis.consensus.checkpointIntervalBlocks, chainID: chainID, signer: signer,
            randomSignature: { Signature(bytes: self.randomBytes(64))! })
    }

    /// To every peer: random bytes, a consensus message cut short, and gossip of a
    /// transaction whose signature does not match; every `oversizeEveryRounds` rounds,
    /// a message of the largest size any node may send (`NetworkLimits.default.maxMessageBytes`,
    /// this node's default bound), which a peer whose `p2p.max_message_bytes` is lower
    /// must refuse (the end-to-end test runs the honest validators so: the transport
    /// has no way to send past its own bound).
    private func sendGarbage(link: OutboundLink, round: UInt64) {
        let vote = Forgery.vote(
            VoteTarget(phase: .prepare, view: link.view, height: link.tipHeight + 1, blockHash: link.tipHash),
            validator: link.selfIndex, chainID: chainID, signer: signer)
        let encoded = OutboundLink.peerMessageBytes(.prepare(vote))
        let truncated = Array(encoded.prefix(encoded.count / 2))
        for peer in link.others {
            for _ in 0..<Self.randomPayloadsPerRound {
                var junk = randomBytes(Int.random(in: 1...Self.maxGarbageBytes, using: &random))
                junk[0] = UInt8.random(in: 3...255, using: &random)  // no peer-message kind: surely malformed
                link.network.send(to: Int(peer), junk)
            }
            link.network.send(to: Int(peer), truncated)
        }
        count("garbage_payload", "random and truncated payloads to \(link.others)",
              by: (Self.randomPayloadsPerRound + 1) * link.others.count)
        // Well-formed gossip whose transaction's signature does not match (amount changed
        // after signing). The sender is a funded genesis account (a well-known devnet key)
        // so that the transaction passes every cheap admission check and only the
        // signature check can refuse it (an unfunded one is refused before any signature
        // work, as `gossip_insufficient_balance`).
        let sender = tamperedGossipSender ?? SigningKey(seed: randomBytes(32))!
        var tampered = Transaction.signed(
            by: sender, chainID: chainID, genesisHash: genesis.hash, to: Address(publicKey: sender.publicKey), amount: 1,
            fee: max(1, genesis.consensus.minFee), nonce: 0)
        tampered.amount += 1
        for peer in link.others { link.sendGossip([tampered], to: peer) }
        count("bad_signature_gossip", "transaction \(tampered.hash.hex.prefix(12)) to \(link.others)", by: link.others.count)
        if round % Self.oversizeEveryRounds == 0 {
            let oversize = [UInt8](repeating: 0xA5, count: NetworkLimits.default.maxMessageBytes)
            let queued = link.others.filter {
                if case .queued = link.network.send(to: Int($0), oversize) { true } else { false }
            }
            if !queued.isEmpty { count("oversize_frame", "\(oversize.count) bytes to \(queued)", by: queued.count) }
        }
    }

    private func randomBytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }
}

extension Forgery.Tip {
    /// The node's executed tip as its outbound link reports it.
    init(_ link: OutboundLink) {
        self.init(height: link.tipHeight, hash: link.tipHash, timestampMs: link.tipTimestampMs, stateRoot: link.tipStateRoot)
    }
}
