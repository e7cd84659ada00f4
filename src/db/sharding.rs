//! Where every table lives when the database is distributed with Citus, sharded by customer.
//!
//! This is the one declaration of the mapping: the README ("Scaling out: Citus") documents it,
//! `tests/api/sharding.rs` checks the migrated catalog and every committed statement against it,
//! and an operator distributes the tables in the order given here.

/// How a table is placed on a Citus cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Hash-distributed by this column. Tables keyed by a customer are colocated with
    /// `customers`: the column holds a customer id (or, for `chain_id`, a customer id on customer
    /// events), so everything one purchase touches hashes to one shard. The claims of external
    /// references are keyed by the reference instead, in a colocation group of their own.
    Distributed(&'static str),
    /// Small, rarely written, read by every purchase: a copy on every node.
    Reference,
    /// On the coordinator only (a Citus local table): service bookkeeping that belongs to no
    /// customer, is read only through the coordinator, and is too large or too often written to
    /// copy to every node.
    Local,
}

/// Every table of the schema and its placement, reference and local tables first (distributed
/// tables may reference them), then `customers`, which the other distributed tables are colocated with.
pub const TABLES: &[(&str, Placement)] = &[
    ("partners", Placement::Reference),
    ("indirect_reseller_providers", Placement::Reference),
    ("partner_profile_history", Placement::Reference),
    ("offers", Placement::Reference),
    ("api_tokens", Placement::Reference),
    ("users", Placement::Reference),
    ("sessions", Placement::Reference),
    // Few, rarely written, read by every dispatch round.
    ("webhook_endpoints", Placement::Reference),
    // A handful of versions, published by hand, read by every decision and by the triggers.
    ("policy_versions", Placement::Reference),
    // Console import jobs: no customer owns one, and a job carries its whole file (up to
    // IMPORT_BODY_LIMIT_BYTES) and rewrites its progress every batch; as a reference table both
    // would go to every node. Only the service reads it, through the coordinator.
    ("customer_import_jobs", Placement::Local),
    ("customers", Placement::Distributed("id")),
    ("customer_partners", Placement::Distributed("customer_id")),
    (
        "customer_qualification_history",
        Placement::Distributed("customer_id"),
    ),
    ("subscriptions", Placement::Distributed("customer_id")),
    ("idempotency_keys", Placement::Distributed("customer_id")),
    // Claims external references across customers: a customer's row cannot hold a unique index
    // without its id on Citus. Written beside the customer, one row per claimed reference.
    (
        "customer_external_references",
        Placement::Distributed("external_reference"),
    ),
    // A customer's chain id is the customer's id, so its events live with it; partner and catalog
    // chains land wherever their id hashes.
    ("events", Placement::Distributed("chain_id")),
    ("event_chain_heads", Placement::Distributed("chain_id")),
    // Hanging off one event, so with its chain: dispatching a chain touches one shard.
    ("webhook_chain_marks", Placement::Distributed("chain_id")),
    ("webhook_deliveries", Placement::Distributed("chain_id")),
    ("webhook_attempts", Placement::Distributed("chain_id")),
    // One partner's feed (the nil id: the platform's), read by that partner alone; like a
    // partner's event chain, it lands where the partner's id hashes.
    ("partner_feed_heads", Placement::Distributed("partner_id")),
    ("partner_feed", Placement::Distributed("partner_id")),
];

/// Tables other work adds, placed by the same rule: owned by one customer, distributed by
/// `customer_id`; hanging off one event, by `chain_id`; platform or partner data, reference.
/// The catalog test checks each against the schema once it exists.
pub const PLANNED_TABLES: &[(&str, Placement)] = &[];

/// Why a statement may touch every shard. A statement on a distributed table that does not fix
/// its shard column by equality carries `-- fan-out: <reason>` with one of these.
pub const FAN_OUTS: &[&str] = &[
    // Listing customers (optionally one partner's): keyset pages over all of them.
    "customer list",
    // Auditors' event search and export: filters that are not the chain.
    "audit search",
    // `audit verify` over every chain.
    "full verify",
    // Creating many customers at once (import, seeding).
    "bulk import",
    // The webhook dispatcher and sender: chains past their mark, due deliveries of any chain,
    // and an endpoint's deliveries across chains.
    "webhook dispatch",
    // A policy draft's impact preview: every customer, relationship and subscription, counted by
    // the facts the rules read and listed in keyset pages.
    "policy impact",
];

/// The placement of `table`, if it is declared.
pub fn placement(table: &str) -> Option<Placement> {
    TABLES
        .iter()
        .chain(PLANNED_TABLES)
        .find(|(name, _)| *name == table)
        .map(|(_, p)| *p)
}
