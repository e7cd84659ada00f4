//! People who sign in to the console: their usernames, password policy and sign-in throttling.

use std::time::Duration;

use super::checked_text;

/// A username: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit; lower-cased on entry,
/// so `JDoe` and `jdoe` are one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

/// A username outside the rule of [`Username`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a username has 1 to 64 of the characters a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
)]
pub struct InvalidUsername;

impl Username {
    /// Lower-cases and checks a username.
    pub fn parse(raw: &str) -> Result<Self, InvalidUsername> {
        let name = raw.trim().to_ascii_lowercase();
        let mut chars = name.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if first_ok && rest_ok && name.len() <= 64 {
            Ok(Self(name))
        } else {
            Err(InvalidUsername)
        }
    }

    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 12 to 256 characters, no control characters, not all one character. Length is
/// what resists guessing (NIST SP 800-63B); no composition rules.
#[derive(Clone, PartialEq, Eq)]
pub struct NewPassword(String);

impl std::fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewPassword(..)")
    }
}

/// A password the policy refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a password has {min} to {max} characters, without control characters, and not one character repeated", min = NewPassword::MIN_CHARS, max = NewPassword::MAX_CHARS)]
pub struct WeakPassword;

impl NewPassword {
    /// Shortest accepted password, in characters.
    pub const MIN_CHARS: usize = 12;
    /// Longest accepted password (hashing cost grows with it).
    pub const MAX_CHARS: usize = 256;

    /// Checks a password; it is taken as typed (no trimming: spaces are characters too).
    pub fn parse(raw: &str) -> Result<Self, WeakPassword> {
        let count = raw.chars().count();
        let mut chars = raw.chars();
        let first = chars.next();
        let varied = chars.any(|c| Some(c) != first);
        if (Self::MIN_CHARS..=Self::MAX_CHARS).contains(&count)
            && varied
            && !raw.chars().any(char::is_control)
        {
            Ok(Self(raw.to_owned()))
        } else {
            Err(WeakPassword)
        }
    }

    /// The password.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A customer's id in the reseller's own CRM: 1 to 200 printable characters, trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExternalReference(String);

/// An external reference outside the rule of [`ExternalReference`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an external reference has 1 to {max} printable characters", max = ExternalReference::MAX_CHARS)]
pub struct InvalidExternalReference;

impl ExternalReference {
    /// Longest accepted reference.
    pub const MAX_CHARS: usize = 200;

    /// Trims and checks a reference.
    pub fn parse(raw: &str) -> Result<Self, InvalidExternalReference> {
        checked_text(raw, Self::MAX_CHARS)
            .map(|r| Self(r.to_owned()))
            .ok_or(InvalidExternalReference)
    }

    /// The reference.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Failed sign-ins an account may have before it is throttled.
pub const FREE_SIGN_IN_FAILURES: i32 = 5;

/// How long an account refuses sign-ins after `failures` consecutive failures: nothing for the
/// first [`FREE_SIGN_IN_FAILURES`], then 1 s, doubling with each further failure up to 15 min.
/// At most ~100 guesses an hour per account after the free ones, while a colleague who mistyped
/// five times waits a second.
pub fn sign_in_delay(failures: i32) -> Duration {
    let over = failures - FREE_SIGN_IN_FAILURES;
    if over < 0 {
        return Duration::ZERO;
    }
    let secs = 1u64 << over.min(10);
    Duration::from_secs(secs.min(15 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lower_cased_and_bounded() {
        assert_eq!(Username::parse(" JDoe ").unwrap().as_str(), "jdoe");
        assert_eq!(Username::parse("a.b_c-9").unwrap().as_str(), "a.b_c-9");
        assert!(Username::parse(&"a".repeat(64)).is_ok());
        for bad in ["", ".jdoe", "-x", "j doe", "jdöe", "a/b", &"a".repeat(65)] {
            assert_eq!(Username::parse(bad), Err(InvalidUsername), "{bad:?}");
        }
    }

    #[test]
    fn passwords_need_length_and_variety() {
        assert!(NewPassword::parse("correct horse battery").is_ok());
        assert!(NewPassword::parse(&"ab".repeat(6)).is_ok());
        for bad in [
            "short",
            "elevenchars",
            &"a".repeat(20),
            "tab\tinside-the-password",
            &"ab".repeat(129),
        ] {
            assert_eq!(NewPassword::parse(bad), Err(WeakPassword), "{bad:?}");
        }
        assert_eq!(
            format!("{:?}", NewPassword::parse("correct horse battery").unwrap()),
            "NewPassword(..)"
        );
    }

    #[test]
    fn sign_ins_slow_down_after_five_failures_and_cap_at_fifteen_minutes() {
        assert_eq!(sign_in_delay(0), Duration::ZERO);
        assert_eq!(sign_in_delay(4), Duration::ZERO);
        assert_eq!(sign_in_delay(5), Duration::from_secs(1));
        assert_eq!(sign_in_delay(6), Duration::from_secs(2));
        assert_eq!(sign_in_delay(14), Duration::from_secs(512));
        assert_eq!(sign_in_delay(15), Duration::from_secs(900));
        assert_eq!(sign_in_delay(1000), Duration::from_secs(900));
    }
}
