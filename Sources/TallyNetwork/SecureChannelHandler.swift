import NIOCore
import TallyCrypto

/// Fired inbound once the peer is authenticated; the connection handler registers it.
struct SecureChannelEstablished {
    let peerKey: PublicKey
    let role: ConnectionRole
}

/// The first plaintext byte of every frame after the handshake.
enum FrameKind: UInt8 {
    case keepalive = 0
    case message = 1
}

/// Errors this handler raises on what the peer sent.
enum SessionError: Error, Equatable {
    /// A frame failed to open: tampered, replayed, reordered or from someone else.
    case decryptFailed
    /// A frame too short to hold a frame kind and the authentication tag.
    case shortFrame
    /// A frame that decrypted to an unknown kind, or a keepalive with a body.
    case malformedFrame
    /// Nothing arrived within the idle timeout, not even a keepalive.
    case idleTimeout
    /// The peer did not finish the handshake in time.
    case handshakeTimeout
    /// An inbound peer did not send its first handshake frame in time.
    case firstMessageTimeout
    /// The peer closed the connection during the handshake.
    case closedDuringHandshake
}

/// Runs the handshake (`Handshake`, a pure state machine) and then seals outbound and
/// opens inbound frames. It only frames, decrypts and decodes: what the messages mean
/// is the node's business.
///
/// After the handshake every frame body is `seal(kind: u8 ‖ payload)`:
/// kind 1 = a message (payload: the node's bytes), kind 0 = a keepalive (no payload),
/// sent when we have written nothing for `keepaliveIntervalMs` (an `IdleStateHandler`
/// in front of us reports idleness). Any other kind closes the connection.
///
/// Inbound: frame bodies (`ByteBuffer`) → plaintext messages (`[UInt8]`).
/// Outbound: plaintext messages (`[UInt8]`) → frame bodies (`ByteBuffer`).
final class SecureChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = [UInt8]
    typealias OutboundIn = [UInt8]
    typealias OutboundOut = ByteBuffer

    private enum State {
        case handshaking(Handshake)
        case established(Session)
        case failed
    }

    private var state: State
    private let frameDecoder: FrameDecoder
    private let maxFrameBodyBytes: Int
    private let handshakeTimeout: TimeAmount
    private let firstMessageTimeout: TimeAmount?
    private var timeoutTask: Scheduled<Void>?
    private var firstMessageTask: Scheduled<Void>?
    private var sentHello = false

    /// `frameDecoder` is the decoder in front of this handler: its limit is raised from
    /// the handshake bound to `maxFrameBodyBytes` once the peer is authenticated.
    /// `firstMessageTimeout` (inbound connections): the peer's first frame must arrive by
    /// then, so a silent or trickling connection holds a pending-handshake slot briefly.
    init(
        handshake: Handshake, frameDecoder: FrameDecoder, maxFrameBodyBytes: Int, handshakeTimeout: TimeAmount,
        firstMessageTimeout: TimeAmount? = nil
    ) {
        state = .handshaking(handshake)
        self.frameDecoder = frameDecoder
        self.maxFrameBodyBytes = maxFrameBodyBytes
        self.handshakeTimeout = handshakeTimeout
        self.firstMessageTimeout = firstMessageTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        if case .handshaking = state { context.fireErrorCaught(SessionError.closedDuringHandshake) }
        context.fireChannelInactive()
    }

    private func start(context: ChannelHandlerContext) {
        guard !sentHello, case .handshaking(let handshake) = state else { return }
        sentHello = true
        writeFrame(handshake.hello, context: context)
        context.flush()
        let loopBoundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [self] in
            guard case .handshaking = state else { return }
            fail(SessionError.handshakeTimeout, context: loopBoundContext.value)
        }
        if let firstMessageTimeout {
            firstMessageTask = context.eventLoop.assumeIsolated().scheduleTask(in: firstMessageTimeout) { [self] in
                guard case .handshaking = state else { return }
                fail(SessionError.firstMessageTimeout, context: loopBoundContext.value)
            }
        }
    }

    private func cancelTimers() {
        timeoutTask?.cancel()
        firstMessageTask?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch state {
        case .handshaking(var handshake):
            firstMessageTask?.cancel()
            let step: Handshake.Step
            do {
                step = try handshake.receive(Array(frame.readableBytesView))
            } catch {
                if let reason = error.rejectionReason {
                    writeFrame(Rejection.encoded(reason), context: context)
                    context.flush()
                }
                fail(error, context: context)
                return
            }
            switch step {
            case .send(let frame):
                state = .handshaking(handshake)
                writeFrame(frame, context: context)
                context.flush()
            case .established(let session):
                cancelTimers()
                state = .established(session)
                frameDecoder.maxBodyBytes = maxFrameBodyBytes
                context.fireUserInboundEventTriggered(SecureChannelEstablished(peerKey: session.peerKey, role: handshake.role))
            }
        case .established(var session):
            guard frame.readableBytes >= NetworkLimits.frameOverheadBytes else {
                fail(SessionError.shortFrame, context: context)
                return
            }
            let opened = frame.withUnsafeReadableBytes { session.opener.open($0) }
            guard let plaintext = opened else {
                fail(SessionError.decryptFailed, context: context)
                return
            }
            state = .established(session)
            switch FrameKind(rawValue: plaintext[0]) {
            case .message:
                context.fireChannelRead(wrapInboundOut(Array(plaintext.dropFirst())))
            case .keepalive where plaintext.count == 1:
                return
            default:
                fail(SessionError.malformedFrame, context: context)
            }
        case .failed:
            // Frames already buffered when we failed; the channel is closing.
            return
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .established(var session) = state else {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        var plaintext = [UInt8]()
        plaintext.reserveCapacity(1 + unwrapOutboundIn(data).count)
        plaintext.append(FrameKind.message.rawValue)
        plaintext.append(contentsOf: unwrapOutboundIn(data))
        let sealed = session.sealer.seal(plaintext)
        state = .established(session)
        var buffer = context.channel.allocator.buffer(capacity: sealed.count)
        buffer.writeBytes(sealed)
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard let idle = event as? IdleStateHandler.IdleStateEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        // During the handshake its own timeout applies.
        guard case .established(var session) = state else { return }
        switch idle {
        case .write:
            let sealed = session.sealer.seal([FrameKind.keepalive.rawValue])
            state = .established(session)
            writeFrame(sealed, context: context)
            context.flush()
        case .read:
            fail(SessionError.idleTimeout, context: context)
        case .all:
            return
        }
    }

    private func writeFrame(_ bytes: [UInt8], context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// Reports the error to the connection handler (which counts and logs it) and closes.
    private func fail(_ error: Error, context: ChannelHandlerContext) {
        if case .failed = state { return }
        state = .failed
        cancelTimers()
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}
