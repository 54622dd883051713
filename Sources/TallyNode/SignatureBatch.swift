import Dispatch
import TallyCrypto
import TallyLedger
import TallyTypes

/// Verifies transaction signatures across all cores. Admission verifies each
/// transaction once, here; the mempool and the block application then trust the
/// `VerifiedTransaction` type.
public enum SignatureBatch {
    /// Below this many, threads cost more than they save.
    static let parallelThreshold = 64

    /// Checks each signature for the chain of `genesisHash` (nil = invalid).
    public static func verify(_ transactions: [Transaction], genesisHash: Hash) -> [VerifiedTransaction?] {
        if transactions.count < parallelThreshold {
            return transactions.map { VerifiedTransaction($0, genesisHash: genesisHash) }
        }
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
            for index in start..<end { output[index] = VerifiedTransaction(transactions[index], genesisHash: genesisHash) }
        }
        return Array(results)
    }
}

/// Admission's order of work: the cheap checks (`Mempool.check`: chain id, fee,
/// nonce window, duplicate, balance, room) first, then signatures for only the
/// transactions that passed them, so a batch of hopeless transactions costs no
/// signature check.
enum AdmissionScreen {
    /// `prechecked[i]` is why transaction `i` already failed (nil when it passed);
    /// `verify` checks the survivors' signatures (nil = invalid) and is not called
    /// when none survived.
    static func verifySurvivors(
        _ transactions: [Transaction], prechecked: [AdmissionError?],
        verify: ([Transaction]) async -> [VerifiedTransaction?]
    ) async -> [Result<VerifiedTransaction, AdmissionError>] {
        precondition(transactions.count == prechecked.count, "one precheck result per transaction")
        let survivors = zip(transactions, prechecked).compactMap { $1 == nil ? $0 : nil }
        var verified = survivors.isEmpty ? [] : await verify(survivors)[...]
        return prechecked.map { failure in
            if let failure { return .failure(failure) }
            guard let checked = verified.popFirst()! else { return .failure(.badSignature) }
            return .success(checked)
        }
    }
}

/// Bounds the signature batches verified at once: each takes every core
/// (`SignatureBatch.verify`), so more at once only queue threads. Waiters are
/// served in arrival order.
actor SignatureGate {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) {
        precondition(permits >= 1, "a gate needs a permit")
        available = permits
    }

    /// Verifies once a permit is free.
    nonisolated func verify(_ transactions: [Transaction], genesisHash: Hash) async -> [VerifiedTransaction?] {
        await withPermit { SignatureBatch.verify(transactions, genesisHash: genesisHash) }
    }

    /// Runs `work` once a permit is free; the work runs outside the gate's actor.
    nonisolated func withPermit<Value: Sendable>(_ work: @Sendable () -> Value) async -> Value {
        await acquire()
        let value = work()
        await release()
        return value
    }

    private func acquire() async {
        if available > 0 {
            available -= 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    private func release() {
        if waiters.isEmpty { available += 1 } else { waiters.removeFirst().resume() }
    }
}
