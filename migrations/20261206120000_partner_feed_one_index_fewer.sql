-- One index entry fewer per feed entry (BENCHMARKS.md, "Webhook delivery", "Fewer writes per
-- notice"). `(partner_id, event_id)` served only a redelivery of one event, which now reads
-- `partner_feed_occurred_idx` over the millisecond the event's id begins with (ids are stamped from
-- `occurred_at`: `events_id_encodes_occurred_at`), as a range redelivery reads it.
drop index partner_feed_event_idx;
