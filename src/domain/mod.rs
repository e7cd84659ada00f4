//! The rule book (`docs/rules.md`) as pure code: no I/O, no clock, no framework types.
//! Everything here is decided from values the caller loaded and passes in.

mod access;
pub mod audit;
mod customer;
mod evidence;
mod ids;
mod impact;
mod import;
mod offer;
mod partner;
mod policy;
mod principal;
mod purchase;
mod text;
mod user;
pub mod webhook;

pub use access::{Action, Actor, Principal, Role, permits};
pub use audit::EventType;
pub use customer::{CustomerQualification, SpecialQualification};
pub use evidence::{
    EvidenceError, Evidenced, InvalidReason, MAX_EVIDENCE_CHARS, Reason, evidence_after_change,
};
pub use ids::{CustomerId, ImportJobId, OfferId, PartnerId, SubscriptionId};
pub use impact::{OfferChange, PolicyChange, Standing};
pub use import::{FileFormat, ImportJobStatus, UTF8_BOM, percent_done};
pub use offer::{OfferTerms, ProductKind, Segment, SubscriptionStatus};
pub use partner::{PartnerKind, PartnerProfile, ResellerQualification};
pub use policy::{
    InvalidPolicy, InvalidQualificationSet, Policy, PolicyDocument, PolicyProblem, PolicyVersion,
    QualificationSetDocument, SpecialSegmentDocument,
};
pub use principal::{PrincipalKind, PrincipalState};
pub use purchase::{PurchaseContext, PurchaseDecision, RuleViolation, decide};
pub use text::{checked_text, listing};
pub use user::{
    ExternalReference, FREE_SIGN_IN_FAILURES, InvalidExternalReference, InvalidUsername,
    NewPassword, Username, WeakPassword, sign_in_delay,
};

/// A stored or received value that is not one of an enumeration's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}")]
pub struct UnknownVariant {
    /// What was being parsed, e.g. "segment".
    pub kind: &'static str,
    /// The offending text.
    pub value: String,
}

/// Defines a closed set of snake_case wire values with `as_str`, `FromStr`, `ALL` and serde.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident ($kind:literal) { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[doc = concat!("`", $text, "`")] #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and database spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::domain::UnknownVariant;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::domain::UnknownVariant { kind: $kind, value: s.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        // The API contract: a string with exactly the wire spellings.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::domain::string_enum_schema($kind, &[$($text),+])
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}
pub(crate) use wire_enum;

/// The OpenAPI schema of a [`wire_enum!`]: a string that is one of `values`.
pub(crate) fn string_enum_schema(
    kind: &str,
    values: &[&str],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(format!("A {kind}.")))
        .enum_values(Some(values.iter().copied()))
        .into()
}

/// A display name or label: trimmed, 1 to 200 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

/// A name that is empty, too long or not printable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must have 1 to {max} characters after trimming, and no control or bidirectional-override characters", max = DisplayName::MAX_CHARS)]
pub struct InvalidDisplayName;

impl DisplayName {
    /// Longest accepted name, in characters.
    pub const MAX_CHARS: usize = 200;

    /// Trims and checks a name.
    pub fn parse(raw: &str) -> Result<Self, InvalidDisplayName> {
        checked_text(raw, Self::MAX_CHARS)
            .map(|name| Self(name.to_owned()))
            .ok_or(InvalidDisplayName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Number of licenses in a purchase: 1 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(minimum = 1, maximum = 1_000_000)]
pub struct Quantity(i32);

/// A quantity outside 1 to 1,000,000.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantity must be between 1 and {max}", max = Quantity::MAX)]
pub struct InvalidQuantity;

impl Quantity {
    /// Largest quantity of one purchase.
    pub const MAX: i32 = 1_000_000;

    /// Checks a requested quantity.
    pub fn new(value: i64) -> Result<Self, InvalidQuantity> {
        match i32::try_from(value) {
            Ok(v) if (1..=Self::MAX).contains(&v) => Ok(Self(v)),
            _ => Err(InvalidQuantity),
        }
    }

    /// The number of licenses.
    pub fn get(self) -> i32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Contoso ").unwrap().as_str(),
            "Contoso"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("").is_err());
        assert!(DisplayName::parse(&"é".repeat(200)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(201)).is_err());
        assert!(DisplayName::parse("a\0b").is_err());
        assert!(DisplayName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn quantities_are_bounded() {
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::new(1_000_000).map(Quantity::get), Ok(1_000_000));
        for bad in [0, -1, 1_000_001, i64::from(i32::MAX) + 1, i64::MIN] {
            assert_eq!(Quantity::new(bad), Err(InvalidQuantity), "{bad}");
        }
    }
}
