-- One index entry fewer per feed entry (BENCHMARKS.md, "Webhook delivery", "Fewer writes per
-- notice"). `(partner_id, event_id)` served only a redelivery of one event, which now finds the
-- event's `occurred_at` first (an event's feed entries carry it) and reads
-- `partner_feed_occurred_idx`, as a range redelivery does.
drop index partner_feed_event_idx;
