import TallyCrypto
import TallyLedger
import TallyTypes
import XCTest

final class LedgerTests: XCTestCase {
    static let chainID = "tally-test"
    let keys = (0..<12).map { SigningKey(seed: SHA256.hash(Array("ledger-account-\($0)".utf8)).bytes)! }
    let validatorKeys = (0..<4).map { SigningKey(seed: SHA256.hash(Array("ledger-validator-\($0)".utf8)).bytes)! }

    func genesis(funded: Int = 6, balance: UInt64 = 1_000_000, minFee: UInt64 = ConsensusParameters.defaultMinFee) -> Genesis {
        var consensus = ConsensusParameters.default
        consensus.minFee = minFee
        return try! Genesis(
            chainID: Self.chainID, genesisTimeMs: 0,
            validators: validatorKeys.enumerated().map {
                Validator(name: "v\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:1")
            },
            accounts: keys.prefix(funded).map { GenesisAccount(address: Address(publicKey: $0.publicKey), balance: balance) },
            consensus: consensus)
    }

    func transfer(_ from: Int, _ to: Int, amount: UInt64, fee: UInt64 = 1, nonce: UInt64, chain: String = chainID) -> VerifiedTransaction {
        let genesisHash = genesis().hash
        return VerifiedTransaction(Transaction.signed(
            by: keys[from], chainID: chain, genesisHash: genesisHash, to: Address(publicKey: keys[to].publicKey), amount: amount,
            fee: fee, nonce: nonce), genesisHash: genesisHash)!
    }

    func address(_ index: Int) -> Address { Address(publicKey: keys[index].publicKey) }

    /// Issue 14: chain ids were compared as Swift strings (canonical equivalence), so a
    /// transaction signed for "tally-tesK" with a KELVIN SIGN passed "tally-tesK"'s check.
    func testChainIDsCompareAsBytesNotByCanonicalEquivalence() {
        let lookalike = Self.chainID + "\u{212A}"
        var consensus = ConsensusParameters.default
        consensus.minFee = 1
        let kelvinChain = try! Genesis(
            chainID: Self.chainID + "K", genesisTimeMs: 0,
            validators: validatorKeys.enumerated().map {
                Validator(name: "v\($0.offset)", publicKey: $0.element.publicKey, networkAddress: "127.0.0.1:1")
            },
            accounts: [GenesisAccount(address: address(0), balance: 1_000)], consensus: consensus)
        XCTAssertEqual(lookalike, kelvinChain.chainID, "Swift calls them equal")
        XCTAssertFalse(ChainID.same(lookalike, kelvinChain.chainID))
        var ledger = Ledger(genesis: kelvinChain)
        let execution = ledger.apply([transfer(0, 1, amount: 5, nonce: 0, chain: lookalike)], proposer: 0)
        XCTAssertFalse(execution.allApplied)
        XCTAssertEqual(ledger.account(address(0)), Account(balance: 1_000, nonce: 0))
    }

    func testTransferMovesValueAndPaysProposer() {
        var ledger = Ledger(genesis: genesis())
        let execution = ledger.apply([transfer(0, 1, amount: 500, fee: 3, nonce: 0)], proposer: 2)
        XCTAssertTrue(execution.allApplied)
        XCTAssertEqual(ledger.account(address(0)), Account(balance: 1_000_000 - 503, nonce: 1))
        XCTAssertEqual(ledger.account(address(1)), Account(balance: 1_000_500, nonce: 0))
        XCTAssertEqual(ledger.account(Address(publicKey: validatorKeys[2].publicKey)), Account(balance: 3, nonce: 0))
        XCTAssertEqual(ledger.balanceSum, ledger.totalSupply)
        XCTAssertEqual(ledger.height, 1)
    }

    func testReplayedAndOutOfOrderNoncesAreRejected() {
        var ledger = Ledger(genesis: genesis())
        let first = transfer(0, 1, amount: 1, nonce: 0)
        XCTAssertTrue(ledger.apply([first], proposer: 0).allApplied)
        let replay = ledger.apply([first], proposer: 0)
        XCTAssertEqual(replay.firstRejection?.reason, .wrongNonce(expected: 1, found: 0))
        XCTAssertEqual(replay.firstRejection?.reason.code, "stale_nonce")
        let ahead = ledger.apply([transfer(0, 1, amount: 1, nonce: 5)], proposer: 0)
        XCTAssertEqual(ahead.firstRejection?.reason, .wrongNonce(expected: 1, found: 5))
        // Within one block, nonces must follow each other.
        let pair = ledger.apply([transfer(0, 1, amount: 1, nonce: 2), transfer(0, 1, amount: 1, nonce: 1)], proposer: 0)
        XCTAssertEqual(pair.results.count, 2)
        XCTAssertNotNil(try? pair.results[1].get())
        XCTAssertNil(try? pair.results[0].get())
    }

    func testOtherChainIsRejectedAndChangesNothing() {
        var ledger = Ledger(genesis: genesis())
        let root = ledger.stateRoot
        let execution = ledger.apply([transfer(0, 1, amount: 1, nonce: 0, chain: "another-chain")], proposer: 0)
        XCTAssertEqual(execution.firstRejection?.reason, .wrongChain(expected: Self.chainID, found: "another-chain"))
        XCTAssertEqual(ledger.stateRoot, root)
        XCTAssertEqual(ledger.account(address(0)), Account(balance: 1_000_000, nonce: 0))
    }

    func testInsufficientBalanceAndOverflow() {
        var ledger = Ledger(genesis: genesis(balance: 100))
        XCTAssertEqual(ledger.apply([transfer(0, 1, amount: 100, fee: 1, nonce: 0)], proposer: 0).firstRejection?.reason,
                       .insufficientBalance(balance: 100, needed: 101))
        XCTAssertEqual(ledger.apply([transfer(0, 1, amount: .max, fee: 1, nonce: 0)], proposer: 0).firstRejection?.reason,
                       .amountOverflow)
        XCTAssertTrue(ledger.apply([transfer(0, 1, amount: 99, fee: 1, nonce: 0)], proposer: 0).allApplied)
        XCTAssertEqual(ledger.account(address(0))?.balance, 0)
    }

    func testNewRecipientAccountIsCreated() {
        var ledger = Ledger(genesis: genesis(funded: 2))
        XCTAssertNil(ledger.account(address(9)))
        XCTAssertTrue(ledger.apply([transfer(0, 9, amount: 10, nonce: 0)], proposer: 1).allApplied)
        XCTAssertEqual(ledger.account(address(9)), Account(balance: 10, nonce: 0))
        // The new account can spend in a later block.
        XCTAssertTrue(ledger.apply([transfer(9, 0, amount: 5, fee: 1, nonce: 0)], proposer: 1).allApplied)
        XCTAssertEqual(ledger.account(address(9)), Account(balance: 4, nonce: 1))
    }

    func testExecuteDoesNotMutateAndCommitMatchesIt() {
        var ledger = Ledger(genesis: genesis())
        let before = ledger.stateRoot
        let execution = ledger.execute([transfer(0, 7, amount: 10, nonce: 0)], proposer: 0)
        XCTAssertEqual(ledger.stateRoot, before)
        XCTAssertNotEqual(execution.stateRoot, before)
        ledger.commit(execution)
        XCTAssertEqual(ledger.stateRoot, execution.stateRoot)
    }

    /// Random blocks: the incremental root equals the from-scratch root after every
    /// block; supply is conserved; execution is deterministic.
    func testIncrementalRootEqualsFromScratchAndSupplyIsConserved() {
        for seed in UInt64(1)...20 {
            var random = SplitMix64(seed: seed)
            var ledger = Ledger(genesis: genesis(funded: 3, balance: 50_000))
            var twin = Ledger(genesis: genesis(funded: 3, balance: 50_000))
            var nonces = [UInt64](repeating: 0, count: keys.count)
            for _ in 0..<15 {
                var block: [VerifiedTransaction] = []
                for _ in 0..<Int.random(in: 0...8, using: &random) {
                    let from = Int.random(in: 0..<keys.count, using: &random)
                    let to = Int.random(in: 0..<keys.count, using: &random)
                    // Mostly valid nonces, sometimes stale or ahead.
                    let nonce = Int.random(in: 0..<10, using: &random) == 0 ? nonces[from] + 1 : nonces[from]
                    let tx = transfer(from, to, amount: UInt64.random(in: 0...3000, using: &random),
                                      fee: UInt64.random(in: 0...5, using: &random), nonce: nonce)
                    block.append(tx)
                    if (ledger.execute(block, proposer: 0).results.last.map { (try? $0.get()) != nil }) ?? false {
                        nonces[from] += 1
                    }
                }
                let proposer = Int.random(in: 0..<4, using: &random)
                let execution = ledger.apply(block, proposer: proposer)
                let twinExecution = twin.apply(block, proposer: proposer)
                XCTAssertEqual(execution.stateRoot, twinExecution.stateRoot, "seed \(seed): not deterministic")
                let leaves = ledger.allAccounts.map {
                    StateTree.leafHash(address: $0.address, balance: $0.account.balance, nonce: $0.account.nonce)
                }
                XCTAssertEqual(ledger.stateRoot, StateTree.rootFromScratch(leaves), "seed \(seed)")
                XCTAssertEqual(execution.stateRoot, ledger.stateRoot, "seed \(seed)")
                XCTAssertEqual(ledger.balanceSum, ledger.totalSupply, "seed \(seed): supply not conserved")
            }
        }
    }

    func testStateTreeAcrossPowerOfTwoBoundaries() {
        var tree = StateTree()
        var leaves: [Hash] = []
        XCTAssertEqual(tree.root, StateTree.rootFromScratch([]))
        for index in 0..<70 {
            let leaf = SHA256.hash([UInt8(index)])
            XCTAssertEqual(tree.root(applying: [index: leaf]), StateTree.rootFromScratch(leaves + [leaf]), "overlay at \(index)")
            tree.update(leaves: [index: leaf])
            leaves.append(leaf)
            XCTAssertEqual(tree.root, StateTree.rootFromScratch(leaves), "count \(index + 1)")
        }
        // Change a few old leaves and append two at once.
        let changes: [Int: Hash] = [3: .zero, 64: SHA256.hash([1]), 70: SHA256.hash([2]), 71: SHA256.hash([3])]
        XCTAssertEqual(tree.root(applying: changes), {
            var expected = leaves + [SHA256.hash([2]), SHA256.hash([3])]
            expected[3] = .zero
            expected[64] = SHA256.hash([1])
            return StateTree.rootFromScratch(expected)
        }())
        tree.update(leaves: changes)
        XCTAssertEqual(tree.root, tree.root(applying: [:]))
    }

    func testRootCommitsToAccountCount() {
        // Appending an account whose leaf is all zeros (impossible in practice, but the
        // count keeps the commitment honest) still changes the root.
        var tree = StateTree()
        tree.update(leaves: [0: SHA256.hash([1])])
        XCTAssertNotEqual(tree.root, tree.root(applying: [1: .zero]))
    }

    /// Blocks in flight: executing B on top of A's execution (and C on both) gives
    /// the same results and roots as applying them one by one, and committing the
    /// executions in order reaches the same ledger.
    func testChainedExecutionMatchesSequentialApply() {
        let blocks: [[VerifiedTransaction]] = [
            [transfer(0, 8, amount: 100, nonce: 0), transfer(1, 9, amount: 50, nonce: 0)],
            [transfer(8, 10, amount: 30, fee: 2, nonce: 0), transfer(0, 1, amount: 5, nonce: 1)],
            [transfer(10, 11, amount: 10, nonce: 0), transfer(9, 8, amount: 1, nonce: 0), transfer(0, 8, amount: 1, nonce: 1)],
        ]
        var sequential = Ledger(genesis: genesis(funded: 4))
        let expected = blocks.enumerated().map { sequential.apply($0.element, proposer: $0.offset) }

        var chained = Ledger(genesis: genesis(funded: 4))
        var inFlight: [BlockExecution] = []
        for (offset, block) in blocks.enumerated() {
            let execution = chained.execute(block, proposer: offset, parents: inFlight)
            XCTAssertEqual(execution.stateRoot, expected[offset].stateRoot, "block \(offset)")
            XCTAssertEqual(execution.results.map { (try? $0.get()) != nil }, expected[offset].results.map { (try? $0.get()) != nil })
            inFlight.append(execution)
        }
        XCTAssertEqual(chained.stateRoot, Ledger(genesis: genesis(funded: 4)).stateRoot, "execute must not mutate")
        for execution in inFlight { chained.commit(execution) }
        XCTAssertEqual(chained.stateRoot, sequential.stateRoot)
        XCTAssertEqual(chained.allAccounts.map(\.address), sequential.allAccounts.map(\.address))
        XCTAssertEqual(chained.balanceSum, chained.totalSupply)
    }

    /// Regression (testnet): 50 zero-amount, zero-fee transfers from never-funded
    /// keys all committed, each creating two permanent accounts for free.
    func testFeeBelowTheMinimumDoesNotApplyAndCreatesNoState() {
        var ledger = Ledger(genesis: genesis(funded: 2))
        XCTAssertEqual(ledger.minFee, 1)
        let root = ledger.stateRoot
        // Key 7 was never funded; key 9 does not exist either.
        let free = ledger.apply([transfer(7, 9, amount: 0, fee: 0, nonce: 0)], proposer: 0)
        XCTAssertEqual(free.firstRejection?.reason, .feeTooLow(minimum: 1, found: 0))
        XCTAssertEqual(free.firstRejection?.reason.code, "fee_too_low")
        // Paying the fee needs a balance: a zero-value transfer from an empty account fails too.
        let unfunded = ledger.apply([transfer(7, 9, amount: 0, fee: 1, nonce: 0)], proposer: 0)
        XCTAssertEqual(unfunded.firstRejection?.reason, .insufficientBalance(balance: 0, needed: 1))
        XCTAssertEqual(ledger.accountCount, 2, "no account was created")
        XCTAssertNil(ledger.account(address(7)))
        XCTAssertNil(ledger.account(address(9)))
        XCTAssertEqual(ledger.stateRoot, root)
        // A funded sender paying no fee is refused as well.
        XCTAssertEqual(ledger.apply([transfer(0, 1, amount: 5, fee: 0, nonce: 0)], proposer: 0).firstRejection?.reason,
                       .feeTooLow(minimum: 1, found: 0))
        XCTAssertEqual(ledger.account(address(0)), Account(balance: 1_000_000, nonce: 0))
    }

    func testTheMinimumFeeComesFromGenesis() throws {
        var ledger = Ledger(genesis: genesis(minFee: 5))
        XCTAssertEqual(ledger.apply([transfer(0, 1, amount: 5, fee: 4, nonce: 0)], proposer: 0).firstRejection?.reason,
                       .feeTooLow(minimum: 5, found: 4))
        XCTAssertTrue(ledger.apply([transfer(0, 1, amount: 5, fee: 5, nonce: 0)], proposer: 0).allApplied)
        // A ledger restored from a snapshot keeps the genesis minimum.
        let restored = try Ledger(genesis: genesis(minFee: 5), height: ledger.height, accounts: ledger.allAccounts)
        XCTAssertEqual(restored.minFee, 5)
        XCTAssertEqual(restored.debit(transfer(0, 1, amount: 1, fee: 4, nonce: 1).transaction, sender: restored.account(address(0))!),
                       .failure(.feeTooLow(minimum: 5, found: 4)))
    }
}
