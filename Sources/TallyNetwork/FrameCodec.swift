import NIOCore

/// Wire framing: every frame is `length: u32 little-endian ‖ body`, where `length` counts
/// the body only. Little-endian like the rest of Tally's canonical encoding.
enum Frame {
    static let lengthFieldBytes = 4
    /// What one message costs on the wire beyond its own bytes: the length field, the
    /// frame-kind byte and the Poly1305 tag (the nonce is a counter, never sent).
    static let messageOverheadBytes = lengthFieldBytes + NetworkLimits.frameOverheadBytes

    /// Bytes a message of `messageBytes` puts on the wire (before TCP/IP headers).
    static func wireBytes(messageBytes: Int) -> Int { messageBytes + messageOverheadBytes }
}

/// Why a connection was closed by this side for what the peer sent.
enum FrameError: Error, Equatable {
    /// The declared body length is over the current limit; checked on the 4 length
    /// bytes, before any of the body is buffered.
    case oversize(length: Int, max: Int)
    /// A zero-length frame: no valid frame of ours is empty.
    case empty
}

/// Splits the byte stream into frame bodies. Unlike NIOExtras' length-field decoder it
/// rejects an oversize length as soon as the header arrives, so a peer announcing
/// 4 GiB is dropped at once instead of holding a growing buffer. `maxBodyBytes` starts
/// at the handshake bound and is raised by `SecureChannelHandler` once the peer is
/// authenticated (same event loop, so no synchronisation).
final class FrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = ByteBuffer

    var maxBodyBytes: Int

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self) else {
            return .needMoreData
        }
        let bodyLength = Int(length)
        guard bodyLength <= maxBodyBytes else { throw FrameError.oversize(length: bodyLength, max: maxBodyBytes) }
        guard bodyLength > 0 else { throw FrameError.empty }
        guard buffer.readableBytes >= Frame.lengthFieldBytes + bodyLength else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: Frame.lengthFieldBytes)
        context.fireChannelRead(wrapInboundOut(buffer.readSlice(length: bodyLength)!))
        return .continue
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A partial frame at end of stream is simply discarded with the connection.
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

/// Prefixes each outbound body with its length.
struct FrameEncoder: MessageToByteEncoder {
    typealias OutboundIn = ByteBuffer

    func encode(data: ByteBuffer, out: inout ByteBuffer) throws {
        precondition(data.readableBytes > 0 && data.readableBytes <= Int(UInt32.max), "frame body out of range")
        out.writeInteger(UInt32(data.readableBytes), endianness: .little)
        out.writeImmutableBuffer(data)
    }
}
