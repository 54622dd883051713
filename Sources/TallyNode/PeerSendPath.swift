import TallyApplication
import TallyConsensus
import TallyDriver
import TallyNetwork
import TallyStore
import TallyTypes

/// Everything the node sends to its peers: the replica's consensus messages and sync
/// answers (called by its driver, only after the step's state is durable), transaction
/// gossip, and the call after every tick. With a `PeerOutbound` (the builder's wrapper)
/// each goes through it, with an `OutboundLink` of the node's state; without one,
/// straight onto the peer network as it is. Owned by the node's actor and called on it.
struct PeerSendPath {
    let network: PeerNetwork
    /// nil: straight to the network.
    let outbound: (any PeerOutbound)?
    let syncServer: SyncServer
    let genesis: Genesis
    let selfIndex: ValidatorIndex
    let store: BlockStore
    let application: LedgerApplication
    /// Read for the replica's view and checkpoint in an `OutboundLink`, never stepped here.
    let driver: ReplicaDriver
    let metrics: NodeMetrics

    func send(_ message: ConsensusMessage, to peer: ValidatorIndex) {
        if let outbound { return outbound.send(message, to: [peer], link: outboundLink()) }
        network.send(to: Int(peer), PeerMessage.consensus(message).bytes)
    }

    func broadcast(_ message: ConsensusMessage) {
        if let outbound {
            let link = outboundLink()
            return outbound.send(message, to: link.others, link: link)
        }
        network.broadcast(PeerMessage.consensus(message).bytes)
    }

    /// A peer's sync request; through a `PeerOutbound` as decoded blocks.
    func sendBlocks(_ heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
        guard let outbound else { return syncServer.serve(heights, to: peer) }
        let blocks = syncServer.blocks(heights)
        guard !blocks.isEmpty else { return }
        outbound.send(.syncResponse(blocks), to: [peer], link: outboundLink())
    }

    /// Transaction gossip (`TransactionGossip.takeBatches`) to every other validator.
    func gossip(_ batches: [[Transaction]]) {
        guard !batches.isEmpty else { return }
        let link = outbound.map { _ in outboundLink() }
        for batch in batches {
            if let outbound, let link {
                outbound.gossip(batch, link: link)
            } else {
                network.broadcast(PeerMessage.transactions(batch).bytes)
            }
        }
    }

    /// After every tick: the `PeerOutbound`'s call, and the connected peers into `tally_peers_connected`.
    func tick() {
        if let outbound { outbound.tick(link: outboundLink()) }
        metrics.peersConnected.record(Int64(network.connectedValidators.count))
    }

    /// What the `PeerOutbound` sees; built only when there is one.
    private func outboundLink() -> OutboundLink {
        let tipHeight = store.tipHeight
        let tipTimestampMs = tipHeight == 0 ? genesis.genesisTimeMs : (try? store.block(at: tipHeight))?.block.header.timestampMs
        return OutboundLink(
            selfIndex: selfIndex, genesis: genesis, view: driver.replica.view, isPrimary: driver.replica.isPrimary,
            inViewChange: driver.replica.inViewChange, stableCheckpoint: driver.replica.stableCheckpoint,
            tipHeight: tipHeight, tipHash: application.tipHash, tipTimestampMs: tipTimestampMs ?? genesis.genesisTimeMs,
            tipStateRoot: application.ledger.stateRoot, network: network)
    }
}
