// swift-tools-version:6.0
import PackageDescription

// Arrows point one way: executables → TallyNode → (Application, Store, Network)
// → (Consensus, Verify, Ledger) → TallyTypes → TallyCrypto → (CSodium, COpenSSL);
// TallySimulation runs TallyApplication too. Test-support targets (`…Testing`) depend on
// the target they support; only tests and dev tools (simulator, Byzantine node, bench)
// depend on them, never a shipped product or its libraries.
let package = Package(
    name: "Tally",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "TallyCrypto", targets: ["TallyCrypto"]),
        .library(name: "TallyTypes", targets: ["TallyTypes"]),
        .library(name: "TallyLedger", targets: ["TallyLedger"]),
        .library(name: "TallyStore", targets: ["TallyStore"]),
        .library(name: "TallyVerify", targets: ["TallyVerify"]),
        .library(name: "TallyNetwork", targets: ["TallyNetwork"]),
        .library(name: "TallyConsensus", targets: ["TallyConsensus"]),
        .library(name: "TallyApplication", targets: ["TallyApplication"]),
        .library(name: "TallySimulation", targets: ["TallySimulation"]),
        .library(name: "TallyNode", targets: ["TallyNode"]),
        .library(name: "TallyWallet", targets: ["TallyWallet"]),
        .executable(name: "tally-sim", targets: ["tally-sim"]),
        .executable(name: "tally", targets: ["tally"]),
        .executable(name: "tally-node", targets: ["tally-node"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // MARK: C libraries
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // MARK: foundation
        .target(name: "TallyCrypto", dependencies: ["CSodium", "COpenSSL"]),
        .target(name: "TallyTypes", dependencies: ["TallyCrypto"]),
        .target(name: "TallyLedger", dependencies: ["TallyTypes", "TallyCrypto"]),

        // MARK: consensus (pure) and its simulator
        .target(name: "TallyConsensus", dependencies: ["TallyTypes", "TallyCrypto"]),
        // Carries out a replica's actions in order (persist, commit, send) over injected I/O,
        // and reads a replica's durable state back from its consensus journal at start.
        .target(name: "TallyDriver", dependencies: ["TallyConsensus", "TallyStore", "TallyTypes", "TallyCrypto"]),
        .target(
            name: "TallySimulation",
            dependencies: [
                "TallyApplication", "TallyApplicationTesting", "TallyConsensus", "TallyConsensusTesting", "TallyDriver", "TallyStore",
                "TallyStoreTesting", "TallyLogTesting", "TallyVerify", "TallyLedger", "TallyTypes", "TallyCrypto",
                "TallyNetwork", .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: store and verification
        .target(
            name: "TallyStore",
            dependencies: ["TallyTypes", "TallyCrypto", "TallyLedger", .product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "TallyVerify",
            dependencies: [
                "TallyTypes", "TallyCrypto", "TallyLedger", "TallyStore", .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // MARK: network
        .target(
            name: "TallyNetwork",
            dependencies: [
                "TallyTypes", "TallyCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),

        // MARK: the consensus application (ledger, mempool, admission): the node's and the simulator's
        .target(
            name: "TallyApplication", dependencies: ["TallyConsensus", "TallyVerify", "TallyLedger", "TallyTypes", "TallyCrypto"]),

        // MARK: node
        .target(
            name: "TallyNode",
            dependencies: [
                "TallyApplication", "TallyConsensus", "TallyDriver", "TallyLedger", "TallyTypes", "TallyCrypto", "TallyNetwork",
                "TallyStore", "TallyVerify",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ]
        ),

        // The `start` command's options and launcher, shared by `tally-node` and `tally-byzantine`.
        .target(
            name: "TallyNodeCLI",
            dependencies: [
                "TallyNode", "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),

        // MARK: test support: what tests and dev tools link, never a shipped product
        // (`tally-node`, `tally` and the libraries they link hold no test-only code).
        // Forged consensus messages (the simulator's Byzantine modes, `tally-byzantine`), and
        // the replica defences switched off one at a time (consensus tests, simulator).
        .target(name: "TallyConsensusTesting", dependencies: ["TallyConsensus", "TallyTypes", "TallyCrypto"]),
        // The mempool defences switched off one at a time (application tests, simulator).
        .target(name: "TallyApplicationTesting", dependencies: ["TallyApplication"]),
        // An in-memory file system that crashes at a chosen operation (store tests, simulator).
        .target(name: "TallyStoreTesting", dependencies: ["TallyStore"]),
        // A logger that records its lines (store, network and node tests check what is logged).
        .target(name: "TallyLogTesting", dependencies: [.product(name: "Logging", package: "swift-log")]),
        // Blocks and whole chains signed with known keys (verify and application tests,
        // `tally-bench generate-chain`).
        .target(name: "TallyVerifyTesting", dependencies: ["TallyVerify", "TallyStore", "TallyLedger", "TallyTypes", "TallyCrypto"]),

        // MARK: test-only process testbed (chaos, bench, end-to-end tests); not a release product
        .target(name: "CTallyTun"),
        .target(
            name: "TallyTestbed",
            dependencies: ["CTallyTun", "TallyNode", "TallyTypes", "TallyCrypto"]
        ),

        // MARK: wallet
        .target(
            name: "TallyWallet",
            dependencies: [
                "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),

        // MARK: executables
        .executableTarget(
            name: "tally",
            dependencies: [
                "TallyWallet", "TallyVerify", "TallyStore", "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "tally-node",
            dependencies: [
                "TallyNode", "TallyNodeCLI", "TallyVerify", "TallyStore", "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Test-only (not a release product): a validator with one named Byzantine
        // misbehaviour (`tally-byzantine start --misbehaviour NAME`), for the end-to-end tests.
        .executableTarget(
            name: "tally-byzantine",
            dependencies: [
                "TallyNodeCLI", "TallyNode", "TallyConsensus", "TallyConsensusTesting", "TallyNetwork", "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Test-only: a chaos run of real validator processes under a seeded fault schedule (not a release product).
        .executableTarget(
            name: "tally-chaos",
            dependencies: [
                "TallyTestbed", "TallyNode", "TallyVerify", "TallyStore", "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                // --faults hostile: the honest observer's /events stream.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "tally-sim",
            dependencies: ["TallySimulation", "TallyConsensus", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "tally-ledger-bench",
            dependencies: [
                "TallyLedger", "TallyTypes", "TallyCrypto", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // Benchmarks against the machine's own limits (BENCHMARKS.md, tools/bench); not tests.
        .executableTarget(
            name: "tally-bench",
            dependencies: [
                "TallyTestbed", "TallyNode", "TallyVerify", "TallyVerifyTesting", "TallyStore", "TallyLedger", "TallyTypes", "TallyCrypto",
                "CSodium", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
            ]
        ),

        // MARK: tests
        .testTarget(name: "TallyCryptoTests", dependencies: ["TallyCrypto"]),
        .testTarget(name: "TallyTypesTests", dependencies: ["TallyTypes", "TallyCrypto"], resources: [.copy("Golden")]),
        .testTarget(name: "TallyLedgerTests", dependencies: ["TallyLedger", "TallyTypes", "TallyCrypto"]),
        .testTarget(
            name: "TallyConsensusTests",
            dependencies: [
                "TallyApplication", "TallyConsensus", "TallyConsensusTesting", "TallyDriver", "TallySimulation", "TallyLedger", "TallyTypes",
                "TallyCrypto",
            ]
        ),
        .testTarget(
            name: "TallyApplicationTests",
            dependencies: [
                "TallyApplication", "TallyApplicationTesting", "TallyConsensus", "TallyVerify", "TallyVerifyTesting", "TallyLedger",
                "TallyTypes", "TallyCrypto",
            ]
        ),
        .testTarget(name: "TallyDriverTests", dependencies: ["TallyDriver", "TallyConsensus", "TallyTypes", "TallyCrypto"]),
        .testTarget(
            name: "TallySimulationTests",
            dependencies: ["TallyApplication", "TallySimulation", "TallyConsensus", "TallyLedger", "TallyTypes", "TallyCrypto"]
        ),
        .testTarget(
            name: "TallyStoreTests",
            dependencies: [
                "TallyStore", "TallyStoreTesting", "TallyLogTesting", "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "TallyVerifyTests",
            dependencies: ["TallyVerify", "TallyVerifyTesting", "TallyStore", "TallyStoreTesting", "TallyLedger", "TallyTypes", "TallyCrypto"]),
        .testTarget(
            name: "TallyNetworkTests",
            dependencies: [
                "TallyNetwork", "TallyLogTesting", "TallyTypes", "TallyCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                // TestMetrics: tests assert that refusals move their counters.
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "TallyNodeTests",
            dependencies: [
                "TallyNode", "TallyApplication", "TallyConsensus", "TallyVerify", "TallyStore", "TallyStoreTesting", "TallyLogTesting", "TallyLedger",
                "TallyTypes", "TallyCrypto", .product(name: "HummingbirdTesting", package: "hummingbird"),
                // TestMetrics: tests assert that refusals move their counters.
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "TallyWalletTests",
            dependencies: [
                "TallyWallet", "TallyNode", "TallyApplication", "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Real validator processes on 127.0.0.1 (`tally-node start`), driven over HTTP.
        .testTarget(
            name: "TallyEndToEndTests",
            dependencies: [
                "tally-node", "tally-byzantine", "tally", "TallyTestbed", "TallyNetwork", "TallyTypes", "TallyCrypto", .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "TallyChaosTests", dependencies: ["tally-chaos", "TallyTestbed"]),
        // The packet switch's policy logic (pure), and a root-only namespace round trip.
        .testTarget(name: "TallyTestbedTests", dependencies: ["TallyTestbed", "TallyCrypto"]),
        // Runs the built `tally` and `tally-node` binaries end to end (exit codes, --json);
        // chains to verify come from `tally-bench generate-chain`.
        .testTarget(name: "TallyCLITests", dependencies: ["tally", "tally-node", "tally-bench", "TallyVerify", "TallyStore", "TallyTypes"]),
    ]
)
