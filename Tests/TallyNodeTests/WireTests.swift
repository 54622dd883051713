import TallyConsensus
import TallyTypes
import XCTest

@testable import TallyNode

final class WireTests: XCTestCase {
    /// A sync response built from stored bytes is exactly the encoding of the decoded
    /// blocks, so a peer cannot tell which way it was built.
    func testSyncResponseFromStoredBytesEqualsTheEncodedMessage() throws {
        let blocks = (1...3).map { CommittedTransactionsTests.block(height: UInt64($0), transactions: $0) }
        let spliced = PeerMessage.syncResponse(storedBlocks: blocks.map(\.canonicalBytes))
        XCTAssertEqual(spliced, PeerMessage.consensus(.syncResponse(blocks)).bytes)
        XCTAssertEqual(PeerMessage.syncResponse(storedBlocks: []), PeerMessage.consensus(.syncResponse([])).bytes)
    }
}
