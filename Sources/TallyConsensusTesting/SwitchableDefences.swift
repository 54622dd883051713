import TallyConsensus

/// Replica defences the tests and the simulator switch off one at a time (see
/// `ReplicaDefences`); `.all` answers as `StandardDefences`. Test support: the only
/// conformance that can answer otherwise, outside every shipped product.
public struct SwitchableDefences: ReplicaDefences, Hashable {
    public var verifySignatures = true
    public var rejectEquivocation = true
    public var signerGuard = true
    public var dropStaleViews = true
    public var checkViewChangeCertificates = true
    public var recomputeNewView = true
    public var viewChangeTimer = true
    public var joinViewChangeNeedsFPlusOne = true
    public var invalidNewViewBlamesOnlyItsView = true
    public var censorshipTimer = true
    public var slowPrimaryCheck = true
    public var announceCommittedTip = true
    public var quorumOverride: Int? = nil

    public static let all = SwitchableDefences()
    public init() {}
}
