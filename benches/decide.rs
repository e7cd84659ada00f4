//! Criterion micro-benchmark of the pure purchase decision (`domain::decide`): an allowed
//! purchase, a purchase that breaks every rule it can, and all sixteen offer terms for one
//! customer (what `eligible-offers` evaluates per request).

#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use partner_catalog::domain::{
    CustomerQualification, OfferTerms, PartnerKind, PartnerProfile, Policy, ProductKind,
    PurchaseContext, ResellerQualification, Segment, SpecialQualification, decide,
};

fn partner(kind: PartnerKind, quals: &[ResellerQualification]) -> PartnerProfile {
    PartnerProfile {
        kind,
        reseller_qualifications: quals.iter().copied().collect(),
        has_indirect_provider: false,
    }
}

fn bench_decide(c: &mut Criterion) {
    let qualified = partner(
        PartnerKind::DirectBillPartner,
        &[
            ResellerQualification::Education,
            ResellerQualification::Gcc,
            ResellerQualification::Nonprofit,
        ],
    );
    let unqualified = partner(PartnerKind::IndirectReseller, &[]);
    let allowed = PurchaseContext {
        partner: &qualified,
        customer_related_to_partner: true,
        customer: CustomerQualification::of(&[SpecialQualification::Education]),
        customer_has_gcc_history: false,
        offer: OfferTerms {
            segment: Segment::Education,
            product_kind: ProductKind::LicenseBased,
        },
    };
    let denied = PurchaseContext {
        partner: &unqualified,
        customer_related_to_partner: false,
        customer: CustomerQualification::EMPTY,
        customer_has_gcc_history: true,
        offer: OfferTerms {
            segment: Segment::Education,
            product_kind: ProductKind::Azure,
        },
    };

    let policy = Policy::rule_book();
    c.bench_function("decide/allowed", |b| {
        b.iter(|| decide(&policy, black_box(&allowed)))
    });
    c.bench_function("decide/denied_every_rule", |b| {
        b.iter(|| decide(&policy, black_box(&denied)))
    });
    c.bench_function("decide/all_offer_terms", |b| {
        b.iter(|| {
            OfferTerms::all()
                .filter(|&offer| {
                    decide(&policy, black_box(&PurchaseContext { offer, ..allowed })).is_allowed()
                })
                .count()
        })
    });
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
