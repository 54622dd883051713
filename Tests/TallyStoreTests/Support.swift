import Foundation
import Logging
import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyStore

/// Synthetic certified blocks: the store does not check content, only heights.
enum Blocks {
    static let sender = DevnetKeys.accountKey(0).publicKey

    static func make(height: UInt64, transactions: Int = 3) -> CertifiedBlock {
        let recipient = Address(bytes: [UInt8](repeating: UInt8(truncatingIfNeeded: height), count: 20))!
        let list = (0..<transactions).map {
            Transaction(chainID: "test", sender: sender, recipient: recipient, amount: height, fee: 1, nonce: UInt64($0))
        }
        let header = BlockHeader(
            height: height, view: 0, timestampMs: 1000 * height, previousHash: .zero, transactionsRoot: Block.transactionsRoot(list),
            stateRoot: .zero, proposer: 0, transactionCount: UInt32(list.count))
        let block = Block(header: header, transactions: list)
        let entries = (0..<3).map { CommitCertificate.Entry(validatorIndex: UInt32($0), signature: .zero) }
        return CertifiedBlock(block: block, certificate: CommitCertificate(view: 0, height: height, blockHash: block.hash, signatures: entries))
    }

    static func chain(_ count: Int, transactions: Int = 3) -> [CertifiedBlock] {
        (1...max(count, 1)).prefix(count).map { make(height: UInt64($0), transactions: transactions) }
    }
}

/// Collects log lines so tests can check what recovery reported.
final class LogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] = []

    var logger: Logger {
        Logger(label: "test") { _ in CaptureHandler(capture: self) }
    }

    func append(_ level: Logger.Level, _ message: String, _ metadata: Logger.Metadata) {
        lock.lock()
        lines.append((level, message, metadata))
        lock.unlock()
    }

    var messages: [(level: Logger.Level, message: String, metadata: Logger.Metadata)] {
        lock.lock()
        defer { lock.unlock() }
        return lines
    }

    struct CaptureHandler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            capture.append(event.level, "\(event.message)", metadata.merging(event.metadata ?? [:]) { $1 })
        }
    }
}

func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "tally-store-tests-" + UUID().uuidString
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func readAll(_ store: BlockStore) throws -> [CertifiedBlock] {
    var blocks: [CertifiedBlock] = []
    try store.forEachBlock { blocks.append($0) }
    return blocks
}
