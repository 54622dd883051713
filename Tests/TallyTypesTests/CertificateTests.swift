import TallyCrypto
import TallyTypes
import XCTest

final class CertificateTests: XCTestCase {
    let validators = ValidatorSet(Fixtures.validators)

    func testQuorumArithmetic() {
        func set(_ count: Int) -> ValidatorSet {
            ValidatorSet((0..<count).map { Validator(name: "v\($0)", publicKey: Fixtures.key("v\($0)").publicKey, networkAddress: "h:1") })
        }
        XCTAssertEqual(set(1).quorum, 1)
        XCTAssertEqual(set(4).maxFaulty, 1)
        XCTAssertEqual(set(4).quorum, 3)
        XCTAssertEqual(set(7).quorum, 5)
        XCTAssertEqual(set(5).quorum, 4)  // f = 1: two quorums of 4 out of 5 share 3 ≥ f+1
        XCTAssertEqual(set(4).primary(view: 6), 2)
    }

    func testValidCertificateVerifies() {
        let certificate = Fixtures.certificate
        XCTAssertNoThrow(try certificate.verify(height: 42, blockHash: Fixtures.block.hash, validators: validators, chainID: Fixtures.chainID))
    }

    func testBelowQuorum() {
        var certificate = Fixtures.certificate
        certificate.signatures.removeLast()
        XCTAssertThrowsError(try certificate.verify(height: 42, blockHash: Fixtures.block.hash, validators: validators, chainID: Fixtures.chainID)) {
            XCTAssertEqual($0 as? CommitCertificate.Failure, .belowQuorum(signers: 2, quorum: 3))
        }
    }

    func testDuplicateSignerIsNotCountedTwice() {
        var certificate = Fixtures.certificate
        certificate.signatures[1] = certificate.signatures[0]
        XCTAssertThrowsError(try certificate.verify(height: 42, blockHash: Fixtures.block.hash, validators: validators, chainID: Fixtures.chainID)) {
            XCTAssertEqual($0 as? CommitCertificate.Failure, .notSorted(position: 1))
        }
    }

    func testUnknownValidatorAndForeignKey() {
        var certificate = Fixtures.certificate
        certificate.signatures[2].validatorIndex = 9
        XCTAssertThrowsError(try certificate.verify(height: 42, blockHash: Fixtures.block.hash, validators: validators, chainID: Fixtures.chainID)) {
            XCTAssertEqual($0 as? CommitCertificate.Failure, .unknownValidator(index: 9))
        }
        var foreign = Fixtures.certificate
        let message = foreign.voteTarget.signingBytes(chainID: Fixtures.chainID)
        foreign.signatures[2].signature = Fixtures.key("mallory").sign(message)
        XCTAssertThrowsError(try foreign.verify(height: 42, blockHash: Fixtures.block.hash, validators: validators, chainID: Fixtures.chainID)) {
            XCTAssertEqual($0 as? CommitCertificate.Failure, .badSignature(validatorIndex: 3))
        }
    }

    func testWrongViewHeightHashOrChain() {
        let hash = Fixtures.block.hash
        var otherView = Fixtures.certificate
        otherView.view = 4
        XCTAssertThrowsError(try otherView.verify(height: 42, blockHash: hash, validators: validators, chainID: Fixtures.chainID)) {
            XCTAssertEqual($0 as? CommitCertificate.Failure, .badSignature(validatorIndex: 0))
        }
        XCTAssertThrowsError(try Fixtures.certificate.verify(height: 43, blockHash: hash, validators: validators, chainID: Fixtures.chainID))
        XCTAssertThrowsError(try Fixtures.certificate.verify(height: 42, blockHash: .zero, validators: validators, chainID: Fixtures.chainID))
        XCTAssertThrowsError(try Fixtures.certificate.verify(height: 42, blockHash: hash, validators: validators, chainID: "x"))
    }
}
