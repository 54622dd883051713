import NIOCore

/// First in a listening channel's pipeline (the peer port's and the HTTP API's): hands
/// each accept failure (out of descriptors, out of memory) to `count`, and stops
/// accepting for `pauseMs` before trying again. The listener survives; the shortage is
/// visible and costs one attempt a second.
///
/// Not NIO's `AcceptBackoffHandler` alone: it holds back the next `read`, but a listener
/// whose accept failed still has its read pending and stays registered for readability,
/// so the event loop calls `accept` again at once for as long as the shortage lasts
/// (measured: 28,000 failed accepts in 1.5 s). Turning `autoRead` off unregisters it;
/// turning it on again reads.
public final class AcceptErrorCounter: ChannelInboundHandler {
    public typealias InboundIn = Any

    public static let pauseMs: Int64 = 1_000

    /// Called once per failed accept; it counts and logs at a bounded rate.
    let count: @Sendable (IOError) -> Void
    private var paused = false

    public init(_ count: @escaping @Sendable (IOError) -> Void) { self.count = count }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? IOError {
            count(error)
            pause(context)
        }
        context.fireErrorCaught(error)
    }

    private func pause(_ context: ChannelHandlerContext) {
        guard !paused, let options = context.channel.syncOptions else { return }
        paused = true
        try? options.setOption(.autoRead, value: false)
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .milliseconds(Self.pauseMs)) {
            bound.value.handler.paused = false
            try? bound.value.context.channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }
}
