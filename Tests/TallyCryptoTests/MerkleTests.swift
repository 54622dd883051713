import TallyCrypto
import XCTest

final class MerkleTests: XCTestCase {
    /// RFC 6962 §2.1's recursive definition, written literally, as the reference.
    private func referenceRoot(_ items: ArraySlice<Hash>) -> Hash {
        if items.isEmpty { return SHA256.hash([UInt8]()) }
        if items.count == 1 { return SHA256.hash([0x00] + items.first!.bytes) }
        var split = 1
        while split * 2 < items.count { split *= 2 }
        let left = referenceRoot(items.prefix(split))
        let right = referenceRoot(items.dropFirst(split))
        return SHA256.hash([0x01] + left.bytes + right.bytes)
    }

    private func items(_ count: Int) -> [Hash] {
        (0..<count).map { SHA256.hash([UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)]) }
    }

    func testRootMatchesRFC6962DefinitionForEverySizeUpTo70() {
        for count in 0...70 {
            let list = items(count)
            XCTAssertEqual(Merkle.root(list), referenceRoot(list[...]), "n=\(count)")
        }
    }

    func testPinnedTwoLeafRoot() {
        // SHA-256(0x01 ‖ SHA-256(0x00 ‖ 0³²) ‖ SHA-256(0x00 ‖ 1³²)), computed independently.
        let root = Merkle.root([Hash(bytes: [UInt8](repeating: 0, count: 32))!, Hash(bytes: [UInt8](repeating: 1, count: 32))!])
        XCTAssertEqual(root.hex, "28fb81e496897e0ce886f08602392e9239b65c659041e5202163e58ad898f444")
        let leaf0 = SHA256.hash([0x00] + [UInt8](repeating: 0, count: 32))
        let leaf1 = SHA256.hash([0x00] + [UInt8](repeating: 1, count: 32))
        XCTAssertEqual(root, SHA256.hash([0x01] + leaf0.bytes + leaf1.bytes))
        // A leaf can't pass for an inner node: the one-leaf tree over the concatenation differs.
        XCTAssertNotEqual(Merkle.root([SHA256.hash(leaf0.bytes + leaf1.bytes)]), root)
    }

    func testEveryProofVerifiesAndNoWrongOneDoes() {
        for count in 1...33 {
            let list = items(count)
            let root = Merkle.root(list)
            for index in 0..<count {
                let proof = Merkle.proof(list, index: index)!
                XCTAssertTrue(proof.verify(item: list[index], root: root), "n=\(count) i=\(index)")
                XCTAssertFalse(proof.verify(item: SHA256.hash([0xff]), root: root), "wrong item n=\(count) i=\(index)")
                if count > 1 {
                    let other = (index + 1) % count
                    let moved = InclusionProof(index: UInt64(other), leafCount: proof.leafCount, path: proof.path)
                    XCTAssertFalse(moved.verify(item: list[index], root: root), "wrong index n=\(count) i=\(index)")
                    var truncated = proof.path
                    truncated.removeLast()
                    XCTAssertFalse(InclusionProof(index: proof.index, leafCount: proof.leafCount, path: truncated)
                        .verify(item: list[index], root: root), "short path n=\(count) i=\(index)")
                }
            }
            XCTAssertNil(Merkle.proof(list, index: count))
        }
    }

    /// A kept tree gives the same root and the same proofs as hashing the list again
    /// for each leaf (the node serves many proofs from one tree per block).
    func testKeptTreeMatchesTheListForms() {
        XCTAssertEqual(Merkle.Tree([]).root, Merkle.root([]))
        XCTAssertNil(Merkle.Tree([]).proof(index: 0))
        for count in [1, 2, 3, 5, 8, 13, 64, 65, 100] {
            let list = items(count)
            let tree = Merkle.Tree(list)
            XCTAssertEqual(tree.root, Merkle.root(list), "n=\(count)")
            for index in 0..<count {
                let proof = tree.proof(index: index)!
                XCTAssertTrue(proof.verify(item: list[index], root: Merkle.root(list)), "n=\(count) i=\(index)")
                XCTAssertEqual(proof, Merkle.proof(list, index: index))
            }
            XCTAssertNil(tree.proof(index: count))
            XCTAssertNil(tree.proof(index: -1))
        }
    }
}
