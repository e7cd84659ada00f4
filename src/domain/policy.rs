//! The rules as a value (issue 14): everything the rule book makes configurable, one version at a
//! time. `decide` takes the policy as a value.
//!
//! What stays structural, in code, in every version: a special segment needs the customer
//! qualification of its own name (R2, customer side); commercial offers are sold as any product
//! kind by any partner (R1, R2); the GCC lockout reads any GCC subscription in the customer's
//! history, whatever its status and whichever partner sold it (R4).

use std::collections::{BTreeMap, BTreeSet};

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
#[cfg(test)]
mod tests {
    use super::super::customer::r3;
    use super::*;
    use Segment::*;

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
}
