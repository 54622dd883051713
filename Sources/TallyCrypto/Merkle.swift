/// Merkle trees as RFC 6962 §2.1 defines them: leaves hashed as
/// `SHA-256(0x00 ‖ leaf)`, inner nodes as `SHA-256(0x01 ‖ left ‖ right)`, so a leaf
/// can never pass for an inner node; an n-leaf tree splits at the largest power of
/// two below n. The root of the empty list is SHA-256 of the empty string.
public enum Merkle {
    static let leafPrefix: UInt8 = 0x00
    static let nodePrefix: UInt8 = 0x01

    /// Our leaves are already hashes (e.g. transaction hashes); they are hashed again
    /// with the leaf prefix.
    public static func leafHash(_ item: Hash) -> Hash {
        SHA256.hash(prefix: leafPrefix, item.bytes, [])
    }

    public static func nodeHash(_ left: Hash, _ right: Hash) -> Hash {
        SHA256.hash(prefix: nodePrefix, left.bytes, right.bytes)
    }

    public static func root(_ items: [Hash]) -> Hash {
        if items.isEmpty { return SHA256.hash([UInt8]()) }
        var level = items.map(leafHash)
        // Pairing left to right and promoting an odd last node unchanged gives exactly
        // RFC 6962's split-at-largest-power-of-two tree.
        while level.count > 1 {
            var next: [Hash] = []
            next.reserveCapacity((level.count + 1) / 2)
            var index = 0
            while index + 1 < level.count {
                next.append(nodeHash(level[index], level[index + 1]))
                index += 2
            }
            if index < level.count { next.append(level[index]) }
            level = next
        }
        return level[0]
    }

    /// The audit path for leaf `index` (RFC 6962 §2.1.1), bottom-up.
    public static func proof(_ items: [Hash], index: Int) -> InclusionProof? {
        guard index >= 0, index < items.count else { return nil }
        return Tree(items).proof(index: index)
    }

    /// Every level of the tree over `items`, kept so that many proofs from one tree
    /// cost one hashing pass (the node serves `/txs/{hash}` from these).
    public struct Tree: Sendable {
        /// levels[0] are the leaf hashes, the last level is the root (none when empty).
        let levels: [[Hash]]
        public let items: [Hash]

        public init(_ items: [Hash]) {
            self.items = items
            var levels: [[Hash]] = []
            var level = items.map(Merkle.leafHash)
            while !level.isEmpty {
                levels.append(level)
                if level.count == 1 { break }
                var next: [Hash] = []
                next.reserveCapacity((level.count + 1) / 2)
                var cursor = 0
                while cursor + 1 < level.count {
                    next.append(Merkle.nodeHash(level[cursor], level[cursor + 1]))
                    cursor += 2
                }
                // Promoting an odd last node unchanged is RFC 6962's split.
                if cursor < level.count { next.append(level[cursor]) }
                level = next
            }
            self.levels = levels
        }

        public var root: Hash { levels.last?.first ?? SHA256.hash([UInt8]()) }

        /// The audit path for leaf `index`, bottom-up; nil outside the tree.
        public func proof(index: Int) -> InclusionProof? {
            guard index >= 0, index < items.count else { return nil }
            var path: [Hash] = []
            var position = index
            for level in levels.dropLast() {
                let sibling = position ^ 1
                if sibling < level.count { path.append(level[sibling]) }
                position /= 2
            }
            return InclusionProof(index: UInt64(index), leafCount: UInt64(items.count), path: path)
        }
    }
}

/// Proof that a leaf is at `index` in a tree of `leafCount` leaves.
public struct InclusionProof: Hashable, Sendable {
    public let index: UInt64
    public let leafCount: UInt64
    public let path: [Hash]

    public init(index: UInt64, leafCount: UInt64, path: [Hash]) {
        self.index = index
        self.leafCount = leafCount
        self.path = path
    }

    /// Recomputes the root from `item`: RFC 9162 §2.1.3.2, step by step.
    public func verify(item: Hash, root: Hash) -> Bool {
        guard index < leafCount else { return false }
        var position = index
        var last = leafCount - 1
        var node = Merkle.leafHash(item)
        for sibling in path {
            if last == 0 { return false }
            if position & 1 == 1 || position == last {
                node = Merkle.nodeHash(sibling, node)
                // A last node with no right sibling is promoted unchanged: climb to
                // the level where it is a right child.
                while position & 1 == 0 && position != 0 {
                    position >>= 1
                    last >>= 1
                }
            } else {
                node = Merkle.nodeHash(node, sibling)
            }
            position >>= 1
            last >>= 1
        }
        return last == 0 && node == root
    }
}
