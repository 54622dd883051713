import Foundation
import TallyCrypto
import TallyLedger
import TallyStore
import TallyTypes

/// The outcome of verifying a stored chain.
public struct VerificationReport: Sendable {
    /// Blocks verified and applied (all of them when valid).
    public var blocks: UInt64 = 0
    public var transactions = 0
    public var signaturesChecked = 0
    public var seconds = 0.0
    /// Time the sequential replay waited for prechecked blocks, and the time the
    /// parallel stage waited for room ahead of the replay: where the pipeline idled.
    public var replayWaitSeconds = 0.0
    public var precheckWaitSeconds = 0.0
    public var tipHash: Hash
    public var stateRoot: Hash
    /// The first bad height and why; nil when the chain is valid.
    public var failure: VerificationFailure?

    public var isValid: Bool { failure == nil }
    public var transactionsPerSecond: Double { seconds > 0 ? Double(transactions) / seconds : 0 }
    public var blocksPerSecond: Double { seconds > 0 ? Double(blocks) / seconds : 0 }
}

/// Progress of a running verification, for a progress bar.
public struct VerificationProgress: Sendable {
    public let height: UInt64
    public let transactions: Int
    public let bytesRead: Int
    public let totalBytes: Int
    public let seconds: Double
}

/// Verifies a whole data directory against genesis: a reader thread reads records
/// and prechecks batches of blocks on all cores (decode, hashes, Merkle roots,
/// signatures) while the calling thread runs the sequential, deterministic part
/// (links, certificates' verdicts, ledger replay, state roots) on the batch before.
public enum ChainVerification {
    /// Transactions per batch handed from the precheck stage to the replay stage.
    static let batchTransactions = 16_384
    static let maxBatchBlocks = 256
    /// Batches prechecked ahead of the replay (bounds memory).
    static let batchesInFlight = 2

    enum Item: Sendable {
        case blocks([PrecheckedBlock], bytesReadThrough: [Int])
        case undecodable(height: UInt64, CanonicalDecodingError)
        case damaged(StoreError)
        case end
    }

    /// A bounded hand-off queue between the two stages.
    final class Channel: @unchecked Sendable {
        private let condition = NSCondition()
        private var items: [Item] = []
        private var cancelled = false
        let capacity: Int
        private(set) var takeWaitNanoseconds: UInt64 = 0
        private(set) var putWaitNanoseconds: UInt64 = 0

        init(capacity: Int) { self.capacity = capacity }

        /// False when the consumer stopped (the producer should stop too).
        func put(_ item: Item) -> Bool {
            condition.lock()
            defer { condition.unlock() }
            if items.count >= capacity && !cancelled {
                let start = DispatchTime.now().uptimeNanoseconds
                while items.count >= capacity && !cancelled { condition.wait() }
                putWaitNanoseconds += DispatchTime.now().uptimeNanoseconds - start
            }
            if cancelled { return false }
            items.append(item)
            condition.broadcast()
            return true
        }

        func take() -> Item {
            condition.lock()
            defer { condition.unlock() }
            if items.isEmpty {
                let start = DispatchTime.now().uptimeNanoseconds
                while items.isEmpty { condition.wait() }
                takeWaitNanoseconds += DispatchTime.now().uptimeNanoseconds - start
            }
            let item = items.removeFirst()
            condition.broadcast()
            return item
        }

        /// (replay waited, precheck waited) in seconds so far.
        var waits: (take: Double, put: Double) {
            condition.lock()
            defer { condition.unlock() }
            return (Double(takeWaitNanoseconds) / 1e9, Double(putWaitNanoseconds) / 1e9)
        }

        func cancel() {
            condition.lock()
            cancelled = true
            condition.broadcast()
            condition.unlock()
        }
    }

    /// Verifies every block under `dataDirectory` from genesis. Throws only when the
    /// directory cannot be read at all; a bad chain is a report with `failure`.
    public static func run(
        dataDirectory: String, genesis: Genesis, fileSystem: any FileSystem = PosixFileSystem(),
        progress: ((VerificationProgress) -> Void)? = nil
    ) throws(StoreError) -> VerificationReport {
        let reader = try ChainReader(dataDirectory: dataDirectory, fileSystem: fileSystem)
        let totalBytes = reader.totalBytes
        let channel = Channel(capacity: batchesInFlight)
        let box = ReaderBox(reader)
        let chainID = genesis.chainID
        let genesisHash = genesis.hash
        let validators = genesis.validators
        let producer = Thread {
            produce(box, channel: channel, chainID: chainID, genesisHash: genesisHash, validators: validators)
        }
        producer.stackSize = 8 << 20
        let start = DispatchTime.now().uptimeNanoseconds
        func elapsed() -> Double { Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        producer.start()

        var verifier = ChainVerifier(genesis: genesis)
        var report = VerificationReport(tipHash: genesis.hash, stateRoot: verifier.ledger.stateRoot)
        consume: while true {
            switch channel.take() {
            case .blocks(let batch, let bytesReadThrough):
                for (prechecked, bytesRead) in zip(batch, bytesReadThrough) {
                    do throws(VerificationFailure) {
                        try verifier.verifyNext(prechecked)
                    } catch {
                        report.failure = error
                        break consume
                    }
                    report.blocks += 1
                    report.transactions += prechecked.certified.block.transactions.count
                    report.signaturesChecked += prechecked.signaturesChecked
                    progress?(VerificationProgress(
                        height: verifier.height, transactions: report.transactions, bytesRead: bytesRead,
                        totalBytes: totalBytes, seconds: elapsed()))
                }
            case .undecodable(let height, let error):
                report.failure = VerificationFailure(height: height, reason: .undecodable(error))
                break consume
            case .damaged(let error):
                switch error {
                case .corrupt(let corruption):
                    report.failure = VerificationFailure(height: corruption.height, reason: .storage(corruption))
                default:
                    channel.cancel()
                    throw error
                }
                break consume
            case .end:
                break consume
            }
        }
        channel.cancel()
        report.seconds = elapsed()
        (report.replayWaitSeconds, report.precheckWaitSeconds) = channel.waits
        report.tipHash = verifier.lastBlockHash
        report.stateRoot = verifier.ledger.stateRoot
        return report
    }

    final class ReaderBox: @unchecked Sendable {
        var reader: ChainReader
        init(_ reader: ChainReader) { self.reader = reader }
    }

    /// The reader thread: read a batch, precheck it on all cores, hand it over.
    static func produce(_ box: ReaderBox, channel: Channel, chainID: String, genesisHash: Hash, validators: ValidatorSet) {
        while true {
            var records: [StoredRecord] = []
            var bytesReadThrough: [Int] = []
            var transactions = 0
            var damage: StoreError?
            while transactions < batchTransactions && records.count < maxBatchBlocks {
                do throws(StoreError) {
                    guard let record = try box.reader.next() else { break }
                    // Each transaction is at least ~200 bytes: a cheap estimate
                    // that keeps batches near `batchTransactions`.
                    transactions += max(1, record.payload.count / 200)
                    records.append(record)
                    bytesReadThrough.append(box.reader.bytesRead)
                } catch {
                    damage = error
                    break
                }
            }
            let decoded = SharedBuffer<Result<(CertifiedBlock, EncodedBlock), CanonicalDecodingError>?>(
                repeating: nil, count: max(records.count, 1))
            let input = records
            Parallel.forEach(input.count) { position in
                decoded[position] = Result { () throws(CanonicalDecodingError) in
                    try EncodedBlock.decode(input[position].payload)
                }
            }
            var blocks: [CertifiedBlock] = []
            var encoded: [EncodedBlock] = []
            var undecodable: Item?
            for position in 0..<records.count {
                switch decoded[position]! {
                case .success(let (block, bytes)):
                    blocks.append(block)
                    encoded.append(bytes)
                case .failure(let error): undecodable = .undecodable(height: records[position].height, error)
                }
                if undecodable != nil { break }
            }
            if !blocks.isEmpty {
                let prechecked = BlockPrecheck.run(
                    blocks, encoded: encoded, chainID: chainID, genesisHash: genesisHash, validators: validators)
                guard channel.put(.blocks(prechecked, bytesReadThrough: bytesReadThrough)) else { return }
            }
            if let undecodable {
                _ = channel.put(undecodable)
                return
            }
            if let damage {
                _ = channel.put(.damaged(damage))
                return
            }
            if records.count < maxBatchBlocks && transactions < batchTransactions {
                _ = channel.put(.end)
                return
            }
        }
    }
}

/// Measures libsodium's raw Ed25519 verify rate on the caller's signatures: `threads`
/// threads each call `crypto_sign_verify_detached` (through TallyCrypto's thin
/// wrapper) on pre-decoded (key, signature, message) triples; no decoding, hashing
/// or allocation in the loop.
public enum SignatureCalibration {
    public struct Sample: Sendable {
        public let key: PublicKey
        public let signature: Signature
        public let message: [UInt8]

        public init(key: PublicKey, signature: Signature, message: [UInt8]) {
            self.key = key
            self.signature = signature
            self.message = message
        }
    }

    public struct Measurement: Sendable {
        /// Signatures verified per second of wall-clock time, across all threads.
        public let verificationsPerSecond: Double
        /// Process CPU time per verification (independent of how busy the machine is).
        public let cpuSecondsPerVerification: Double
    }

    /// Runs `threads` threads, each verifying `verificationsPerThread` signatures.
    public static func measureRawVerify(samples: [Sample], threads: Int, verificationsPerThread: Int) -> Measurement {
        precondition(!samples.isEmpty && threads >= 1 && verificationsPerThread >= 1)
        let group = DispatchGroup()
        let failures = SharedBuffer(repeating: 0, count: threads)
        let cpuBefore = processCPUSeconds()
        let start = DispatchTime.now().uptimeNanoseconds
        for thread in 0..<threads {
            group.enter()
            let worker = Thread {
                var invalid = 0
                var position = thread * 7919 % samples.count
                for _ in 0..<verificationsPerThread {
                    let sample = samples[position]
                    if !sample.key.isValidSignature(sample.signature, for: sample.message) { invalid += 1 }
                    position += 1
                    if position == samples.count { position = 0 }
                }
                failures[thread] = invalid
                group.leave()
            }
            worker.start()
        }
        group.wait()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let cpu = processCPUSeconds() - cpuBefore
        precondition(failures.array.allSatisfy { $0 == 0 }, "calibration samples must hold valid signatures")
        let total = Double(threads * verificationsPerThread)
        return Measurement(verificationsPerSecond: total / seconds, cpuSecondsPerVerification: cpu / total)
    }

    /// User + system CPU time of this process so far.
    public static func processCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Samples from the first transactions of a stored chain (of `genesisHash`).
    public static func samples(
        dataDirectory: String, genesisHash: Hash, count: Int, fileSystem: any FileSystem = PosixFileSystem()
    ) throws(StoreError) -> [Sample]
    {
        var reader = try ChainReader(dataDirectory: dataDirectory, fileSystem: fileSystem)
        var samples: [Sample] = []
        while samples.count < count, let record = try reader.next() {
            for transaction in try record.decode().block.transactions where samples.count < count {
                samples.append(Sample(key: transaction.sender, signature: transaction.signature, message: transaction.signingBytes(genesisHash: genesisHash)))
            }
        }
        return samples
    }
}
