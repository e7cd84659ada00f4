//! Partners and what their legal profile authorizes them to sell.

use std::collections::BTreeSet;

use super::{Segment, wire_enum};

wire_enum!(
    /// How a partner transacts with the program.
    PartnerKind("partner kind") {
        DirectBillPartner => "direct_bill_partner",
        IndirectProvider => "indirect_provider",
        /// Sells through an indirect provider it is connected to.
        IndirectReseller => "indirect_reseller",
    }
);

wire_enum!(
    /// A special program listed on the partner's legal profile (R2).
    ResellerQualification("reseller qualification") {
        Education => "education",
        Gcc => "gcc",
        Nonprofit => "nonprofit",
    }
);

impl ResellerQualification {
    /// The qualification of `segment`'s program; `None` for commercial. Whether a partner must
    /// list it to buy such offers is the policy's call (R2).
    pub fn for_segment(segment: Segment) -> Option<Self> {
        match segment {
            Segment::Commercial => None,
            Segment::Education => Some(Self::Education),
            Segment::Nonprofit => Some(Self::Nonprofit),
            Segment::Gcc => Some(Self::Gcc),
        }
    }
}

/// What the purchase rules need to know about the selling partner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerProfile {
    /// The partner's kind.
    pub kind: PartnerKind,
    /// Special programs the partner is authorized for.
    pub reseller_qualifications: BTreeSet<ResellerQualification>,
    /// For an indirect reseller: whether it is connected to at least one indirect provider.
    pub has_indirect_provider: bool,
}
