import Dispatch
import TallyCrypto
import TallyLedger
import TallyTypes

/// Decides whether a transaction's signature is valid: injected into the
/// application, so the simulator runs the node's admission and block checks with a
/// cheaper oracle for the same answer. Called from several threads.
public protocol TransactionSignatureChecker: Sendable {
    /// Whether `transaction`'s signature is valid on the chain of `genesisHash`.
    func isValid(_ transaction: Transaction, genesisHash: Hash) -> Bool
}

/// Ed25519 through libsodium: a node's checker.
public struct Ed25519TransactionChecker: TransactionSignatureChecker {
    public init() {}
    public func isValid(_ transaction: Transaction, genesisHash: Hash) -> Bool {
        transaction.hasValidSignature(genesisHash: genesisHash)
    }
}

/// Verifies transaction signatures across all cores. Admission verifies each
/// transaction once, here; the mempool and the block application then trust the
/// `VerifiedTransaction` type.
public enum SignatureBatch {
    /// Below this many, threads cost more than they save.
    static let parallelThreshold = 64

    /// Checks each signature for the chain of `genesisHash` (nil = invalid).
    public static func verify(
        _ transactions: [Transaction], genesisHash: Hash,
        using checker: any TransactionSignatureChecker = Ed25519TransactionChecker()
    ) -> [VerifiedTransaction?] {
        @Sendable func verified(_ transaction: Transaction) -> VerifiedTransaction? {
            checker.isValid(transaction, genesisHash: genesisHash) ? VerifiedTransaction(signatureAlreadyVerified: transaction) : nil
        }
        if transactions.count < parallelThreshold { return transactions.map(verified) }
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
            for index in start..<end { output[index] = verified(transactions[index]) }
        }
        return Array(results)
    }
}

/// Admission's order of work: the cheap checks (`Mempool.check`: chain id, fee,
/// nonce window, duplicate, balance, room) first, then signatures for only the
/// transactions that passed them, so a batch of hopeless transactions costs no
/// signature check.
public enum AdmissionScreen {
    /// `prechecked[i]` is why transaction `i` already failed (nil when it passed);
    /// `verify` checks the survivors' signatures (nil = invalid) and is not called
    /// when none survived.
    public static func verifySurvivors(
        _ transactions: [Transaction], prechecked: [AdmissionError?],
        verify: ([Transaction]) async -> [VerifiedTransaction?]
    ) async -> [Result<VerifiedTransaction, AdmissionError>] {
        let survivors = survivors(transactions, prechecked: prechecked)
        return merge(prechecked, verified: survivors.isEmpty ? [] : await verify(survivors))
    }

    /// `verifySurvivors` for a caller that verifies in place (the simulator).
    public static func screen(
        _ transactions: [Transaction], prechecked: [AdmissionError?], verify: ([Transaction]) -> [VerifiedTransaction?]
    ) -> [Result<VerifiedTransaction, AdmissionError>] {
        let survivors = survivors(transactions, prechecked: prechecked)
        return merge(prechecked, verified: survivors.isEmpty ? [] : verify(survivors))
    }

    private static func survivors(_ transactions: [Transaction], prechecked: [AdmissionError?]) -> [Transaction] {
        precondition(transactions.count == prechecked.count, "one precheck result per transaction")
        return zip(transactions, prechecked).compactMap { $1 == nil ? $0 : nil }
    }

    private static func merge(
        _ prechecked: [AdmissionError?], verified survivors: [VerifiedTransaction?]
    ) -> [Result<VerifiedTransaction, AdmissionError>] {
        precondition(survivors.count == prechecked.count { $0 == nil }, "one verdict per survivor")
        var verified = survivors[...]
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
public actor SignatureGate {
    private var available: Int
    private var waiters: [CheckedContinuation<Void, Never>] = []

    public init(permits: Int) {
        precondition(permits >= 1, "a gate needs a permit")
        available = permits
    }

    /// Verifies once a permit is free.
    public nonisolated func verify(
        _ transactions: [Transaction], genesisHash: Hash,
        using checker: any TransactionSignatureChecker = Ed25519TransactionChecker()
    ) async -> [VerifiedTransaction?] {
        await withPermit { SignatureBatch.verify(transactions, genesisHash: genesisHash, using: checker) }
    }

    /// Runs `work` once a permit is free; the work runs outside the gate's actor.
    public nonisolated func withPermit<Value: Sendable>(_ work: @Sendable () -> Value) async -> Value {
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
