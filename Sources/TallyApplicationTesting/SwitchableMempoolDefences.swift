import TallyApplication

/// Mempool defences the tests and the simulator switch off one at a time (see
/// `MempoolDefences`); `.all` answers as `StandardMempoolDefences`. Test support: the
/// only conformance that can answer otherwise, outside every shipped product.
public struct SwitchableMempoolDefences: MempoolDefences, Hashable {
    public var recheckAfterCommit = true
    public var proposableByExecutionRule = true

    public static let all = SwitchableMempoolDefences()
    public init() {}
}
