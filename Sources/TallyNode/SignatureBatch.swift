import Dispatch
import TallyLedger
import TallyTypes

/// Verifies transaction signatures across all cores. Admission verifies each
/// transaction once, here; the mempool and the block application then trust the
/// `VerifiedTransaction` type.
public enum SignatureBatch {
    /// Below this many, threads cost more than they save.
    static let parallelThreshold = 64

    public static func verify(_ transactions: [Transaction]) -> [VerifiedTransaction?] {
        if transactions.count < parallelThreshold { return transactions.map(VerifiedTransaction.init) }
        let results = UnsafeMutableBufferPointer<VerifiedTransaction?>.allocate(capacity: transactions.count)
        results.initialize(repeating: nil)
        defer { results.deallocate() }
        let chunkCount = min(transactions.count / 16, 64)
        let chunkSize = (transactions.count + chunkCount - 1) / chunkCount
        // Each chunk writes only its own slice of `results`.
        nonisolated(unsafe) let output = results
        DispatchQueue.concurrentPerform(iterations: chunkCount) { chunk in
            let start = chunk * chunkSize
            let end = min(start + chunkSize, transactions.count)
            guard start < end else { return }
            for index in start..<end { output[index] = VerifiedTransaction(transactions[index]) }
        }
        return Array(results)
    }
}
