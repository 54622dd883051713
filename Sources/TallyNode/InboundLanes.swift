import NIOCore
import TallyNetwork

/// The network's inbound messages in two lanes, each an `Inbox` the actor drains as
/// a batch: consensus messages, and transaction gossip in a lane of its own, so
/// consensus messages never wait behind the signature checks of bulk gossip.
struct InboundLanes: Sendable {
    /// Consensus-lane size at which the reader waits for the actor to drain it
    /// (back-pressure onto the network's per-peer inbound bounds).
    static let maxConsensusInboxMessages = 4_096

    let consensus = Inbox()
    /// Bounded by `TransactionGossip.maxGossipInboxMessages`; beyond, new gossip is dropped.
    let gossip = Inbox()

    /// Runs both lanes until `inbound` ends or the task is cancelled: the reader (`read`)
    /// on the actor's event loop `loop`, and the gossip rounds (`GossipIntake`, with the
    /// two steps on `node`'s actor): everything that
    /// arrived while the last round ran is one round, two turns of the actor for any
    /// number of messages, so gossip keeps up with a busy actor instead of queueing
    /// behind it message by message.
    func run(_ inbound: InboundMessages, into node: Node, loop: any EventLoop) async {
        let (gossipWakeups, gossipWake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        await withTaskGroup(of: Void.self) { group in
            group.addTask(executorPreference: EventLoopTaskExecutor(loop)) {
                await read(inbound, into: node, loop: loop, gossipWake: gossipWake)
            }
            group.addTask {
                for await _ in gossipWakeups {
                    await GossipIntake.receive(
                        gossip.takeAll(), signatures: node.signatures, screen: { await node.screenGossip($0) },
                        admit: { await node.admitGossip($0, $1) })
                }
            }
        }
    }

    /// Reads `inbound` until it ends, on the actor's event loop `loop`, where the peer
    /// connections live too: a message reaches the replica without a thread switch (on
    /// a busy machine each switch can wait a whole scheduler slice). The first message
    /// of a consensus batch schedules one drain of `node`; those that arrive before it
    /// runs join the batch, so the actor takes them in one turn, with one persist and
    /// one round of sends. Each gossip message wakes `gossipWake` (a round takes all
    /// that are waiting); it is finished when `inbound` ends.
    private func read(
        _ inbound: InboundMessages, into node: Node, loop: any EventLoop, gossipWake: AsyncStream<Void>.Continuation
    ) async {
        for await message in inbound {
            if PeerMessage.isGossip(message.bytes) {
                if gossip.push(message, max: TransactionGossip.maxGossipInboxMessages) {
                    gossipWake.yield()
                } else {
                    await node.countDroppedGossip()
                }
                continue
            }
            let waiting = consensus.push(message)
            if waiting >= Self.maxConsensusInboxMessages {
                await node.drainInbox()
            } else if waiting == 1 {
                loop.execute { node.assumeIsolated { $0.drainInbox() } }
            }
        }
        gossipWake.finish()
    }
}
