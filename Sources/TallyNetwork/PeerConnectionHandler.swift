import Logging
import NIOCore
import TallyCrypto

/// Sent by `NetworkCore` to a connection that lost deduplication to a newer one.
struct RetireConnection {}

/// The last handler of a peer connection: hands authenticated messages and connection
/// events to `NetworkCore`, and closes the connection (with its counted reason) on any
/// error raised by the handlers before it.
///
/// A connection that loses deduplication is retired, not cut: we half-close our output
/// (NIO flushes what is pending first) and keep delivering what the peer still sends until
/// it closes too, so messages either side wrote before it learned of the winner arrive.
/// Channels run with `allowRemoteHalfClosure`, so the peer's half-close reaches us as an
/// event and we finish the close.
final class PeerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = [UInt8]

    /// How long a retired connection may stay half-open before we close it outright.
    static let retiredLingerMs: Int64 = 2_000

    private let core: NetworkCore
    private let connectionID: UInt64
    private var peerKey: PublicKey?
    private var closeReason: CloseReason?
    private var failed = false
    private var retired = false

    init(core: NetworkCore, connectionID: UInt64) {
        self.core = core
        self.connectionID = connectionID
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let established as SecureChannelEstablished:
            peerKey = established.peerKey
            if !core.established(id: connectionID, channel: context.channel, key: established.peerKey, role: established.role) {
                retire(context: context)
            }
        case is RetireConnection:
            retire(context: context)
        case ChannelEvent.inputClosed:
            context.close(promise: nil)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func retire(context: ChannelHandlerContext) {
        guard !retired else { return }
        retired = true
        closeReason = closeReason ?? .duplicateConnection
        context.close(mode: .output, promise: nil)
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(Self.retiredLingerMs)) {
            loopBoundContext.value.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let peerKey, !failed else { return }
        core.received(unwrapInboundIn(data), from: peerKey)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let peerKey, !retired { core.drain(key: peerKey, connectionID: connectionID) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard !failed else { return }
        failed = true
        // A reason the core decided (eviction, shutdown) names the close better than the
        // error it caused (e.g. closed during handshake).
        let reason = closeReason ?? core.closingReason(of: connectionID) ?? CloseReason(error)
        closeReason = reason
        let metadata: Logger.Metadata = [
            "remote": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")",
            "peer": "\(peerKey.map(\.hex) ?? "unauthenticated")", "error": "\(error)"]
        core.boundedLog.log(reason.isPeerFault ? .warning : .info, "closing peer connection", reason: reason.rawValue,
                            metadata: metadata)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        core.closed(id: connectionID, key: peerKey, reason: closeReason ?? .peerClosed)
        context.fireChannelInactive()
    }
}
