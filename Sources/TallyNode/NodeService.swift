import Foundation
import TallyApplication
import TallyConsensus
import TallyCrypto
import TallyLedger
import TallyTypes

/// What `/status` reports.
public struct NodeStatus: Sendable, Equatable {
    public var chainID: String
    public var height: UInt64
    public var latestBlockHash: Hash
    public var view: UInt64
    public var primary: Int
    public var validatorIndex: Int?
    public var validatorName: String?
    public var catchingUp: Bool
    public var peersConnected: Int
    public var mempoolSize: Int

    public init(
        chainID: String, height: UInt64, latestBlockHash: Hash, view: UInt64, primary: Int, validatorIndex: Int?,
        validatorName: String?, catchingUp: Bool, peersConnected: Int, mempoolSize: Int
    ) {
        self.chainID = chainID
        self.height = height
        self.latestBlockHash = latestBlockHash
        self.view = view
        self.primary = primary
        self.validatorIndex = validatorIndex
        self.validatorName = validatorName
        self.catchingUp = catchingUp
        self.peersConnected = peersConnected
        self.mempoolSize = mempoolSize
    }
}

/// Where a transaction is.
public enum TransactionStatus: Sendable, Equatable {
    case pending
    case committed(height: UInt64, index: Int, blockHash: Hash, proof: InclusionProof)
    case unknown
}

/// What `/events` streams.
public enum NodeEvent: Sendable, Equatable {
    case block(height: UInt64, hash: Hash, transactionCount: Int)
    case transaction(hash: Hash, height: UInt64, index: Int)
}

/// Why a submitted transaction was refused before it reached the mempool, or by it.
public enum SubmissionError: Error, Equatable, Sendable {
    case malformed(String)
    case rejected(AdmissionError)

    public var code: String {
        switch self {
        case .malformed: return "malformed"
        case .rejected(let reason): return reason.code
        }
    }

    public var message: String {
        switch self {
        case .malformed(let reason): return reason
        case .rejected(let reason): return reason.description
        }
    }
}

/// The node as the HTTP API sees it. `Node` implements it; tests may use a fake.
public protocol NodeService: Sendable {
    var genesis: Genesis { get }
    /// The genesis file as loaded, byte for byte.
    var genesisJSON: Data { get }
    func status() async -> NodeStatus
    /// Verifies signatures (in parallel) and admits to the mempool; one result each.
    func submit(_ transactions: [Transaction]) async -> [Result<Hash, SubmissionError>]
    func transactionStatus(_ hash: Hash) async -> TransactionStatus
    func account(_ address: Address) async -> Account
    /// The nonce a new transaction of `address` should carry, counting its pending
    /// transactions (so a wallet can send several before the first commits).
    func pendingNonce(_ address: Address) async -> UInt64
    func block(at height: UInt64) async -> CertifiedBlock?
    /// `address`'s committed transactions older than `before` (all when nil), newest
    /// first, at most `limit` (1…`HTTPAPI.maxAccountTransactionsPage`). Throws
    /// `AccountHistoryUnavailable` when the page cannot be read whole (a damaged index):
    /// a shorter page would pass for the end of the history.
    func accountTransactions(_ address: Address, before: TransactionPosition?, limit: Int) async throws -> AccountTransactionsPage
    func latestHeight() async -> UInt64
    /// A bounded stream of events from now on, one element per committed block (its
    /// `block` event, then its `tx` events), for a client at `address` (the total cap
    /// is shared fairly between addresses); nil when there is no room.
    func subscribe(from address: String) async -> AsyncStream<[NodeEvent]>?
    /// Conflicting signed statements of validators this node received (`GET /evidence`).
    func equivocationEvidence() async -> [EquivocationEvidence]
    /// The events of the block at `height` were written to an `/events` stream (the
    /// per-stage latency's last stage; called without waiting, from the stream's writer).
    func eventsSent(height: UInt64)
}

extension NodeService {
    /// Without an index: none.
    public func accountTransactions(
        _ address: Address, before: TransactionPosition?, limit: Int
    ) async -> AccountTransactionsPage {
        AccountTransactionsPage(entries: [], next: nil, indexedFromHeight: 1)
    }

    /// Without a replica: none.
    public func equivocationEvidence() async -> [EquivocationEvidence] { [] }

    /// Without a mempool to consult: the committed nonce.
    public func pendingNonce(_ address: Address) async -> UInt64 { await account(address).nonce }

    /// Without a commit timeline: nothing to stamp.
    public func eventsSent(height: UInt64) {}
}
