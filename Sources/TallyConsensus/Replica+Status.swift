extension Replica {
    /// True while the replica fetches certified blocks from peers instead of
    /// voting (behind the network after a restart or a partition).
    public var isCatchingUp: Bool { sync != nil || needsStartupSync }
}
