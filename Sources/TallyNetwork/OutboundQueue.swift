import NIOCore

/// A peer's bounded queue of messages waiting for the socket. Bounded by count and by
/// bytes; when a new message does not fit, the OLDEST messages are dropped to make room
/// (see `NetworkLimits.maxOutboundQueueMessages` for why oldest).
struct OutboundQueue {
    let maxMessages: Int
    let maxBytes: Int
    private var messages = CircularBuffer<[UInt8]>()
    private(set) var byteCount = 0

    init(maxMessages: Int, maxBytes: Int) {
        precondition(maxMessages >= 1 && maxBytes >= 1)
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
    }

    var count: Int { messages.count }
    var isEmpty: Bool { messages.isEmpty }

    /// Appends `message`; returns how many older messages were dropped for it.
    mutating func push(_ message: [UInt8]) -> Int {
        precondition(message.count <= maxBytes, "message larger than the whole queue; checked by the caller")
        var dropped = 0
        while messages.count >= maxMessages || byteCount + message.count > maxBytes {
            byteCount -= messages.removeFirst().count
            dropped += 1
        }
        messages.append(message)
        byteCount += message.count
        return dropped
    }

    mutating func pop() -> [UInt8]? {
        guard let message = messages.popFirst() else { return nil }
        byteCount -= message.count
        return message
    }

    mutating func removeAll() {
        messages.removeAll()
        byteCount = 0
    }
}
