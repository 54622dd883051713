import Synchronization
import TallyTypes

/// A read-only view of a `BlockStore` that any thread may use while the store's owner
/// appends: the HTTP API's `/blocks` and `/txs` and block sync read through it, so a
/// reader never waits for (or delays) the actor that writes votes and blocks.
///
/// It sees a block once `BlockStore.append` has made it durable (the store publishes
/// each record's location after its fsync). Every read opens the segment read-only
/// and re-checks the record's frame and checksum, like `BlockStore.record(at:)`.
public final class BlockReader: Sendable {
    public let blocksDirectory: String
    private let fileSystem: any FileSystem
    /// locations[h - 1] is the record of height h.
    private let locations: Mutex<[RecordLocation]>

    init(blocksDirectory: String, fileSystem: any FileSystem, locations: [RecordLocation]) {
        self.blocksDirectory = blocksDirectory
        self.fileSystem = fileSystem
        self.locations = Mutex(locations)
    }

    /// Height of the last durable block (0 when empty).
    public var tipHeight: UInt64 { locations.withLock { UInt64($0.count) } }

    public func location(at height: UInt64) -> RecordLocation? {
        locations.withLock { locations in
            guard height >= 1 && height <= UInt64(locations.count) else { return nil }
            return locations[Int(height - 1)]
        }
    }

    /// The stored bytes of the block at `height` (checksum re-checked), nil above the tip.
    public func record(at height: UInt64) throws(StoreError) -> StoredRecord? {
        guard let location = location(at: height) else { return nil }
        let path = blocksDirectory + "/" + SegmentNaming.name(location.segment)
        let file: any StoreFile
        do { file = try fileSystem.open(path, mode: .readOnly) } catch { throw .io(error) }
        defer { file.close() }
        return try StoredRecord.read(location, from: file, path: path)
    }

    /// The block at `height`, nil above the tip.
    public func block(at height: UInt64) throws(StoreError) -> CertifiedBlock? {
        try record(at: height)?.decode()
    }

    /// Called by the store after the record at `location` is durable.
    func published(_ location: RecordLocation) {
        locations.withLock { locations in
            precondition(location.height == UInt64(locations.count) + 1, "block reader published out of order")
            locations.append(location)
        }
    }
}

extension StoredRecord {
    /// Reads and checks the record at `location` of the open segment `file` (at `path`).
    static func read(_ location: RecordLocation, from file: any StoreFile, path: String) throws(StoreError) -> StoredRecord {
        let bytes: [UInt8]
        do { bytes = try file.read(at: location.offset, count: RecordFormat.headerBytes + location.length) } catch {
            throw .io(error)
        }
        let header = Array(bytes.prefix(RecordFormat.headerBytes))
        let payload = Array(bytes.dropFirst(RecordFormat.headerBytes))
        guard bytes.count == RecordFormat.headerBytes + location.length,
              case .success(let parsed) = RecordFormat.parseHeader(header),
              parsed.height == location.height && parsed.payloadLength == location.length,
              RecordFormat.checksumMatches(header: header, payload: payload, expected: parsed.checksum)
        else {
            throw StoreError.corrupt(Corruption(
                file: path, offset: location.offset, height: location.height,
                reason: "record damaged since the store was opened"))
        }
        return StoredRecord(location: location, payload: payload)
    }
}
