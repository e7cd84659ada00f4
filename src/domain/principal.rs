//! Principals as people see them: whether an actor is a console user, an API token or the
//! command line, and whether a principal can still act.

use chrono::{DateTime, Utc};

use super::wire_enum;

wire_enum!(
    /// What kind of principal an actor is.
    PrincipalKind("principal kind") {
        /// A person signed in to the console.
        User => "user",
        /// A bearer token of the API.
        Token => "token",
        /// The operator's command line (`system`).
        System => "system",
    }
);

wire_enum!(
    /// Whether a principal can act now.
    PrincipalState("principal state") {
        /// It can sign in or authenticate.
        Active => "active",
        /// A user an operator disabled.
        Disabled => "disabled",
        /// A token that was revoked.
        Revoked => "revoked",
        /// A token past its expiry.
        Expired => "expired",
    }
);

impl PrincipalState {
    /// The state at `now` of a principal with these stamps (a user has no revocation nor expiry,
    /// a token no disabling). Revocation wins over expiry: it was a decision, expiry a date.
    pub fn at(
        now: DateTime<Utc>,
        disabled_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        if disabled_at.is_some() {
            Self::Disabled
        } else if revoked_at.is_some() {
            Self::Revoked
        } else if expires_at.is_some_and(|end| end <= now) {
            Self::Expired
        } else {
            Self::Active
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_principal_is_active_until_disabled_revoked_or_expired() {
        let now = Utc::now();
        let (past, future) = (now - TimeDelta::hours(1), now + TimeDelta::hours(1));
        for (disabled, revoked, expires, state) in [
            (None, None, None, PrincipalState::Active),
            (None, None, Some(future), PrincipalState::Active),
            (Some(past), None, None, PrincipalState::Disabled),
            (None, Some(past), Some(future), PrincipalState::Revoked),
            (None, Some(past), Some(past), PrincipalState::Revoked),
            (None, None, Some(past), PrincipalState::Expired),
            (None, None, Some(now), PrincipalState::Expired),
        ] {
            assert_eq!(
                PrincipalState::at(now, disabled, revoked, expires),
                state,
                "{disabled:?} {revoked:?} {expires:?}"
            );
        }
    }
}
