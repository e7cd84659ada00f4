//! What every page shares: the frame (navigation, the signed-in user, the sign-out form), the error
//! page, and small formatting helpers for templates.

use askama::Template;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::Staff;
use crate::domain::{Action, ProductKind, Segment};

/// One link of the navigation.
#[derive(Debug, Clone)]
pub struct NavLink {
    /// Target.
    pub href: &'static str,
    /// Text.
    pub label: &'static str,
    /// Whether it is the current section.
    pub current: bool,
}

/// The frame of every signed-in page.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// Who is signed in, as shown.
    pub user: String,
    /// Their role.
    pub role: &'static str,
    /// The session's CSRF token, for every form.
    pub csrf: String,
    /// The sections the role may use.
    pub nav: Vec<NavLink>,
}

/// The sections of the console and the action that opens each.
const SECTIONS: [(&str, &str, Action); 8] = [
    ("/customers", "Customers", Action::ReadCustomers),
    ("/partners", "Partners", Action::ReadPartners),
    ("/offers", "Offers", Action::ReadOffers),
    ("/policies", "Policies", Action::ReadPolicies),
    ("/import", "Import", Action::ManageCustomers),
    ("/audit", "Audit", Action::ReadAudit),
    ("/access", "Access", Action::ManageAccess),
    ("/webhooks", "Webhooks", Action::ManageWebhooks),
];

impl Chrome {
    /// The frame for `staff`, with `active` (a section's path) marked current.
    pub fn new(staff: &Staff, active: &str) -> Self {
        let session = &staff.session;
        let user = match &session.display_name {
            Some(name) => format!("{name} ({})", session.username),
            None => session.username.clone(),
        };
        let mut nav: Vec<NavLink> = SECTIONS
            .iter()
            .filter(|(_, _, action)| staff.may(*action))
            .map(|&(href, label, _)| NavLink {
                href,
                label,
                current: href == active,
            })
            .collect();
        // Auditors read the principals; operators and global admins manage them.
        if !staff.may(Action::ManageAccess) && staff.may(Action::ReadAudit) {
            nav.push(NavLink {
                href: "/access",
                label: "Access",
                current: active == "/access",
            });
        }
        Self {
            user,
            role: staff.role().as_str(),
            csrf: session.csrf_token.clone(),
            nav,
        }
    }
}

/// A page saying what went wrong.
#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    /// E.g. "Not Found".
    pub title: &'static str,
    /// What happened, in a sentence.
    pub message: String,
}

/// `text` for a URL query value.
pub fn url_encode(text: &str) -> String {
    serde_urlencoded::to_string([("", text)])
        .map(|s| s.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// An instant as shown on pages: UTC, to the second.
pub fn when(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A message from the domain (lowercase, no full stop) as a sentence.
pub fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut text: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !text.ends_with('.') {
        text.push('.');
    }
    text
}

/// A segment's form value and label.
pub fn segment_text(segment: Segment) -> (&'static str, &'static str) {
    let label = match segment {
        Segment::Commercial => "Commercial",
        Segment::Education => "Education",
        Segment::Nonprofit => "Nonprofit",
        Segment::Gcc => "GCC",
    };
    (segment.as_str(), label)
}

/// A product kind's form value and label.
pub fn product_kind_text(kind: ProductKind) -> (&'static str, &'static str) {
    let label = match kind {
        ProductKind::LicenseBased => "License based",
        ProductKind::SoftwareSubscription => "Software subscription",
        ProductKind::PerpetualSoftware => "Perpetual software",
        ProductKind::Azure => "Azure",
    };
    (kind.as_str(), label)
}

/// An instant from a `datetime-local` input (`2026-11-27T10:00`, seconds optional), read as
/// UTC; or in RFC 3339 (a form may carry an exact instant, e.g. where a redelivery stopped).
pub fn instant(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M:%S%.f",
            ]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
            .map(|t| t.and_utc())
        })
        .filter(crate::http::extract::in_storable_years)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::instant;

    fn at(rfc3339: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(rfc3339).unwrap().into()
    }

    #[test]
    fn datetime_local_values_are_read_as_utc_and_rfc3339_exactly() {
        for (raw, expected) in [
            ("2026-11-27T10:00", Some("2026-11-27T10:00:00Z")),
            (" 2026-11-27T10:00:30 ", Some("2026-11-27T10:00:30Z")),
            ("2026-11-27T10:00:30.250", Some("2026-11-27T10:00:30.250Z")),
            (
                "2026-11-27T10:00:00.123456Z",
                Some("2026-11-27T10:00:00.123456Z"),
            ),
            ("2026-11-27T12:00:00+02:00", Some("2026-11-27T10:00:00Z")),
            ("2026-11-27", None),
            ("-4714-01-01T00:00", None),
            ("10000-01-01T00:00:00Z", None),
            ("yesterday", None),
            ("", None),
        ] {
            assert_eq!(instant(raw), expected.map(at), "{raw:?}");
        }
    }
}
