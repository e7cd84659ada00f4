//! The purchase decision: R1–R4 applied to one proposed purchase.

use serde::{Deserialize, Serialize};

use super::{
    CustomerQualification, OfferTerms, PartnerKind, PartnerProfile, ProductKind,
    ResellerQualification, Segment, SpecialQualification,
};

/// Everything the rules need to decide one purchase, loaded by the caller.
#[derive(Debug, Clone)]
pub struct PurchaseContext<'a> {
    /// The partner buying on the customer's behalf.
    pub partner: &'a PartnerProfile,
    /// Whether the customer has a relationship with that partner.
    pub customer_related_to_partner: bool,
    /// The customer's special qualification set in force now.
    pub customer: CustomerQualification,
    /// Whether the customer's subscription history holds any GCC subscription (R4).
    pub customer_has_gcc_history: bool,
    /// The offer being bought.
    pub offer: OfferTerms,
}

/// One broken rule, with a stable machine-readable code (the serde tag).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RuleViolation {
    /// A partner may only buy for customers it has a relationship with.
    NoCustomerRelationship,
    /// R1: a special offer that is not license based.
    OfferNotLicenseBased {
        /// The offer's segment.
        segment: Segment,
        /// The offer's product kind.
        product_kind: ProductKind,
    },
    /// R2: the partner's profile does not list the segment's reseller qualification.
    ResellerNotQualified {
        /// The qualification the partner lacks.
        required: ResellerQualification,
    },
    /// R2: an indirect reseller delivers education offers only through a connected provider.
    IndirectResellerWithoutProvider,
    /// R2: the customer lacks the special qualification the segment requires.
    CustomerNotQualified {
        /// The qualification the customer lacks.
        required: SpecialQualification,
    },
    /// R3: the purchase matrix does not allow this segment for the customer's set.
    SegmentNotAllowed {
        /// The offer's segment.
        segment: Segment,
        /// The customer's qualification set.
        customer_qualifications: CustomerQualification,
    },
    /// R4: the customer's history holds a GCC subscription.
    GccLockout {
        /// The offer's (non-GCC) segment.
        segment: Segment,
    },
}

impl RuleViolation {
    /// Every code, in rule-book order (the order `decide` reports them in).
    pub const CODES: [&'static str; 7] = [
        "no_customer_relationship",
        "offer_not_license_based",
        "reseller_not_qualified",
        "indirect_reseller_without_provider",
        "customer_not_qualified",
        "segment_not_allowed",
        "gcc_lockout",
    ];

    /// The stable code, as serialized.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoCustomerRelationship => "no_customer_relationship",
            Self::OfferNotLicenseBased { .. } => "offer_not_license_based",
            Self::ResellerNotQualified { .. } => "reseller_not_qualified",
            Self::IndirectResellerWithoutProvider => "indirect_reseller_without_provider",
            Self::CustomerNotQualified { .. } => "customer_not_qualified",
            Self::SegmentNotAllowed { .. } => "segment_not_allowed",
            Self::GccLockout { .. } => "gcc_lockout",
        }
    }
}

impl std::fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCustomerRelationship => {
                f.write_str("The partner has no relationship with this customer.")
            }
            Self::OfferNotLicenseBased { segment, product_kind } => write!(
                f,
                "Special prices exist only for license-based products; this {segment} offer is {product_kind}."
            ),
            Self::ResellerNotQualified { required } => write!(
                f,
                "The partner's profile does not list the {required} reseller qualification."
            ),
            Self::IndirectResellerWithoutProvider => f.write_str(
                "An indirect reseller must be connected to an indirect provider to deliver education offers.",
            ),
            Self::CustomerNotQualified { required } => write!(
                f,
                "The customer does not hold the {required} special qualification."
            ),
            Self::SegmentNotAllowed { segment, customer_qualifications } => write!(
                f,
                "A customer qualified as {} may not buy {segment} offers.",
                customer_qualifications.describe()
            ),
            Self::GccLockout { segment } => write!(
                f,
                "The customer has a GCC subscription, so it may not buy {segment} subscriptions."
            ),
        }
    }
}

/// The outcome of the rules for one proposed purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseDecision {
    /// Every rule is met.
    Allowed,
    /// Every rule that is broken, in rule-book order; never empty.
    Denied(Vec<RuleViolation>),
}

impl PurchaseDecision {
    /// Whether the purchase may go ahead.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// Decides a purchase, listing every broken rule rather than stopping at the first.
pub fn decide(ctx: &PurchaseContext<'_>) -> PurchaseDecision {
    let segment = ctx.offer.segment;
    let mut violations = Vec::new();

    if !ctx.customer_related_to_partner {
        violations.push(RuleViolation::NoCustomerRelationship);
    }
    // R1
    if !ctx.offer.is_sellable() {
        violations.push(RuleViolation::OfferNotLicenseBased {
            segment,
            product_kind: ctx.offer.product_kind,
        });
    }
    // R2, partner side.
    if let Some(required) = ResellerQualification::required_for(segment)
        && !ctx.partner.reseller_qualifications.contains(&required)
    {
        violations.push(RuleViolation::ResellerNotQualified { required });
    }
    if segment == Segment::Education
        && ctx.partner.kind == PartnerKind::IndirectReseller
        && !ctx.partner.has_indirect_provider
    {
        violations.push(RuleViolation::IndirectResellerWithoutProvider);
    }
    // R2, customer side.
    if let Some(required) = SpecialQualification::required_for(segment)
        && !ctx.customer.has(required)
    {
        violations.push(RuleViolation::CustomerNotQualified { required });
    }
    // R3
    if !ctx.customer.purchasable_segments().contains(&segment) {
        violations.push(RuleViolation::SegmentNotAllowed {
            segment,
            customer_qualifications: ctx.customer,
        });
    }
    // R4
    if ctx.customer_has_gcc_history && segment != Segment::Gcc {
        violations.push(RuleViolation::GccLockout { segment });
    }

    if violations.is_empty() {
        PurchaseDecision::Allowed
    } else {
        PurchaseDecision::Denied(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CustomerQualification as C;
    use Segment::*;

    fn partner(
        kind: PartnerKind,
        quals: &[ResellerQualification],
        provider: bool,
    ) -> PartnerProfile {
        PartnerProfile {
            kind,
            reseller_qualifications: quals.iter().copied().collect(),
            has_indirect_provider: provider,
        }
    }

    fn fully_qualified() -> PartnerProfile {
        partner(
            PartnerKind::DirectBillPartner,
            ResellerQualification::ALL,
            false,
        )
    }

    fn license_based(segment: Segment) -> OfferTerms {
        OfferTerms {
            segment,
            product_kind: ProductKind::LicenseBased,
        }
    }

    fn codes(decision: &PurchaseDecision) -> Vec<&'static str> {
        match decision {
            PurchaseDecision::Allowed => vec![],
            PurchaseDecision::Denied(v) => v.iter().map(RuleViolation::code).collect(),
        }
    }

    fn decide_for(
        customer: C,
        offer: OfferTerms,
        partner: &PartnerProfile,
        gcc_history: bool,
    ) -> PurchaseDecision {
        decide(&PurchaseContext {
            partner,
            customer_related_to_partner: true,
            customer,
            customer_has_gcc_history: gcc_history,
            offer,
        })
    }

    /// R3 as written in the rule book, independent of `purchasable_segments`.
    const MATRIX: [(C, &[Segment]); 7] = [
        (C::Commercial, &[Commercial]),
        (C::Nonprofit, &[Commercial, Nonprofit]),
        (C::Education, &[Commercial, Education]),
        (C::Gcc, &[Gcc]),
        (C::StateOwnedEntity, &[Commercial]),
        (C::EducationStateOwnedEntity, &[Commercial, Education]),
        (C::GccStateOwnedEntity, &[Gcc]),
    ];

    #[test]
    fn every_matrix_row_against_every_segment() {
        let partner = fully_qualified();
        for (customer, may_buy) in MATRIX {
            for segment in Segment::ALL.iter().copied() {
                let decision = decide_for(customer, license_based(segment), &partner, false);
                let lacks_qualification = SpecialQualification::required_for(segment)
                    .is_some_and(|q| !customer.qualifications().contains(&q));
                let expected: Vec<&str> = match (may_buy.contains(&segment), lacks_qualification) {
                    (true, _) => vec![],
                    (false, true) => vec!["customer_not_qualified", "segment_not_allowed"],
                    (false, false) => vec!["segment_not_allowed"],
                };
                assert_eq!(codes(&decision), expected, "{customer:?} buying {segment}");
            }
        }
    }

    #[test]
    fn r1_special_offers_must_be_license_based() {
        let partner = fully_qualified();
        for (customer, may_buy) in MATRIX {
            for &segment in may_buy {
                for &product_kind in ProductKind::ALL {
                    let decision = decide_for(
                        customer,
                        OfferTerms {
                            segment,
                            product_kind,
                        },
                        &partner,
                        false,
                    );
                    let expected: &[&str] =
                        if segment.is_special() && product_kind != ProductKind::LicenseBased {
                            &["offer_not_license_based"]
                        } else {
                            &[]
                        };
                    assert_eq!(
                        codes(&decision),
                        expected,
                        "{customer:?} {segment} {product_kind}"
                    );
                }
            }
        }
    }

    #[test]
    fn r2_partner_needs_the_reseller_qualification_of_each_special_segment() {
        let cases = [
            (C::Education, Education, ResellerQualification::Education),
            (C::Nonprofit, Nonprofit, ResellerQualification::Nonprofit),
            (C::Gcc, Gcc, ResellerQualification::Gcc),
        ];
        for (customer, segment, required) in cases {
            let others: Vec<_> = ResellerQualification::ALL
                .iter()
                .copied()
                .filter(|q| *q != required)
                .collect();
            for kind in PartnerKind::ALL.iter().copied() {
                let without = partner(kind, &others, true);
                let decision = decide_for(customer, license_based(segment), &without, false);
                assert_eq!(
                    decision,
                    PurchaseDecision::Denied(vec![RuleViolation::ResellerNotQualified {
                        required
                    }]),
                    "{kind} selling {segment}"
                );
                let with = partner(kind, &[required], true);
                assert!(decide_for(customer, license_based(segment), &with, false).is_allowed());
            }
        }
        // Commercial offers need no reseller qualification at all.
        let unqualified = partner(PartnerKind::IndirectReseller, &[], false);
        assert!(
            decide_for(
                C::Commercial,
                license_based(Commercial),
                &unqualified,
                false
            )
            .is_allowed()
        );
    }

    #[test]
    fn r2_indirect_reseller_without_provider_cannot_deliver_education() {
        let quals = ResellerQualification::ALL;
        let alone = partner(PartnerKind::IndirectReseller, quals, false);
        let connected = partner(PartnerKind::IndirectReseller, quals, true);
        assert_eq!(
            codes(&decide_for(
                C::Education,
                license_based(Education),
                &alone,
                false
            )),
            ["indirect_reseller_without_provider"]
        );
        assert!(decide_for(C::Education, license_based(Education), &connected, false).is_allowed());
        // Only education requires the provider connection (R2 table).
        assert!(decide_for(C::Gcc, license_based(Gcc), &alone, false).is_allowed());
        assert!(decide_for(C::Nonprofit, license_based(Nonprofit), &alone, false).is_allowed());
        assert!(decide_for(C::Commercial, license_based(Commercial), &alone, false).is_allowed());
        // Other kinds never need one.
        for kind in [
            PartnerKind::DirectBillPartner,
            PartnerKind::IndirectProvider,
        ] {
            let p = partner(kind, quals, false);
            assert!(decide_for(C::Education, license_based(Education), &p, false).is_allowed());
        }
    }

    #[test]
    fn r4_gcc_history_locks_out_every_other_segment_whatever_the_current_set() {
        let partner = fully_qualified();
        for (customer, may_buy) in MATRIX {
            for segment in Segment::ALL.iter().copied() {
                let decision = decide_for(customer, license_based(segment), &partner, true);
                let has_lockout = codes(&decision).contains(&"gcc_lockout");
                assert_eq!(has_lockout, segment != Gcc, "{customer:?} buying {segment}");
                if segment == Gcc && may_buy.contains(&Gcc) {
                    assert!(
                        decision.is_allowed(),
                        "GCC history never blocks GCC purchases"
                    );
                }
            }
        }
        // A customer whose gcc qualification was removed stays locked out of education.
        assert_eq!(
            decide_for(C::Education, license_based(Education), &partner, true),
            PurchaseDecision::Denied(vec![RuleViolation::GccLockout { segment: Education }])
        );
    }

    #[test]
    fn a_partner_without_relationship_is_denied() {
        let partner = fully_qualified();
        let decision = decide(&PurchaseContext {
            partner: &partner,
            customer_related_to_partner: false,
            customer: C::Commercial,
            customer_has_gcc_history: false,
            offer: license_based(Commercial),
        });
        assert_eq!(codes(&decision), ["no_customer_relationship"]);
    }

    #[test]
    fn every_broken_rule_is_listed_in_rule_book_order() {
        let lonely = partner(PartnerKind::IndirectReseller, &[], false);
        let decision = decide(&PurchaseContext {
            partner: &lonely,
            customer_related_to_partner: false,
            customer: C::Gcc,
            customer_has_gcc_history: true,
            offer: OfferTerms {
                segment: Education,
                product_kind: ProductKind::Azure,
            },
        });
        assert_eq!(codes(&decision), RuleViolation::CODES);
    }

    #[test]
    fn violations_serialize_with_their_code_and_details() {
        let v = RuleViolation::SegmentNotAllowed {
            segment: Commercial,
            customer_qualifications: C::GccStateOwnedEntity,
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "code": "segment_not_allowed",
                "segment": "commercial",
                "customer_qualifications": ["gcc", "state_owned_entity"],
            })
        );
        assert_eq!(serde_json::from_value::<RuleViolation>(json).unwrap(), v);
        assert_eq!(
            v.to_string(),
            "A customer qualified as {gcc, state_owned_entity} may not buy commercial offers."
        );
        // The serde tag and `code()` are the same stable code for every variant.
        let every_variant = [
            RuleViolation::NoCustomerRelationship,
            RuleViolation::OfferNotLicenseBased {
                segment: Gcc,
                product_kind: ProductKind::Azure,
            },
            RuleViolation::ResellerNotQualified {
                required: ResellerQualification::Gcc,
            },
            RuleViolation::IndirectResellerWithoutProvider,
            RuleViolation::CustomerNotQualified {
                required: SpecialQualification::Gcc,
            },
            v.clone(),
            RuleViolation::GccLockout { segment: Education },
        ];
        for violation in every_variant {
            let json = serde_json::to_value(&violation).unwrap();
            assert_eq!(json["code"], violation.code());
            assert_eq!(
                serde_json::from_value::<RuleViolation>(json).unwrap(),
                violation
            );
        }
    }
}
