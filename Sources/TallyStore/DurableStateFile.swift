/// A small file replaced whole and crash-safely, for state that must survive a
/// restart exactly: the signer guard's last-signed record and the consensus
/// replica's persisted state (opaque bytes its owner defines).
///
/// Protocol: write `path.tmp`, fsync it, rename it over `path`, fsync the directory.
/// After a crash `read` returns the old bytes or the new, never a mix, and after
/// `write` returns the new bytes survive. Format:
/// ```
/// magic: u32 = 0x52554454 ("TDUR") | version: u32 = 1 | length: u32 | payload
/// | checksum: u32 (CRC-32C of everything before it)
/// ```
/// A damaged file throws `StoreError.corrupt` from `read`; it is never taken as
/// "no state" (a validator that forgot what it signed could sign twice).
///
/// Thread-safety: not thread-safe; one owner.
public final class DurableStateFile {
    static let magic: UInt32 = 0x5255_4454
    static let version: UInt32 = 1
    /// Larger state belongs in the block store or a snapshot.
    public static let maxPayloadBytes = 16 << 20

    public let path: String
    let fileSystem: any FileSystem

    public init(path: String, fileSystem: any FileSystem = PosixFileSystem()) {
        self.path = path
        self.fileSystem = fileSystem
    }

    /// The last written bytes, nil if the state was never written.
    public func read() throws(StoreError) -> [UInt8]? {
        let contents: [UInt8]?
        // At most one byte past the largest valid file: a huge or sparse one is damage,
        // and costs no allocation of its size.
        do { contents = try AtomicReplace.read(path, maxBytes: 16 + DurableStateFile.maxPayloadBytes, fileSystem: fileSystem) } catch {
            throw .io(error)
        }
        guard let contents else { return nil }
        switch DurableStateFile.decode(contents) {
        case .success(let payload): return payload
        case .failure(let reason): throw .corrupt(Corruption(file: path, offset: 0, height: 0, reason: reason.description))
        }
    }

    /// Replaces the state; durable when this returns.
    public func write(_ payload: [UInt8]) throws(StoreError) {
        precondition(payload.count <= DurableStateFile.maxPayloadBytes, "durable state over its bound")
        do { try AtomicReplace.write(DurableStateFile.encode(payload), to: path, fileSystem: fileSystem) } catch {
            throw .io(error)
        }
    }

    static func encode(_ payload: [UInt8]) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(16 + payload.count)
        RecordFormat.appendLittleEndian(magic, to: &bytes)
        RecordFormat.appendLittleEndian(version, to: &bytes)
        RecordFormat.appendLittleEndian(UInt32(payload.count), to: &bytes)
        bytes.append(contentsOf: payload)
        RecordFormat.appendLittleEndian(CRC32C.checksum(bytes), to: &bytes)
        return bytes
    }

    static func decode(_ bytes: [UInt8]) -> Result<[UInt8], DecodeFailure> {
        guard bytes.count >= 16 else { return .failure(DecodeFailure("file is \(bytes.count) bytes, shorter than any state")) }
        guard RecordFormat.readLittleEndian(UInt32.self, bytes, 0) == magic else { return .failure(DecodeFailure("bad magic")) }
        let version = RecordFormat.readLittleEndian(UInt32.self, bytes, 4)
        guard version == DurableStateFile.version else { return .failure(DecodeFailure("unknown version \(version)")) }
        let length = Int(RecordFormat.readLittleEndian(UInt32.self, bytes, 8))
        guard bytes.count == 16 + length else {
            return .failure(DecodeFailure("length field says \(length) bytes, the file holds \(bytes.count - 16)"))
        }
        let checksum = RecordFormat.readLittleEndian(UInt32.self, bytes, 12 + length)
        guard CRC32C.checksum(bytes[0..<12 + length]) == checksum else { return .failure(DecodeFailure("checksum mismatch")) }
        return .success(Array(bytes[12..<12 + length]))
    }

    struct DecodeFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
