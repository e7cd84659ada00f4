//! Evidence and reasons: what back-office staff must record to change a qualification (R2, R5).

use std::collections::BTreeMap;

use super::{ResellerQualification, SpecialQualification, checked_text};

/// A qualification that needs documentary evidence when it is added.
pub trait Evidenced: Copy + Ord + std::fmt::Display {
    /// What the evidence is, e.g. "nonprofit program registration id".
    fn evidence_name(self) -> &'static str;
}

impl Evidenced for SpecialQualification {
    fn evidence_name(self) -> &'static str {
        match self {
            Self::Education => "qualified-education-user attestation reference",
            Self::Nonprofit => "nonprofit program registration id",
            Self::Gcc => "government cloud validation code",
            Self::StateOwnedEntity => "eligibility-criteria attestation reference",
        }
    }
}

impl Evidenced for ResellerQualification {
    fn evidence_name(self) -> &'static str {
        match self {
            Self::Education => "education program authorization reference",
            Self::Nonprofit => "nonprofit program authorization reference",
            Self::Gcc => "government cloud validation enrollment reference",
        }
    }
}

/// Longest accepted evidence reference, in characters.
pub const MAX_EVIDENCE_CHARS: usize = 200;

/// Evidence that is missing, blank, too long, or given for a qualification not in the new set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// An added qualification without evidence.
    #[error("adding {qualification} requires evidence: the {name}")]
    Missing {
        /// The qualification.
        qualification: String,
        /// What the evidence is.
        name: &'static str,
    },
    /// Blank, longer than [`MAX_EVIDENCE_CHARS`] or not printable.
    #[error(
        "evidence must have 1 to {MAX_EVIDENCE_CHARS} characters, and no control or bidirectional-override characters"
    )]
    Invalid {
        /// The qualification.
        qualification: String,
    },
    /// Evidence for a qualification the new set does not hold.
    #[error("{qualification} is not in the new set, so it takes no evidence")]
    Unexpected {
        /// The qualification.
        qualification: String,
    },
}

impl EvidenceError {
    /// The request field at fault, e.g. `evidence.gcc`.
    pub fn field(&self) -> String {
        let (Self::Missing { qualification, .. }
        | Self::Invalid { qualification }
        | Self::Unexpected { qualification }) = self;
        format!("evidence.{qualification}")
    }
}

/// The evidence on record after a change from `before` to `after`: every added qualification needs
/// new evidence in `given`; kept ones keep their recorded evidence unless `given` replaces it;
/// evidence of removed qualifications is dropped.
pub fn evidence_after_change<Q: Evidenced>(
    before: &[Q],
    recorded: &BTreeMap<Q, String>,
    after: &[Q],
    given: &BTreeMap<Q, String>,
) -> Result<BTreeMap<Q, String>, EvidenceError> {
    for (qualification, reference) in given {
        if !after.contains(qualification) {
            return Err(EvidenceError::Unexpected {
                qualification: qualification.to_string(),
            });
        }
        if checked_text(reference, MAX_EVIDENCE_CHARS).is_none() {
            return Err(EvidenceError::Invalid {
                qualification: qualification.to_string(),
            });
        }
    }
    let mut evidence = BTreeMap::new();
    for &qualification in after {
        let reference = match (given.get(&qualification), recorded.get(&qualification)) {
            (Some(new), _) => new.trim().to_owned(),
            (None, Some(kept)) if before.contains(&qualification) => kept.clone(),
            (None, _) if before.contains(&qualification) => continue,
            (None, _) => {
                return Err(EvidenceError::Missing {
                    qualification: qualification.to_string(),
                    name: qualification.evidence_name(),
                });
            }
        };
        evidence.insert(qualification, reference);
    }
    Ok(evidence)
}

/// Why a change was made: trimmed, 1 to 1000 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(String);

/// A reason that is missing, blank, too long or not printable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a reason of 1 to {max} characters, with no control or bidirectional-override characters, is required", max = Reason::MAX_CHARS)]
pub struct InvalidReason;

impl Reason {
    /// Longest accepted reason, in characters.
    pub const MAX_CHARS: usize = 1000;

    /// Checks a reason.
    pub fn parse(raw: Option<&str>) -> Result<Self, InvalidReason> {
        raw.and_then(|raw| checked_text(raw, Self::MAX_CHARS))
            .map(|reason| Self(reason.to_owned()))
            .ok_or(InvalidReason)
    }

    /// The reason.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SpecialQualification::*;

    fn map(entries: &[(SpecialQualification, &str)]) -> BTreeMap<SpecialQualification, String> {
        entries.iter().map(|(q, e)| (*q, e.to_string())).collect()
    }

    #[test]
    fn every_added_qualification_needs_its_evidence() {
        for q in SpecialQualification::ALL.iter().copied() {
            let err = evidence_after_change(&[], &map(&[]), &[q], &map(&[])).unwrap_err();
            assert_eq!(err.field(), format!("evidence.{q}"));
            assert!(err.to_string().contains(q.evidence_name()), "{err}");
            let ok = evidence_after_change(&[], &map(&[]), &[q], &map(&[(q, " REF-1 ")])).unwrap();
            assert_eq!(ok, map(&[(q, "REF-1")]));
        }
    }

    #[test]
    fn blank_or_oversized_evidence_is_rejected() {
        for bad in [
            "",
            "   ",
            &"x".repeat(MAX_EVIDENCE_CHARS + 1),
            "GCV-1\u{0}",
            "GCV\u{202E}1",
        ] {
            let err =
                evidence_after_change(&[], &map(&[]), &[Gcc], &map(&[(Gcc, bad)])).unwrap_err();
            assert_eq!(
                err,
                EvidenceError::Invalid {
                    qualification: "gcc".into()
                }
            );
        }
    }

    #[test]
    fn kept_qualifications_keep_their_evidence_and_removed_ones_drop_it() {
        let recorded = map(&[(Education, "QEU-1"), (StateOwnedEntity, "SOE-1")]);
        let after = evidence_after_change(
            &[Education, StateOwnedEntity],
            &recorded,
            &[Education],
            &map(&[]),
        )
        .unwrap();
        assert_eq!(after, map(&[(Education, "QEU-1")]));
        let replaced = evidence_after_change(
            &[Education],
            &recorded,
            &[Education],
            &map(&[(Education, "QEU-2")]),
        )
        .unwrap();
        assert_eq!(replaced, map(&[(Education, "QEU-2")]));
        // A kept qualification recorded before evidence was kept needs none now.
        assert_eq!(
            evidence_after_change(&[Gcc], &map(&[]), &[Gcc], &map(&[])).unwrap(),
            map(&[])
        );
    }

    #[test]
    fn evidence_for_a_qualification_outside_the_new_set_is_rejected() {
        let err = evidence_after_change(
            &[],
            &map(&[]),
            &[Nonprofit],
            &map(&[(Nonprofit, "NP"), (Gcc, "G")]),
        )
        .unwrap_err();
        assert_eq!(err.field(), "evidence.gcc");
    }

    #[test]
    fn reseller_qualifications_name_their_evidence() {
        let err = evidence_after_change(
            &[],
            &BTreeMap::new(),
            &[ResellerQualification::Gcc],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("government cloud validation enrollment"),
            "{err}"
        );
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        assert_eq!(
            Reason::parse(Some(" audit finding ")).unwrap().as_str(),
            "audit finding"
        );
        assert!(Reason::parse(None).is_err());
        assert!(Reason::parse(Some("  ")).is_err());
        assert!(Reason::parse(Some("a\0b")).is_err());
        assert!(Reason::parse(Some("a\u{1b}[31mred")).is_err());
        assert!(Reason::parse(Some(&"r".repeat(1001))).is_err());
    }
}
