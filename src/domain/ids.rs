//! Identifier newtypes, so a customer id can never be passed where a partner id is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Identifies a partner (reseller, provider or direct-bill partner).
    PartnerId
);
id_type!(
    /// Identifies a customer tenant.
    CustomerId
);
id_type!(
    /// Identifies a catalog offer.
    OfferId
);
id_type!(
    /// Identifies a subscription.
    SubscriptionId
);
id_type!(
    /// Identifies a customer import job of the console.
    ImportJobId
);
