//! A customer's special qualifications and the purchase matrix (R3).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Segment, wire_enum};

wire_enum!(
    /// A special qualification recorded on a customer's company profile.
    SpecialQualification("special qualification") {
        Education => "education",
        Gcc => "gcc",
        Nonprofit => "nonprofit",
        StateOwnedEntity => "state_owned_entity",
    }
);

impl SpecialQualification {
    /// The qualification a customer needs to buy offers of `segment`; `None` for commercial.
    pub fn required_for(segment: Segment) -> Option<Self> {
        match segment {
            Segment::Commercial => None,
            Segment::Education => Some(Self::Education),
            Segment::Nonprofit => Some(Self::Nonprofit),
            Segment::Gcc => Some(Self::Gcc),
        }
    }
}

/// One of the seven qualification sets of R3; no other combination can be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(
    try_from = "Vec<SpecialQualification>",
    into = "Vec<SpecialQualification>"
)]
pub enum CustomerQualification {
    /// No special qualification: a plain commercial customer.
    Commercial,
    /// A registered nonprofit.
    Nonprofit,
    /// A qualified education user.
    Education,
    /// A Government Community Cloud customer.
    Gcc,
    /// A state owned entity that meets the eligibility criteria.
    StateOwnedEntity,
    /// An education institution that is also a state owned entity.
    EducationStateOwnedEntity,
    /// A GCC customer that is also a state owned entity.
    GccStateOwnedEntity,
}

// The API contract: a set of special qualifications; only the seven sets of R3 are accepted.
impl utoipa::PartialSchema for CustomerQualification {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name(
                <SpecialQualification as utoipa::ToSchema>::name(),
            ))
            .unique_items(true)
            .description(Some(
                "One of the seven sets of R3: [], [nonprofit], [education], [gcc], \
                 [state_owned_entity], [education, state_owned_entity], [gcc, state_owned_entity].",
            ))
            .into()
    }
}

impl utoipa::ToSchema for CustomerQualification {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            <SpecialQualification as utoipa::ToSchema>::name().into(),
            <SpecialQualification as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// A combination of special qualifications outside the seven sets of R3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{{{}}} is not a valid qualification set; valid sets are {{}}, {{nonprofit}}, {{education}}, {{gcc}}, \
     {{state_owned_entity}}, {{education, state_owned_entity}} and {{gcc, state_owned_entity}}",
    .0.iter().map(|q| q.as_str()).collect::<Vec<_>>().join(", ")
)]
pub struct InvalidQualificationSet(pub BTreeSet<SpecialQualification>);

impl CustomerQualification {
    /// The seven valid sets.
    pub const ALL: [CustomerQualification; 7] = [
        Self::Commercial,
        Self::Nonprofit,
        Self::Education,
        Self::Gcc,
        Self::StateOwnedEntity,
        Self::EducationStateOwnedEntity,
        Self::GccStateOwnedEntity,
    ];

    /// Parses a set of qualifications (order and repetition do not matter).
    pub fn from_set(
        qualifications: impl IntoIterator<Item = SpecialQualification>,
    ) -> Result<Self, InvalidQualificationSet> {
        let set: BTreeSet<_> = qualifications.into_iter().collect();
        Self::ALL
            .into_iter()
            .find(|candidate| candidate.qualifications().iter().eq(set.iter()))
            .ok_or(InvalidQualificationSet(set))
    }

    /// The qualifications of this set, sorted as stored.
    pub fn qualifications(self) -> &'static [SpecialQualification] {
        use SpecialQualification as Q;
        match self {
            Self::Commercial => &[],
            Self::Nonprofit => &[Q::Nonprofit],
            Self::Education => &[Q::Education],
            Self::Gcc => &[Q::Gcc],
            Self::StateOwnedEntity => &[Q::StateOwnedEntity],
            Self::EducationStateOwnedEntity => &[Q::Education, Q::StateOwnedEntity],
            Self::GccStateOwnedEntity => &[Q::Gcc, Q::StateOwnedEntity],
        }
    }

    /// Whether the set holds `qualification`.
    pub fn has(self, qualification: SpecialQualification) -> bool {
        self.qualifications().contains(&qualification)
    }

    /// R3: the offer segments a customer with this set may buy.
    pub fn purchasable_segments(self) -> &'static [Segment] {
        use Segment as S;
        match self {
            Self::Commercial | Self::StateOwnedEntity => &[S::Commercial],
            Self::Nonprofit => &[S::Commercial, S::Nonprofit],
            Self::Education | Self::EducationStateOwnedEntity => &[S::Commercial, S::Education],
            Self::Gcc | Self::GccStateOwnedEntity => &[S::Gcc],
        }
    }

    /// The set as text, e.g. `{education, state_owned_entity}`.
    pub fn describe(self) -> String {
        let names: Vec<_> = self.qualifications().iter().map(|q| q.as_str()).collect();
        format!("{{{}}}", names.join(", "))
    }
}

impl TryFrom<Vec<SpecialQualification>> for CustomerQualification {
    type Error = InvalidQualificationSet;

    fn try_from(value: Vec<SpecialQualification>) -> Result<Self, Self::Error> {
        Self::from_set(value)
    }
}

impl From<CustomerQualification> for Vec<SpecialQualification> {
    fn from(value: CustomerQualification) -> Self {
        value.qualifications().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CustomerQualification as C;
    use SpecialQualification::*;

    #[test]
    fn the_seven_sets_parse_in_any_order_and_with_repeats() {
        let cases: [(&[SpecialQualification], C); 10] = [
            (&[], C::Commercial),
            (&[Nonprofit], C::Nonprofit),
            (&[Education], C::Education),
            (&[Gcc], C::Gcc),
            (&[StateOwnedEntity], C::StateOwnedEntity),
            (&[Education, StateOwnedEntity], C::EducationStateOwnedEntity),
            (&[StateOwnedEntity, Education], C::EducationStateOwnedEntity),
            (&[Gcc, StateOwnedEntity], C::GccStateOwnedEntity),
            (&[StateOwnedEntity, Gcc, Gcc], C::GccStateOwnedEntity),
            (&[Education, Education], C::Education),
        ];
        for (input, expected) in cases {
            assert_eq!(
                C::from_set(input.iter().copied()),
                Ok(expected),
                "{input:?}"
            );
        }
    }

    #[test]
    fn every_other_combination_is_rejected() {
        // All 16 subsets of the four qualifications: exactly the 7 of R3 are valid.
        let mut valid = 0;
        for mask in 0u8..16 {
            let set: Vec<_> = SpecialQualification::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, q)| *q)
                .collect();
            match C::from_set(set.clone()) {
                Ok(parsed) => {
                    valid += 1;
                    assert_eq!(parsed.qualifications(), set.as_slice());
                }
                Err(err) => assert_eq!(err.0, set.into_iter().collect()),
            }
        }
        assert_eq!(valid, 7);
    }

    #[test]
    fn named_invalid_sets_are_rejected_with_a_clear_message() {
        let invalid: [&[SpecialQualification]; 5] = [
            &[Education, Gcc],
            &[Nonprofit, Education],
            &[Nonprofit, StateOwnedEntity],
            &[Nonprofit, Gcc],
            &[Education, Gcc, Nonprofit, StateOwnedEntity],
        ];
        for input in invalid {
            assert!(C::from_set(input.iter().copied()).is_err(), "{input:?}");
        }
        let err = C::from_set([Gcc, Education]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("{education, gcc} is not a valid qualification set"),
            "{err}"
        );
    }

    #[test]
    fn serde_uses_the_sorted_list() {
        let json = serde_json::to_string(&C::GccStateOwnedEntity).unwrap();
        assert_eq!(json, r#"["gcc","state_owned_entity"]"#);
        let parsed: C = serde_json::from_str(r#"["state_owned_entity","education"]"#).unwrap();
        assert_eq!(parsed, C::EducationStateOwnedEntity);
        assert!(serde_json::from_str::<C>(r#"["gcc","education"]"#).is_err());
    }
}
