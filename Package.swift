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
        .library(name: "TallyStore", targets: ["TallyStore"]),
        .library(name: "TallyVerify", targets: ["TallyVerify"]),
        .executable(name: "tally", targets: ["tally"]),
        .executable(name: "tally-node", targets: ["tally-node"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
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
        .target(
            name: "TallyStore",
            dependencies: [
                "TallyTypes", "TallyCrypto", "TallyLedger",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TallyVerify",
            dependencies: [
                "TallyTypes", "TallyCrypto", "TallyLedger", "TallyStore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "tally",
            dependencies: [
                "TallyVerify", "TallyStore", "TallyTypes", "TallyCrypto",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "tally-node",
            dependencies: [
                "TallyVerify", "TallyStore", "TallyLedger", "TallyTypes", "TallyCrypto",
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
            name: "TallyStoreTests",
            dependencies: [
                "TallyStore", "TallyLedger", "TallyTypes", "TallyCrypto",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "TallyVerifyTests",
            dependencies: ["TallyVerify", "TallyStore", "TallyLedger", "TallyTypes", "TallyCrypto"]
        ),
        // Runs the built `tally` and `tally-node` binaries end to end (exit codes, --json).
        .testTarget(name: "TallyCLITests", dependencies: ["tally", "tally-node", "TallyVerify", "TallyStore", "TallyTypes"]),
    ]
)
