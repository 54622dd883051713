import Foundation
import TallyCrypto
import TallyTypes
import XCTest

/// The block explorer (GET /explorer) in a real browser: headless Chromium (Debian's
/// `chromium`, installed by tools/test) against a real 4-validator network. The page
/// checks the transfer's inclusion proof and its block's commit certificate itself
/// (WebCrypto SHA-256 and Ed25519, against the genesis validators it pinned); the test
/// reads the result from the DOM Chromium dumps, and saves a screenshot under
/// .build/test-artifacts/.
final class ExplorerBrowserTests: XCTestCase, @unchecked Sendable {
    /// Virtual time the page gets to load, fetch and check (headless Chromium runs the
    /// page until its tasks are idle or this much virtual time has passed).
    static let virtualTimeBudgetMs = 20_000
    /// Wall-clock bound on one Chromium run.
    static let chromiumTimeoutSeconds: Double = 90

    static var artifacts: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent(".build/test-artifacts")
    }

    func testTransactionPageShowsTheTransferCommittedWithProofAndCertificateChecked() async throws {
        let chromium = try Self.runnableChromium()
        let network = try LocalNetwork()
        defer { network.stop() }
        try await network.startAllConnected()
        let recipient = Address(publicKey: SigningKey(seed: SHA256.hash(Array("explorer-recipient".utf8)).bytes)!.publicKey)
        // A batch, so the block likely holds several and the proof has a path to check.
        let transfers = (0..<6).map {
            Transaction.signed(
                by: network.faucet, chainID: network.genesis.chainID, genesisHash: network.genesis.hash, to: recipient,
                amount: 42_000_000, fee: 1, nonce: UInt64($0))
        }
        let results = try await network.submitBatch(0, transfers)["results"] as? [[String: Any]] ?? []
        XCTAssertEqual(results.count, 6)
        XCTAssertTrue(results.allSatisfy { $0["error"] == nil }, "\(results)")
        try await network.waitForFaucetNonce(6, on: [1])
        // The transfer furthest into its block.
        var transfer = transfers[0]
        var furthest = -1
        for candidate in transfers {
            let status = try await network.json(1, "txs/\(candidate.hash.hex)")
            XCTAssertEqual(status["status"] as? String, "committed")
            if let index = status["index"] as? Int, index > furthest { (transfer, furthest) = (candidate, index) }
        }
        print("explorer: checking transaction \(transfer.hash.hex) at index \(furthest) of its block")
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("tally-chromium-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: profile) }
        // Node 1 serves the page: it pins node 1's genesis on this first load.
        let page = network.api(1).absoluteString + "/explorer#/tx/\(transfer.hash.hex)"

        let dom = try Self.chromium(chromium, profile: profile, ["--dump-dom", page])
        XCTAssertTrue(dom.contains(#"<span id="tx-status" class="status-committed">committed</span>"#), Self.excerpt(dom))
        XCTAssertTrue(dom.contains(#"id="proof-check" class="check" data-status="ok">proof checked</span>"#), Self.excerpt(dom))
        let certificate = try XCTUnwrap(
            dom.range(of: #"id="certificate-check" class="check" data-status="ok">certificate checked \([34] of 4 signers\)</span>"#,
                      options: .regularExpression), Self.excerpt(dom))
        print("explorer: \(dom[certificate])")
        XCTAssertTrue(dom.contains(transfer.hash.hex))
        XCTAssertTrue(dom.contains(recipient.bech32m), "the page shows the recipient")
        XCTAssertFalse(dom.contains("check failed"), Self.excerpt(dom))

        // The transfer's block: its certificate checked, its signers by name.
        let transferStatus = try await network.json(1, "txs/\(transfer.hash.hex)")
        let height = try XCTUnwrap(transferStatus["height"] as? String)
        let block = try Self.chromium(chromium, profile: profile, ["--dump-dom", network.api(1).absoluteString + "/explorer#/block/\(height)"])
        XCTAssertNotNil(block.range(of: #"data-status="ok">certificate checked \([34] of 4 signers\)"#, options: .regularExpression),
                        Self.excerpt(block))
        XCTAssertNotNil(block.range(of: #"<span id="signers">validator[0-3], validator[0-3], validator[0-3]"#, options: .regularExpression),
                        Self.excerpt(block))
        for sent in transfers {
            let status = try await network.json(1, "txs/\(sent.hash.hex)")
            if status["height"] as? String == height { XCTAssertTrue(block.contains("#/tx/\(sent.hash.hex)"), Self.excerpt(block)) }
        }

        // Search (through the URL, as the search box does): a block hash, a height, an address.
        let blockHash = try XCTUnwrap(transferStatus["block_hash"] as? String)
        for (query, expected) in [(blockHash, "<h1>Block \(height)</h1>"), (height, "<h1>Block \(height)</h1>"),
                                  (recipient.bech32m, #"<span class="mono" id="account-address">\#(recipient.bech32m)</span>"#),
                                  ("nonsense", "<h1>Not found</h1>")] {
            let found = try Self.chromium(chromium, profile: profile, ["--dump-dom", network.api(1).absoluteString + "/explorer#/search/\(query)"])
            XCTAssertTrue(found.contains(expected), "search \(query): \(Self.excerpt(found))")
        }

        // The recipient's account page lists the transfers from /accounts/{address}/txs.
        let account = try Self.chromium(
            chromium, profile: profile, ["--dump-dom", network.api(1).absoluteString + "/explorer#/account/\(recipient.bech32m)"])
        XCTAssertTrue(account.contains(#"<span id="balance">252.000000</span> TALLY"#), Self.excerpt(account))
        for sent in transfers { XCTAssertTrue(account.contains("#/tx/\(sent.hash.hex)"), Self.excerpt(account)) }
        XCTAssertTrue(account.contains("all transactions listed"), Self.excerpt(account))

        // The home page, following two blocks live over /events (`follow=2`: the stream
        // then closes, so Chromium's virtual time, paused while a fetch is open, runs out),
        // while transfers keep committing.
        let feeder = Task {
            var nonce: UInt64 = 6
            while !Task.isCancelled {
                let next = Transaction.signed(
                    by: network.faucet, chainID: network.genesis.chainID, genesisHash: network.genesis.hash, to: recipient,
                    amount: 1, fee: 1, nonce: nonce)
                if (try? await network.submitOne(0, next))?.status == 202 { nonce += 1 }
                try? await Task.sleep(for: .milliseconds(700))
            }
        }
        defer { feeder.cancel() }
        let home = try Self.chromium(chromium, profile: profile, ["--dump-dom", network.api(1).absoluteString + "/#/?follow=2"])
        feeder.cancel()
        XCTAssertTrue(home.contains(#"<table id="latest-blocks">"#), Self.excerpt(home))
        XCTAssertTrue(home.contains("href=\"#/block/1\""), Self.excerpt(home))
        XCTAssertTrue(home.contains("followed 2 blocks live"), Self.excerpt(home))
        XCTAssertEqual(home.components(separatedBy: "<td>just now</td>").count - 1, 2, Self.excerpt(home))
        XCTAssertTrue(home.contains("validator3"), Self.excerpt(home))

        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let screenshot = Self.artifacts.appendingPathComponent("explorer-transaction.png")
        try? FileManager.default.removeItem(at: screenshot)
        _ = try Self.chromium(chromium, profile: profile, ["--window-size=1280,900", "--screenshot=\(screenshot.path)", page])
        XCTAssertTrue(FileManager.default.fileExists(atPath: screenshot.path), "no screenshot written")
        print("explorer: screenshot of the transaction page at \(screenshot.path)")
    }

    // MARK: Chromium

    /// Chromium, when it is installed and can start here; else the test is skipped with why.
    static func runnableChromium() throws -> URL {
        guard let chromium = ["chromium", "chromium-browser", "google-chrome"].lazy.compactMap(OpenAPIConformanceTests.executable).first
        else { throw XCTSkip("Chromium is not installed (Debian: apt-get install chromium; tools/test installs it)") }
        let profile = FileManager.default.temporaryDirectory.appendingPathComponent("tally-chromium-probe-\(getpid())")
        defer { try? FileManager.default.removeItem(at: profile) }
        let dom: String
        do { dom = try Self.chromium(chromium, profile: profile, ["--dump-dom", "data:text/html,<p>tally-probe</p>"]) } catch {
            throw XCTSkip("Chromium cannot run here: \(error)")
        }
        guard dom.contains("tally-probe") else { throw XCTSkip("Chromium cannot run here: it printed \(dom.suffix(2_000))") }
        return chromium
    }

    /// Runs headless Chromium with `arguments` (its own profile directory, so the page's
    /// pinned genesis is this test's); returns its standard output. Killed after
    /// `chromiumTimeoutSeconds`.
    static func chromium(_ executable: URL, profile: URL, _ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = executable
        process.arguments = [
            "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-dev-shm-usage",
            "--user-data-dir=\(profile.path)", "--virtual-time-budget=\(virtualTimeBudgetMs)",
        ] + arguments
        let output = Pipe(), errors = Pipe()
        process.standardOutput = output
        process.standardError = errors
        try process.run()
        let timer = DispatchSource.makeTimerSource()
        let timedOut = LockedText()
        timer.schedule(deadline: .now() + chromiumTimeoutSeconds)
        timer.setEventHandler {
            guard process.isRunning else { return }
            timedOut.set("yes")
            process.terminate()
        }
        timer.resume()
        // Standard error is drained on its own thread: Chromium logs a lot there.
        let errorText = LockedText()
        let drain = Thread { errorText.set(String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)) }
        drain.start()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        timer.cancel()
        guard process.terminationReason == .exit, timedOut.get(waiting: false).isEmpty else {
            throw TestError("chromium did not finish within \(chromiumTimeoutSeconds) s")
        }
        guard process.terminationStatus == 0 else {
            throw TestError("chromium exited with \(process.terminationStatus): \(errorText.get().suffix(2_000))")
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func excerpt(_ dom: String) -> String {
        guard let main = dom.range(of: "<main") else { return String(dom.prefix(4_000)) }
        return String(dom[main.lowerBound...].prefix(4_000))
    }
}

final class LockedText: @unchecked Sendable {
    private let lock = NSLock()
    private var text = ""
    func set(_ value: String) { lock.withLock { text = value } }
    func get(waiting: Bool = true) -> String {
        // The drain thread may still be reading after the process exited.
        for _ in 0..<(waiting ? 50 : 0) where lock.withLock({ text.isEmpty }) { usleep(10_000) }
        return lock.withLock { text }
    }
}
