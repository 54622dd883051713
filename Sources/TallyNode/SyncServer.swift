import TallyNetwork
import TallyConsensus
import TallyStore
import TallyTypes

/// Serves the blocks peers ask for when they sync. A response goes out as the stored
/// records are, not decoded and encoded again, and is read off the node's actor.
struct SyncServer: Sendable {
    /// Sync answers whose reads are in progress at once; beyond that a request is dropped.
    static let maxConcurrentSyncReads = 4
    /// Largest sync response, under the peer frame limit.
    static let maxSyncResponseBytes = 8 << 20

    let reader: BlockReader
    let network: PeerNetwork
    let metrics: NodeMetrics
    private let slots = ConcurrencySlots(SyncServer.maxConcurrentSyncReads)

    init(reader: BlockReader, network: PeerNetwork, metrics: NodeMetrics) {
        self.reader = reader
        self.network = network
        self.metrics = metrics
    }

    /// Answers a sync request: the reads (up to `maxSyncResponseBytes`) go through the
    /// block reader on a blocking-I/O thread. At most `maxConcurrentSyncReads` answers
    /// are in progress; beyond that a request is dropped and counted (the replica
    /// already answers each peer at most a few times per interval, and the peer asks again).
    func serve(_ heights: ClosedRange<UInt64>, to peer: ValidatorIndex) {
        let reader = reader, network = network
        Self.startSyncRead(in: slots, metrics: metrics) {
            let records = Self.storedRecords(heights, reader: reader)
            guard !records.isEmpty else { return }
            _ = network.send(to: Int(peer), PeerMessage.syncResponse(storedBlocks: records.map(\.payload)))
        }
    }

    /// The blocks of `heights` decoded, for a `PeerOutbound` (which sees messages, not bytes).
    func blocks(_ heights: ClosedRange<UInt64>) -> [CertifiedBlock] {
        Self.storedRecords(heights, reader: reader).compactMap { try? $0.decode() }
    }

    /// Runs `read` in a free slot of `slots`; when every slot is taken, drops it and
    /// counts `sync_reads_busy` (`tally_messages_dropped_total`). True when started.
    @discardableResult
    static func startSyncRead(
        in slots: ConcurrencySlots, metrics: NodeMetrics, _ read: @escaping @Sendable () -> Void
    ) -> Bool {
        let started = slots.startDetached(read)
        if !started { metrics.messageDropped("sync_reads_busy") }
        return started
    }

    /// The stored records of `heights` that exist, in order, stopping at the first
    /// unreadable one and before the response would pass `maxSyncResponseBytes`.
    static func storedRecords(_ heights: ClosedRange<UInt64>, reader: BlockReader) -> [StoredRecord] {
        var records: [StoredRecord] = []
        var bytes = 0
        for height in heights {
            guard let record = try? reader.record(at: height) else { break }
            if !records.isEmpty && bytes + record.payload.count > maxSyncResponseBytes { break }
            records.append(record)
            bytes += record.payload.count
        }
        return records
    }
}
