extension Replica {
    /// True while the replica fetches certified blocks from peers instead of
    /// voting (behind the network after a restart or a partition), or has not yet
    /// heard from f+1 peers where the network is (start-up quarantine).
    public var isCatchingUp: Bool { sync != nil || needsStartupSync || quarantine != nil }
}
