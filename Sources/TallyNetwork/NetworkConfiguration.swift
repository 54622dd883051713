import TallyCrypto
import TallyTypes

/// A `host:port` to dial. IPv6 hosts are written in brackets: `[::1]:26656`.
public struct PeerAddress: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` (or `[v6]:port`); nil when malformed or the port is out of range.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":") else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty, let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else {
            return nil
        }
        self.init(host: host, port: port)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Everything a `PeerNetwork` needs at start.
public struct NetworkConfiguration: Sendable {
    /// Where to listen for peers (port 0: any free port, see `PeerNetwork.listenPort`).
    public var listenHost: String
    public var listenPort: Int
    public var chainID: String
    /// This node's validator key: its identity in every handshake.
    public var identity: SigningKey
    /// Genesis validator keys in genesis order: the position is the validator index.
    public var validators: [PublicKey]
    /// Where to dial each validator (our own entry, if any, is ignored). A validator
    /// without an address is not dialed until `setAddress(_:ofValidator:)`.
    public var validatorAddresses: [Int: PeerAddress]
    /// Non-validator nodes (full nodes syncing blocks) allowed to connect to us. We never
    /// dial them; they get no broadcasts, only `send(toPeer:)`.
    public var extraAllowedKeys: Set<PublicKey>
    /// Accept inbound connections only from the IP addresses of the validators' network
    /// addresses (hostnames are resolved once, at start); others are closed at accept,
    /// before any handshake work. Off by default: allowed non-validator nodes dial from
    /// addresses genesis does not list.
    public var acceptOnlyValidatorAddresses: Bool
    public var limits: NetworkLimits

    public init(
        listenHost: String, listenPort: Int, chainID: String, identity: SigningKey, validators: [PublicKey],
        validatorAddresses: [Int: PeerAddress], extraAllowedKeys: Set<PublicKey> = [],
        acceptOnlyValidatorAddresses: Bool = false, limits: NetworkLimits = .default
    ) {
        self.listenHost = listenHost
        self.listenPort = listenPort
        self.chainID = chainID
        self.identity = identity
        self.validators = validators
        self.validatorAddresses = validatorAddresses
        self.extraAllowedKeys = extraAllowedKeys
        self.acceptOnlyValidatorAddresses = acceptOnlyValidatorAddresses
        self.limits = limits
    }

    /// The validators, their addresses and the chain id from genesis.
    public init(
        genesis: Genesis, identity: SigningKey, listenHost: String, listenPort: Int,
        extraAllowedKeys: Set<PublicKey> = [], acceptOnlyValidatorAddresses: Bool = false, limits: NetworkLimits = .default
    ) throws(InvalidConfiguration) {
        var addresses: [Int: PeerAddress] = [:]
        for (index, validator) in genesis.validators.validators.enumerated() {
            guard let address = PeerAddress(parsing: validator.networkAddress) else {
                throw InvalidConfiguration(description: "validator \(index) address '\(validator.networkAddress)' is not host:port")
            }
            addresses[index] = address
        }
        self.init(
            listenHost: listenHost, listenPort: listenPort, chainID: genesis.chainID, identity: identity,
            validators: genesis.validators.validators.map(\.publicKey), validatorAddresses: addresses,
            extraAllowedKeys: extraAllowedKeys, acceptOnlyValidatorAddresses: acceptOnlyValidatorAddresses, limits: limits)
    }

    public struct InvalidConfiguration: Error, CustomStringConvertible {
        public let description: String
    }

    /// Our validator index, or nil for a non-validator node.
    var ownIndex: Int? { validators.firstIndex(of: identity.publicKey) }

    func check() throws(InvalidConfiguration) {
        do { try limits.check() } catch { throw InvalidConfiguration(description: error.description) }
        guard !validators.isEmpty, Set(validators).count == validators.count else {
            throw InvalidConfiguration(description: "validator keys must be non-empty and distinct")
        }
        guard (0...65535).contains(listenPort) else { throw InvalidConfiguration(description: "listen port out of range") }
        guard !chainID.isEmpty && chainID.utf8.count <= Limits.maxChainIDBytes else {
            throw InvalidConfiguration(description: "chain id must be 1…\(Limits.maxChainIDBytes) bytes")
        }
        for index in validatorAddresses.keys where !validators.indices.contains(index) {
            throw InvalidConfiguration(description: "address given for unknown validator index \(index)")
        }
    }
}
