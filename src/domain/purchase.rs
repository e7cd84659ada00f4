//! The purchase decision: R1–R4, as configured by a policy version, applied to one proposed
//! purchase.

use serde::{Deserialize, Serialize};

use super::{
    CustomerQualification, OfferTerms, PartnerKind, PartnerProfile, Policy, ProductKind,
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
    /// R1: a special offer of a product kind the policy does not sell in its segment (in the
    /// rule book: not license based).
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
    /// R2: an indirect reseller delivers the segment's offers only through a connected provider
    /// (in the rule book: education).
    IndirectResellerWithoutProvider,
    /// R2: the customer lacks the special qualification the segment requires.
    CustomerNotQualified {
        /// The qualification the customer lacks.
        required: SpecialQualification,
    },
    /// R3: the policy does not let the customer's set buy this segment (or does not accept the set).
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
                "The policy does not sell {segment} offers as {product_kind}: special prices are only for the product kinds it lists."
            ),
            Self::ResellerNotQualified { required } => write!(
                f,
                "The partner's profile does not list the {required} reseller qualification."
            ),
            Self::IndirectResellerWithoutProvider => f.write_str(
                "An indirect reseller must be connected to an indirect provider to deliver offers of this segment.",
            ),
            Self::CustomerNotQualified { required } => write!(
                f,
                "The customer does not hold the {required} special qualification."
            ),
            Self::SegmentNotAllowed { segment, customer_qualifications } => write!(
                f,
                "A customer qualified as {customer_qualifications} may not buy {segment} offers."
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

/// Decides a purchase under `policy`, listing every broken rule rather than stopping at the first.
/// A customer whose set the policy does not accept (e.g. one recorded under another version) may
/// buy nothing: every purchase breaks R3.
pub fn decide(policy: &Policy, ctx: &PurchaseContext<'_>) -> PurchaseDecision {
    let segment = ctx.offer.segment;
    let mut violations = Vec::new();

    if !ctx.customer_related_to_partner {
        violations.push(RuleViolation::NoCustomerRelationship);
    }
    // R1
    if !policy.is_sellable(ctx.offer) {
        violations.push(RuleViolation::OfferNotLicenseBased {
            segment,
            product_kind: ctx.offer.product_kind,
        });
    }
    // R2, partner side.
    if let Some(required) = policy.reseller_qualification_for(segment)
        && !ctx.partner.reseller_qualifications.contains(&required)
    {
        violations.push(RuleViolation::ResellerNotQualified { required });
    }
    if policy.indirect_reseller_needs_provider(segment)
        && ctx.partner.kind == PartnerKind::IndirectReseller
        && !ctx.partner.has_indirect_provider
    {
        violations.push(RuleViolation::IndirectResellerWithoutProvider);
    }
    // R2, customer side: structural, the same in every version.
    if let Some(required) = SpecialQualification::required_for(segment)
        && !ctx.customer.has(required)
    {
        violations.push(RuleViolation::CustomerNotQualified { required });
    }
    // R3
    if !policy.purchasable_segments(ctx.customer).contains(&segment) {
        violations.push(RuleViolation::SegmentNotAllowed {
            segment,
            customer_qualifications: ctx.customer,
        });
    }
    // R4
    if ctx.customer_has_gcc_history && policy.gcc_lockout_forbids(segment) {
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
    use super::super::customer::r3 as C;
    use super::*;
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
        customer: CustomerQualification,
        offer: OfferTerms,
        partner: &PartnerProfile,
        gcc_history: bool,
    ) -> PurchaseDecision {
        decide_under(&Policy::rule_book(), customer, offer, partner, gcc_history)
    }

    fn decide_under(
        policy: &Policy,
        customer: CustomerQualification,
        offer: OfferTerms,
        partner: &PartnerProfile,
        gcc_history: bool,
    ) -> PurchaseDecision {
        decide(
            policy,
            &PurchaseContext {
                partner,
                customer_related_to_partner: true,
                customer,
                customer_has_gcc_history: gcc_history,
                offer,
            },
        )
    }

    /// R3 as written in the rule book, independent of `purchasable_segments`.
    const MATRIX: [(CustomerQualification, &[Segment]); 7] = [
        (C::COMMERCIAL, &[Commercial]),
        (C::NONPROFIT, &[Commercial, Nonprofit]),
        (C::EDUCATION, &[Commercial, Education]),
        (C::GCC, &[Gcc]),
        (C::STATE_OWNED_ENTITY, &[Commercial]),
        (C::EDUCATION_STATE_OWNED_ENTITY, &[Commercial, Education]),
        (C::GCC_STATE_OWNED_ENTITY, &[Gcc]),
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
            (C::EDUCATION, Education, ResellerQualification::Education),
            (C::NONPROFIT, Nonprofit, ResellerQualification::Nonprofit),
            (C::GCC, Gcc, ResellerQualification::Gcc),
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
                C::COMMERCIAL,
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
                C::EDUCATION,
                license_based(Education),
                &alone,
                false
            )),
            ["indirect_reseller_without_provider"]
        );
        assert!(decide_for(C::EDUCATION, license_based(Education), &connected, false).is_allowed());
        // Only education requires the provider connection (R2 table).
        assert!(decide_for(C::GCC, license_based(Gcc), &alone, false).is_allowed());
        assert!(decide_for(C::NONPROFIT, license_based(Nonprofit), &alone, false).is_allowed());
        assert!(decide_for(C::COMMERCIAL, license_based(Commercial), &alone, false).is_allowed());
        // Other kinds never need one.
        for kind in [
            PartnerKind::DirectBillPartner,
            PartnerKind::IndirectProvider,
        ] {
            let p = partner(kind, quals, false);
            assert!(decide_for(C::EDUCATION, license_based(Education), &p, false).is_allowed());
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
            decide_for(C::EDUCATION, license_based(Education), &partner, true),
            PurchaseDecision::Denied(vec![RuleViolation::GccLockout { segment: Education }])
        );
    }

    #[test]
    fn a_partner_without_relationship_is_denied() {
        let partner = fully_qualified();
        let decision = decide(
            &Policy::rule_book(),
            &PurchaseContext {
                partner: &partner,
                customer_related_to_partner: false,
                customer: C::COMMERCIAL,
                customer_has_gcc_history: false,
                offer: license_based(Commercial),
            },
        );
        assert_eq!(codes(&decision), ["no_customer_relationship"]);
    }

    #[test]
    fn every_broken_rule_is_listed_in_rule_book_order() {
        let lonely = partner(PartnerKind::IndirectReseller, &[], false);
        let decision = decide(
            &Policy::rule_book(),
            &PurchaseContext {
                partner: &lonely,
                customer_related_to_partner: false,
                customer: C::GCC,
                customer_has_gcc_history: true,
                offer: OfferTerms {
                    segment: Education,
                    product_kind: ProductKind::Azure,
                },
            },
        );
        assert_eq!(codes(&decision), RuleViolation::CODES);
    }

    #[test]
    fn violations_serialize_with_their_code_and_details() {
        let v = RuleViolation::SegmentNotAllowed {
            segment: Commercial,
            customer_qualifications: C::GCC_STATE_OWNED_ENTITY,
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

    /// The rules as they were hard-coded before policies (R1–R4 as the rule book writes them),
    /// kept as the oracle that version 1 must match.
    fn hard_coded(ctx: &PurchaseContext<'_>) -> Vec<&'static str> {
        let segment = ctx.offer.segment;
        let may_buy = MATRIX
            .iter()
            .find(|(set, _)| *set == ctx.customer)
            .map_or(&[][..], |(_, may_buy)| *may_buy);
        let reseller = match segment {
            Commercial => None,
            Education => Some(ResellerQualification::Education),
            Nonprofit => Some(ResellerQualification::Nonprofit),
            Gcc => Some(ResellerQualification::Gcc),
        };
        let mut codes = Vec::new();
        if !ctx.customer_related_to_partner {
            codes.push("no_customer_relationship");
        }
        if segment != Commercial && ctx.offer.product_kind != ProductKind::LicenseBased {
            codes.push("offer_not_license_based");
        }
        if reseller.is_some_and(|q| !ctx.partner.reseller_qualifications.contains(&q)) {
            codes.push("reseller_not_qualified");
        }
        if segment == Education
            && ctx.partner.kind == PartnerKind::IndirectReseller
            && !ctx.partner.has_indirect_provider
        {
            codes.push("indirect_reseller_without_provider");
        }
        if SpecialQualification::required_for(segment).is_some_and(|q| !ctx.customer.has(q)) {
            codes.push("customer_not_qualified");
        }
        if !may_buy.contains(&segment) {
            codes.push("segment_not_allowed");
        }
        if ctx.customer_has_gcc_history && segment != Gcc {
            codes.push("gcc_lockout");
        }
        codes
    }

    #[test]
    fn version_1_decides_exactly_as_the_hard_coded_rules_on_every_combination() {
        // Sets (all 16) x offer terms x partner profiles x relationship x GCC history.
        let policy = Policy::rule_book();
        let reseller_sets: Vec<Vec<ResellerQualification>> = (0u8..8)
            .map(|mask| {
                ResellerQualification::ALL
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, q)| *q)
                    .collect()
            })
            .collect();
        let mut decided = 0;
        for customer in CustomerQualification::all() {
            for offer in OfferTerms::all() {
                for &kind in PartnerKind::ALL {
                    for quals in &reseller_sets {
                        for provider in [false, true] {
                            let partner = partner(kind, quals, provider);
                            for related in [false, true] {
                                for history in [false, true] {
                                    let ctx = PurchaseContext {
                                        partner: &partner,
                                        customer_related_to_partner: related,
                                        customer,
                                        customer_has_gcc_history: history,
                                        offer,
                                    };
                                    assert_eq!(
                                        codes(&decide(&policy, &ctx)),
                                        hard_coded(&ctx),
                                        "{ctx:?}"
                                    );
                                    decided += 1;
                                }
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(decided, 16 * 16 * 3 * 8 * 2 * 2 * 2);
    }

    // Version 2, the repository's worked example: January 2024, education with nonprofit.

    use super::super::policy::files;

    const EDUCATION_NONPROFIT: CustomerQualification = CustomerQualification::of(&[
        SpecialQualification::Education,
        SpecialQualification::Nonprofit,
    ]);

    fn v2() -> Policy {
        files::policy(files::V2_EDUCATION_NONPROFIT)
    }

    #[test]
    fn v2_education_with_nonprofit_buys_commercial_education_and_nonprofit_until_gcc_history() {
        let policy = v2();
        let partner = fully_qualified();
        let cases: [(Segment, bool, &[&str]); 8] = [
            (Commercial, false, &[]),
            (Education, false, &[]),
            (Nonprofit, false, &[]),
            (
                Gcc,
                false,
                &["customer_not_qualified", "segment_not_allowed"],
            ),
            // R4 unchanged: GCC history still locks the customer out.
            (Commercial, true, &["gcc_lockout"]),
            (Education, true, &["gcc_lockout"]),
            (Nonprofit, true, &["gcc_lockout"]),
            (
                Gcc,
                true,
                &["customer_not_qualified", "segment_not_allowed"],
            ),
        ];
        for (segment, history, expected) in cases {
            let decision = decide_under(
                &policy,
                EDUCATION_NONPROFIT,
                license_based(segment),
                &partner,
                history,
            );
            assert_eq!(
                codes(&decision),
                expected,
                "{segment}, GCC history {history}"
            );
        }
        // Under version 1 the same customer may buy nothing.
        for &segment in Segment::ALL {
            let decision = decide_for(EDUCATION_NONPROFIT, license_based(segment), &partner, false);
            assert!(
                codes(&decision).contains(&"segment_not_allowed"),
                "{segment}"
            );
        }
    }

    #[test]
    fn v2_decides_every_other_set_as_v1_does() {
        let (v1, v2) = (Policy::rule_book(), v2());
        let partners = [
            fully_qualified(),
            partner(PartnerKind::IndirectReseller, &[], false),
            partner(
                PartnerKind::IndirectReseller,
                ResellerQualification::ALL,
                true,
            ),
            partner(
                PartnerKind::IndirectReseller,
                ResellerQualification::ALL,
                false,
            ),
        ];
        for customer in CustomerQualification::all().filter(|&c| c != EDUCATION_NONPROFIT) {
            for offer in OfferTerms::all() {
                for partner in &partners {
                    for history in [false, true] {
                        assert_eq!(
                            decide_under(&v2, customer, offer, partner, history),
                            decide_under(&v1, customer, offer, partner, history),
                            "{customer:?} {offer:?} {partner:?} {history}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn v2_still_asks_partners_for_the_programs_of_education_and_nonprofit() {
        let policy = v2();
        for (segment, required) in [
            (Education, ResellerQualification::Education),
            (Nonprofit, ResellerQualification::Nonprofit),
        ] {
            let without = partner(PartnerKind::DirectBillPartner, &[], false);
            assert_eq!(
                decide_under(
                    &policy,
                    EDUCATION_NONPROFIT,
                    license_based(segment),
                    &without,
                    false
                ),
                PurchaseDecision::Denied(vec![RuleViolation::ResellerNotQualified { required }])
            );
        }
        let alone = partner(
            PartnerKind::IndirectReseller,
            ResellerQualification::ALL,
            false,
        );
        assert_eq!(
            codes(&decide_under(
                &policy,
                EDUCATION_NONPROFIT,
                license_based(Education),
                &alone,
                false
            )),
            ["indirect_reseller_without_provider"]
        );
    }

    #[test]
    fn r1_is_data_perpetual_education_software_needs_a_policy_that_lists_it() {
        let perpetual = |segment| OfferTerms {
            segment,
            product_kind: ProductKind::PerpetualSoftware,
        };
        let partner = fully_qualified();
        // The 2024 file leaves R1 as it was.
        let v2 = v2();
        assert_eq!(
            codes(&decide_under(
                &v2,
                EDUCATION_NONPROFIT,
                perpetual(Education),
                &partner,
                false
            )),
            ["offer_not_license_based"]
        );
        // The current documentation: education offers also as perpetual software.
        let mut doc = crate::domain::PolicyDocument::from(&v2);
        doc.version = 3;
        for special in &mut doc.special_segments {
            if special.segment == Education {
                special.product_kinds.push(ProductKind::PerpetualSoftware);
            }
        }
        let v3 = Policy::try_from(doc).expect("a valid policy");
        assert!(
            decide_under(
                &v3,
                EDUCATION_NONPROFIT,
                perpetual(Education),
                &partner,
                false
            )
            .is_allowed()
        );
        assert!(
            decide_under(&v3, C::EDUCATION, perpetual(Education), &partner, false).is_allowed()
        );
        // Only for education, and still not as software subscriptions or Azure.
        for (customer, offer) in [
            (EDUCATION_NONPROFIT, perpetual(Nonprofit)),
            (C::GCC, perpetual(Gcc)),
            (
                C::EDUCATION,
                OfferTerms {
                    segment: Education,
                    product_kind: ProductKind::SoftwareSubscription,
                },
            ),
            (
                C::EDUCATION,
                OfferTerms {
                    segment: Education,
                    product_kind: ProductKind::Azure,
                },
            ),
        ] {
            assert_eq!(
                codes(&decide_under(&v3, customer, offer, &partner, false)),
                ["offer_not_license_based"],
                "{customer:?} {offer:?}"
            );
        }
    }

    #[test]
    fn r2_is_data_a_policy_may_drop_the_education_reseller_authorization() {
        let mut doc = crate::domain::PolicyDocument::from(&Policy::rule_book());
        doc.version = 3;
        for special in &mut doc.special_segments {
            if special.segment == Education {
                special.reseller_qualification_required = false;
            }
        }
        let policy = Policy::try_from(doc).expect("a valid policy");
        let unauthorized = partner(PartnerKind::DirectBillPartner, &[], false);
        assert!(
            decide_under(
                &policy,
                C::EDUCATION,
                license_based(Education),
                &unauthorized,
                false
            )
            .is_allowed()
        );
        // Nonprofit and GCC still need theirs.
        assert_eq!(
            codes(&decide_under(
                &policy,
                C::NONPROFIT,
                license_based(Nonprofit),
                &unauthorized,
                false
            )),
            ["reseller_not_qualified"]
        );
    }
}
