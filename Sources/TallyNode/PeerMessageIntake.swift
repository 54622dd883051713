import Logging
import TallyConsensus
import TallyNetwork
import TallyTypes

/// What the node takes in from its peers before the replica or the mempool sees it:
/// consensus messages decoded into the replica's events, and every message that is
/// malformed or not from a validator dropped and counted (`tally_messages_dropped_total`).
/// Malformed messages are logged sparsely: a Byzantine peer must not be able to fill
/// the disk with our log (the metric counts every one). Owned by the node's actor.
struct PeerMessageIntake {
    /// Malformed peer messages logged one by one; after that, every `malformedMessagesLogInterval`th.
    static let malformedMessagesLoggedInFull = 20
    static let malformedMessagesLogInterval = 1_000

    let logger: Logger
    let metrics: NodeMetrics
    /// Malformed peer messages so far, on both lanes (for sparse logging).
    private(set) var malformedMessages = 0

    init(logger: Logger, metrics: NodeMetrics) {
        self.logger = logger
        self.metrics = metrics
    }

    /// The replica's events of a batch of consensus-lane messages, in order; the
    /// rejected ones are dropped and counted.
    mutating func consensusEvents(_ messages: [InboundMessage]) -> [ConsensusEvent] {
        messages.compactMap { consensusEvent(bytes: $0.bytes, from: $0.validatorIndex) }
    }

    /// The event of one peer message from validator `from` (nil: a peer that is not a
    /// validator); nil (dropped, counted) when it is malformed or not from a validator.
    mutating func consensusEvent(bytes: [UInt8], from validatorIndex: Int?) -> ConsensusEvent? {
        guard let from = validatorIndex else {
            metrics.messageDropped("not_a_validator")
            return nil
        }
        do { return .message(try PeerMessage.consensus(bytes: bytes), from: ValidatorIndex(from)) } catch {
            dropMalformed(from: from, error)
            return nil
        }
    }

    /// A gossip round's rejects (`TransactionGossip.decode`), dropped and counted as
    /// the consensus lane's are.
    mutating func dropRejectedGossip(malformed: [(peer: Int, error: any Error)], notFromValidators: Int) {
        for (peer, error) in malformed { dropMalformed(from: peer, error) }
        if notFromValidators > 0 { metrics.messageDropped("not_a_validator", count: notFromValidators) }
    }

    mutating func dropMalformed(from peer: Int, _ error: any Error) {
        malformedMessages += 1
        if malformedMessages <= Self.malformedMessagesLoggedInFull
            || malformedMessages.isMultiple(of: Self.malformedMessagesLogInterval)
        {
            logger.warning("dropping a malformed peer message", metadata: [
                "peer": "\(peer)", "error": "\(error)", "total": "\(malformedMessages)",
            ])
        }
        metrics.messageDropped("malformed_message")
    }
}
