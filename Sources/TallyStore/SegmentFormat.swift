import TallyTypes

/// One record of a segment file: a certified block framed for recovery.
/// ```
/// magic: u32 = 0x4B4C4254 ("TBLK") | payload_length: u32 | height: u64
/// | checksum: u32 (CRC-32C of the 16 bytes before it, then the payload)
/// | payload: the block's canonical `CertifiedBlock` bytes
/// ```
/// All integers little-endian. The checksum covers the length and height, so a
/// flipped bit in the frame is caught like one in the block.
enum RecordFormat {
    static let magic: UInt32 = 0x4B4C_4254
    static let headerBytes = 20
    /// A certified block's canonical bytes are bounded by the block limit plus a
    /// certificate of at most `Limits.maxValidators` entries.
    static let maxPayloadBytes = Limits.maxBlockBytes + 64 + Limits.maxValidators * 68

    static func encode(height: UInt64, payload: [UInt8]) -> [UInt8] {
        var bytes = [UInt8]()
        bytes.reserveCapacity(headerBytes + payload.count)
        appendLittleEndian(magic, to: &bytes)
        appendLittleEndian(UInt32(payload.count), to: &bytes)
        appendLittleEndian(height, to: &bytes)
        let checksum = CRC32C.checksum(payload, initial: CRC32C.checksum(bytes))
        appendLittleEndian(checksum, to: &bytes)
        bytes.append(contentsOf: payload)
        return bytes
    }

    struct Header {
        let payloadLength: Int
        let height: UInt64
        let checksum: UInt32
    }

    enum HeaderProblem: Error {
        case badMagic
        case lengthOverLimit(Int)
    }

    static func parseHeader<Bytes: RandomAccessCollection>(_ bytes: Bytes) -> Result<Header, HeaderProblem>
    where Bytes.Element == UInt8, Bytes.Index == Int {
        precondition(bytes.count >= headerBytes)
        let base = bytes.startIndex
        guard readLittleEndian(UInt32.self, bytes, base) == magic else { return .failure(.badMagic) }
        let length = Int(readLittleEndian(UInt32.self, bytes, base + 4))
        guard length <= maxPayloadBytes else { return .failure(.lengthOverLimit(length)) }
        return .success(Header(
            payloadLength: length, height: readLittleEndian(UInt64.self, bytes, base + 8),
            checksum: readLittleEndian(UInt32.self, bytes, base + 16)))
    }

    static func checksumMatches(header: [UInt8], payload: [UInt8], expected: UInt32) -> Bool {
        CRC32C.checksum(payload, initial: CRC32C.checksum(header[0..<16])) == expected
    }

    static func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    static func readLittleEndian<T: FixedWidthInteger, Bytes: RandomAccessCollection>(
        _ type: T.Type, _ bytes: Bytes, _ offset: Int
    ) -> T where Bytes.Element == UInt8, Bytes.Index == Int {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + index]) << (8 * index) }
        return value
    }
}

/// Reads the records of one segment file in order, checking each frame and checksum.
struct SegmentScanner {
    enum Step {
        case record(height: UInt64, offset: Int, payload: [UInt8])
        case end
        /// The bytes at `offset` are not a whole valid record.
        case damaged(offset: Int, declaredHeight: UInt64?, reason: String)
    }

    let file: any StoreFile
    let size: Int
    private(set) var offset = 0

    init(file: any StoreFile) throws(FileSystemError) {
        self.file = file
        size = try file.size()
    }

    mutating func next() throws(FileSystemError) -> Step {
        if offset == size { return .end }
        let start = offset
        guard size - start >= RecordFormat.headerBytes else {
            return .damaged(offset: start, declaredHeight: nil, reason: "record header cut short (\(size - start) of \(RecordFormat.headerBytes) bytes)")
        }
        let headerBytes = try file.read(at: start, count: RecordFormat.headerBytes)
        let header: RecordFormat.Header
        switch RecordFormat.parseHeader(headerBytes) {
        case .failure(.badMagic):
            return .damaged(offset: start, declaredHeight: nil, reason: "no record starts here (bad magic)")
        case .failure(.lengthOverLimit(let length)):
            return .damaged(offset: start, declaredHeight: nil, reason: "record length \(length) is over the limit")
        case .success(let parsed): header = parsed
        }
        let payloadStart = start + RecordFormat.headerBytes
        guard size - payloadStart >= header.payloadLength else {
            return .damaged(offset: start, declaredHeight: header.height,
                            reason: "record cut short (\(size - payloadStart) of \(header.payloadLength) payload bytes)")
        }
        let payload = try file.read(at: payloadStart, count: header.payloadLength)
        guard RecordFormat.checksumMatches(header: headerBytes, payload: payload, expected: header.checksum) else {
            return .damaged(offset: start, declaredHeight: header.height, reason: "record checksum mismatch (damaged bytes)")
        }
        offset = payloadStart + header.payloadLength
        return .record(height: header.height, offset: start, payload: payload)
    }

    /// Work done by the last `findValidRecord`.
    private(set) var damageScanWork = DamageScan.Work()

    /// Looks for a whole, valid record starting after `damagedOffset`: if there is one
    /// the damage is in the middle of the file, not a torn tail. Bounded work (see
    /// `DamageScan`): giving up counts as damage in the middle.
    mutating func findValidRecord(after damagedOffset: Int) throws(FileSystemError) -> DamageScan.Result {
        var work = DamageScan.Work()
        defer { damageScanWork = work }
        let (file, size) = (self.file, self.size)
        return try DamageScan.findRecord(in: file, from: damagedOffset + 1, size: size, magic: RecordFormat.magic, work: &work) {
            (offset: Int, work: inout DamageScan.Work) throws(FileSystemError) -> DamageScan.Verdict in
            guard size - offset >= RecordFormat.headerBytes else { return .invalid }
            let header = try DamageScan.read(file, at: offset, count: RecordFormat.headerBytes, work: &work)
            // The length is checked against the limit and the file before anything is read.
            guard header.count == RecordFormat.headerBytes, case .success(let parsed) = RecordFormat.parseHeader(header),
                  parsed.payloadLength <= size - offset - RecordFormat.headerBytes
            else { return .invalid }
            guard let checksum = try DamageScan.checksum(
                file, at: offset + RecordFormat.headerBytes, count: parsed.payloadLength,
                initial: CRC32C.checksum(header[0..<16]), work: &work)
            else { return .overBudget(DamageScan.budgetMessage(work)) }
            return checksum == parsed.checksum ? .valid : .invalid
        }
    }
}

/// Names of segment files: `segment-00000001.tblk`, numbered from 1 without gaps.
enum SegmentNaming {
    static let prefix = "segment-"
    static let suffix = ".tblk"

    static func name(_ number: Int) -> String {
        let digits = String(number)
        return prefix + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + suffix
    }

    static func number(_ name: String) -> Int? {
        guard name.hasPrefix(prefix) && name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return Int(digits)
    }

    /// The segment numbers in `directory`, sorted (gaps are checked by the reader,
    /// which knows the height they break at).
    static func list(_ directory: String, fileSystem: any FileSystem) throws(StoreError) -> [Int] {
        let names: [String]
        do { names = try fileSystem.listDirectory(directory) } catch { throw .io(error) }
        return names.compactMap(number).sorted()
    }
}
