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
        .library(name: "TallyConsensus", targets: ["TallyConsensus"]),
        .library(name: "TallySimulation", targets: ["TallySimulation"]),
        .executable(name: "tally-sim", targets: ["tally-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
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
        .target(name: "TallyConsensus", dependencies: ["TallyTypes", "TallyCrypto"]),
        .target(name: "TallySimulation", dependencies: ["TallyConsensus", "TallyLedger", "TallyTypes", "TallyCrypto"]),
        .executableTarget(
            name: "tally-sim",
            dependencies: [
                "TallySimulation", "TallyConsensus",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
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
        .testTarget(
            name: "TallyConsensusTests",
            dependencies: ["TallyConsensus", "TallySimulation", "TallyLedger", "TallyTypes", "TallyCrypto"]),
        .testTarget(
            name: "TallySimulationTests",
            dependencies: ["TallySimulation", "TallyConsensus", "TallyLedger", "TallyTypes", "TallyCrypto"]),
        // MARK: node
        .target(
            name: "TallyNode",
            dependencies: ["TallyLedger", "TallyTypes", "TallyCrypto"]
        ),
        .testTarget(name: "TallyNodeTests", dependencies: ["TallyNode", "TallyLedger", "TallyTypes", "TallyCrypto"]),
    ]
)
