-- Kept in step with postgres/0012: an embedded server is the only instance, so its own
-- validation cache already sees every change it makes.
select 1;
