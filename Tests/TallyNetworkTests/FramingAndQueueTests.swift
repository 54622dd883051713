import NIOCore
import NIOEmbedded
import TallyCrypto
import TallyTypes
import XCTest

@testable import TallyNetwork

final class FramingAndQueueTests: XCTestCase {
    private func decoderChannel(max: Int) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxBodyBytes: max)))
        return channel
    }

    func testFramesSplitAcrossReadsAndBatchedInOneReadAreReassembled() throws {
        let channel = try decoderChannel(max: 100)
        var bytes = ByteBuffer()
        try FrameEncoder().encode(data: ByteBuffer(bytes: [1, 2, 3]), out: &bytes)
        try FrameEncoder().encode(data: ByteBuffer(bytes: [4]), out: &bytes)
        XCTAssertEqual(Array(bytes.readableBytesView), [3, 0, 0, 0, 1, 2, 3, 1, 0, 0, 0, 4])
        try channel.writeInbound(bytes.readSlice(length: 2)!)
        XCTAssertNil(try channel.readInbound(as: ByteBuffer.self))
        try channel.writeInbound(bytes.readSlice(length: 5)!)
        try channel.writeInbound(bytes)
        XCTAssertEqual(try channel.readInbound(as: ByteBuffer.self), ByteBuffer(bytes: [1, 2, 3]))
        XCTAssertEqual(try channel.readInbound(as: ByteBuffer.self), ByteBuffer(bytes: [4]))
        XCTAssertNil(try channel.readInbound(as: ByteBuffer.self))
    }

    /// The limit is enforced on the 4 header bytes, before any body is buffered.
    func testOversizeLengthIsRejectedOnTheHeaderAlone() throws {
        let channel = try decoderChannel(max: 100)
        XCTAssertThrowsError(try channel.writeInbound(ByteBuffer(bytes: [101, 0, 0, 0]))) {
            XCTAssertEqual($0 as? FrameError, .oversize(length: 101, max: 100))
        }
        let exact = try decoderChannel(max: 100)
        XCTAssertNoThrow(try exact.writeInbound(ByteBuffer(bytes: [100, 0, 0, 0])))
        XCTAssertThrowsError(try decoderChannel(max: 100).writeInbound(ByteBuffer(bytes: [0, 0, 0, 0]))) {
            XCTAssertEqual($0 as? FrameError, .empty)
        }
    }

    func testOutboundQueueDropsOldestWhenCountOrBytesAreFull() {
        var queue = OutboundQueue(maxMessages: 3, maxBytes: 10)
        XCTAssertEqual(queue.push([1]), 0)
        XCTAssertEqual(queue.push([2]), 0)
        XCTAssertEqual(queue.push([3]), 0)
        XCTAssertEqual(queue.push([4]), 1, "count bound: oldest out")
        XCTAssertEqual(queue.pop(), [2])
        XCTAssertEqual(queue.push([UInt8](repeating: 5, count: 8)), 0, "[3] [4] + 8 bytes = 10 fits")
        XCTAssertEqual(queue.byteCount, 10)
        XCTAssertEqual(queue.push([6]), 1, "byte bound: [3] out")
        XCTAssertEqual(queue.byteCount, 10)
        XCTAssertEqual(queue.pop(), [4])
        XCTAssertEqual(queue.pop()?.count, 8)
        XCTAssertEqual(queue.push([UInt8](repeating: 7, count: 10)), 1, "a message filling the queue evicts the rest")
        XCTAssertEqual(queue.pop()?.count, 10)
        XCTAssertNil(queue.pop())
        XCTAssertEqual(queue.byteCount, 0)
    }

    func testPeerAddressParsing() {
        XCTAssertEqual(PeerAddress(parsing: "127.0.0.1:26656"), PeerAddress(host: "127.0.0.1", port: 26656))
        XCTAssertEqual(PeerAddress(parsing: "[::1]:80"), PeerAddress(host: "::1", port: 80))
        XCTAssertEqual(PeerAddress(parsing: "node-3.example:9"), PeerAddress(host: "node-3.example", port: 9))
        XCTAssertNil(PeerAddress(parsing: "127.0.0.1"))
        XCTAssertNil(PeerAddress(parsing: ":80"))
        XCTAssertNil(PeerAddress(parsing: "host:0"))
        XCTAssertNil(PeerAddress(parsing: "host:65536"))
    }

    func testLimitsAreCheckedAtStart() {
        XCTAssertNoThrow(try NetworkLimits.default.check())
        XCTAssertGreaterThanOrEqual(NetworkLimits.default.maxMessageBytes, 20_000 * 512, "a full block fits")
        var limits = NetworkLimits.default
        limits.maxMessageBytes = NetworkLimits.maxFrameBytes
        XCTAssertThrowsError(try limits.check())
        limits = .default
        limits.maxOutboundQueueBytes = limits.maxMessageBytes - 1
        XCTAssertThrowsError(try limits.check())
    }

    func testBackoffDoublesUpToTheCap() {
        var delay: Int64 = 20
        var delays: [Int64] = []
        for _ in 0..<6 {
            delays.append(delay)
            delay = NetworkCore.nextBackoff(after: delay, max: 200)
        }
        XCTAssertEqual(delays, [20, 40, 80, 160, 200, 200])
    }

    /// Back-off jitter stays within 50–100 % and is reproducible from the injected seed.
    func testJitterIsBoundedAndSeeded() {
        var first: any RandomNumberGenerator & Sendable = SplitMix64(seed: 42)
        var second: any RandomNumberGenerator & Sendable = SplitMix64(seed: 42)
        for _ in 0..<100 {
            let delay = NetworkCore.jittered(1000, random: &first)
            XCTAssertTrue((500...1000).contains(delay))
            XCTAssertEqual(delay, NetworkCore.jittered(1000, random: &second))
        }
    }
}

final class ConfigurationTests: XCTestCase {
    func testConfigurationFromGenesisTakesKeysAddressesAndChain() throws {
        let validators = (0..<4).map {
            Validator(name: "v\($0)", publicKey: validatorKey($0).publicKey, networkAddress: "10.0.0.\($0 + 1):2665\($0)")
        }
        let genesis = try Genesis(chainID: "tally-devnet", genesisTimeMs: 0, validators: validators, accounts: [])
        let configuration = try NetworkConfiguration(
            genesis: genesis, identity: validatorKey(2), listenHost: "0.0.0.0", listenPort: 26652)
        XCTAssertEqual(configuration.chainID, "tally-devnet")
        XCTAssertEqual(configuration.validators, validators.map(\.publicKey))
        XCTAssertEqual(configuration.validatorAddresses[1], PeerAddress(host: "10.0.0.2", port: 26651))
        XCTAssertEqual(configuration.ownIndex, 2)
        XCTAssertNoThrow(try configuration.check())

        var broken = validators
        broken[3].networkAddress = "no-port"
        let bad = try Genesis(chainID: "tally-devnet", genesisTimeMs: 0, validators: broken, accounts: [])
        XCTAssertThrowsError(try NetworkConfiguration(genesis: bad, identity: validatorKey(0), listenHost: "0.0.0.0", listenPort: 1))
    }
}
