import TallyTypes

/// Where a record lives.
public struct RecordLocation: Equatable, Sendable {
    public let segment: Int
    public let offset: Int
    /// Payload bytes (the frame adds `RecordFormat.headerBytes`).
    public let length: Int
    public let height: UInt64
}

/// One stored block as read from disk, checksum verified, not yet decoded.
public struct StoredRecord: Sendable {
    public let location: RecordLocation
    /// The block's canonical `CertifiedBlock` bytes.
    public let payload: [UInt8]

    public var height: UInt64 { location.height }

    public func decode() throws(StoreError) -> CertifiedBlock {
        do { return try CertifiedBlock(canonicalBytes: payload) } catch { throw .undecodable(height: height, error) }
    }
}

/// Reads a data directory's blocks in height order, checking every record's frame,
/// checksum and height, without changing anything. `tally verify` uses it directly
/// (any damage, even a torn tail, is reported); `BlockStore.open` uses it to
/// recover. Not thread-safe (a value with one owner).
public struct ChainReader {
    enum Step {
        case record(StoredRecord)
        case end
        /// Damage at the very end of the last segment with nothing valid after it:
        /// what a crash in the middle of an append leaves.
        case tornTail(Corruption)
    }

    public let blocksDirectory: String
    let fileSystem: any FileSystem
    let segments: [Int]
    private var segmentPosition = 0
    private var scanner: SegmentScanner?
    /// The height the next record must have.
    public private(set) var nextHeight: UInt64 = 1
    /// Sum of the segment files' sizes, for progress reports.
    public let totalBytes: Int
    /// Bytes of the segments fully or partly consumed so far.
    public private(set) var bytesRead = 0
    private var bytesBeforeSegment = 0
    /// What the last look past damage did (bounded; see `DamageScan`).
    private(set) var damageScanWork = DamageScan.Work()

    /// The blocks directory of a node's data directory.
    public static func blocksDirectory(dataDirectory: String) -> String { dataDirectory + "/blocks" }

    public init(dataDirectory: String, fileSystem: any FileSystem = PosixFileSystem()) throws(StoreError) {
        blocksDirectory = ChainReader.blocksDirectory(dataDirectory: dataDirectory)
        self.fileSystem = fileSystem
        segments = try SegmentNaming.list(blocksDirectory, fileSystem: fileSystem)
        var total = 0
        for number in segments {
            do {
                let file = try fileSystem.open(blocksDirectory + "/" + SegmentNaming.name(number), mode: .readOnly)
                total += try file.size()
                file.close()
            } catch { throw .io(error) }
        }
        totalBytes = total
    }

    func path(_ segment: Int) -> String { blocksDirectory + "/" + SegmentNaming.name(segment) }

    /// Number of the segment the reader is in (the last one once it ended).
    var currentSegment: Int? { segments.isEmpty ? nil : segments[min(segmentPosition, segments.count - 1)] }

    /// The next block's record, nil at the end; damage anywhere (torn tail included)
    /// throws `.corrupt` naming the file, offset and height.
    public mutating func next() throws(StoreError) -> StoredRecord? {
        switch try step() {
        case .record(let record): return record
        case .end: return nil
        case .tornTail(let corruption): throw .corrupt(corruption)
        }
    }

    mutating func step() throws(StoreError) -> Step {
        while segmentPosition < segments.count {
            let number = segments[segmentPosition]
            guard number == segmentPosition + 1 else {
                throw .corrupt(Corruption(
                    file: path(segmentPosition + 1), offset: 0, height: nextHeight,
                    reason: "segment file \(SegmentNaming.name(segmentPosition + 1)) is missing (the next one is \(SegmentNaming.name(number)))"))
            }
            do {
                if scanner == nil { scanner = try SegmentScanner(file: try fileSystem.open(path(number), mode: .readOnly)) }
                let outcome = try scanner!.next()
                bytesRead = bytesBeforeSegment + scanner!.offset
                switch outcome {
                case .record(let height, let offset, let payload):
                    guard height == nextHeight else {
                        throw StoreError.corrupt(Corruption(
                            file: path(number), offset: offset, height: nextHeight,
                            reason: "expected the record of height \(nextHeight), found one for height \(height) (a block is missing or out of order)"))
                    }
                    nextHeight += 1
                    return .record(StoredRecord(
                        location: RecordLocation(segment: number, offset: offset, length: payload.count, height: height),
                        payload: payload))
                case .end:
                    if segmentPosition + 1 < segments.count && scanner!.size == 0 {
                        throw StoreError.corrupt(Corruption(
                            file: path(number), offset: 0, height: nextHeight, reason: "segment is empty but is not the last one"))
                    }
                    bytesBeforeSegment += scanner!.size
                    scanner!.file.close()
                    scanner = nil
                    segmentPosition += 1
                case .damaged(let offset, let declaredHeight, let reason):
                    let heightNote = declaredHeight.map { $0 == nextHeight ? "" : " (its frame claims height \($0))" } ?? ""
                    let corruption = Corruption(file: path(number), offset: offset, height: nextHeight, reason: reason + heightNote)
                    guard segmentPosition + 1 == segments.count else { throw StoreError.corrupt(corruption) }
                    let scan = try scanner!.findValidRecord(after: offset)
                    damageScanWork = scanner!.damageScanWork
                    switch scan {
                    case .none: return .tornTail(corruption)
                    case .found: throw StoreError.corrupt(corruption)
                    case .gaveUp(let why):
                        throw StoreError.corrupt(Corruption(
                            file: corruption.file, offset: offset, height: nextHeight, reason: corruption.reason + "; " + why))
                    }
                }
            } catch let error as StoreError {
                throw error
            } catch let error as FileSystemError {
                throw .io(error)
            } catch {
                preconditionFailure("unexpected error \(error)")
            }
        }
        return .end
    }
}
