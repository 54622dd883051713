/// SplitMix64 (Steele, Lea, Flood 2014): a small, fast, seedable generator for
/// reproducible choices (simulator and chaos schedules, packet loss, test data), so
/// a seed replays the same decisions. Not for keys or nonces: see `SecureRandom`.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in 0..<bound (rejection sampling, no modulo bias).
    public mutating func next(below bound: UInt64) -> UInt64 {
        precondition(bound > 0)
        let limit = UInt64.max - UInt64.max % bound
        while true {
            let value = next()
            if value < limit { return value % bound }
        }
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    public mutating func unitInterval() -> Double { Double(next() >> 11) * 0x1p-53 }
}
