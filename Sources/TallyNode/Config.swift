import TallyApplication
import TallyNetwork
import Foundation
import TOMLKit

/// A node's configuration: `HOME/config.toml`. Every key is optional in the file
/// (the defaults below apply) and every value can be overridden on the command line.
public struct NodeConfig: Codable, Equatable, Sendable {
    public struct API: Codable, Equatable, Sendable {
        /// host:port of the HTTP API. Loopback by default: expose it deliberately.
        public var listen = "127.0.0.1:7700"
        /// Largest request body accepted (bigger ones get 413 without being read).
        public var maxBodyBytes = 8 << 20
        /// Most transactions in one POST /txs batch.
        public var maxBatchTransactions = 10_000
        /// Server-sent-event subscribers at once.
        public var maxEventSubscribers = 64
        /// Connection and request limits (`HTTPLimits` documents each).
        public var maxConnections = HTTPLimits().maxConnections
        public var maxConnectionsPerAddress = HTTPLimits().maxConnectionsPerAddress
        public var idleTimeoutSeconds = HTTPLimits().idleTimeoutSeconds
        public var headerTimeoutSeconds = HTTPLimits().headerTimeoutSeconds
        public var bodyTimeoutSeconds = HTTPLimits().bodyTimeoutSeconds
        public var writeTimeoutSeconds = HTTPLimits().writeTimeoutSeconds
        public var maxEventSubscribersPerAddress = HTTPLimits().maxEventSubscribersPerAddress
        public var submitRequestsPerSecond = HTTPLimits().submitRequestsPerSecond
        public var submitBurst = HTTPLimits().submitBurst
        public var queryRequestsPerSecond = HTTPLimits().queryRequestsPerSecond
        public var queryBurst = HTTPLimits().queryBurst
        public var maxConcurrentHistoryReads = HTTPLimits().maxConcurrentHistoryReads
        /// How much lower the OS priority (nice value) of the API's threads is than the
        /// consensus actor's and the peer network's (`APIThreads`); 0: the same.
        public var threadNiceIncrement = APIThreads.defaultNiceIncrement
        enum CodingKeys: String, CodingKey, CaseIterable {
            case listen
            case maxBodyBytes = "max_body_bytes"
            case maxBatchTransactions = "max_batch_transactions"
            case maxEventSubscribers = "max_event_subscribers"
            case maxConnections = "max_connections"
            case maxConnectionsPerAddress = "max_connections_per_address"
            case idleTimeoutSeconds = "idle_timeout_seconds"
            case headerTimeoutSeconds = "header_timeout_seconds"
            case bodyTimeoutSeconds = "body_timeout_seconds"
            case writeTimeoutSeconds = "write_timeout_seconds"
            case maxEventSubscribersPerAddress = "max_event_subscribers_per_address"
            case submitRequestsPerSecond = "submit_requests_per_second"
            case submitBurst = "submit_burst"
            case queryRequestsPerSecond = "query_requests_per_second"
            case queryBurst = "query_burst"
            case maxConcurrentHistoryReads = "max_concurrent_history_reads"
            case threadNiceIncrement = "thread_nice_increment"
        }

        public var httpLimits: HTTPLimits {
            var limits = HTTPLimits()
            limits.maxConnections = maxConnections
            limits.maxConnectionsPerAddress = maxConnectionsPerAddress
            limits.idleTimeoutSeconds = idleTimeoutSeconds
            limits.headerTimeoutSeconds = headerTimeoutSeconds
            limits.bodyTimeoutSeconds = bodyTimeoutSeconds
            limits.writeTimeoutSeconds = writeTimeoutSeconds
            limits.maxEventSubscribersPerAddress = maxEventSubscribersPerAddress
            limits.submitRequestsPerSecond = submitRequestsPerSecond
            limits.submitBurst = submitBurst
            limits.queryRequestsPerSecond = queryRequestsPerSecond
            limits.queryBurst = queryBurst
            limits.maxConcurrentHistoryReads = maxConcurrentHistoryReads
            return limits
        }
    }

    public struct P2P: Codable, Equatable, Sendable {
        /// host:port this validator listens on for its peers (genesis lists the same).
        public var listen = "127.0.0.1:7800"
        /// Largest message to or from a peer; a bigger frame closes that connection.
        public var maxMessageBytes = NetworkLimits.default.maxMessageBytes
        /// Frames queued per peer before the oldest are dropped.
        public var outboundQueueFrames = 4096
        /// Reconnect back-off cap.
        public var maxDialBackoffMs = 5_000
        /// Unauthenticated inbound connections per remote IP; one more evicts the oldest.
        public var maxPendingHandshakesPerAddress = NetworkLimits.default.maxPendingHandshakesPerAddress
        /// An inbound peer's first handshake frame must arrive within this time.
        public var handshakeFirstMessageTimeoutMs = Int(NetworkLimits.default.handshakeFirstMessageTimeoutMs)
        /// Accept inbound peer connections only from genesis validators' IP addresses.
        public var acceptOnlyValidatorAddresses = false
        enum CodingKeys: String, CodingKey, CaseIterable {
            case listen
            case maxMessageBytes = "max_message_bytes"
            case outboundQueueFrames = "outbound_queue_frames"
            case maxDialBackoffMs = "max_dial_backoff_ms"
            case maxPendingHandshakesPerAddress = "max_pending_handshakes_per_address"
            case handshakeFirstMessageTimeoutMs = "handshake_first_message_timeout_ms"
            case acceptOnlyValidatorAddresses = "accept_only_validator_addresses"
        }
    }

    public struct Mempool: Codable, Equatable, Sendable {
        public var maxTransactions = MempoolLimits.default.maxTransactions
        public var maxBytes = MempoolLimits.default.maxBytes
        public var maxNonceGap = MempoolLimits.default.maxNonceGap
        public var maxPerSender = MempoolLimits.default.maxPerSender
        /// How long a transaction may wait before it is evicted.
        public var pendingLifetimeSeconds = Int(MempoolLimits.default.pendingLifetimeMs / 1000)
        enum CodingKeys: String, CodingKey, CaseIterable {
            case maxTransactions = "max_transactions"
            case maxBytes = "max_bytes"
            case maxNonceGap = "max_nonce_gap"
            case maxPerSender = "max_per_sender"
            case pendingLifetimeSeconds = "pending_lifetime_seconds"
        }
        public var limits: MempoolLimits {
            MempoolLimits(
                maxTransactions: maxTransactions, maxBytes: maxBytes, maxNonceGap: maxNonceGap, maxPerSender: maxPerSender,
                pendingLifetimeMs: UInt64(pendingLifetimeSeconds) * 1000)
        }
        /// Largest `max_nonce_gap` accepted.
        static let maxNonceGapBound: UInt64 = 100_000
        /// Largest `pending_lifetime_seconds` accepted (a day).
        static let maxPendingLifetimeSeconds = 86_400
    }

    public struct Storage: Codable, Equatable, Sendable {
        /// Block segments, consensus state and snapshots; relative to the home directory.
        public var dataDir = "data"
        enum CodingKeys: String, CodingKey, CaseIterable { case dataDir = "data_dir" }
    }

    public struct Log: Codable, Equatable, Sendable {
        /// "text" or "json".
        public var format = "text"
        /// trace, debug, info, notice, warning, error, critical.
        public var level = "info"
        enum CodingKeys: String, CodingKey, CaseIterable { case format, level }
    }

    /// Validator key file (encrypted), relative to the home directory.
    public var keyFile = "validator.key"
    /// File holding the key's passphrase (its first line; mode 0600 or stricter, else
    /// the node refuses to start); otherwise $TALLY_NODE_PASSWORD (removed from the
    /// environment once read) or a prompt.
    public var keyPasswordFile: String?
    /// Genesis file, relative to the home directory.
    public var genesisFile = "genesis.json"
    public var api = API()
    public var p2p = P2P()
    public var mempool = Mempool()
    public var storage = Storage()
    public var log = Log()

    enum CodingKeys: String, CodingKey, CaseIterable {
        case keyFile = "key_file"
        case keyPasswordFile = "key_password_file"
        case genesisFile = "genesis_file"
        case api, p2p, mempool, storage, log
    }

    public init() {}

    public enum Error: Swift.Error, CustomStringConvertible {
        case unreadable(String)
        case invalid(String)
        public var description: String {
            switch self {
            case .unreadable(let message): return "config unreadable: \(message)"
            case .invalid(let message): return "config invalid: \(message)"
            }
        }
        var message: String {
            switch self {
            case .unreadable(let message), .invalid(let message): return message
            }
        }
    }

    public static func load(path: String) throws -> NodeConfig {
        guard let data = FileManager.default.contents(atPath: path) else { throw Error.unreadable("cannot read \(path)") }
        let config: NodeConfig
        do { config = try TOMLDecoder().decode(NodeConfig.self, from: String(decoding: data, as: UTF8.self)) } catch let error as Error {
            throw Error.invalid("\(path): \(error.message)")
        } catch {
            throw Error.unreadable("\(path): \(error)")
        }
        try config.check()
        return config
    }

    public func check() throws {
        func bounded(_ value: Int, _ range: ClosedRange<Int>, _ name: String) throws {
            guard range.contains(value) else { throw Error.invalid("\(name) = \(value) is outside \(range.lowerBound)…\(range.upperBound)") }
        }
        try bounded(api.maxBodyBytes, 1024...(256 << 20), "api.max_body_bytes")
        try bounded(api.maxBatchTransactions, 1...100_000, "api.max_batch_transactions")
        try bounded(api.maxEventSubscribers, 0...10_000, "api.max_event_subscribers")
        try bounded(api.maxConnections, 1...1_000_000, "api.max_connections")
        try bounded(api.maxConnectionsPerAddress, 1...1_000_000, "api.max_connections_per_address")
        try bounded(api.idleTimeoutSeconds, 1...86_400, "api.idle_timeout_seconds")
        try bounded(api.headerTimeoutSeconds, 1...3_600, "api.header_timeout_seconds")
        try bounded(api.bodyTimeoutSeconds, 1...3_600, "api.body_timeout_seconds")
        try bounded(api.writeTimeoutSeconds, 1...3_600, "api.write_timeout_seconds")
        try bounded(api.maxEventSubscribersPerAddress, 1...10_000, "api.max_event_subscribers_per_address")
        try bounded(api.submitRequestsPerSecond, 1...1_000_000, "api.submit_requests_per_second")
        try bounded(api.submitBurst, 1...1_000_000, "api.submit_burst")
        try bounded(api.queryRequestsPerSecond, 1...1_000_000, "api.query_requests_per_second")
        try bounded(api.queryBurst, 1...1_000_000, "api.query_burst")
        try bounded(api.maxConcurrentHistoryReads, 1...1_024, "api.max_concurrent_history_reads")
        try bounded(api.threadNiceIncrement, 0...APIThreads.maxNiceIncrement, "api.thread_nice_increment")
        try bounded(p2p.maxMessageBytes, 64 << 10...NetworkLimits.default.maxMessageBytes, "p2p.max_message_bytes")
        try bounded(p2p.outboundQueueFrames, 16...1_000_000, "p2p.outbound_queue_frames")
        try bounded(p2p.maxDialBackoffMs, 10...600_000, "p2p.max_dial_backoff_ms")
        try bounded(p2p.maxPendingHandshakesPerAddress, 1...NetworkLimits.default.maxPendingHandshakes,
                    "p2p.max_pending_handshakes_per_address")
        try bounded(p2p.handshakeFirstMessageTimeoutMs, 100...Int(NetworkLimits.default.handshakeTimeoutMs),
                    "p2p.handshake_first_message_timeout_ms")
        try bounded(mempool.maxTransactions, 1...10_000_000, "mempool.max_transactions")
        try bounded(mempool.maxBytes, 1024...(4 << 30), "mempool.max_bytes")
        try bounded(mempool.maxPerSender, 1...1_000_000, "mempool.max_per_sender")
        guard mempool.maxNonceGap <= Mempool.maxNonceGapBound else {
            throw Error.invalid("mempool.max_nonce_gap = \(mempool.maxNonceGap) is outside 0…\(Mempool.maxNonceGapBound)")
        }
        try bounded(mempool.pendingLifetimeSeconds, 1...Mempool.maxPendingLifetimeSeconds, "mempool.pending_lifetime_seconds")
        guard ["text", "json"].contains(log.format) else { throw Error.invalid("log.format must be \"text\" or \"json\"") }
        _ = try HostPort(api.listen, field: "api.listen")
        _ = try HostPort(p2p.listen, field: "p2p.listen")
    }

    /// The commented file `init` and `testnet` write.
    public func rendered() -> String {
        """
        # Tally validator configuration. Paths are relative to this file's directory (the
        # node's home). Every value can be overridden on the command line: see
        # `tally-node start --help`.

        # Encrypted Ed25519 validator key (Argon2id + XChaCha20-Poly1305).
        key_file = \(quoted(keyFile))
        # Passphrase: key_password_file (its first line; the file must be mode 0600 or
        # stricter, else the node exits with 2), else $TALLY_NODE_PASSWORD (unset and
        # wiped from the process environment once read), else a prompt.
        \(keyPasswordFile.map { "key_password_file = \(quoted($0))" } ?? "# key_password_file = \"validator.password\"")
        genesis_file = \(quoted(genesisFile))

        [api]
        # HTTP API (JSON + binary). Loopback by default: expose it deliberately.
        listen = \(quoted(api.listen))
        # Request bodies over this are refused with 413 before they are read in full.
        max_body_bytes = \(api.maxBodyBytes)
        max_batch_transactions = \(api.maxBatchTransactions)
        max_event_subscribers = \(api.maxEventSubscribers)
        # /events streams from one remote address; more get 503 too_many_subscribers. A
        # subscriber more than 64 blocks behind is dropped (its stream ends).
        max_event_subscribers_per_address = \(api.maxEventSubscribersPerAddress)
        # Connections served at once. When all are taken, a newcomer from an address holding
        # fewer than the heaviest address closes that one's oldest connection; any other
        # is answered 503 server_busy (Retry-After: 1) and closed at once.
        max_connections = \(api.maxConnections)
        # Connections at once from one IP address (IPv6: one /64); the next gets 503
        # too_many_connections and is closed at once (so one address cannot hold all of
        # max_connections).
        max_connections_per_address = \(api.maxConnectionsPerAddress)
        # A connection with no request in progress is closed after this.
        idle_timeout_seconds = \(api.idleTimeoutSeconds)
        # A request's head must arrive within this of its first byte (else 408
        # request_timeout and close); its whole body within body_timeout_seconds of the
        # head (else close; the node's time to answer does not count); a client must take
        # some of a response within
        # write_timeout_seconds (else close).
        header_timeout_seconds = \(api.headerTimeoutSeconds)
        body_timeout_seconds = \(api.bodyTimeoutSeconds)
        write_timeout_seconds = \(api.writeTimeoutSeconds)
        # Per IP address, token buckets (sustained rate, burst): POST /txs, and
        # GET /txs/{hash}, /accounts/{address}/txs and /blocks/*. Over them: 429
        # rate_limited with Retry-After: 1.
        submit_requests_per_second = \(api.submitRequestsPerSecond)
        submit_burst = \(api.submitBurst)
        query_requests_per_second = \(api.queryRequestsPerSecond)
        query_burst = \(api.queryBurst)
        # GET /accounts/{address}/txs pages being read at once (each reads up to 100
        # blocks), whoever asks; one more gets 503 too_many_reads at once, never queued.
        max_concurrent_history_reads = \(api.maxConcurrentHistoryReads)
        # The API runs on threads of its own whose OS priority (nice value) is this much
        # lower than consensus's and the peer network's, so when the cores are short,
        # what clients' connections cost comes out of the API's share (0: the same).
        thread_nice_increment = \(api.threadNiceIncrement)

        [p2p]
        # Where this validator accepts its peers; genesis lists the same address.
        listen = \(quoted(p2p.listen))
        # Largest message to or from a peer; a bigger frame closes that connection.
        max_message_bytes = \(p2p.maxMessageBytes)
        # Per-peer send queue; when full, the oldest frames are dropped (and counted).
        outbound_queue_frames = \(p2p.outboundQueueFrames)
        max_dial_backoff_ms = \(p2p.maxDialBackoffMs)
        # Unauthenticated (handshaking) inbound connections per remote IP address (IPv6:
        # one /64, as for the API); one more evicts that address's oldest, and a full
        # table (64) evicts its oldest, so idle connections cannot keep a validator out.
        # Keep it above the number of validators sharing one address (a local testnet
        # puts them all on 127.0.0.1).
        max_pending_handshakes_per_address = \(p2p.maxPendingHandshakesPerAddress)
        # An inbound peer must send its first handshake frame within this time (the whole
        # handshake has 5 s).
        handshake_first_message_timeout_ms = \(p2p.handshakeFirstMessageTimeoutMs)
        # true: accept inbound peer connections only from the IP addresses of the genesis
        # validators' network addresses (non-validator full nodes then cannot connect).
        accept_only_validator_addresses = \(p2p.acceptOnlyValidatorAddresses)

        [mempool]
        # Bounds: a full mempool lets a transaction paying more per byte displace the
        # one paying least (that sender's highest nonce); otherwise it answers 503
        # mempool_full instead of growing.
        max_transactions = \(mempool.maxTransactions)
        max_bytes = \(mempool.maxBytes)
        # How far ahead of an account's next nonce a transaction may wait (a key holds
        # at most this + 1 pending transactions; further ones get 422 future_nonce).
        max_nonce_gap = \(mempool.maxNonceGap)
        max_per_sender = \(mempool.maxPerSender)
        # Seconds (of the consensus clock) a transaction may wait before it is evicted
        # with the sender's later nonces; GET /txs/{hash} then says "unknown".
        pending_lifetime_seconds = \(mempool.pendingLifetimeSeconds)

        [storage]
        # Block segments, consensus state and snapshots.
        data_dir = \(quoted(storage.dataDir))

        [log]
        # "text" or "json"
        format = \(quoted(log.format))
        level = \(quoted(log.level))

        """
    }

    private func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

// Every key is optional: a missing key keeps the default of `init()`. An unknown
// key is an error, so a misspelt setting is not silently ignored.

extension NodeConfig.API {
    public init(from decoder: any Decoder) throws {
        self.init()
        try rejectUnknownKeys(decoder, known: CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.decode(.listen, into: &listen)
        try c.decode(.maxBodyBytes, into: &maxBodyBytes)
        try c.decode(.maxBatchTransactions, into: &maxBatchTransactions)
        try c.decode(.maxEventSubscribers, into: &maxEventSubscribers)
        try c.decode(.maxConnections, into: &maxConnections)
        try c.decode(.maxConnectionsPerAddress, into: &maxConnectionsPerAddress)
        try c.decode(.idleTimeoutSeconds, into: &idleTimeoutSeconds)
        try c.decode(.headerTimeoutSeconds, into: &headerTimeoutSeconds)
        try c.decode(.bodyTimeoutSeconds, into: &bodyTimeoutSeconds)
        try c.decode(.writeTimeoutSeconds, into: &writeTimeoutSeconds)
        try c.decode(.maxEventSubscribersPerAddress, into: &maxEventSubscribersPerAddress)
        try c.decode(.submitRequestsPerSecond, into: &submitRequestsPerSecond)
        try c.decode(.submitBurst, into: &submitBurst)
        try c.decode(.queryRequestsPerSecond, into: &queryRequestsPerSecond)
        try c.decode(.queryBurst, into: &queryBurst)
        try c.decode(.maxConcurrentHistoryReads, into: &maxConcurrentHistoryReads)
        try c.decode(.threadNiceIncrement, into: &threadNiceIncrement)
    }
}

extension NodeConfig.P2P {
    public init(from decoder: any Decoder) throws {
        self.init()
        try rejectUnknownKeys(decoder, known: CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.decode(.listen, into: &listen)
        try c.decode(.maxMessageBytes, into: &maxMessageBytes)
        try c.decode(.outboundQueueFrames, into: &outboundQueueFrames)
        try c.decode(.maxDialBackoffMs, into: &maxDialBackoffMs)
        try c.decode(.maxPendingHandshakesPerAddress, into: &maxPendingHandshakesPerAddress)
        try c.decode(.handshakeFirstMessageTimeoutMs, into: &handshakeFirstMessageTimeoutMs)
        try c.decode(.acceptOnlyValidatorAddresses, into: &acceptOnlyValidatorAddresses)
    }
}

extension NodeConfig.Mempool {
    public init(from decoder: any Decoder) throws {
        self.init()
        try rejectUnknownKeys(decoder, known: CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.decode(.maxTransactions, into: &maxTransactions)
        try c.decode(.maxBytes, into: &maxBytes)
        try c.decode(.maxNonceGap, into: &maxNonceGap)
        try c.decode(.maxPerSender, into: &maxPerSender)
        try c.decode(.pendingLifetimeSeconds, into: &pendingLifetimeSeconds)
    }
}

extension NodeConfig.Storage {
    public init(from decoder: any Decoder) throws {
        self.init()
        try rejectUnknownKeys(decoder, known: CodingKeys.self)
        try decoder.container(keyedBy: CodingKeys.self).decode(.dataDir, into: &dataDir)
    }
}

extension NodeConfig.Log {
    public init(from decoder: any Decoder) throws {
        self.init()
        try rejectUnknownKeys(decoder, known: CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.decode(.format, into: &format)
        try c.decode(.level, into: &level)
    }
}

extension NodeConfig {
    public init(from decoder: any Decoder) throws {
        self.init()
        try rejectUnknownKeys(decoder, known: CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try c.decode(.keyFile, into: &keyFile)
        keyPasswordFile = try c.decodeIfPresent(String.self, forKey: .keyPasswordFile)
        try c.decode(.genesisFile, into: &genesisFile)
        try c.decode(.api, into: &api)
        try c.decode(.p2p, into: &p2p)
        try c.decode(.mempool, into: &mempool)
        try c.decode(.storage, into: &storage)
        try c.decode(.log, into: &log)
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

private func rejectUnknownKeys<Keys: CodingKey & CaseIterable>(_ decoder: any Decoder, known: Keys.Type) throws {
    let names = Set(Keys.allCases.map(\.stringValue))
    guard let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.first(where: { !names.contains($0.stringValue) }) else {
        return
    }
    let path = (decoder.codingPath.map(\.stringValue) + [unknown.stringValue]).joined(separator: ".")
    throw NodeConfig.Error.invalid("unknown key \"\(path)\"")
}

extension KeyedDecodingContainer {
    /// Replaces `value` with the key's value when the key is present.
    fileprivate func decode<Value: Decodable>(_ key: Key, into value: inout Value) throws {
        if let decoded = try decodeIfPresent(Value.self, forKey: key) { value = decoded }
    }
}

/// A parsed `host:port`.
public struct HostPort: Equatable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(_ text: String, field: String = "address") throws {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port), colon != text.startIndex
        else { throw NodeConfig.Error.invalid("\(field) '\(text)' is not host:port") }
        host = String(text[..<colon])
        self.port = port
    }

    public var description: String { "\(host):\(port)" }
}
