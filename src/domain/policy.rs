//! The rules as a value (issue 14): everything the rule book makes configurable, one version at a
//! time. A [`Policy`] comes only from [`Policy::rule_book`] or from a checked [`PolicyDocument`],
//! so every policy in memory is consistent.
//!
//! What stays structural, in code, in every version: a special segment needs the customer
//! qualification of its own name (R2, customer side); commercial offers are sold as any product
//! kind by any partner (R1, R2); the GCC lockout reads any GCC subscription in the customer's
//! history, whatever its status and whichever partner sold it (R4).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    CustomerQualification, OfferTerms, ProductKind, ResellerQualification, Segment,
    SpecialQualification, text::listing,
};

/// A policy's version number; 1 is the rule book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PolicyVersion(u32);

impl PolicyVersion {
    /// The rule book as written (R1–R5).
    pub const RULE_BOOK: Self = Self(1);

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for PolicyVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// R1 and R2 (partner side) for one special segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentRules {
    /// The reseller qualification the partner's profile must list; `None` if none is required.
    reseller_qualification: Option<ResellerQualification>,
    /// Whether an indirect reseller must be connected to an indirect provider.
    indirect_reseller_needs_provider: bool,
    /// The product kinds the segment's offers may be sold as; never empty.
    product_kinds: BTreeSet<ProductKind>,
}

/// The configurable rules of one version: R1's product kinds, R2's partner requirements, R3's
/// qualification sets and what each may buy, and the segments R4's GCC lockout forbids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    version: PolicyVersion,
    /// R3: each valid set with the segments it may buy (sorted), in the document's order, which
    /// is the order messages list them in.
    sets: Vec<(CustomerQualification, Vec<Segment>)>,
    /// R1, R2: exactly the special segments.
    special: BTreeMap<Segment, SegmentRules>,
    /// R4: the segments a customer with GCC history may no longer buy (sorted).
    gcc_lockout: Vec<Segment>,
}

impl Policy {
    /// Version 1: the rule book exactly (R1–R4 of `docs/rules.md`).
    pub fn rule_book() -> Self {
        use Segment as S;
        use SpecialQualification as Q;
        let rules = |reseller_qualification, indirect_reseller_needs_provider| SegmentRules {
            reseller_qualification: Some(reseller_qualification),
            indirect_reseller_needs_provider,
            product_kinds: BTreeSet::from([ProductKind::LicenseBased]),
        };
        Self {
            version: PolicyVersion::RULE_BOOK,
            sets: vec![
                (CustomerQualification::EMPTY, vec![S::Commercial]),
                (
                    CustomerQualification::of(&[Q::Nonprofit]),
                    vec![S::Commercial, S::Nonprofit],
                ),
                (
                    CustomerQualification::of(&[Q::Education]),
                    vec![S::Commercial, S::Education],
                ),
                (CustomerQualification::of(&[Q::Gcc]), vec![S::Gcc]),
                (
                    CustomerQualification::of(&[Q::StateOwnedEntity]),
                    vec![S::Commercial],
                ),
                (
                    CustomerQualification::of(&[Q::Education, Q::StateOwnedEntity]),
                    vec![S::Commercial, S::Education],
                ),
                (
                    CustomerQualification::of(&[Q::Gcc, Q::StateOwnedEntity]),
                    vec![S::Gcc],
                ),
            ],
            special: BTreeMap::from([
                (S::Education, rules(ResellerQualification::Education, true)),
                (S::Nonprofit, rules(ResellerQualification::Nonprofit, false)),
                (S::Gcc, rules(ResellerQualification::Gcc, false)),
            ]),
            gcc_lockout: vec![S::Commercial, S::Education, S::Nonprofit],
        }
    }

    /// The version number.
    pub fn version(&self) -> PolicyVersion {
        self.version
    }

    /// R3: whether `set` is a valid qualification set.
    pub fn accepts(&self, set: CustomerQualification) -> bool {
        self.sets.iter().any(|(valid, _)| *valid == set)
    }

    /// R3: the set of `qualifications` (order and repetition do not matter), if it is valid.
    pub fn qualification_set(
        &self,
        qualifications: impl IntoIterator<Item = SpecialQualification>,
    ) -> Result<CustomerQualification, InvalidQualificationSet> {
        let set: CustomerQualification = qualifications.into_iter().collect();
        if self.accepts(set) {
            Ok(set)
        } else {
            Err(InvalidQualificationSet {
                set,
                valid: self.valid_sets().collect(),
            })
        }
    }

    /// R3: the valid sets, in the policy's order.
    pub fn valid_sets(&self) -> impl Iterator<Item = CustomerQualification> + '_ {
        self.sets.iter().map(|(set, _)| *set)
    }

    /// R3: the offer segments a customer with `set` may buy; none if the set is not valid.
    pub fn purchasable_segments(&self, set: CustomerQualification) -> &[Segment] {
        self.sets
            .iter()
            .find(|(valid, _)| *valid == set)
            .map_or(&[], |(_, segments)| segments)
    }

    /// R1: whether offers of these terms may exist. Commercial offers may be of any kind.
    pub fn is_sellable(&self, offer: OfferTerms) -> bool {
        match self.special.get(&offer.segment) {
            Some(rules) => rules.product_kinds.contains(&offer.product_kind),
            None => !offer.segment.is_special(),
        }
    }

    /// R2: the reseller qualification a partner must list to buy offers of `segment`, if any.
    pub fn reseller_qualification_for(&self, segment: Segment) -> Option<ResellerQualification> {
        self.special
            .get(&segment)
            .and_then(|rules| rules.reseller_qualification)
    }

    /// R2: whether an indirect reseller must be connected to a provider to deliver `segment`.
    pub fn indirect_reseller_needs_provider(&self, segment: Segment) -> bool {
        self.special
            .get(&segment)
            .is_some_and(|rules| rules.indirect_reseller_needs_provider)
    }

    /// R4: whether a customer with GCC history may no longer buy offers of `segment`.
    pub fn gcc_lockout_forbids(&self, segment: Segment) -> bool {
        self.gcc_lockout.contains(&segment)
    }

    /// R4: every segment the GCC lockout forbids, sorted.
    pub fn gcc_lockout_segments(&self) -> &[Segment] {
        &self.gcc_lockout
    }
}

/// A combination of special qualifications that the policy does not list (R3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{set} is not a valid qualification set; valid sets are {}",
    listing(valid, "and")
)]
pub struct InvalidQualificationSet {
    /// The set asked for.
    pub set: CustomerQualification,
    /// The sets the policy accepts, in its order.
    pub valid: Vec<CustomerQualification>,
}

/// A policy as operators write it and as it is stored: JSON, checked by `Policy::try_from`.
/// Names are the wire names; unknown names and fields are rejected while reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    /// The version number, 1 or more.
    pub version: u32,
    /// R3: the valid qualification sets, each with the segments it may buy.
    pub qualification_sets: Vec<QualificationSetDocument>,
    /// R1 and R2 for each special segment (education, nonprofit and gcc, each exactly once).
    pub special_segments: Vec<SpecialSegmentDocument>,
    /// R4: the segments a customer with any GCC subscription in its history may no longer buy.
    pub gcc_lockout_forbids: Vec<Segment>,
}

/// One valid qualification set of a [`PolicyDocument`] (R3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QualificationSetDocument {
    /// The set's special qualifications; `[]` is a plain commercial customer.
    pub qualifications: Vec<SpecialQualification>,
    /// The offer segments a customer with exactly this set may buy.
    pub may_buy: Vec<Segment>,
}

/// What one special segment's offers need, in a [`PolicyDocument`] (R1, R2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecialSegmentDocument {
    /// Education, nonprofit or gcc.
    pub segment: Segment,
    /// Whether the partner's profile must list the reseller qualification of the segment's name.
    /// A flag, not a name, so no segment can ask for another program's qualification.
    pub reseller_qualification_required: bool,
    /// Whether an indirect reseller must be connected to an indirect provider to deliver them.
    pub indirect_reseller_needs_provider: bool,
    /// The product kinds its offers may be sold as.
    pub product_kinds: Vec<ProductKind>,
}

/// One reason a [`PolicyDocument`] cannot become a [`Policy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    /// Versions count from 1.
    #[error("the version must be 1 or more")]
    VersionZero,
    /// Version 1 is the rule book, whatever a document says: it may only restate it.
    #[error("version 1 is the rule book; a policy that differs from it needs another number")]
    NotTheRuleBook,
    /// Without sets, no customer could be recorded at all.
    #[error("no qualification set is listed, so no customer could be recorded")]
    NoQualificationSets,
    /// Every customer without special qualifications is a plain commercial customer.
    #[error("the empty set {{}} (a plain commercial customer) must be listed")]
    CommercialSetMissing,
    /// Two entries name the same set, whatever their order.
    #[error("{0} is listed more than once")]
    SetRepeated(CustomerQualification),
    /// A list that holds one value twice, e.g. `qualification_sets[2].may_buy`.
    #[error("{list} lists {entry} more than once")]
    Repeated {
        /// Where the list is in the document.
        list: String,
        /// The repeated value.
        entry: &'static str,
    },
    /// A valid set that may buy nothing serves no customer.
    #[error("{0} may buy no segment")]
    SetBuysNothing(CustomerQualification),
    /// R2: buying a special segment needs the customer qualification of its name.
    #[error(
        "{set} may buy {segment} offers but lacks the {segment} qualification they require (R2)"
    )]
    SetLacksQualification {
        /// The set.
        set: CustomerQualification,
        /// The special segment it may buy.
        segment: Segment,
    },
    /// R1, R2: commercial offers are sold as every product kind, by any partner.
    #[error(
        "commercial is not a special segment: its offers are sold as every product kind, by any \
         partner, and cannot be restricted"
    )]
    CommercialConfigured,
    /// Each special segment must be described; silence would neither allow nor forbid.
    #[error("the {0} segment is not described")]
    SegmentNotDescribed(Segment),
    /// R1: a special segment sold as no product kind.
    #[error("{0} offers may be sold as no product kind")]
    NoProductKind(Segment),
    /// R4: the lockout is triggered by GCC subscriptions, so it cannot forbid them.
    #[error("the GCC lockout cannot forbid gcc, the segment that triggers it")]
    LockoutForbidsGcc,
    /// R4: a GCC set may buy a segment the lockout forbids, so what such a customer may buy
    /// would depend on the order of its purchases.
    #[error(
        "{set} may buy {segment} offers, but the GCC lockout forbids them once the customer has \
         a GCC subscription"
    )]
    LockoutContradictsSet {
        /// The set, which holds gcc.
        set: CustomerQualification,
        /// The segment both allowed and forbidden.
        segment: Segment,
    },
}

/// Every problem of a policy document, in document order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the policy is not valid: {}",
    .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
)]
pub struct InvalidPolicy(pub Vec<PolicyProblem>);

/// The values `values` holds more than once, each once, in order of first repetition.
fn repeats<T: Copy + Ord>(values: &[T]) -> Vec<T> {
    let mut seen = BTreeSet::new();
    let mut repeated = Vec::new();
    for &value in values {
        if !seen.insert(value) && !repeated.contains(&value) {
            repeated.push(value);
        }
    }
    repeated
}

/// Reports each value of `values` that is repeated.
fn check_repeats<T: Copy + Ord>(
    problems: &mut Vec<PolicyProblem>,
    list: impl Fn() -> String,
    values: &[T],
    name: fn(T) -> &'static str,
) {
    for value in repeats(values) {
        problems.push(PolicyProblem::Repeated {
            list: list(),
            entry: name(value),
        });
    }
}

/// Sorted and without repeats (repeats are reported separately).
fn sorted<T: Copy + Ord>(values: &[T]) -> Vec<T> {
    values
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl TryFrom<PolicyDocument> for Policy {
    type Error = InvalidPolicy;

    /// Checks the whole document and reports every problem found, not only the first.
    fn try_from(doc: PolicyDocument) -> Result<Self, Self::Error> {
        use PolicyProblem as P;
        let mut problems = Vec::new();
        if doc.version == 0 {
            problems.push(P::VersionZero);
        }

        // R3
        let mut sets: Vec<(CustomerQualification, Vec<Segment>)> = Vec::new();
        for (i, entry) in doc.qualification_sets.iter().enumerate() {
            let at = |field: &str| format!("qualification_sets[{i}].{field}");
            check_repeats(
                &mut problems,
                || at("qualifications"),
                &entry.qualifications,
                SpecialQualification::as_str,
            );
            check_repeats(
                &mut problems,
                || at("may_buy"),
                &entry.may_buy,
                Segment::as_str,
            );
            let set: CustomerQualification = entry.qualifications.iter().copied().collect();
            if sets.iter().any(|(seen, _)| *seen == set) {
                problems.push(P::SetRepeated(set));
                continue;
            }
            let may_buy = sorted(&entry.may_buy);
            if may_buy.is_empty() {
                problems.push(P::SetBuysNothing(set));
            }
            for &segment in &may_buy {
                if SpecialQualification::required_for(segment).is_some_and(|q| !set.has(q)) {
                    problems.push(P::SetLacksQualification { set, segment });
                }
            }
            sets.push((set, may_buy));
        }
        if sets.is_empty() {
            problems.push(P::NoQualificationSets);
        } else if !sets
            .iter()
            .any(|(set, _)| *set == CustomerQualification::EMPTY)
        {
            problems.push(P::CommercialSetMissing);
        }

        // R1, R2
        let mut special = BTreeMap::new();
        for (i, entry) in doc.special_segments.iter().enumerate() {
            let segment = entry.segment;
            if !segment.is_special() {
                problems.push(P::CommercialConfigured);
                continue;
            }
            if special.contains_key(&segment) {
                problems.push(P::Repeated {
                    list: "special_segments".into(),
                    entry: segment.as_str(),
                });
                continue;
            }
            check_repeats(
                &mut problems,
                || format!("special_segments[{i}].product_kinds"),
                &entry.product_kinds,
                ProductKind::as_str,
            );
            if entry.product_kinds.is_empty() {
                problems.push(P::NoProductKind(segment));
            }
            let rules = SegmentRules {
                reseller_qualification: entry
                    .reseller_qualification_required
                    .then(|| ResellerQualification::for_segment(segment))
                    .flatten(),
                indirect_reseller_needs_provider: entry.indirect_reseller_needs_provider,
                product_kinds: entry.product_kinds.iter().copied().collect(),
            };
            special.insert(segment, rules);
        }
        for &segment in Segment::ALL {
            if segment.is_special() && !special.contains_key(&segment) {
                problems.push(P::SegmentNotDescribed(segment));
            }
        }

        // R4: consistent means the lockout never forbids gcc itself, and no set holding gcc may
        // buy a segment the lockout forbids (its first GCC purchase would take that right away).
        check_repeats(
            &mut problems,
            || "gcc_lockout_forbids".into(),
            &doc.gcc_lockout_forbids,
            Segment::as_str,
        );
        let gcc_lockout = sorted(&doc.gcc_lockout_forbids);
        if gcc_lockout.contains(&Segment::Gcc) {
            problems.push(P::LockoutForbidsGcc);
        }
        for (set, may_buy) in sets
            .iter()
            .filter(|(set, _)| set.has(SpecialQualification::Gcc))
        {
            for &segment in may_buy {
                if segment != Segment::Gcc && gcc_lockout.contains(&segment) {
                    problems.push(P::LockoutContradictsSet { set: *set, segment });
                }
            }
        }

        if !problems.is_empty() {
            return Err(InvalidPolicy(problems));
        }
        let policy = Policy {
            version: PolicyVersion(doc.version),
            sets,
            special,
            gcc_lockout,
        };
        if policy.version == PolicyVersion::RULE_BOOK && policy != Policy::rule_book() {
            return Err(InvalidPolicy(vec![P::NotTheRuleBook]));
        }
        Ok(policy)
    }
}

impl From<&Policy> for PolicyDocument {
    fn from(policy: &Policy) -> Self {
        Self {
            version: policy.version.get(),
            qualification_sets: policy
                .sets
                .iter()
                .map(|(set, may_buy)| QualificationSetDocument {
                    qualifications: set.qualifications(),
                    may_buy: may_buy.clone(),
                })
                .collect(),
            special_segments: policy
                .special
                .iter()
                .map(|(&segment, rules)| SpecialSegmentDocument {
                    segment,
                    reseller_qualification_required: rules.reseller_qualification.is_some(),
                    indirect_reseller_needs_provider: rules.indirect_reseller_needs_provider,
                    product_kinds: rules.product_kinds.iter().copied().collect(),
                })
                .collect(),
            gcc_lockout_forbids: policy.gcc_lockout.clone(),
        }
    }
}

/// The policy files of the repository (`policies/`), for tests.
#[cfg(test)]
pub(crate) mod files {
    use super::{Policy, PolicyDocument};

    /// The rule book as a file.
    pub const V1_RULE_BOOK: &str = include_str!("../../policies/v1-rule-book.json");
    /// The worked example: January 2024, a customer may be both education and nonprofit.
    pub const V2_EDUCATION_NONPROFIT: &str =
        include_str!("../../policies/2024-01-education-nonprofit.json");

    /// Reads and checks a policy file.
    pub fn document(text: &str) -> PolicyDocument {
        serde_json::from_str(text).expect("a policy file is a policy document")
    }

    /// Reads and checks a policy file.
    pub fn policy(text: &str) -> Policy {
        Policy::try_from(document(text)).expect("a policy file is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::super::customer::r3;
    use super::*;
    use PolicyProblem as P;
    use Segment::*;
    use SpecialQualification as Q;

    /// R3 as written in the rule book, independent of `Policy::rule_book`.
    const MATRIX: [(CustomerQualification, &[Segment]); 7] = [
        (r3::COMMERCIAL, &[Commercial]),
        (r3::NONPROFIT, &[Commercial, Nonprofit]),
        (r3::EDUCATION, &[Commercial, Education]),
        (r3::GCC, &[Gcc]),
        (r3::STATE_OWNED_ENTITY, &[Commercial]),
        (r3::EDUCATION_STATE_OWNED_ENTITY, &[Commercial, Education]),
        (r3::GCC_STATE_OWNED_ENTITY, &[Gcc]),
    ];

    const EDUCATION_NONPROFIT: CustomerQualification =
        CustomerQualification::of(&[Q::Education, Q::Nonprofit]);

    fn v1_document() -> PolicyDocument {
        PolicyDocument::from(&Policy::rule_book())
    }

    fn problems(doc: PolicyDocument) -> Vec<PolicyProblem> {
        match Policy::try_from(doc) {
            Ok(_) => vec![],
            Err(InvalidPolicy(problems)) => problems,
        }
    }

    #[test]
    fn the_rule_book_accepts_exactly_the_seven_sets_of_r3_and_what_each_may_buy() {
        let policy = Policy::rule_book();
        assert_eq!(policy.version(), PolicyVersion::RULE_BOOK);
        for set in CustomerQualification::all() {
            let row = MATRIX.iter().find(|(valid, _)| *valid == set);
            assert_eq!(policy.accepts(set), row.is_some(), "{set}");
            assert_eq!(
                policy.purchasable_segments(set),
                row.map_or(&[][..], |(_, may_buy)| *may_buy),
                "{set}"
            );
        }
        let order: Vec<_> = policy.valid_sets().collect();
        assert_eq!(order, r3::ALL);
    }

    #[test]
    fn the_rule_book_sells_special_offers_only_license_based() {
        let policy = Policy::rule_book();
        for terms in OfferTerms::all() {
            let expected =
                terms.segment == Commercial || terms.product_kind == ProductKind::LicenseBased;
            assert_eq!(policy.is_sellable(terms), expected, "{terms:?}");
        }
    }

    #[test]
    fn the_rule_book_asks_partners_for_each_special_program_and_a_provider_for_education() {
        let policy = Policy::rule_book();
        for &segment in Segment::ALL {
            assert_eq!(
                policy.reseller_qualification_for(segment),
                ResellerQualification::for_segment(segment),
                "{segment}"
            );
            assert_eq!(
                policy.indirect_reseller_needs_provider(segment),
                segment == Education,
                "{segment}"
            );
            assert_eq!(policy.gcc_lockout_forbids(segment), segment != Gcc);
        }
        assert_eq!(
            policy.gcc_lockout_segments(),
            [Commercial, Education, Nonprofit]
        );
    }

    #[test]
    fn the_v1_file_is_the_rule_book_exactly() {
        let doc = files::document(files::V1_RULE_BOOK);
        assert_eq!(Policy::try_from(doc.clone()), Ok(Policy::rule_book()));
        // And the rule book writes back as the file (field for field, layout aside).
        let file: serde_json::Value = serde_json::from_str(files::V1_RULE_BOOK).unwrap();
        assert_eq!(serde_json::to_value(v1_document()).unwrap(), file);
        assert_eq!(doc, v1_document());
    }

    #[test]
    fn policies_round_trip_through_their_document() {
        for policy in [
            Policy::rule_book(),
            files::policy(files::V2_EDUCATION_NONPROFIT),
        ] {
            let json = serde_json::to_string(&PolicyDocument::from(&policy)).unwrap();
            let doc: PolicyDocument = serde_json::from_str(&json).unwrap();
            assert_eq!(Policy::try_from(doc), Ok(policy));
        }
    }

    #[test]
    fn the_2024_file_is_version_1_plus_education_with_nonprofit() {
        let v1 = Policy::rule_book();
        let v2 = files::policy(files::V2_EDUCATION_NONPROFIT);
        assert_eq!(v2.version().get(), 2);
        for set in CustomerQualification::all() {
            if set == EDUCATION_NONPROFIT {
                assert!(!v1.accepts(set));
                assert!(v2.accepts(set));
                assert_eq!(
                    v2.purchasable_segments(set),
                    [Commercial, Education, Nonprofit]
                );
            } else {
                assert_eq!(v2.accepts(set), v1.accepts(set), "{set}");
                assert_eq!(
                    v2.purchasable_segments(set),
                    v1.purchasable_segments(set),
                    "{set}"
                );
            }
        }
        // Nothing else changed: R1, R2 (partner side) and R4 are those of version 1.
        for terms in OfferTerms::all() {
            assert_eq!(v2.is_sellable(terms), v1.is_sellable(terms), "{terms:?}");
        }
        for &segment in Segment::ALL {
            assert_eq!(
                v2.reseller_qualification_for(segment),
                v1.reseller_qualification_for(segment)
            );
            assert_eq!(
                v2.indirect_reseller_needs_provider(segment),
                v1.indirect_reseller_needs_provider(segment)
            );
        }
        assert_eq!(v2.gcc_lockout_segments(), v1.gcc_lockout_segments());
    }

    #[test]
    fn an_invalid_set_names_the_sets_of_the_policy_in_force() {
        let v2 = files::policy(files::V2_EDUCATION_NONPROFIT);
        assert_eq!(
            v2.qualification_set([Q::Education, Q::Nonprofit]),
            Ok(EDUCATION_NONPROFIT)
        );
        let err = v2.qualification_set([Q::Nonprofit, Q::Gcc]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "{gcc, nonprofit} is not a valid qualification set; valid sets are {}, {nonprofit}, \
             {education}, {gcc}, {state_owned_entity}, {education, state_owned_entity}, \
             {gcc, state_owned_entity} and {education, nonprofit}"
        );
    }

    /// Changes the set at `index` of a document.
    fn set_at(doc: &mut PolicyDocument, index: usize, qualifications: &[Q], may_buy: &[Segment]) {
        doc.qualification_sets[index] = QualificationSetDocument {
            qualifications: qualifications.to_vec(),
            may_buy: may_buy.to_vec(),
        };
    }

    fn add_set(doc: &mut PolicyDocument, qualifications: &[Q], may_buy: &[Segment]) {
        doc.qualification_sets.push(QualificationSetDocument {
            qualifications: qualifications.to_vec(),
            may_buy: may_buy.to_vec(),
        });
    }

    fn segment(doc: &mut PolicyDocument, segment: Segment) -> &mut SpecialSegmentDocument {
        doc.special_segments
            .iter_mut()
            .find(|s| s.segment == segment)
            .expect("the rule book describes every special segment")
    }

    #[test]
    fn only_the_rule_book_may_call_itself_version_1() {
        let mut doc = PolicyDocument::from(&Policy::rule_book());
        assert_eq!(Policy::try_from(doc.clone()), Ok(Policy::rule_book()));
        add_set(&mut doc, &[Q::Education, Q::Nonprofit], &[Commercial]);
        assert_eq!(
            Policy::try_from(doc.clone()).map_err(|e| e.0),
            Err(vec![P::NotTheRuleBook])
        );
        doc.version = 2;
        assert!(Policy::try_from(doc).is_ok());
    }

    #[test]
    fn each_kind_of_problem_is_found() {
        type Edit = fn(&mut PolicyDocument);
        let cases: Vec<(&str, Edit, Vec<PolicyProblem>)> = vec![
            ("version 0", |d| d.version = 0, vec![P::VersionZero]),
            (
                "an empty policy",
                |d| d.qualification_sets.clear(),
                vec![P::NoQualificationSets],
            ),
            (
                "no plain commercial customer",
                |d| {
                    d.qualification_sets.remove(0);
                },
                vec![P::CommercialSetMissing],
            ),
            (
                "a set listed twice, in another order",
                |d| add_set(d, &[Q::StateOwnedEntity, Q::Education], &[Commercial]),
                vec![P::SetRepeated(r3::EDUCATION_STATE_OWNED_ENTITY)],
            ),
            (
                "a qualification repeated in a set",
                |d| set_at(d, 1, &[Q::Nonprofit, Q::Nonprofit], &[Nonprofit]),
                vec![P::Repeated {
                    list: "qualification_sets[1].qualifications".into(),
                    entry: "nonprofit",
                }],
            ),
            (
                "a segment repeated in what a set may buy",
                |d| set_at(d, 1, &[Q::Nonprofit], &[Nonprofit, Commercial, Nonprofit]),
                vec![P::Repeated {
                    list: "qualification_sets[1].may_buy".into(),
                    entry: "nonprofit",
                }],
            ),
            (
                "a set that may buy nothing",
                |d| set_at(d, 4, &[Q::StateOwnedEntity], &[]),
                vec![P::SetBuysNothing(r3::STATE_OWNED_ENTITY)],
            ),
            (
                "a set that may buy a special segment without its qualification",
                |d| add_set(d, &[Q::Nonprofit, Q::StateOwnedEntity], &[Commercial, Gcc]),
                vec![P::SetLacksQualification {
                    set: CustomerQualification::of(&[Q::Nonprofit, Q::StateOwnedEntity]),
                    segment: Gcc,
                }],
            ),
            (
                "commercial offers restricted",
                |d| {
                    d.special_segments.push(SpecialSegmentDocument {
                        segment: Commercial,
                        reseller_qualification_required: false,
                        indirect_reseller_needs_provider: false,
                        product_kinds: vec![ProductKind::LicenseBased],
                    })
                },
                vec![P::CommercialConfigured],
            ),
            (
                "a special segment not described",
                |d| d.special_segments.retain(|s| s.segment != Gcc),
                vec![P::SegmentNotDescribed(Gcc)],
            ),
            (
                "a special segment described twice",
                |d| {
                    let again = segment(d, Nonprofit).clone();
                    d.special_segments.push(again);
                },
                vec![P::Repeated {
                    list: "special_segments".into(),
                    entry: "nonprofit",
                }],
            ),
            (
                "a special segment sold as nothing",
                |d| segment(d, Education).product_kinds.clear(),
                vec![P::NoProductKind(Education)],
            ),
            (
                "a product kind listed twice",
                |d| {
                    segment(d, Gcc)
                        .product_kinds
                        .push(ProductKind::LicenseBased)
                },
                vec![P::Repeated {
                    list: "special_segments[2].product_kinds".into(),
                    entry: "license_based",
                }],
            ),
            (
                "a lockout that forbids gcc",
                |d| d.gcc_lockout_forbids.push(Gcc),
                vec![P::LockoutForbidsGcc],
            ),
            (
                "a lockout segment listed twice",
                |d| d.gcc_lockout_forbids.push(Commercial),
                vec![P::Repeated {
                    list: "gcc_lockout_forbids".into(),
                    entry: "commercial",
                }],
            ),
            (
                "a GCC set that may buy what the lockout forbids",
                |d| set_at(d, 6, &[Q::Gcc, Q::StateOwnedEntity], &[Gcc, Commercial]),
                vec![P::LockoutContradictsSet {
                    set: r3::GCC_STATE_OWNED_ENTITY,
                    segment: Commercial,
                }],
            ),
        ];
        for (case, edit, expected) in cases {
            let mut doc = v1_document();
            edit(&mut doc);
            assert_eq!(problems(doc), expected, "{case}");
        }
    }

    #[test]
    fn consistent_variations_are_valid_policies() {
        type Edit = fn(&mut PolicyDocument);
        let cases: [(&str, Edit); 5] = [
            (
                "a lockout that no longer forbids commercial, with GCC sets buying commercial",
                |d| {
                    d.gcc_lockout_forbids = vec![Education, Nonprofit];
                    set_at(d, 3, &[Q::Gcc], &[Gcc, Commercial]);
                },
            ),
            ("no lockout at all", |d| d.gcc_lockout_forbids.clear()),
            (
                "education without reseller authorization (the current documentation)",
                |d| segment(d, Education).reseller_qualification_required = false,
            ),
            (
                "education offers also as perpetual software (the current documentation)",
                |d| {
                    segment(d, Education)
                        .product_kinds
                        .push(ProductKind::PerpetualSoftware)
                },
            ),
            ("a special segment no set may buy", |d| {
                d.qualification_sets
                    .retain(|s| !s.qualifications.contains(&Q::Gcc))
            }),
        ];
        for (case, edit) in cases {
            let mut doc = v1_document();
            doc.version = 2;
            edit(&mut doc);
            assert_eq!(problems(doc), vec![], "{case}");
        }
    }

    #[test]
    fn every_problem_is_reported_at_once_in_document_order() {
        let mut doc = v1_document();
        doc.version = 0;
        add_set(&mut doc, &[Q::Education, Q::Gcc], &[Commercial, Gcc]);
        segment(&mut doc, Nonprofit).product_kinds.clear();
        doc.gcc_lockout_forbids.push(Gcc);
        let err = Policy::try_from(doc).unwrap_err();
        let set = CustomerQualification::of(&[Q::Education, Q::Gcc]);
        assert_eq!(
            err.0,
            [
                P::VersionZero,
                P::NoProductKind(Nonprofit),
                P::LockoutForbidsGcc,
                P::LockoutContradictsSet {
                    set,
                    segment: Commercial
                },
            ]
        );
        assert_eq!(
            err.to_string(),
            "the policy is not valid: the version must be 1 or more; nonprofit offers may be sold \
             as no product kind; the GCC lockout cannot forbid gcc, the segment that triggers it; \
             {education, gcc} may buy commercial offers, but the GCC lockout forbids them once \
             the customer has a GCC subscription"
        );
    }

    #[test]
    fn unknown_names_and_missing_fields_are_refused_while_reading() {
        let v1: serde_json::Value = serde_json::from_str(files::V1_RULE_BOOK).unwrap();
        type Edit = fn(&mut serde_json::Value);
        let edits: [(&str, Edit); 5] = [
            ("unknown segment", |v| {
                v["gcc_lockout_forbids"][0] = "Commercial".into()
            }),
            ("unknown qualification", |v| {
                v["qualification_sets"][1]["qualifications"][0] = "charity".into()
            }),
            ("unknown product kind", |v| {
                v["special_segments"][0]["product_kinds"][0] = "saas".into()
            }),
            ("unknown field", |v| v["commercial_prices"] = true.into()),
            ("missing flag", |v| {
                if let Some(o) = v["special_segments"][0].as_object_mut() {
                    o.remove("reseller_qualification_required");
                }
            }),
        ];
        for (case, edit) in edits {
            let mut value = v1.clone();
            edit(&mut value);
            assert!(
                serde_json::from_value::<PolicyDocument>(value).is_err(),
                "{case}"
            );
        }
    }
}
