-- 0011 started the `webhooks` projector where the log was (its projection_versions), so it
-- is never given the events before it, and its count of handled events (what /health and
-- the metrics measure its lag by, now that they show it) would stay short of the log's for
-- ever. Count those events as handled: every event at or below its version of each
-- aggregate, which is also exact for the events it did handle since.
insert into projector_checkpoints (projector, stream_sequence, events_applied)
select 'webhooks', 0, count(*)
from events e
join projection_versions v
  on v.projector = 'webhooks' and v.aggregate_type = e.aggregate_type
 and v.aggregate_id = e.aggregate_id and e.sequence <= v.version
where true
on conflict (projector) do update set
    events_applied = max(projector_checkpoints.events_applied, excluded.events_applied);
