import TallyCrypto

/// When each transaction admitted through the API was submitted, for the commit
/// latency (`tally_commit_latency_seconds`) and the commit timeline's admission
/// samples. Bounded: an evicted transaction never commits, so its entry would stay.
struct SubmissionTracker {
    /// Submissions whose commit latency is tracked at once.
    static let maxTrackedSubmissions = 100_000
    /// Ticks between sweeps of evicted submissions out of a full tracker.
    static let submissionSweepIntervalTicks: UInt64 = 20

    private var submittedAt: [Hash: ContinuousClock.Instant] = [:]
    private var lastSweepTick: UInt64 = 0
    private let maxTracked: Int

    /// `maxTracked`: a seam for tests; the node uses `maxTrackedSubmissions`.
    init(maxTracked: Int = SubmissionTracker.maxTrackedSubmissions) { self.maxTracked = maxTracked }

    var count: Int { submittedAt.count }

    /// Remembers when `hash` was submitted. At the bound, first forgets those no
    /// longer `isPending` (evicted ones never commit), at most once per
    /// `submissionSweepIntervalTicks`, since a sweep walks every entry; when it is
    /// still full the submission goes untracked.
    mutating func track(
        _ hash: Hash, at instant: ContinuousClock.Instant, tick: UInt64, isPending: (Hash) -> Bool
    ) {
        if submittedAt.count >= maxTracked, tick >= lastSweepTick + Self.submissionSweepIntervalTicks {
            lastSweepTick = tick
            submittedAt = submittedAt.filter { isPending($0.key) }
        }
        if submittedAt.count < maxTracked { submittedAt[hash] = instant }
    }

    /// When a transaction now committed was submitted (nil: not tracked), forgetting it.
    mutating func committed(_ hash: Hash) -> ContinuousClock.Instant? { submittedAt.removeValue(forKey: hash) }
}
