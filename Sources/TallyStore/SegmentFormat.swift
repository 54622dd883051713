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

    /// Whether any whole, valid record starts after `offset`: if so the damage is in
    /// the middle of the file, not a torn tail.
    func validRecordExists(after damagedOffset: Int) throws(FileSystemError) -> Bool {
        let tailStart = damagedOffset + 1
        guard size - tailStart >= RecordFormat.headerBytes else { return false }
        let tail = try file.read(at: tailStart, count: size - tailStart)
        let magicBytes: [UInt8] = [0x54, 0x42, 0x4C, 0x4B]
        var index = 0
        while index + RecordFormat.headerBytes <= tail.count {
            if tail[index] == magicBytes[0] && tail[index + 1] == magicBytes[1] && tail[index + 2] == magicBytes[2]
                && tail[index + 3] == magicBytes[3],
                case .success(let header) = RecordFormat.parseHeader(tail[index..<index + RecordFormat.headerBytes]),
                index + RecordFormat.headerBytes + header.payloadLength <= tail.count
            {
                let headerBytes = Array(tail[index..<index + RecordFormat.headerBytes])
                let payloadStart = index + RecordFormat.headerBytes
                let payload = Array(tail[payloadStart..<payloadStart + header.payloadLength])
                if RecordFormat.checksumMatches(header: headerBytes, payload: payload, expected: header.checksum) {
                    return true
                }
            }
            index += 1
        }
        return false
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
