import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import TallyCrypto
import TallyNode
import TallyTypes

/// `tally-node start`'s options and what it does with them, shared with the
/// test-only `tally-byzantine` (which adds a misbehaviour).
public struct StartOptions: ParsableArguments {
    public init() {}

    @OptionGroup public var homeOption: HomeOption
    @Option(name: .long, help: "Override api.listen (host:port).") public var apiListen: String?
    @Option(name: .long, help: "Override api.max_body_bytes.") public var apiMaxBodyBytes: Int?
    @Option(name: .long, help: "Override p2p.listen (host:port).") public var p2pListen: String?
    @Option(name: .long, help: "Override p2p.max_message_bytes.") public var p2pMaxMessageBytes: Int?
    @Option(name: .long, help: "Override p2p.outbound_queue_frames.") public var p2pOutboundQueueFrames: Int?
    @Option(name: .long, help: "Override mempool.max_transactions.") public var mempoolMaxTransactions: Int?
    @Option(name: .long, help: "Override mempool.max_bytes.") public var mempoolMaxBytes: Int?
    @Option(name: .long, help: "Override storage.data_dir.") public var dataDir: String?
    @Option(name: .long, help: "Override key_file.") public var keyFile: String?
    @Option(name: .long, help: "Override key_password_file.") public var keyPasswordFile: String?
    @Option(name: .long, help: "Override genesis_file.") public var genesisFile: String?
    @Option(name: .long, help: "Override log.format: text or json.") public var logFormat: String?
    @Option(name: .long, help: "Override log.level.") public var logLevel: String?

    /// Loads the configuration, genesis and key, and runs the validator and its API
    /// until SIGTERM or SIGINT. `makeOutbound` (none for `tally-node`) builds what the
    /// node's outbound traffic goes through (`PeerOutbound`) from its key and genesis.
    public func run(makeOutbound: ((SigningKey, Genesis) -> any PeerOutbound)? = nil) async throws {
        let home = homeOption.resolved
        var config: NodeConfig
        do { config = try home.loadConfig() } catch { throw fail("\(error)") }
        apply(to: &config)
        do { try config.check() } catch { throw fail("\(error)") }
        bootstrapLogging(config.log)
        Telemetry.bootstrap()
        var logger = Logger(label: "tally.node")
        logger[metadataKey: "home"] = "\(home.path)"
        // The default soft limit (often 1,024) is a few hundred API connections.
        let descriptors = DescriptorLimit.raiseToHard()
        logger.info("open-file limit", metadata: [
            "soft_was": "\(descriptors.previousSoft)", "soft": "\(descriptors.soft)", "hard": "\(descriptors.hard)",
        ])

        let genesisPath = home.file(config.genesisFile)
        guard let genesisData = FileManager.default.contents(atPath: genesisPath) else { throw fail("cannot read \(genesisPath)") }
        let genesis: Genesis
        do { genesis = try Genesis(json: genesisData) } catch { throw fail("\(genesisPath): \(error)") }
        let key: SigningKey
        do {
            let file = try KeyFile.load(path: home.file(config.keyFile))
            var passphrase = try readNodePassphrase(file: config.keyPasswordFile.map(home.file), confirm: false)
            defer { KeyFile.zero(&passphrase) }
            key = try file.open(passphrase: passphrase)
        } catch let error as KeyFile.Error { throw fail("validator key: \(error)") }

        let node: Node
        do {
            node = try await Node(
                home: home, config: config, genesis: genesis, genesisJSON: genesisData, key: key, logger: logger,
                outbound: makeOutbound?(key, genesis))
        } catch { throw fail("cannot start: \(error)") }
        let api = HTTPAPI(
            node: node, maxBodyBytes: config.api.maxBodyBytes, maxBatchTransactions: config.api.maxBatchTransactions,
            limits: config.api.httpLimits, metricsText: Telemetry.prometheusText)
        let listen = try HostPort(config.api.listen, field: "api.listen")
        // The API's own threads, below consensus and the peer network in OS priority.
        let apiThreads = try await APIThreads.start(niceIncrement: config.api.threadNiceIncrement)
        logger.info("API threads", metadata: ["nice": "\(apiThreads.threadNiceValues)"])
        let app = api.application(host: listen.host, port: listen.port, logger: logger, eventLoopGroup: apiThreads.group)
        let group = ServiceGroup(
            configuration: .init(
                // Shut down last to first: event streams end, then the HTTP server
                // drains, then the node stops.
                services: [
                    .init(service: NodeRunner(node: node)), .init(service: OnAPIThreads(app, threads: apiThreads)),
                    .init(service: EventStreamCloser(node: node)),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do { try await group.run() } catch {
            logger.error("stopped with an error", metadata: ["error": "\(error)"])
            try? await apiThreads.shutdown()
            throw ExitCode(NodeExit.failure)
        }
        try? await apiThreads.shutdown()
        logger.info("stopped cleanly")
    }

    private func apply(to config: inout NodeConfig) {
        if let apiListen { config.api.listen = apiListen }
        if let apiMaxBodyBytes { config.api.maxBodyBytes = apiMaxBodyBytes }
        if let p2pListen { config.p2p.listen = p2pListen }
        if let p2pMaxMessageBytes { config.p2p.maxMessageBytes = p2pMaxMessageBytes }
        if let p2pOutboundQueueFrames { config.p2p.outboundQueueFrames = p2pOutboundQueueFrames }
        if let mempoolMaxTransactions { config.mempool.maxTransactions = mempoolMaxTransactions }
        if let mempoolMaxBytes { config.mempool.maxBytes = mempoolMaxBytes }
        if let dataDir { config.storage.dataDir = dataDir }
        if let keyFile { config.keyFile = keyFile }
        if let keyPasswordFile { config.keyPasswordFile = keyPasswordFile }
        if let genesisFile { config.genesisFile = genesisFile }
        if let logFormat { config.log.format = logFormat }
        if let logLevel { config.log.level = logLevel }
    }

    private func bootstrapLogging(_ log: NodeConfig.Log) {
        let level = Logger.Level(rawValue: log.level) ?? .info
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = log.format == "json" ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Ends the node's `/events` streams when shutdown begins, so the HTTP server's
/// drain does not wait on a stream that never ends.
struct EventStreamCloser: Service {
    let node: Node
    func run() async throws {
        try? await gracefulShutdown()
        await node.endEventStreams()
    }
}

/// The node as a swift-service-lifecycle service.
struct NodeRunner: Service {
    let node: Node
    func run() async throws { await node.run() }
}
