// swift-tools-version:6.0
import PackageDescription

// Arrows point one way: executables → TallyNode → (Consensus, Store, Verify,
// Network, Ledger) → TallyTypes → TallyCrypto → (CSodium, COpenSSL).
let package = Package(
    name: "Tally",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "TallyCrypto", targets: ["TallyCrypto"]),
        .library(name: "TallyTypes", targets: ["TallyTypes"]),
        .library(name: "TallyLedger", targets: ["TallyLedger"]),
        .library(name: "TallyWallet", targets: ["TallyWallet"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "TallyCrypto", dependencies: ["CSodium", "COpenSSL"]),
        .target(name: "TallyTypes", dependencies: ["TallyCrypto"]),
        .target(name: "TallyLedger", dependencies: ["TallyTypes", "TallyCrypto"]),
        .executableTarget(
            name: "tally-ledger-bench",
            dependencies: [
                "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "TallyCryptoTests", dependencies: ["TallyCrypto"]),
        .testTarget(
            name: "TallyTypesTests",
            dependencies: ["TallyTypes", "TallyCrypto"],
            resources: [.copy("Golden")]
        ),
        .testTarget(name: "TallyLedgerTests", dependencies: ["TallyLedger", "TallyTypes", "TallyCrypto"]),
        // MARK: node
        .target(
            name: "TallyNode",
            dependencies: [
                "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TallyNodeTests",
            dependencies: [
                "TallyNode", "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
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
        .testTarget(
            name: "TallyWalletTests",
            dependencies: [
                "TallyWallet", "TallyNode", "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
    ]
)
