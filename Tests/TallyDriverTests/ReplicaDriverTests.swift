import TallyConsensus
import TallyCrypto
import TallyDriver
import TallyTypes
import XCTest

/// The driver's order, on what it hands its I/O: within a batch every durable write
/// and block commit comes before any send, the batch's persists are one write of the
/// latest state, and nothing signed goes out before the journal holds it.
final class ReplicaDriverTests: XCTestCase {
    func testPrimaryPersistsItsProposalsOnceBeforeSendingThem() throws {
        let cluster = Cluster()
        cluster.apps[0].proposalsLeft = 3
        try cluster.drivers[0].handle(.transactionsAvailable)
        let log = cluster.logs[0].entries
        XCTAssertEqual(log.map(\.kind), ["write", "send", "send", "send"], "\(log)")
        let written = try XCTUnwrap(cluster.logs[0].lastWritten)
        for height in UInt64(1)...3 {
            XCTAssertNotNil(written.signerGuard.signed[SignerGuard.Key(view: 0, height: height, phase: .prePrepare)])
        }
    }

    func testABatchIsOneWriteOfTheLatestStateBeforeAllItsSends() throws {
        let cluster = Cluster()
        let proposals = try cluster.proposeThree()
        // Validator 1 takes the three PRE-PREPAREs as one batch; validator 2 one by one.
        try cluster.handle(1, proposals.map { .message($0, from: 0) })
        for proposal in proposals { try cluster.handle(2, [.message(proposal, from: 0)]) }

        let batched = cluster.logs[1].entries
        XCTAssertEqual(batched.map(\.kind), ["write", "send", "send", "send"], "\(batched)")
        let written = try XCTUnwrap(cluster.logs[1].lastWritten)
        for height in UInt64(1)...3 {
            XCTAssertNotNil(written.signerGuard.signed[SignerGuard.Key(view: 0, height: height, phase: .prepare)], "height \(height)")
        }
        XCTAssertEqual(written, cluster.drivers[1].replica.durableState, "the batch's write is its latest state")
        XCTAssertEqual(cluster.logs[2].entries.map(\.kind), ["write", "send", "write", "send", "write", "send"])
    }

    func testBlocksCommitBeforeTheSendsOfTheirBatch() throws {
        let cluster = Cluster()
        _ = try cluster.proposeThree()
        try cluster.deliverAll()
        XCTAssertEqual(cluster.drivers.map(\.replica.committedHeight), [3, 3, 3, 3])
        for log in cluster.logs {
            XCTAssertEqual(log.entries.filter { $0.kind == "commit" }.map(\.height), [1, 2, 3])
            for batch in log.batches where batch.contains(where: { $0.kind == "commit" }) {
                let firstSend = batch.firstIndex { $0.kind == "send" } ?? batch.count
                let lastDurable = batch.lastIndex { $0.kind != "send" } ?? -1
                XCTAssertLessThan(lastDurable, firstSend, "a send before a write or commit of its batch: \(batch)")
            }
        }
    }

    /// Every signed message checked against the journal as it goes out (the
    /// recording transport asserts it): goes red if the driver sends first.
    func testNothingSignedIsSentBeforeTheJournalHoldsIt() throws {
        let cluster = Cluster()
        _ = try cluster.proposeThree()
        try cluster.deliverAll()
        let checked = cluster.logs.map(\.signedSendsChecked).reduce(0, +)
        XCTAssertGreaterThan(checked, 20, "the check saw the votes")
        XCTAssertEqual(cluster.logs.flatMap(\.violations), [])
    }

    /// Validator 1 gets the whole round (PRE-PREPAREs, PREPAREs, COMMITs) in one
    /// batch: it signs its votes and commits the blocks within it, so the batch's
    /// write must come before the first commit (the recording sink checks the
    /// COMMIT vote is in the journal at each commit), and its sends after both.
    func testABatchThatVotesAndCommitsWritesBeforeItsFirstCommit() throws {
        let cluster = Cluster()
        _ = try cluster.proposeThree()
        try cluster.deliverAll(holding: [1])
        XCTAssertEqual(cluster.drivers.map(\.replica.committedHeight), [3, 0, 3, 3])
        try cluster.handle(1, cluster.held.map { .message($0.message, from: $0.from) })
        XCTAssertEqual(cluster.drivers[1].replica.committedHeight, 3)
        let batch = try XCTUnwrap(cluster.logs[1].batches.last)
        XCTAssertEqual(batch.first?.kind, "write", "\(batch)")
        XCTAssertEqual(batch.filter { $0.kind == "commit" }.map(\.height), [1, 2, 3])
        XCTAssertEqual(batch.filter { $0.kind == "write" }.count, 1, "one write before the first commit, none needed after: \(batch)")
        let firstSend = try XCTUnwrap(batch.firstIndex { $0.kind == "send" })
        XCTAssertTrue(batch[firstSend...].allSatisfy { $0.kind == "send" }, "\(batch)")
        XCTAssertEqual(cluster.logs.flatMap(\.violations), [])
    }

    func testAnIOErrorHaltsTheDriverBeforeItsSends() throws {
        let cluster = Cluster()
        cluster.apps[0].proposalsLeft = 1
        cluster.logs[0].failWrites = true
        XCTAssertThrowsError(try cluster.drivers[0].handle(.transactionsAvailable))
        XCTAssertTrue(cluster.drivers[0].isHalted)
        XCTAssertEqual(cluster.logs[0].entries.map(\.kind), [], "nothing sent after the failed write")
    }
}

/// Four replicas with real Ed25519 keys and an application of empty blocks, each
/// driven by a `ReplicaDriver` over a recording I/O; messages are delivered by hand.
final class Cluster {
    let keys = (0..<4).map { SigningKey(seed: [UInt8](repeating: UInt8(40 + $0), count: 32))! }
    let validators: ValidatorSet
    var apps: [EmptyBlocks] = []
    var logs: [RecordingIO] = []
    var drivers: [ReplicaDriver] = []
    static let stateRoot = SHA256.hash(Array("driver-tests-state".utf8))
    static let genesisHash = SHA256.hash(Array("driver-tests-genesis".utf8))
    static let chainID = "driver-tests"

    init(timeline: (ValidatorIndex) -> CommitTimeline? = { _ in nil }) {
        validators = ValidatorSet(keys.enumerated().map { index, key in
            Validator(name: "v\(index)", publicKey: key.publicKey, networkAddress: "127.0.0.1:\(27000 + index)")
        })
        let parameters = ConsensusParameters(
            checkpointIntervalBlocks: 4, maxBlockTransactions: 16, maxBlocksInFlight: 3, tickMs: 10,
            viewChangeTimeoutTicks: 16, maxViewChangeTimeoutTicks: 128)
        for index in 0..<ValidatorIndex(4) {
            let app = EmptyBlocks()
            let log = RecordingIO(self, index: index)
            let replica = Replica(
                configuration: ReplicaConfiguration(
                    chainID: Cluster.chainID, validators: validators, selfIndex: index, parameters: parameters,
                    genesisHash: Cluster.genesisHash, genesisStateRoot: Cluster.stateRoot),
                durableState: nil, committedHeight: 0, blockHash: { _ in Cluster.genesisHash }, application: app,
                verifier: Ed25519Verifier(validators: validators), signer: Ed25519Signer(key: keys[Int(index)]))
            apps.append(app)
            logs.append(log)
            drivers.append(ReplicaDriver(
                replica: replica, journal: log, blocks: log, transport: log, invariantChecks: .everyStep, timeline: timeline(index)))
        }
    }

    /// The primary proposes blocks 1–3 in one step; returns its PRE-PREPAREs (still queued for the others).
    func proposeThree() throws -> [ConsensusMessage] {
        apps[0].proposalsLeft = 3
        try handle(0, [.transactionsAvailable])
        let proposals = logs[0].entries.compactMap(\.message)
        XCTAssertEqual(proposals.map(\.kind), ["pre_prepare", "pre_prepare", "pre_prepare"])
        return proposals
    }

    /// Queued messages, each recipient's as one batch, until none are left.
    var queue: [(from: ValidatorIndex, to: ValidatorIndex, message: ConsensusMessage)] = []

    /// One batch for validator `index`'s driver.
    func handle(_ index: ValidatorIndex, _ events: [ConsensusEvent]) throws {
        logs[Int(index)].batchStarts.append(logs[Int(index)].entries.count)
        try drivers[Int(index)].handle(events)
    }

    /// Messages for validators `deliverAll(holding:)` held back, in order.
    var held: [(from: ValidatorIndex, to: ValidatorIndex, message: ConsensusMessage)] = []

    /// `beforeRound` runs before each round of deliveries (e.g. to move a test clock).
    func deliverAll(holding: Set<ValidatorIndex> = [], beforeRound: () -> Void = {}) throws {
        var rounds = 0
        while !queue.isEmpty {
            beforeRound()
            rounds += 1
            precondition(rounds < 1_000, "does not quiesce")
            let round = queue
            queue = []
            held += round.filter { holding.contains($0.to) }
            for to in 0..<ValidatorIndex(4) where !holding.contains(to) {
                let events = round.filter { $0.to == to }.map { ConsensusEvent.message($0.message, from: $0.from) }
                if !events.isEmpty { try handle(to, events) }
            }
        }
    }
}

/// Proposes empty blocks (while `proposalsLeft` > 0) and accepts every block.
final class EmptyBlocks: ConsensusApplication {
    var proposalsLeft = 0
    var hasPendingTransactions: Bool { proposalsLeft > 0 }
    /// No transactions, so nothing for the transaction timer to wait on.
    var proposableSequence: UInt64 { 0 }
    var oldestProposableSequence: UInt64? { nil }

    func propose(height: UInt64, view: UInt64, proposer: ValidatorIndex, parentHash: Hash, maxTransactions: Int,
                 allowEmpty: Bool) -> Block? {
        guard proposalsLeft > 0 || allowEmpty else { return nil }
        proposalsLeft -= 1
        let header = BlockHeader(
            height: height, view: view, timestampMs: height, previousHash: parentHash,
            transactionsRoot: Block.transactionsRoot([]), stateRoot: Cluster.stateRoot, proposer: proposer, transactionCount: 0)
        return Block(header: header, transactions: [])
    }

    func validate(_ block: Block, parentHash: Hash, maxTransactions: Int, origin: BlockOrigin) -> Result<Void, BlockRejection> {
        .success(())
    }
}

/// Records what one driver hands its I/O, batch by batch, and checks at every send
/// that the message's signature is in the last state written.
final class RecordingIO: DurableStateSink, CertifiedBlockSink, ReplicaTransport {
    struct Entry: CustomStringConvertible {
        let kind: String
        var height: UInt64 = 0
        var message: ConsensusMessage?
        var description: String { message.map { "\(kind) \($0.kind)" } ?? "\(kind) \(height)" }
    }

    struct WriteFailed: Error {}

    unowned let cluster: Cluster
    let index: ValidatorIndex
    var entries: [Entry] = []
    /// Where each `Cluster.handle` call's entries start.
    var batchStarts: [Int] = []
    /// `entries` split by driver call (a batch each), empty ones left out.
    var batches: [[Entry]] {
        zip(batchStarts, batchStarts.dropFirst() + [entries.count]).map { Array(entries[$0..<$1]) }.filter { !$0.isEmpty }
    }
    var lastWritten: DurableState?
    var failWrites = false
    var signedSendsChecked = 0
    /// Sends or commits that came before the write that makes them safe.
    var violations: [String] = []

    init(_ cluster: Cluster, index: ValidatorIndex) {
        self.cluster = cluster
        self.index = index
    }

    func write(_ state: DurableState) throws {
        if failWrites { throw WriteFailed() }
        entries.append(Entry(kind: "write"))
        lastWritten = state
    }

    func commit(_ block: CertifiedBlock) -> Hash {
        let ownCommit = SignerGuard.Key(view: 0, height: block.block.height, phase: .commit)
        if lastWritten?.signerGuard.signed[ownCommit] != block.block.hash {
            violations.append("validator \(index) committed height \(block.block.height) before writing its COMMIT vote")
        }
        entries.append(Entry(kind: "commit", height: block.block.height))
        return Cluster.stateRoot
    }

    func send(_ message: ConsensusMessage, to peer: ValidatorIndex) { record(message, to: [peer]) }

    func broadcast(_ message: ConsensusMessage) { record(message, to: (0..<ValidatorIndex(4)).filter { $0 != index }) }

    func sendBlocks(heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
        XCTFail("no block sync in these tests")
    }

    private func record(_ message: ConsensusMessage, to targets: [ValidatorIndex]) {
        checkDurable(message)
        entries.append(Entry(kind: "send", message: message))
        for target in targets { cluster.queue.append((index, target, message)) }
    }

    /// The signer-guard key of what this validator signed in `message`, in the journal.
    private func checkDurable(_ message: ConsensusMessage) {
        let key: SignerGuard.Key
        let content: Hash
        switch message {
        case .prePrepare(let prePrepare):
            key = SignerGuard.Key(view: prePrepare.view, height: prePrepare.height, phase: .prePrepare)
            content = prePrepare.blockHash
        case .prepare(let vote) where vote.validator == index:
            key = SignerGuard.Key(view: vote.target.view, height: vote.target.height, phase: .prepare)
            content = vote.target.blockHash
        case .commit(let vote) where vote.validator == index:
            key = SignerGuard.Key(view: vote.target.view, height: vote.target.height, phase: .commit)
            content = vote.target.blockHash
        default: return
        }
        signedSendsChecked += 1
        if lastWritten?.signerGuard.signed[key] != content {
            violations.append("validator \(index) sent \(message.kind) at height \(key.height) before writing it")
        }
    }
}
