import TallyCrypto
import TallyTypes

/// The header rules of a block on top of its parent, in the one place every layer
/// takes them from: `tally verify` and start-up recovery (`ChainVerifier`), and the
/// node's consensus application for PRE-PREPAREs and synced blocks (through
/// `ChainVerifier.checkContents`). The rules differ by origin only in what can be
/// checked: a proposal arrives now, so its timestamp is bounded by the local clock;
/// a committed block may be old, so only its order against the parent is checked.
public enum BlockRules {
    /// What a block is checked against: the block below it (or genesis).
    public struct Parent: Equatable, Sendable {
        public let height: UInt64
        public let hash: Hash
        /// The parent's header timestamp; the genesis time below block 1.
        public let timestampMs: UInt64

        public init(height: UInt64, hash: Hash, timestampMs: UInt64) {
            self.height = height
            self.hash = hash
            self.timestampMs = timestampMs
        }

        public init(header: BlockHeader) {
            self.init(height: header.height, hash: header.hash, timestampMs: header.timestampMs)
        }

        /// The parent of block 1.
        public static func genesis(_ genesis: Genesis) -> Parent {
            Parent(height: 0, hash: genesis.hash, timestampMs: genesis.genesisTimeMs)
        }
    }

    /// Where the block comes from.
    public enum Origin: Equatable, Sendable {
        /// In a PRE-PREPARE of `view` (a backup validating it, or the primary that
        /// built it), judged at local time `nowMs`. A block re-proposed by a NEW-VIEW
        /// keeps its header, so the header's view may be older than `view`.
        case proposal(view: UInt64, nowMs: UInt64)
        /// Committed under a certificate of `certificateView` (sync, `tally verify`,
        /// start-up replay): it was proposed in that view or re-proposed from an
        /// earlier one, never a later one.
        case committed(certificateView: UInt64)
    }

    /// Height, previous-hash link, transaction count against the genesis maximum,
    /// proposer (the primary of the header's view: v mod n), the header's view
    /// against the view that proposed or certified it, and the timestamp: strictly
    /// later than the parent's and, for a proposal, at most `max_clock_drift_ms`
    /// past the local clock. The transactions root and everything after it are
    /// `ChainVerifier.checkContents`'s.
    public static func checkHeader(_ block: Block, parent: Parent, genesis: Genesis, origin: Origin)
        throws(VerificationFailure)
    {
        let header = block.header
        func fail(_ reason: VerificationFailure.Reason) -> VerificationFailure {
            VerificationFailure(height: parent.height + 1, reason: reason)
        }
        guard header.height == parent.height + 1 else { throw fail(.unexpectedHeight(found: header.height)) }
        guard header.previousHash == parent.hash else {
            throw fail(.previousHashMismatch(expected: parent.hash, found: header.previousHash))
        }
        let limit = genesis.consensus.maxBlockTransactions
        guard block.transactions.count <= Int(limit) else {
            throw fail(.tooManyTransactions(count: block.transactions.count, limit: limit))
        }
        let validatorCount = genesis.validators.count
        guard Int(header.proposer) < validatorCount else { throw fail(.unknownProposer(index: header.proposer)) }
        let primary = UInt32(genesis.validators.primary(view: header.view))
        guard header.proposer == primary else {
            throw fail(.wrongProposer(found: header.proposer, view: header.view, primary: primary))
        }
        switch origin {
        case .proposal(let view, _):
            guard header.view <= view else { throw fail(.viewAfterProposal(header: header.view, proposal: view)) }
        case .committed(let certificateView):
            guard header.view <= certificateView else {
                throw fail(.viewAfterCertificate(header: header.view, certificate: certificateView))
            }
        }
        guard header.timestampMs > parent.timestampMs else {
            throw fail(.timestampNotIncreasing(found: header.timestampMs, parent: parent.timestampMs))
        }
        if case .proposal(_, let nowMs) = origin {
            let drift = genesis.consensus.maxClockDriftMs
            let latest = nowMs.addingReportingOverflow(drift)
            guard latest.overflow || header.timestampMs <= latest.partialValue else {
                throw fail(.timestampTooFarAhead(found: header.timestampMs, nowMs: nowMs, maxDriftMs: drift))
            }
        }
    }

    /// The timestamp a proposer gives a block on `parent` at local time `nowMs`:
    /// its clock, or just after the parent when the clock is not past it. Nil when
    /// even that is beyond the drift bound (the parent is too far ahead of this
    /// clock): such a block would be refused, so the proposer waits.
    public static func proposalTimestampMs(parentTimestampMs: UInt64, nowMs: UInt64, genesis: Genesis) -> UInt64? {
        guard parentTimestampMs < UInt64.max else { return nil }
        let timestamp = max(nowMs, parentTimestampMs + 1)
        let latest = nowMs.addingReportingOverflow(genesis.consensus.maxClockDriftMs)
        return latest.overflow || timestamp <= latest.partialValue ? timestamp : nil
    }
}
