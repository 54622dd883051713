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

/// Passes every call to `base`, except that the next `failures` operations `matching`
/// picks fail with an error, as a real one does out of descriptors (EMFILE) or space
/// (not a crash: the caller goes on and may retry). Counts the files it opened that are
/// not closed yet, so a test sees a leaked descriptor.
final class FaultyFileSystem: FileSystem, @unchecked Sendable {
    enum Operation {
        case open(path: String, mode: FileOpenMode)
        case rename(source: String)
    }

    let base: any FileSystem
    private let lock = NSLock()
    private var failures = 0
    private var matching: (Operation) -> Bool = { _ in false }
    private var open = 0

    init(base: any FileSystem) { self.base = base }

    var openFiles: Int { lock.withLock { open } }

    func failNext(_ count: Int, matching: @escaping (Operation) -> Bool) {
        lock.withLock {
            failures = count
            self.matching = matching
        }
    }

    private func fault(_ operation: Operation, _ path: String) throws(FileSystemError) {
        let fails = lock.withLock { () -> Bool in
            guard failures > 0, matching(operation) else { return false }
            failures -= 1
            return true
        }
        if fails { throw FileSystemError(operation: "\(operation)", path: path, reason: "Too many open files") }
    }

    func createDirectory(_ path: String) throws(FileSystemError) { try base.createDirectory(path) }
    func listDirectory(_ path: String) throws(FileSystemError) -> [String] { try base.listDirectory(path) }
    func fileExists(_ path: String) -> Bool { base.fileExists(path) }
    func remove(_ path: String) throws(FileSystemError) { try base.remove(path) }
    func syncDirectory(_ path: String) throws(FileSystemError) { try base.syncDirectory(path) }

    func rename(_ source: String, to destination: String) throws(FileSystemError) {
        try fault(.rename(source: source), source)
        try base.rename(source, to: destination)
    }

    func open(_ path: String, mode: FileOpenMode) throws(FileSystemError) -> any StoreFile {
        try fault(.open(path: path, mode: mode), path)
        let file = try base.open(path, mode: mode)
        lock.withLock { open += 1 }
        return TrackedFile(base: file) { [self] in lock.withLock { open -= 1 } }
    }

    /// A file whose first `close` is reported.
    final class TrackedFile: StoreFile {
        let base: any StoreFile
        private var onClose: (() -> Void)?

        init(base: any StoreFile, onClose: @escaping () -> Void) {
            self.base = base
            self.onClose = onClose
        }

        func size() throws(FileSystemError) -> Int { try base.size() }
        func read(at offset: Int, count: Int) throws(FileSystemError) -> [UInt8] { try base.read(at: offset, count: count) }
        func write(_ bytes: [UInt8], at offset: Int) throws(FileSystemError) { try base.write(bytes, at: offset) }
        func truncate(to size: Int) throws(FileSystemError) { try base.truncate(to: size) }
        func sync() throws(FileSystemError) { try base.sync() }
        func syncData() throws(FileSystemError) { try base.syncData() }

        func close() {
            onClose?()
            onClose = nil
            base.close()
        }
    }
}
