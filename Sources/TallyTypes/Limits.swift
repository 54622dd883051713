/// Hard bounds on everything decoded from outside. Genesis may choose smaller
/// values for its chain; nothing may exceed these.
public enum Limits {
    public static let maxChainIDBytes = 64
    public static let maxValidators = 256
    public static let maxValidatorNameBytes = 64
    public static let maxNetworkAddressBytes = 256
    public static let maxGenesisAccounts = 10_000_000
    /// Upper bound of one transaction's canonical encoding (it is ~220 bytes).
    public static let maxTransactionBytes = 512
    public static let maxBlockTransactions = 20_000
    public static let maxBlockBytes = maxBlockTransactions * maxTransactionBytes + 4096
    /// Largest checkpoint interval: the log window (two intervals) must fit the prepared
    /// certificates a VIEW-CHANGE and the durable state may hold (4,096); above it a
    /// replica wrote durable state it could not read back.
    public static let maxCheckpointIntervalBlocks: UInt64 = 2048
}
