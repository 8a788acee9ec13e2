-- A redeliver that arrives while an attempt of the same delivery is in flight: the attempt
-- finishing must not overwrite it (a success would mark the delivery delivered and the
-- redeliver would be lost), so it is remembered here and honoured when the attempt is
-- recorded.
alter table webhook_deliveries add column redeliver_requested boolean not null default false;
