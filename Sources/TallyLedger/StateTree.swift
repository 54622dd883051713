import TallyCrypto

/// Nodes a set of leaf changes rewrites, level by level (level 0: the leaves), and
/// the root they give. Made by `StateTree.overlay(applying:)`.
public struct StateTreeOverlay: Sendable {
    public let count: Int
    let levels: [[Int: Hash]]
    public let root: Hash
}

/// The Merkle commitment over all accounts.
///
/// Accounts are leaves in creation order (genesis order, then first-credit order,
/// which block execution makes deterministic). The tree is a perfect binary tree of
/// depth `d`, the smallest with `2^d ≥ count`; missing leaves are `Hash.zero`.
/// - leaf  = SHA-256(0x00 ‖ address ‖ balance: u64 LE ‖ nonce: u64 LE)
/// - node  = SHA-256(0x01 ‖ left ‖ right)            (RFC 6962 prefixes)
/// - root  = SHA-256("tally/state-root/v1" ‖ count: u64 LE ‖ top node)
///
/// Every level is kept, so changing k leaves rehashes k·d nodes (O(changes · log
/// accounts)), and `root(applying:)` computes the root after a set of changes
/// without touching the stored tree (for proposals that may never commit).
public struct StateTree: Sendable {
    /// levels[k] holds ⌈count / 2^k⌉ nodes of 32 bytes back to back (levels[0]: the
    /// leaves): flat bytes, so a tree of a million accounts is a few arrays, not
    /// millions of small ones, and a snapshot stores and loads it as it is.
    private var levels: [[UInt8]] = [[]]
    /// Leaves (levels[0].count / 32).
    public private(set) var count = 0
    /// Inner-node hashes computed by `update` so far: benchmarks report this per
    /// changed leaf to show the O(changes · log accounts) cost.
    public private(set) var nodeHashesComputed = 0
    /// emptyNodes[k]: the root of a depth-k subtree with no leaves.
    private static let emptyNodes: [Hash] = {
        var nodes = [Hash.zero]
        for _ in 0..<64 { nodes.append(Merkle.nodeHash(nodes.last!, nodes.last!)) }
        return nodes
    }()
    static let rootTag = Array("tally/state-root/v1".utf8)
    static let nodeBytes = Hash.byteCount

    public init() {}

    /// Number of levels above the leaves.
    public static func depth(for count: Int) -> Int {
        var depth = 0
        while (1 << depth) < count { depth += 1 }
        return depth
    }

    /// Nodes at `level` of a tree of `count` leaves.
    public static func nodeCount(level: Int, leaves count: Int) -> Int { (count + (1 << level) - 1) >> level }

    /// Nodes of every level (0…depth) of a tree of `count` leaves.
    public static func totalNodeCount(leaves count: Int) -> Int {
        (0...depth(for: count)).reduce(0) { $0 + nodeCount(level: $1, leaves: count) }
    }

    /// Every level's nodes as stored (level 0: the leaves), for a snapshot.
    public var levelBytes: [[UInt8]] { levels }

    /// Why stored levels cannot be a tree (`init(count:levels:)`).
    public enum ImageError: Error, Equatable, CustomStringConvertible {
        case shape(String)
        case node(level: Int, index: Int)

        public var description: String {
            switch self {
            case .shape(let reason): return "tree levels: \(reason)"
            case .node(let level, let index): return "tree node \(index) of level \(level) is not the hash of its children"
            }
        }
    }

    /// A tree from stored levels (`levelBytes` of a tree of `count` leaves), taken as
    /// they are: only their shape is checked here (the caller checks a sample of
    /// nodes with `checkPath(leaf:)`, and the root against the chain).
    public init(count: Int, levels: [[UInt8]]) throws(ImageError) {
        let depth = StateTree.depth(for: count)
        guard levels.count == depth + 1 else { throw .shape("\(levels.count) levels for \(count) leaves (expected \(depth + 1))") }
        for (level, bytes) in levels.enumerated() where bytes.count != StateTree.nodeCount(level: level, leaves: count) * StateTree.nodeBytes {
            throw .shape("level \(level) holds \(bytes.count) bytes")
        }
        self.levels = levels
        self.count = count
    }

    /// Checks that every node on leaf `index`'s path to the top is the hash of its
    /// two children (how a restore samples stored levels without rehashing them all).
    public func checkPath(leaf index: Int) throws(ImageError) {
        precondition(index >= 0 && index < count)
        var child = index
        for level in 1..<levels.count {
            let parent = child >> 1
            let expected = Merkle.nodeHash(node(level: level - 1, index: parent * 2), node(level: level - 1, index: parent * 2 + 1))
            guard expected == node(level: level, index: parent) else { throw .node(level: level, index: parent) }
            child = parent
        }
    }

    /// Leaf `index` as stored.
    public func leaf(_ index: Int) -> Hash { node(level: 0, index: index) }

    public static func leafHash(address: Address, balance: UInt64, nonce: UInt64) -> Hash {
        // Built on the stack: the replay hashes a leaf for every changed account.
        let count = 1 + Address.byteCount + 16
        return withUnsafeTemporaryAllocation(byteCount: count, alignment: 8) { buffer in
            buffer[0] = 0x00
            address.bytes.withUnsafeBytes { buffer.baseAddress!.advanced(by: 1).copyMemory(from: $0.baseAddress!, byteCount: Address.byteCount) }
            buffer.storeBytes(of: balance.littleEndian, toByteOffset: 1 + Address.byteCount, as: UInt64.self)
            buffer.storeBytes(of: nonce.littleEndian, toByteOffset: 1 + Address.byteCount + 8, as: UInt64.self)
            return SHA256.hash(UnsafeRawBufferPointer(buffer))
        }
    }

    public var root: Hash {
        StateTree.finalRoot(count: count, top: node(level: StateTree.depth(for: count), index: 0))
    }

    static func finalRoot(count: Int, top: Hash) -> Hash {
        var countBytes = [UInt8]()
        withUnsafeBytes(of: UInt64(count).littleEndian) { countBytes.append(contentsOf: $0) }
        return SHA256.hash(parts: [rootTag, countBytes, top.bytes])
    }

    private func node(level: Int, index: Int) -> Hash {
        guard level < levels.count, (index + 1) * StateTree.nodeBytes <= levels[level].count else { return StateTree.emptyNodes[level] }
        let start = index * StateTree.nodeBytes
        return Hash(bytes: Array(levels[level][start..<start + StateTree.nodeBytes]))!
    }

    private mutating func setNode(level: Int, index: Int, _ hash: Hash) {
        let start = index * StateTree.nodeBytes
        precondition(start + StateTree.nodeBytes <= levels[level].count)
        levels[level].withUnsafeMutableBytes { target in
            hash.bytes.withUnsafeBytes { target.baseAddress!.advanced(by: start).copyMemory(from: $0.baseAddress!, byteCount: StateTree.nodeBytes) }
        }
    }

    /// Grows `level` with zero nodes to the size a tree of `leaves` leaves has.
    private mutating func grow(level: Int, leaves: Int) {
        while levels.count <= level { levels.append([]) }
        let needed = StateTree.nodeCount(level: level, leaves: leaves) * StateTree.nodeBytes
        if levels[level].count < needed { levels[level].append(contentsOf: repeatElement(0, count: needed - levels[level].count)) }
    }

    /// Sets leaf `index` (`index == count` appends) and rehashes its path.
    public mutating func update(leaves changes: [Int: Hash]) {
        for (index, _) in changes.sorted(by: { $0.key < $1.key }) where index >= count {
            precondition(index == count, "leaves are appended in order")
            count += 1
        }
        grow(level: 0, leaves: count)
        for (index, leaf) in changes { setNode(level: 0, index: index, leaf) }
        let depth = StateTree.depth(for: count)
        var dirty = Set(changes.keys)
        for level in 1...max(depth, 1) where level <= depth {
            grow(level: level, leaves: count)
            var parents = Set<Int>()
            for child in dirty { parents.insert(child >> 1) }
            nodeHashesComputed += parents.count
            for parent in parents {
                setNode(level: level, index: parent, Merkle.nodeHash(
                    node(level: level - 1, index: parent * 2), node(level: level - 1, index: parent * 2 + 1)))
            }
            dirty = parents
        }
        // Growing a level needs no special case: the appended leaf's path reaches
        // the new top, so the loop above computed it.
    }

    /// The root after `changes` (leaf index → leaf hash, indices ≥ count append in
    /// order), computed from an overlay; the tree itself is unchanged.
    public func root(applying changes: [Int: Hash]) -> Hash {
        overlay(applying: changes).root
    }

    /// Every node that `changes` would rewrite, computed without touching the tree,
    /// on top of `parents` (overlays of blocks not yet installed, oldest first).
    /// `install` writes them, so a block's root is hashed once: when it is proposed
    /// or validated, not again when it commits.
    public func overlay(applying changes: [Int: Hash], over parents: [StateTreeOverlay] = []) -> StateTreeOverlay {
        let baseCount = parents.last?.count ?? count
        let newCount = max(baseCount, (changes.keys.max() ?? -1) + 1)
        let depth = StateTree.depth(for: newCount)
        // A node a parent rewrote wins over the stored one; a parent computed every
        // node above the leaves it appended, so nothing else can be stale.
        func lookup(_ level: Int, _ index: Int) -> Hash {
            for parent in parents.reversed() where level < parent.levels.count {
                if let hash = parent.levels[level][index] { return hash }
            }
            return node(level: level, index: index)
        }
        var levels: [[Int: Hash]] = [changes]
        if depth == 0 {
            let top = newCount == 0 ? Hash.zero : (changes[0] ?? lookup(0, 0))
            return StateTreeOverlay(count: newCount, levels: levels, root: StateTree.finalRoot(count: newCount, top: top))
        }
        // Index 0's path is always recomputed: the top must exist even when no leaf
        // changed, and growing the tree adds levels above it.
        var dirty = Set(changes.keys)
        dirty.insert(0)
        for level in 1...depth {
            let below = levels[level - 1]
            var parentsAtLevel: [Int: Hash] = [:]
            for parent in Set(dirty.map { $0 >> 1 }) {
                let left = below[parent * 2] ?? lookup(level - 1, parent * 2)
                let right = below[parent * 2 + 1] ?? lookup(level - 1, parent * 2 + 1)
                parentsAtLevel[parent] = Merkle.nodeHash(left, right)
            }
            levels.append(parentsAtLevel)
            dirty = Set(parentsAtLevel.keys)
        }
        return StateTreeOverlay(count: newCount, levels: levels, root: StateTree.finalRoot(count: newCount, top: levels[depth][0]!))
    }

    /// Writes an overlay computed on this tree as it is now.
    public mutating func install(_ overlay: StateTreeOverlay) {
        precondition(overlay.count >= count, "an overlay never removes leaves")
        count = overlay.count
        for (level, nodes) in overlay.levels.enumerated() {
            grow(level: level, leaves: overlay.count)
            for (index, hash) in nodes { setNode(level: level, index: index, hash) }
            if level > 0 { nodeHashesComputed += nodes.count }
        }
        precondition(root == overlay.root, "overlay installed on a tree other than the one it was computed on")
    }

    /// The root computed from scratch over `leaves`: the reference the tests hold the
    /// incremental tree to.
    public static func rootFromScratch(_ leaves: [Hash]) -> Hash {
        let depth = depth(for: leaves.count)
        var level = leaves
        for height in 0..<depth {
            var next: [Hash] = []
            var index = 0
            while index < level.count {
                let right = index + 1 < level.count ? level[index + 1] : emptyNodes[height]
                next.append(Merkle.nodeHash(level[index], right))
                index += 2
            }
            level = next
        }
        return finalRoot(count: leaves.count, top: level.first ?? .zero)
    }
}
