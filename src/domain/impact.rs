//! What publishing a draft would change (issue 14, item 3): the same facts decided under the
//! policy in force and under the draft. Pure, so the caller can decide each distinct combination
//! of facts once and count the rows that share it.

use super::{
    CustomerQualification, OfferTerms, PartnerProfile, Policy, PurchaseContext, PurchaseDecision,
    RuleViolation, decide,
};

/// Everything a purchase decision reads about one customer and one partner, apart from the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The customer's qualification set now.
    pub customer: CustomerQualification,
    /// Whether the customer's history holds a GCC subscription (R4).
    pub gcc_history: bool,
    /// The partner's profile now.
    pub partner: PartnerProfile,
    /// Whether the customer has a relationship with the partner.
    pub related: bool,
}

impl Standing {
    fn decide(&self, policy: &Policy, offer: OfferTerms) -> PurchaseDecision {
        decide(
            policy,
            &PurchaseContext {
                partner: &self.partner,
                customer_related_to_partner: self.related,
                customer: self.customer,
                customer_has_gcc_history: self.gcc_history,
                offer,
            },
        )
    }
}

/// The policy in force and a draft that would replace it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyChange<'a> {
    /// The version in force now.
    pub current: &'a Policy,
    /// The draft.
    pub draft: &'a Policy,
}

/// The offer terms a customer–partner pair may buy under the draft and not now (gained), and
/// the reverse (lost).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OfferChange {
    /// Allowed by the draft, denied now.
    pub gained: Vec<OfferTerms>,
    /// Allowed now, denied by the draft.
    pub lost: Vec<OfferTerms>,
}

impl OfferChange {
    /// Whether the pair may buy exactly what it may buy now.
    pub fn is_empty(&self) -> bool {
        self.gained.is_empty() && self.lost.is_empty()
    }
}

impl PolicyChange<'_> {
    /// Whether a customer holding `set` would hold a set the draft does not accept, though the
    /// version in force accepts it.
    pub fn invalidates(&self, set: CustomerQualification) -> bool {
        self.current.accepts(set) && !self.draft.accepts(set)
    }

    /// The draft's reasons to deny a purchase the version in force allows; `None` if the draft
    /// allows it too, or if it is denied already.
    pub fn newly_denied(
        &self,
        standing: &Standing,
        offer: OfferTerms,
    ) -> Option<Vec<RuleViolation>> {
        match (
            standing.decide(self.current, offer),
            standing.decide(self.draft, offer),
        ) {
            (PurchaseDecision::Allowed, PurchaseDecision::Denied(violations)) => Some(violations),
            _ => None,
        }
    }

    /// Which of `offers` the pair gains and loses, in the order given.
    pub fn offer_change(&self, standing: &Standing, offers: &[OfferTerms]) -> OfferChange {
        let mut change = OfferChange::default();
        for &offer in offers {
            match (
                standing.decide(self.current, offer).is_allowed(),
                standing.decide(self.draft, offer).is_allowed(),
            ) {
                (false, true) => change.gained.push(offer),
                (true, false) => change.lost.push(offer),
                _ => {}
            }
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        PartnerKind, PolicyDocument, ProductKind, ResellerQualification, Segment,
        SpecialQualification, policy::files,
    };
    use super::*;

    fn v2() -> Policy {
        Policy::try_from(files::document(files::V2_EDUCATION_NONPROFIT)).unwrap()
    }

    /// Version 2 without the education + state-owned entity set, and without the reseller
    /// qualification for gcc.
    fn tightened() -> Policy {
        let mut doc: PolicyDocument = files::document(files::V2_EDUCATION_NONPROFIT);
        doc.version = 3;
        doc.qualification_sets.retain(|s| {
            s.qualifications
                != [
                    SpecialQualification::Education,
                    SpecialQualification::StateOwnedEntity,
                ]
        });
        for segment in &mut doc.special_segments {
            if segment.segment == Segment::Gcc {
                segment.reseller_qualification_required = false;
            }
        }
        Policy::try_from(doc).unwrap()
    }

    fn license_based(segment: Segment) -> OfferTerms {
        OfferTerms {
            segment,
            product_kind: ProductKind::LicenseBased,
        }
    }

    fn standing(customer: &[SpecialQualification], quals: &[ResellerQualification]) -> Standing {
        Standing {
            customer: CustomerQualification::of(customer),
            gcc_history: false,
            partner: PartnerProfile {
                kind: PartnerKind::DirectBillPartner,
                reseller_qualifications: quals.iter().copied().collect(),
                has_indirect_provider: false,
            },
            related: true,
        }
    }

    #[test]
    fn a_set_becomes_invalid_only_if_valid_now_and_not_in_the_draft() {
        use SpecialQualification as Q;
        let (current, draft) = (v2(), tightened());
        let change = PolicyChange {
            current: &current,
            draft: &draft,
        };
        assert!(change.invalidates(CustomerQualification::of(&[
            Q::Education,
            Q::StateOwnedEntity
        ])));
        assert!(!change.invalidates(CustomerQualification::of(&[Q::Education])));
        // Invalid under both: not an effect of the draft.
        assert!(!change.invalidates(CustomerQualification::of(&[Q::Gcc, Q::Nonprofit])));
    }

    #[test]
    fn a_pair_gains_and_loses_what_the_two_versions_decide_differently() {
        use SpecialQualification as Q;
        let (current, draft) = (v2(), tightened());
        let change = PolicyChange {
            current: &current,
            draft: &draft,
        };
        let offers: Vec<OfferTerms> = Segment::ALL.iter().map(|&s| license_based(s)).collect();

        let gcc = standing(&[Q::Gcc], &[]);
        assert_eq!(
            change.offer_change(&gcc, &offers),
            OfferChange {
                gained: vec![license_based(Segment::Gcc)],
                lost: vec![]
            }
        );
        let school = standing(
            &[Q::Education, Q::StateOwnedEntity],
            &[ResellerQualification::Education],
        );
        assert_eq!(
            change.offer_change(&school, &offers),
            OfferChange {
                gained: vec![],
                lost: vec![
                    license_based(Segment::Commercial),
                    license_based(Segment::Education)
                ]
            }
        );
        let codes: Vec<&str> = change
            .newly_denied(&school, license_based(Segment::Education))
            .unwrap()
            .iter()
            .map(RuleViolation::code)
            .collect();
        assert_eq!(codes, ["segment_not_allowed"]);
        // Denied by both: nothing newly denied.
        assert_eq!(
            change.newly_denied(&school, license_based(Segment::Nonprofit)),
            None
        );
        assert!(change.offer_change(&standing(&[], &[]), &offers).is_empty());
    }
}
