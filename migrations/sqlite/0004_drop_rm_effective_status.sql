-- Kept in step with migrations/postgres/0004, which drops a PostgreSQL function that SQLite
-- never had: nothing to do here.
select 1;
