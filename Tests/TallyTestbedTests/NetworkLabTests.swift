import Foundation
import XCTest

@testable import TallyTestbed

/// Two namespaces joined by the real switch. They need root, /dev/net/tun, iproute2
/// and the right to make network namespaces; where the machine has not, they are
/// skipped with the reason (tools/test prints the skipped count), and with
/// TALLY_REQUIRE_NETWORK_LAB=1 they fail instead.
final class NetworkLabTests: XCTestCase {
    func requireLab() throws {
        guard let reason = NetworkLab.unavailableReason() else { return }
        if ProcessInfo.processInfo.environment["TALLY_REQUIRE_NETWORK_LAB"] == "1" {
            XCTFail("network lab unavailable: \(reason)")
        }
        throw XCTSkip("network lab unavailable: \(reason)")
    }

    func testTCPRoundTripThroughTheSwitchAndAPartitionBlocksIt() throws {
        try requireLab()
        let lab = try NetworkLab(validators: 2, seed: 7)
        defer { lab.stop() }
        let port: UInt16 = 7_001
        let listener = try lab.socket(validator: 0, type: LabSockets.stream)
        defer { close(listener) }
        try LabSockets.bind(listener, lab.address(validator: 0), port)
        try LabSockets.listen(listener)

        let client = try lab.socket(validator: 1, type: LabSockets.stream)
        defer { close(client) }
        LabSockets.setTimeouts(client, seconds: 5)
        try LabSockets.connect(client, lab.address(validator: 0), port)
        let server = try LabSockets.accept(listener)
        defer { close(server) }
        LabSockets.setTimeouts(server, seconds: 5)

        // Round trip, with 10 ms each way on the validator links.
        lab.setValidatorLinks { _, _ in LinkPolicy(delayMicroseconds: 10_000) }
        let started = Date()
        try LabSockets.send(client, Array("ping".utf8))
        XCTAssertEqual(try LabSockets.receive(server, count: 4), Array("ping".utf8))
        try LabSockets.send(server, Array("pong".utf8))
        XCTAssertEqual(try LabSockets.receive(client, count: 4), Array("pong".utf8))
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.020, "the 10 ms one-way delay must show in the round trip")

        // Partition: nothing gets through, and the switch counts the blocked packets.
        lab.split([[0], [1]])
        let blockedBefore = lab.statistics.drops[.blocked] ?? 0
        LabSockets.setTimeouts(server, seconds: 1)
        try LabSockets.send(client, Array("lost".utf8))
        XCTAssertThrowsError(try LabSockets.receive(server, count: 4), "a partition must block the data")
        XCTAssertGreaterThan(lab.statistics.drops[.blocked] ?? 0, blockedBefore)
        let newClient = try lab.socket(validator: 1, type: LabSockets.stream)
        defer { close(newClient) }
        LabSockets.setTimeouts(newClient, seconds: 1)
        XCTAssertThrowsError(try LabSockets.connect(newClient, lab.address(validator: 0), port), "a partition must block a new connection")

        // Heal: TCP retransmits and the data arrives.
        lab.healAll()
        LabSockets.setTimeouts(server, seconds: 10)
        XCTAssertEqual(try LabSockets.receive(server, count: 4), Array("lost".utf8))
    }

    /// A namespace left by a lab whose process died is deleted by the next lab; the
    /// lab's own namespaces are gone after `stop()`.
    func testStaleNamespacesAreRemovedAndStopCleansUp() throws {
        try requireLab()
        let finished = try runProcess(URL(fileURLWithPath: "/bin/sh"), ["-c", "echo $$"])
        let deadPid = try XCTUnwrap(Int32(finished.output.trimmingCharacters(in: .whitespacesAndNewlines)))
        let stale = "\(NetworkLab.namespacePrefix)\(deadPid)-v0"
        XCTAssertEqual(try runProcess(URL(fileURLWithPath: NetworkLab.ipPath!), ["netns", "add", stale]).status, 0)
        let lab = try NetworkLab(validators: 1, seed: 1)
        let names = { try runProcess(URL(fileURLWithPath: NetworkLab.ipPath!), ["netns", "list"]).output }
        XCTAssertFalse(try names().contains(stale), "the stale namespace must be gone")
        XCTAssertTrue(try names().contains(lab.namespace(validator: 0)))
        lab.stop()
        XCTAssertFalse(try names().contains(lab.namespace(validator: 0)), "stop() must delete the lab's namespaces")
    }
}
