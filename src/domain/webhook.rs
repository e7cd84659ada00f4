//! Webhooks as pure rules: which audit events become which notices for whom, the Standard
//! Webhooks signature, the retry schedule and which addresses an endpoint may resolve to.

use std::{net::IpAddr, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use uuid::Uuid;

use super::{EventType, PartnerId, wire_enum};

/// Version of the notice payload; a breaking change gets a new one.
pub const PAYLOAD_VERSION: u32 = 1;

/// Prefix of a signing secret as shown to its owner (Standard Webhooks).
pub const SECRET_PREFIX: &str = "whsec_";

wire_enum!(
    /// What a notice is about, as endpoints subscribe to it.
    WebhookEventType("webhook event type") {
        /// A subscription was bought.
        SubscriptionCreated => "subscription.created",
        /// A subscription was suspended, reactivated or cancelled.
        SubscriptionStatusChanged => "subscription.status_changed",
        /// A customer's special qualifications changed.
        CustomerQualificationsChanged => "customer.qualifications_changed",
        /// A customer was linked to the partner.
        CustomerLinked => "customer.linked",
        /// A GCC purchase (by whichever partner) now locks the customer out of other segments.
        CustomerLockoutApplies => "customer.lockout_applies",
        /// The partner's reseller qualifications or provider links changed.
        PartnerProfileChanged => "partner.profile_changed",
        /// A customer was created (platform endpoints only).
        CustomerCreated => "customer.created",
        /// A partner was created (platform endpoints only).
        PartnerCreated => "partner.created",
        /// An offer was created (platform endpoints only).
        OfferCreated => "offer.created",
    }
);

/// Who a notice is for: one partner, or the platform (operators' endpoints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Audience {
    /// The platform: back-office integrations, which see every id.
    Platform,
    /// One partner, which only ever learns its own ids.
    Partner(PartnerId),
}

impl Audience {
    /// The feed key: the partner's id, or the nil id for the platform.
    pub fn key(self) -> Uuid {
        match self {
            Self::Platform => Uuid::nil(),
            Self::Partner(p) => p.0,
        }
    }
}

/// The facts of a committed audit event that notices are made of.
#[derive(Debug, Clone)]
pub struct EventFacts<'a> {
    /// The event's id, which is each notice's `webhook-id`.
    pub id: Uuid,
    /// What happened.
    pub event_type: EventType,
    /// The customer concerned.
    pub customer_id: Option<Uuid>,
    /// The partner concerned.
    pub partner_id: Option<PartnerId>,
    /// The audit payload.
    pub payload: &'a Value,
}

/// One notice: for whom, of which type, with which `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Who receives it.
    pub audience: Audience,
    /// Its type.
    pub event_type: WebhookEventType,
    /// The thin payload's `data`: ids the audience may know, never another partner's.
    pub data: Value,
}

/// The notices an event makes, given the partners linked to its customer when it happened.
/// Events about tokens, users, denials and replays make none.
pub fn notices(event: &EventFacts<'_>, linked: &[PartnerId]) -> Vec<Notice> {
    use EventType as E;
    use WebhookEventType as W;
    let p = event.payload;
    let customer = event.customer_id;
    let mut out = Vec::new();
    // To the partner named (if any) and to the platform.
    fn both(out: &mut Vec<Notice>, partner: Option<PartnerId>, event_type: W, data: Value) {
        if let Some(partner) = partner {
            out.push(Notice {
                audience: Audience::Partner(partner),
                event_type,
                data: data.clone(),
            });
        }
        out.push(Notice {
            audience: Audience::Platform,
            event_type,
            data,
        });
    }
    match event.event_type {
        E::SubscriptionCreated => {
            both(
                &mut out,
                event.partner_id,
                W::SubscriptionCreated,
                json!({
                    "customer_id": customer,
                    "partner_id": event.partner_id,
                    "subscription_id": p["subscription_id"],
                    "offer_id": p["offer_id"],
                    "segment": p["segment"],
                }),
            );
            if p["segment"] == "gcc" {
                // The other partners learn that the lockout applies, never who caused it.
                for other in linked.iter().filter(|o| Some(**o) != event.partner_id) {
                    out.push(Notice {
                        audience: Audience::Partner(*other),
                        event_type: W::CustomerLockoutApplies,
                        data: json!({"customer_id": customer}),
                    });
                }
            }
        }
        E::SubscriptionStatusChanged => both(
            &mut out,
            event.partner_id,
            W::SubscriptionStatusChanged,
            json!({
                "customer_id": customer,
                "partner_id": event.partner_id,
                "subscription_id": p["subscription_id"],
                "before": p["before"],
                "after": p["after"],
            }),
        ),
        E::CustomerQualificationsSet => {
            let data = json!({"customer_id": customer, "special_qualifications": p["after"]});
            for partner in linked {
                out.push(Notice {
                    audience: Audience::Partner(*partner),
                    event_type: W::CustomerQualificationsChanged,
                    data: data.clone(),
                });
            }
            both(&mut out, None, W::CustomerQualificationsChanged, data);
        }
        E::CustomerPartnerLinked => both(
            &mut out,
            event.partner_id,
            W::CustomerLinked,
            json!({"customer_id": customer, "partner_id": event.partner_id}),
        ),
        E::PartnerQualificationsSet | E::PartnerProvidersSet => both(
            &mut out,
            event.partner_id,
            W::PartnerProfileChanged,
            json!({"partner_id": event.partner_id}),
        ),
        E::CustomerCreated => both(
            &mut out,
            None,
            W::CustomerCreated,
            json!({"customer_id": customer}),
        ),
        E::PartnerCreated => both(
            &mut out,
            None,
            W::PartnerCreated,
            json!({"partner_id": event.partner_id}),
        ),
        E::OfferCreated => both(
            &mut out,
            None,
            W::OfferCreated,
            json!({"offer_id": p["offer_id"]}),
        ),
        E::PurchaseDenied
        | E::PolicyPublished
        | E::TokenCreated
        | E::TokenRevoked
        | E::IdempotentReplayServed
        | E::UserCreated
        | E::UserDisabled
        | E::UserEnabled
        | E::UserPasswordChanged
        | E::WebhookEndpointCreated
        | E::WebhookEndpointDisabled
        | E::WebhookSecretRotated
        | E::WebhookEndpointEnabled
        | E::WebhookRedeliveryRequested => {}
    }
    out
}

/// The body sent for a notice: `{"type", "version", "id", "timestamp", "data"}`, where `id` is the
/// audit event's id and `timestamp` when it happened (RFC 3339, microseconds, UTC).
pub fn body(
    event_id: Uuid,
    occurred_at: DateTime<Utc>,
    event_type: WebhookEventType,
    data: &Value,
) -> String {
    json!({
        "type": event_type.as_str(),
        "version": PAYLOAD_VERSION,
        "id": event_id,
        "timestamp": occurred_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
    })
    .to_string()
}

/// A signing secret's key bytes from its stored (or `whsec_`-prefixed) base64 form.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()
}

/// One `v1,<base64>` signature of `id.timestamp.body` with `key` (Standard Webhooks).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one signature per valid key, space-separated.
pub fn signature_header(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &str) -> String {
    keys.iter()
        .map(|k| sign(k, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The default waits before each retry: about three days in all (75.6 hours over 10 attempts).
pub const DEFAULT_RETRY_SCHEDULE: &str = "5s,5m,30m,2h,5h,10h,14h,20h,24h";

/// Whether a receiver's answer delivers the notice: any 2xx.
pub fn delivers(status: u16) -> bool {
    (200..300).contains(&status)
}

/// How long to wait before the attempt after `attempts` failed ones, with `jitter` in [0, 1)
/// spreading it by ±20 %, and at least what the receiver asked for (`Retry-After`, up to a day);
/// `None` once the schedule is spent: the delivery has failed.
pub fn retry_delay(
    schedule: &[Duration],
    attempts: u32,
    jitter: f64,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let base = *schedule.get(attempts.checked_sub(1)? as usize)?;
    let spread = base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    let asked = retry_after.map_or(Duration::ZERO, |d| d.min(Duration::from_secs(86_400)));
    Some(spread.max(asked))
}

/// Parses a schedule such as `5s,5m,2h` (units `ms`, `s`, `m`, `h`).
pub fn parse_schedule(raw: &str) -> Result<Vec<Duration>, String> {
    raw.split(',')
        .map(|part| {
            let part = part.trim();
            let split = part
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| format!("`{part}` has no unit (ms, s, m, h)"))?;
            let (n, unit) = part.split_at(split);
            let n: u64 = n.parse().map_err(|_| format!("`{part}` is not a number"))?;
            Ok(match unit {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n * 60),
                "h" => Duration::from_secs(n * 3600),
                _ => return Err(format!("`{part}`: the unit is ms, s, m or h")),
            })
        })
        .collect()
}

/// Whether `ip` is an address webhooks must not reach unless allowed: loopback, private,
/// link-local, unspecified, shared (CGNAT), multicast, documentation or unique-local.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0xdb8)
        }
    }
}

/// The operator's allow-list of internal networks webhooks may reach (`WEBHOOK_ALLOW_PRIVATE`,
/// CIDRs separated by commas), e.g. `127.0.0.0/8` for receivers on the same machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(Vec<ipnet::IpNet>);

impl AllowList {
    /// Whether a webhook may connect to `ip`: a public address, or one the list allows.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allows(ip)
    }

    /// Whether the list names `ip` (then plain `http://` is allowed too).
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }
}

impl std::str::FromStr for AllowList {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("`{s}` is not a CIDR such as 127.0.0.0/8"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(n: u128) -> PartnerId {
        PartnerId(Uuid::from_u128(n))
    }

    #[test]
    fn any_2xx_answer_delivers_and_nothing_else_does() {
        for status in [200, 201, 204, 299] {
            assert!(delivers(status), "{status}");
        }
        for status in [100, 199, 300, 304, 410, 429, 500] {
            assert!(!delivers(status), "{status}");
        }
    }

    // A round queues one delivery per event and endpoint (its key), and an endpoint has one
    // audience: two notices of one event to one audience would collide there.
    #[test]
    fn an_event_makes_at_most_one_notice_per_audience() {
        let payload = json!({"subscription_id": "s", "offer_id": "o", "segment": "gcc",
                             "partner_id": partner(3).0, "before": [], "after": ["gcc"]});
        let linked = [partner(1), partner(2), partner(3)];
        for &event_type in EventType::ALL {
            for partner_id in [None, Some(partner(1))] {
                let event = EventFacts {
                    id: Uuid::nil(),
                    event_type,
                    customer_id: Some(Uuid::from_u128(9)),
                    partner_id,
                    payload: &payload,
                };
                let mut audiences: Vec<Audience> = notices(&event, &linked)
                    .iter()
                    .map(|n| n.audience)
                    .collect();
                let all = audiences.len();
                audiences.sort_unstable();
                audiences.dedup();
                assert_eq!(
                    audiences.len(),
                    all,
                    "{event_type:?}, partner {partner_id:?}"
                );
            }
        }
    }

    #[test]
    fn a_gcc_purchase_tells_the_other_partners_that_a_lockout_applies_and_not_who_caused_it() {
        let payload = json!({"subscription_id": "s", "offer_id": "o", "segment": "gcc"});
        let event = EventFacts {
            id: Uuid::nil(),
            event_type: EventType::SubscriptionCreated,
            customer_id: Some(Uuid::from_u128(9)),
            partner_id: Some(partner(1)),
            payload: &payload,
        };
        let notices = notices(&event, &[partner(1), partner(2)]);
        let to_two: Vec<_> = notices
            .iter()
            .filter(|n| n.audience == Audience::Partner(partner(2)))
            .collect();
        assert_eq!(to_two.len(), 1);
        assert_eq!(
            to_two[0].event_type,
            WebhookEventType::CustomerLockoutApplies
        );
        assert!(
            !to_two[0]
                .data
                .to_string()
                .contains(&partner(1).0.to_string())
        );
        assert!(
            !to_two[0].data.to_string().contains("\"s\""),
            "no subscription id"
        );
        assert!(notices.iter().any(|n| n.audience == Audience::Platform));
        assert!(
            notices
                .iter()
                .any(|n| n.audience == Audience::Partner(partner(1))
                    && n.event_type == WebhookEventType::SubscriptionCreated)
        );
    }

    #[test]
    fn a_subscription_event_reaches_only_its_seller_among_partners() {
        let payload = json!({"subscription_id": "s", "before": "active", "after": "suspended"});
        let event = EventFacts {
            id: Uuid::nil(),
            event_type: EventType::SubscriptionStatusChanged,
            customer_id: Some(Uuid::from_u128(9)),
            partner_id: Some(partner(1)),
            payload: &payload,
        };
        let partners: Vec<_> = notices(&event, &[partner(1), partner(2)])
            .into_iter()
            .filter_map(|n| match n.audience {
                Audience::Partner(p) => Some(p),
                Audience::Platform => None,
            })
            .collect();
        assert_eq!(partners, [partner(1)]);
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The specification's example: secret, id, timestamp, payload and signature.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn the_default_schedule_spans_about_three_days_and_then_gives_up() {
        let schedule = parse_schedule(DEFAULT_RETRY_SCHEDULE).unwrap();
        let total: Duration = schedule.iter().sum();
        assert!(
            (70 * 3600..80 * 3600).contains(&total.as_secs()),
            "{total:?}"
        );
        assert_eq!(retry_delay(&schedule, 0, 0.5, None), None);
        assert_eq!(
            retry_delay(&schedule, 1, 0.5, None),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_delay(&schedule, 1, 0.5, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
        let last = u32::try_from(schedule.len()).unwrap();
        assert!(retry_delay(&schedule, last, 0.0, None).is_some());
        assert_eq!(retry_delay(&schedule, last + 1, 0.0, None), None);
        assert!(parse_schedule("5").is_err());
        assert!(parse_schedule("5d").is_err());
    }

    #[test]
    fn the_allow_list_opens_only_the_networks_it_names() {
        let list: AllowList = "127.0.0.0/8, ::1".parse().unwrap();
        assert!(list.permits("127.0.0.1".parse().unwrap()));
        assert!(list.permits("::1".parse().unwrap()));
        assert!(!list.permits("10.0.0.1".parse().unwrap()));
        assert!(list.permits("8.8.8.8".parse().unwrap()));
        assert!(!AllowList::default().permits("127.0.0.1".parse().unwrap()));
        assert!("nonsense".parse::<AllowList>().is_err());
    }

    #[test]
    fn internal_addresses_are_recognized() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }
}
