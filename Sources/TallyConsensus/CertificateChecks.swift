import TallyCrypto
import TallyTypes

/// The replica's certificate checks: signatures, checkpoint proofs, prepared
/// certificates, VIEW-CHANGEs, NEW-VIEWs and synced commit certificates, judged
/// against the configuration, the replica's quorum, its defences and its verifier.
/// Non-mutating: a check reads no replica state and changes none. `Replica` holds
/// one (`checks`) and rebuilds it when its defences change.
struct CertificateChecks {
    let configuration: ReplicaConfiguration
    let defences: any ReplicaDefences
    let verifier: any ConsensusVerifier
    /// The replica's quorum: 2f+1, or the test-only `quorumOverride` (`Replica.quorum`
    /// reads this).
    let quorum: Int

    init(configuration: ReplicaConfiguration, defences: any ReplicaDefences, verifier: any ConsensusVerifier) {
        self.configuration = configuration
        self.defences = defences
        self.verifier = verifier
        quorum = defences.quorumOverride ?? configuration.quorum
    }

    func verify(_ signature: Signature, by validator: ValidatorIndex, _ bytes: [UInt8]) -> Bool {
        guard Int(validator) < configuration.validatorCount else { return false }
        return !defences.verifySignatures || verifier.isValid(signature, by: validator, for: bytes)
    }

    func isValid(_ proof: CheckpointProof) -> Bool {
        if proof.height == 0 {
            return proof.blockHash == configuration.genesisHash && proof.stateRoot == configuration.genesisStateRoot
        }
        guard proof.height % configuration.checkpointInterval == 0, proof.signatures.count >= quorum else {
            return false
        }
        let bytes = Checkpoint.signingBytes(
            chainID: configuration.chainID, height: proof.height, blockHash: proof.blockHash, stateRoot: proof.stateRoot)
        var previous: ValidatorIndex?
        for entry in proof.signatures {
            if let previous, entry.validator <= previous { return false }
            previous = entry.validator
            guard verify(entry.signature, by: entry.validator, bytes) else { return false }
        }
        return true
    }

    func isValid(_ viewChange: ViewChange) -> Bool {
        guard Int(viewChange.validator) < configuration.validatorCount,
              verify(viewChange.signature, by: viewChange.validator, viewChange.signingBytes(chainID: configuration.chainID)),
              isValid(viewChange.checkpoint)
        else { return false }
        var previousHeight = viewChange.checkpoint.height
        for certificate in viewChange.prepared {
            guard certificate.height > previousHeight,
                  certificate.height <= viewChange.checkpoint.height + configuration.logWindow,
                  certificate.view < viewChange.newView,
                  isValid(certificate)
            else { return false }
            previousHeight = certificate.height
        }
        return true
    }

    func isValid(_ certificate: PreparedCertificate) -> Bool {
        guard defences.checkViewChangeCertificates else { return true }
        let prePrepare = certificate.proposal
        let primary = configuration.primary(of: prePrepare.view)
        let header = prePrepare.header
        guard header.view <= prePrepare.view, header.proposer == configuration.primary(of: header.view),
              verify(prePrepare.signature, by: primary, prePrepare.signingBytes(chainID: configuration.chainID))
        else { return false }
        guard certificate.prepares.count >= quorum - 1 else { return false }
        let target = VoteTarget(phase: .prepare, view: prePrepare.view, height: prePrepare.height, blockHash: prePrepare.blockHash)
        let bytes = target.signingBytes(chainID: configuration.chainID)
        var previous: ValidatorIndex?
        for vote in certificate.prepares {
            if let previous, vote.validator <= previous { return false }
            previous = vote.validator
            guard vote.target == target, vote.validator != primary, verify(vote.signature, by: vote.validator, bytes) else {
                return false
            }
        }
        return true
    }

    /// The checkpoint the NEW-VIEW starts from, or nil when it is forged or inconsistent.
    func check(_ newView: NewView) -> CheckpointProof? {
        let set = newView.viewChanges
        guard set.count >= quorum, Set(set.map(\.validator)).count == set.count,
              set.allSatisfy({ $0.newView == newView.view && isValid($0) })
        else { return nil }
        let primary = configuration.primary(of: newView.view)
        for prePrepare in newView.proposals {
            guard prePrepare.view == newView.view,
                  verify(prePrepare.signature, by: primary, prePrepare.signingBytes(chainID: configuration.chainID))
            else { return nil }
        }
        let plan = Replica.newViewPlan(set)
        guard defences.recomputeNewView else { return plan.checkpoint }
        guard plan.blocks.count == newView.proposals.count,
              zip(plan.blocks, newView.proposals).allSatisfy({ $0.hash == $1.blockHash })
        else { return nil }
        return plan.checkpoint
    }

    func isValid(_ certificate: CommitCertificate, height: UInt64, blockHash: Hash) -> Bool {
        do {
            try certificate.checkStructure(
                height: height, blockHash: blockHash, validators: configuration.validators, quorum: quorum)
        } catch { return false }
        let bytes = certificate.voteTarget.signingBytes(chainID: configuration.chainID)
        return certificate.signatures.allSatisfy { verify($0.signature, by: $0.validatorIndex, bytes) }
    }
}
