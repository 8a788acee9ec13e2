-- `rm_effective_status` was never called: lists and analytics compute the status in force
-- with the bound instant of the request (read/mod.rs, `push_effective_status!`), so the
-- rule has one SQL rendering, tested against the aggregate's `effective_status`.
drop function if exists rm_effective_status(text, timestamptz, timestamptz);
