import TallyCrypto

/// One validator as genesis lists it.
public struct Validator: Hashable, Sendable {
    public var name: String
    public var publicKey: PublicKey
    /// host:port of its peer listener.
    public var networkAddress: String

    public init(name: String, publicKey: PublicKey, networkAddress: String) {
        self.name = name
        self.publicKey = publicKey
        self.networkAddress = networkAddress
    }

    public var accountAddress: Address { Address(publicKey: publicKey) }
}

/// The fixed validator set of a chain: n validators tolerate f = ⌊(n-1)/3⌋ Byzantine.
public struct ValidatorSet: Hashable, Sendable {
    public let validators: [Validator]
    private let indexByKey: [PublicKey: Int]

    public init(_ validators: [Validator]) {
        precondition(!validators.isEmpty && validators.count <= Limits.maxValidators, "validator count out of range")
        self.validators = validators
        var index: [PublicKey: Int] = [:]
        for (position, validator) in validators.enumerated() {
            precondition(index[validator.publicKey] == nil, "duplicate validator key")
            index[validator.publicKey] = position
        }
        indexByKey = index
    }

    public var count: Int { validators.count }
    public var maxFaulty: Int { (count - 1) / 3 }

    /// Smallest number of validators any two of whose sets intersect in at least one
    /// honest validator: ⌈(n + f + 1) / 2⌉, which is 2f+1 when n = 3f+1.
    public var quorum: Int { (count + maxFaulty + 2) / 2 }

    public func index(of key: PublicKey) -> Int? { indexByKey[key] }

    public subscript(index: Int) -> Validator { validators[index] }

    /// The primary of `view` (PBFT: view mod n).
    public func primary(view: UInt64) -> Int { Int(view % UInt64(count)) }
}
