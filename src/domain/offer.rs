//! Offers: what is sold, to which segment, as which kind of product.

use super::wire_enum;

wire_enum!(
    /// The market segment an offer is priced for.
    Segment("segment") {
        Commercial => "commercial",
        Education => "education",
        Nonprofit => "nonprofit",
        /// Government Community Cloud (US government).
        Gcc => "gcc",
    }
);

impl Segment {
    /// Special segments carry reduced prices and need qualified partners and customers.
    pub fn is_special(self) -> bool {
        self != Segment::Commercial
    }
}

wire_enum!(
    /// How an offer is licensed; which kinds may carry special prices is the policy's call (R1).
    ProductKind("product kind") {
        LicenseBased => "license_based",
        SoftwareSubscription => "software_subscription",
        PerpetualSoftware => "perpetual_software",
        Azure => "azure",
    }
);

wire_enum!(
    /// Lifecycle state of a subscription; subscriptions are never deleted.
    SubscriptionStatus("subscription status") {
        Active => "active",
        Suspended => "suspended",
        Cancelled => "cancelled",
    }
);

impl SubscriptionStatus {
    /// Whether a subscription in this state may be put in `next`. **Decision:** cancellation is
    /// final; active and suspended subscriptions move freely between the two and may be cancelled.
    pub fn may_become(self, next: SubscriptionStatus) -> bool {
        self != SubscriptionStatus::Cancelled || next == SubscriptionStatus::Cancelled
    }
}

/// The parts of an offer the purchase rules look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferTerms {
    /// Segment the offer is priced for.
    pub segment: Segment,
    /// Kind of product sold.
    pub product_kind: ProductKind,
}

impl OfferTerms {
    /// Every combination of segment and product kind, sellable or not.
    pub fn all() -> impl Iterator<Item = OfferTerms> {
        Segment::ALL.iter().flat_map(|&segment| {
            ProductKind::ALL
                .iter()
                .map(move |&product_kind| OfferTerms {
                    segment,
                    product_kind,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_combination_of_terms_is_listed_once() {
        let all: std::collections::BTreeSet<_> = OfferTerms::all()
            .map(|t| (t.segment, t.product_kind))
            .collect();
        assert_eq!(all.len(), 16);
        assert_eq!(OfferTerms::all().count(), 16);
    }

    #[test]
    fn cancellation_is_final() {
        use SubscriptionStatus::*;
        for (from, to, allowed) in [
            (Active, Suspended, true),
            (Suspended, Active, true),
            (Active, Cancelled, true),
            (Suspended, Cancelled, true),
            (Cancelled, Cancelled, true),
            (Cancelled, Active, false),
            (Cancelled, Suspended, false),
        ] {
            assert_eq!(from.may_become(to), allowed, "{from} -> {to}");
        }
    }

    #[test]
    fn wire_values_round_trip() {
        for s in Segment::ALL {
            assert_eq!(s.as_str().parse::<Segment>(), Ok(*s));
        }
        for k in ProductKind::ALL {
            assert_eq!(k.as_str().parse::<ProductKind>(), Ok(*k));
        }
        for s in SubscriptionStatus::ALL {
            assert_eq!(s.as_str().parse::<SubscriptionStatus>(), Ok(*s));
        }
        let err = "Education".parse::<Segment>().unwrap_err();
        assert_eq!(err.to_string(), "`Education` is not a valid segment");
    }
}
