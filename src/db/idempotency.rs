//! Idempotency keys of purchase requests. A purchase reads, locks and stores its key together with
//! other data, in `db::purchases` and its `purchase_record` function, to save round trips: requests
//! of one owner for one customer with the same key are serialized by an advisory lock on the hash of
//! customer, owner and key (a collision merely serializes two keys), so a retry racing the original
//! waits for it and then sees its outcome, and the stored row is complete and written once.

use serde_json::Value;

/// What was stored for a key.
#[derive(Debug)]
pub struct KeyRecord {
    /// The request the key was first used with.
    pub request: Value,
    /// The outcome answered to it.
    pub outcome: Value,
}
