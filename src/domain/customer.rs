//! A customer's special qualifications, as a set. Which sets are valid and what each may buy is
//! the policy's call (R3, [`super::Policy`]).

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
    /// Structural (R2, customer side): policies decide which sets exist, not what a segment needs.
    pub fn required_for(segment: Segment) -> Option<Self> {
        match segment {
            Segment::Commercial => None,
            Segment::Education => Some(Self::Education),
            Segment::Nonprofit => Some(Self::Nonprofit),
            Segment::Gcc => Some(Self::Gcc),
        }
    }

    /// This qualification's bit in a [`CustomerQualification`].
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A customer's set of special qualifications, empty for a plain commercial customer. Any
/// combination can be represented; whether it is a valid set is decided by a policy
/// ([`super::Policy::accepts`]). Serialized as the sorted list of names, as stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(from = "Vec<SpecialQualification>", into = "Vec<SpecialQualification>")]
pub struct CustomerQualification(u8);

// The API contract: a set of special qualifications. The description names the sets of the rule
// book (version 1), the policy every deployment runs until another one is in force.
impl utoipa::PartialSchema for CustomerQualification {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name(
                <SpecialQualification as utoipa::ToSchema>::name(),
            ))
            .unique_items(true)
            .description(Some(
                "One of the qualification sets of the policy version in force (R3); in version 1, \
                 the rule book: [], [nonprofit], [education], [gcc], [state_owned_entity], \
                 [education, state_owned_entity], [gcc, state_owned_entity].",
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

impl CustomerQualification {
    /// No special qualification: a plain commercial customer.
    pub const EMPTY: Self = Self(0);

    /// The set of `qualifications` (repeats do not matter); usable in constants.
    pub const fn of(qualifications: &[SpecialQualification]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < qualifications.len() {
            bits |= qualifications[i].bit();
            i += 1;
        }
        Self(bits)
    }

    /// Every combination of special qualifications, valid or not, the empty set first.
    pub fn all() -> impl Iterator<Item = Self> {
        let combinations = 1u8 << SpecialQualification::ALL.len();
        (0..combinations).map(Self)
    }

    /// Whether the set holds `qualification`.
    pub fn has(self, qualification: SpecialQualification) -> bool {
        self.0 & qualification.bit() != 0
    }

    /// The qualifications of this set, sorted as stored.
    pub fn iter(self) -> impl Iterator<Item = SpecialQualification> {
        SpecialQualification::ALL
            .iter()
            .copied()
            .filter(move |q| self.has(*q))
    }

    /// The qualifications of this set, sorted as stored.
    pub fn qualifications(self) -> Vec<SpecialQualification> {
        self.iter().collect()
    }
}

impl FromIterator<SpecialQualification> for CustomerQualification {
    fn from_iter<I: IntoIterator<Item = SpecialQualification>>(iter: I) -> Self {
        Self(iter.into_iter().fold(0, |bits, q| bits | q.bit()))
    }
}

/// The set as text, e.g. `{education, state_owned_entity}`.
impl std::fmt::Display for CustomerQualification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.iter().map(SpecialQualification::as_str).collect();
        write!(f, "{{{}}}", names.join(", "))
    }
}

// Test failures name the set, not its bits.
impl std::fmt::Debug for CustomerQualification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl From<Vec<SpecialQualification>> for CustomerQualification {
    fn from(value: Vec<SpecialQualification>) -> Self {
        value.into_iter().collect()
    }
}

impl From<CustomerQualification> for Vec<SpecialQualification> {
    fn from(value: CustomerQualification) -> Self {
        value.qualifications()
    }
}

/// The seven sets of R3 by name, for tests of the rule book.
#[cfg(test)]
pub(crate) mod r3 {
    use super::{CustomerQualification as C, SpecialQualification::*};

    pub const COMMERCIAL: C = C::EMPTY;
    pub const NONPROFIT: C = C::of(&[Nonprofit]);
    pub const EDUCATION: C = C::of(&[Education]);
    pub const GCC: C = C::of(&[Gcc]);
    pub const STATE_OWNED_ENTITY: C = C::of(&[StateOwnedEntity]);
    pub const EDUCATION_STATE_OWNED_ENTITY: C = C::of(&[Education, StateOwnedEntity]);
    pub const GCC_STATE_OWNED_ENTITY: C = C::of(&[Gcc, StateOwnedEntity]);
    /// All seven, in the order of the rule book's table.
    pub const ALL: [C; 7] = [
        COMMERCIAL,
        NONPROFIT,
        EDUCATION,
        GCC,
        STATE_OWNED_ENTITY,
        EDUCATION_STATE_OWNED_ENTITY,
        GCC_STATE_OWNED_ENTITY,
    ];
}

#[cfg(test)]
mod tests {
    use super::super::Policy;
    use super::*;
    use SpecialQualification::*;
    use r3 as C;

    #[test]
    fn the_seven_sets_parse_in_any_order_and_with_repeats() {
        let policy = Policy::rule_book();
        let cases: [(&[SpecialQualification], CustomerQualification); 10] = [
            (&[], C::COMMERCIAL),
            (&[Nonprofit], C::NONPROFIT),
            (&[Education], C::EDUCATION),
            (&[Gcc], C::GCC),
            (&[StateOwnedEntity], C::STATE_OWNED_ENTITY),
            (
                &[Education, StateOwnedEntity],
                C::EDUCATION_STATE_OWNED_ENTITY,
            ),
            (
                &[StateOwnedEntity, Education],
                C::EDUCATION_STATE_OWNED_ENTITY,
            ),
            (&[Gcc, StateOwnedEntity], C::GCC_STATE_OWNED_ENTITY),
            (&[StateOwnedEntity, Gcc, Gcc], C::GCC_STATE_OWNED_ENTITY),
            (&[Education, Education], C::EDUCATION),
        ];
        for (input, expected) in cases {
            assert_eq!(
                policy.qualification_set(input.iter().copied()),
                Ok(expected),
                "{input:?}"
            );
        }
    }

    #[test]
    fn every_other_combination_is_rejected() {
        // All 16 subsets of the four qualifications: exactly the 7 of R3 are valid.
        let policy = Policy::rule_book();
        let mut valid = 0;
        for mask in 0u8..16 {
            let set: Vec<_> = SpecialQualification::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, q)| *q)
                .collect();
            match policy.qualification_set(set.clone()) {
                Ok(parsed) => {
                    valid += 1;
                    assert_eq!(parsed.qualifications(), set);
                }
                Err(err) => assert_eq!(err.set, set.into_iter().collect()),
            }
        }
        assert_eq!(valid, 7);
        assert_eq!(CustomerQualification::all().count(), 16);
    }

    #[test]
    fn named_invalid_sets_are_rejected_with_a_clear_message() {
        let policy = Policy::rule_book();
        let invalid: [&[SpecialQualification]; 5] = [
            &[Education, Gcc],
            &[Nonprofit, Education],
            &[Nonprofit, StateOwnedEntity],
            &[Nonprofit, Gcc],
            &[Education, Gcc, Nonprofit, StateOwnedEntity],
        ];
        for input in invalid {
            assert!(
                policy.qualification_set(input.iter().copied()).is_err(),
                "{input:?}"
            );
        }
        let err = policy.qualification_set([Gcc, Education]).unwrap_err();
        // The whole text, as version 1 has always answered it.
        assert_eq!(
            err.to_string(),
            "{education, gcc} is not a valid qualification set; valid sets are {}, {nonprofit}, \
             {education}, {gcc}, {state_owned_entity}, {education, state_owned_entity} and \
             {gcc, state_owned_entity}"
        );
    }

    #[test]
    fn serde_uses_the_sorted_list() {
        let json = serde_json::to_string(&C::GCC_STATE_OWNED_ENTITY).unwrap();
        assert_eq!(json, r#"["gcc","state_owned_entity"]"#);
        let parsed: CustomerQualification =
            serde_json::from_str(r#"["state_owned_entity","education"]"#).unwrap();
        assert_eq!(parsed, C::EDUCATION_STATE_OWNED_ENTITY);
        // Reading is not judging: a set outside the policy (e.g. one stored under an older
        // version) still reads back; the policy decides what it may buy.
        let parsed: CustomerQualification = serde_json::from_str(r#"["gcc","education"]"#).unwrap();
        assert_eq!(parsed, CustomerQualification::of(&[Education, Gcc]));
        assert!(serde_json::from_str::<CustomerQualification>(r#"["Gcc"]"#).is_err());
    }

    #[test]
    fn sets_print_and_iterate_in_stored_order() {
        let set: CustomerQualification = [StateOwnedEntity, Education].into_iter().collect();
        assert_eq!(set.to_string(), "{education, state_owned_entity}");
        assert_eq!(format!("{set:?}"), "{education, state_owned_entity}");
        assert_eq!(CustomerQualification::EMPTY.to_string(), "{}");
        assert!(set.has(Education) && !set.has(Gcc));
        for set in CustomerQualification::all() {
            let round_trip: CustomerQualification = set.iter().collect();
            assert_eq!(round_trip, set);
        }
    }
}
