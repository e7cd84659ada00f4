//! Tamper evidence of the event log, as pure code: the canonical form of an event, its SHA-256 hash
//! chain, the verification of a chain, and the UUIDv7 event ids that encode `occurred_at`.
//!
//! The database computes the same hashes when it appends (migration `20261124000003`); this is a
//! second, independent implementation of the documented form, so a verification does not trust the
//! code that wrote the chain.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

super::wire_enum!(
    /// The kinds of event in the log.
    EventType("event type") {
        PartnerCreated => "partner_created",
        PartnerQualificationsSet => "partner_qualifications_set",
        PartnerProvidersSet => "partner_providers_set",
        CustomerCreated => "customer_created",
        CustomerPartnerLinked => "customer_partner_linked",
        CustomerQualificationsSet => "customer_qualifications_set",
        OfferCreated => "offer_created",
        SubscriptionCreated => "subscription_created",
        SubscriptionStatusChanged => "subscription_status_changed",
        PurchaseDenied => "purchase_denied",
        TokenCreated => "token_created",
        TokenRevoked => "token_revoked",
        IdempotentReplayServed => "idempotent_replay_served",
        UserCreated => "user_created",
        UserDisabled => "user_disabled",
        UserEnabled => "user_enabled",
        UserPasswordChanged => "user_password_changed",
        WebhookEndpointCreated => "webhook_endpoint_created",
        WebhookEndpointDisabled => "webhook_endpoint_disabled",
        WebhookSecretRotated => "webhook_secret_rotated",
        WebhookEndpointEnabled => "webhook_endpoint_enabled",
        WebhookRedeliveryRequested => "webhook_redelivery_requested",
        PolicyPublished => "policy_published",
    }
);

/// The `prev_hash` of the first event of every chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The chain of events that concern neither a customer nor a partner (offers).
pub const CATALOG_CHAIN: Uuid = Uuid::nil();

/// The chain of published policy versions: a chain of its own, so that the rules' history can be
/// verified and exported apart from the catalog's.
pub const POLICY_CHAIN: Uuid = Uuid::from_u128(1);

/// First line of the canonical form; a new form would get a new version.
const CANONICAL_VERSION: &str = "partner-catalog event v1";

/// The stored fields of an event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainedEvent<'a> {
    /// Event id (UUIDv7).
    pub id: Uuid,
    /// The chain: the customer id, else the partner id, else [`POLICY_CHAIN`] for published
    /// policies and [`CATALOG_CHAIN`] for the rest.
    pub chain_id: Uuid,
    /// Position in the chain, from 1.
    pub chain_seq: i64,
    /// The hash of the previous event of the chain ([`GENESIS_HASH`] for the first).
    pub prev_hash: &'a [u8],
    /// The hash stored with the event; not part of the canonical form, compared against it.
    pub stored_hash: &'a [u8],
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// Event type, as stored.
    pub event_type: &'a str,
    /// The customer concerned.
    pub customer_id: Option<Uuid>,
    /// The partner concerned.
    pub partner_id: Option<Uuid>,
    /// Who acted.
    pub actor: &'a str,
    /// The actor's role (absent for `system`).
    pub actor_role: Option<&'a str>,
    /// The partner the actor acted for, for partner roles.
    pub actor_partner_id: Option<Uuid>,
    /// The request that carried it.
    pub request_id: Option<&'a str>,
    /// The payload exactly as PostgreSQL prints the stored jsonb (`payload::text`).
    pub payload: &'a str,
}

impl ChainedEvent<'_> {
    /// The canonical text of the event (see the README, "For auditors").
    pub fn canonical(&self) -> String {
        let optional_id = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
        let request_id = self
            .request_id
            .map_or_else(|| "-".to_owned(), |r| format!("{}:{r}", r.len()));
        [
            CANONICAL_VERSION.to_owned(),
            self.id.to_string(),
            self.chain_id.to_string(),
            self.chain_seq.to_string(),
            hex::encode(self.prev_hash),
            self.occurred_at.timestamp_micros().to_string(),
            self.event_type.to_owned(),
            optional_id(self.customer_id),
            optional_id(self.partner_id),
            format!("{}:{}", self.actor.len(), self.actor),
            self.actor_role.unwrap_or("-").to_owned(),
            optional_id(self.actor_partner_id),
            request_id,
            self.payload.to_owned(),
        ]
        .join("\n")
    }

    /// SHA-256 of the canonical text's UTF-8 bytes.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.canonical().as_bytes()).into()
    }
}

/// The last link of a chain as the head table records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainHead {
    /// Position of the last event.
    pub seq: i64,
    /// Its hash, hex.
    pub hash: String,
}

/// What is wrong at the first broken link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ChainProblem)]
pub enum Problem {
    /// `chain_seq` is not the previous one plus 1: an event is missing or was moved.
    SequenceGap,
    /// `prev_hash` is not the previous event's hash.
    PreviousHashMismatch,
    /// The stored hash is not the hash of the stored content: the event was altered.
    HashMismatch,
    /// The chain's head does not name its last event: events were removed from the end.
    HeadMismatch,
}

/// The first place where a chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BrokenLink {
    /// The event where it breaks (absent when the chain has a head but no events).
    pub event_id: Option<Uuid>,
    /// Its position in the chain.
    pub seq: i64,
    /// What is wrong.
    pub problem: Problem,
    /// What it should be: a hash (hex), a sequence number, or `seq:hash` of the head.
    pub expected: String,
    /// What is stored.
    pub stored: String,
}

/// The verification of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChainReport {
    /// The chain.
    pub chain_id: Uuid,
    /// Whether every link holds.
    pub ok: bool,
    /// Events read.
    pub events: u64,
    /// The recorded head, if any.
    pub head: Option<ChainHead>,
    /// The first broken link, if any.
    pub first_broken: Option<BrokenLink>,
}

/// Walks one chain in `chain_seq` order and remembers the first link that does not hold.
#[derive(Debug)]
pub struct ChainVerifier {
    chain_id: Uuid,
    events: u64,
    last: Option<(Uuid, i64, [u8; 32])>,
    broken: Option<BrokenLink>,
}

impl ChainVerifier {
    /// Starts verifying `chain_id`.
    pub fn new(chain_id: Uuid) -> Self {
        Self {
            chain_id,
            events: 0,
            last: None,
            broken: None,
        }
    }

    /// The chain being verified.
    pub fn chain_id(&self) -> Uuid {
        self.chain_id
    }

    /// Checks the next event of the chain.
    pub fn push(&mut self, event: &ChainedEvent<'_>) {
        self.events += 1;
        if self.broken.is_some() {
            return;
        }
        let (expected_seq, expected_prev) = match &self.last {
            Some((_, seq, hash)) => (seq + 1, *hash),
            None => (1, GENESIS_HASH),
        };
        let recomputed = event.hash();
        let broken = |problem, expected: String, stored: String| BrokenLink {
            event_id: Some(event.id),
            seq: event.chain_seq,
            problem,
            expected,
            stored,
        };
        self.broken = if event.chain_seq != expected_seq {
            Some(broken(
                Problem::SequenceGap,
                expected_seq.to_string(),
                event.chain_seq.to_string(),
            ))
        } else if event.prev_hash != expected_prev {
            Some(broken(
                Problem::PreviousHashMismatch,
                hex::encode(expected_prev),
                hex::encode(event.prev_hash),
            ))
        } else if event.stored_hash != recomputed {
            Some(broken(
                Problem::HashMismatch,
                hex::encode(recomputed),
                hex::encode(event.stored_hash),
            ))
        } else {
            None
        };
        self.last = Some((event.id, event.chain_seq, recomputed));
    }

    /// Ends the walk: the recorded head must name the last event read.
    pub fn finish(self, head: Option<(i64, &[u8])>) -> ChainReport {
        let head_text = |seq: i64, hash: &[u8]| format!("{seq}:{}", hex::encode(hash));
        let broken = self.broken.or_else(|| match (&self.last, head) {
            (None, None) => None,
            (Some((_, seq, hash)), Some((head_seq, head_hash)))
                if *seq == head_seq && hash.as_slice() == head_hash =>
            {
                None
            }
            (last, head) => Some(BrokenLink {
                event_id: last.map(|(id, ..)| id),
                seq: last.map_or(0, |(_, seq, _)| seq),
                problem: Problem::HeadMismatch,
                expected: head.map_or_else(|| "none".to_owned(), |(s, h)| head_text(s, h)),
                stored: last.map_or_else(|| "none".to_owned(), |(_, s, h)| head_text(s, &h)),
            }),
        });
        ChainReport {
            chain_id: self.chain_id,
            ok: broken.is_none(),
            events: self.events,
            head: head.map(|(seq, hash)| ChainHead {
                seq,
                hash: hex::encode(hash),
            }),
            first_broken: broken,
        }
    }
}

/// The first 8 bytes of the event id of instant `micros` (microseconds since the Unix epoch):
/// 48 bits of milliseconds, version 7, and the sub-millisecond fraction in 12 bits.
fn id_prefix(micros: i64) -> [u8; 8] {
    // Event ids can only express 0 ..= 2^48 - 1 milliseconds.
    let micros = micros.clamp(0, (1_i64 << 48) * 1000 - 1);
    let millis = micros / 1000;
    let fraction = (micros % 1000) * 4096 / 1000;
    ((millis << 16) | 0x7000 | fraction).to_be_bytes()
}

/// A new event id for an event occurring at `micros`, with 62 random bits from `random`.
pub fn event_id_at(micros: i64, random: u64) -> Uuid {
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&id_prefix(micros));
    bytes[8..].copy_from_slice(&random.to_be_bytes());
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // the RFC 9562 variant
    Uuid::from_bytes(bytes)
}

/// The smallest possible id of an event that occurred at or after `at`: `occurred_at >= at`
/// exactly when `id >= event_id_floor(at)`, because ids sort like their `occurred_at`.
pub fn event_id_floor(at: DateTime<Utc>) -> Uuid {
    // occurred_at has microsecond precision, so "at or after" a finer instant means at or after
    // the next whole microsecond.
    let micros =
        at.timestamp_micros() + i64::from(!at.timestamp_subsec_nanos().is_multiple_of(1000));
    let mut bytes = [0; 16];
    bytes[..8].copy_from_slice(&id_prefix(micros));
    Uuid::from_bytes(bytes)
}

/// The millisecond an event occurred in: its id begins with it (see [`event_id_at`]).
pub fn event_millisecond(id: Uuid) -> DateTime<Utc> {
    let millis = id.as_bytes()[..6]
        .iter()
        .fold(0_i64, |millis, byte| millis << 8 | i64::from(*byte));
    // 48 bits of milliseconds always make a valid instant.
    DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn event<'a>(seq: i64, prev: &'a [u8], stored: &'a [u8], payload: &'a str) -> ChainedEvent<'a> {
        ChainedEvent {
            id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0011 + seq as u128),
            chain_id: Uuid::from_u128(1),
            chain_seq: seq,
            prev_hash: prev,
            stored_hash: stored,
            occurred_at: at("2026-11-24T14:18:35.982468Z"),
            event_type: "customer_created",
            customer_id: Some(Uuid::from_u128(1)),
            partner_id: None,
            actor: "system",
            actor_role: None,
            actor_partner_id: None,
            request_id: Some("x"),
            payload,
        }
    }

    #[test]
    fn the_canonical_form_is_the_documented_one() {
        let e = event(3, &[0xab; 32], &[], r#"{"a": "é\n"}"#);
        assert_eq!(
            e.canonical(),
            format!(
                "partner-catalog event v1\n{}\n00000000-0000-0000-0000-000000000001\n3\n{}\n\
                 1795529915982468\ncustomer_created\n00000000-0000-0000-0000-000000000001\n\n\
                 6:system\n-\n\n1:x\n{{\"a\": \"é\\n\"}}",
                e.id,
                "ab".repeat(32)
            )
        );
        let no_request = ChainedEvent {
            request_id: None,
            ..e
        };
        assert!(no_request.canonical().contains("\n6:system\n-\n\n-\n{"));
    }

    #[test]
    fn a_chain_verifies_and_the_first_altered_event_is_reported() {
        let first = event(1, &GENESIS_HASH, &[], "{}");
        let h1 = first.hash();
        let second = event(2, &h1, &[], "{}");
        let h2 = second.hash();

        let mut verifier = ChainVerifier::new(Uuid::from_u128(1));
        verifier.push(&ChainedEvent {
            stored_hash: &h1,
            ..first
        });
        verifier.push(&ChainedEvent {
            stored_hash: &h2,
            ..second
        });
        let report = verifier.finish(Some((2, &h2)));
        assert!(report.ok, "{report:?}");
        assert_eq!(report.events, 2);

        let mut verifier = ChainVerifier::new(Uuid::from_u128(1));
        verifier.push(&ChainedEvent {
            stored_hash: &h1,
            payload: r#"{"tampered": true}"#,
            ..first
        });
        verifier.push(&ChainedEvent {
            stored_hash: &h2,
            ..second
        });
        let broken = verifier.finish(Some((2, &h2))).first_broken.unwrap();
        assert_eq!(broken.problem, Problem::HashMismatch);
        assert_eq!(broken.seq, 1);
        assert_eq!(broken.stored, hex::encode(h1));
    }

    #[test]
    fn missing_events_are_reported() {
        let first = event(1, &GENESIS_HASH, &[], "{}");
        let h1 = first.hash();
        let third = event(3, &h1, &[], "{}");
        let h3 = third.hash();

        let mut verifier = ChainVerifier::new(Uuid::from_u128(1));
        verifier.push(&ChainedEvent {
            stored_hash: &h1,
            ..first
        });
        verifier.push(&ChainedEvent {
            stored_hash: &h3,
            ..third
        });
        let broken = verifier.finish(Some((3, &h3))).first_broken.unwrap();
        assert_eq!(
            (
                broken.problem,
                broken.expected.as_str(),
                broken.stored.as_str()
            ),
            (Problem::SequenceGap, "2", "3")
        );

        let mut verifier = ChainVerifier::new(Uuid::from_u128(1));
        verifier.push(&ChainedEvent {
            stored_hash: &h1,
            ..first
        });
        let broken = verifier.finish(Some((3, &h3))).first_broken.unwrap();
        assert_eq!(broken.problem, Problem::HeadMismatch);
    }

    #[test]
    fn event_ids_sort_like_their_time_and_bound_time_ranges_exactly() {
        let t = at("2026-01-01T00:00:00.000001Z");
        let micros = t.timestamp_micros();
        // The database's event_id_at for the same instant starts with 019b76da-a800-7004.
        assert!(
            event_id_at(micros, 0)
                .to_string()
                .starts_with("019b76da-a800-7004-8")
        );
        assert_eq!(event_id_at(micros, u64::MAX).get_version_num(), 7);
        assert!(event_id_floor(t) <= event_id_at(micros, 0));
        assert!(event_id_at(micros - 1, u64::MAX) < event_id_floor(t));
        assert!(event_id_at(micros, u64::MAX) < event_id_floor(at("2026-01-01T00:00:00.000002Z")));
        // A bound finer than a microsecond rounds up: nothing stored lies strictly between.
        let fine = at("2026-01-01T00:00:00.0000011Z");
        assert_eq!(
            event_id_floor(fine),
            event_id_floor(at("2026-01-01T00:00:00.000002Z"))
        );
        assert!(event_id_at(micros + 999, 0) < event_id_at(micros + 1000, 0));
    }

    #[test]
    fn an_event_id_names_the_millisecond_its_event_occurred_in() {
        let ms = at("2026-01-01T00:00:00.001Z");
        for micros in [0, 1, 500, 999] {
            let id = event_id_at(ms.timestamp_micros() + micros, u64::MAX);
            assert_eq!(event_millisecond(id), ms, "{micros} µs into it");
        }
        let next = event_id_at(ms.timestamp_micros() + 1000, 0);
        assert_eq!(event_millisecond(next), at("2026-01-01T00:00:00.002Z"));
    }
}
