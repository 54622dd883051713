import Logging
import NIOCore
import TallyCrypto

/// The last handler of a peer connection: hands authenticated messages and connection
/// events to `NetworkCore`, and closes the connection (with its counted reason) on any
/// error raised by the handlers before it.
final class PeerConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = [UInt8]

    private let core: NetworkCore
    private let connectionID: UInt64
    private var pendingHandshake: Bool
    private var peerKey: PublicKey?
    private var closeReason: CloseReason?

    init(core: NetworkCore, connectionID: UInt64, pendingHandshake: Bool) {
        self.core = core
        self.connectionID = connectionID
        self.pendingHandshake = pendingHandshake
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let established = event as? SecureChannelEstablished else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let wasPending = pendingHandshake
        pendingHandshake = false
        peerKey = established.peerKey
        if !core.established(
            id: connectionID, channel: context.channel, key: established.peerKey, role: established.role, pending: wasPending)
        {
            closeReason = closeReason ?? .duplicateConnection
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let peerKey, closeReason == nil else { return }
        core.received(unwrapInboundIn(data), from: peerKey)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let peerKey { core.drain(key: peerKey, connectionID: connectionID) }
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        guard closeReason == nil else { return }
        let reason = CloseReason(error)
        closeReason = reason
        let metadata: Logger.Metadata = [
            "remote": "\(context.channel.remoteAddress.map { "\($0)" } ?? "?")",
            "peer": "\(peerKey.map(\.hex) ?? "unauthenticated")", "reason": "\(reason.rawValue)", "error": "\(error)"]
        if reason.isPeerFault {
            core.logger.warning("closing peer connection", metadata: metadata)
        } else {
            core.logger.info("closing peer connection", metadata: metadata)
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        core.closed(id: connectionID, key: peerKey, reason: closeReason ?? .peerClosed, pendingHandshake: pendingHandshake)
        pendingHandshake = false
        context.fireChannelInactive()
    }
}
