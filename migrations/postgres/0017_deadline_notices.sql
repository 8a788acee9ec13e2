-- The deadline notices a subscription has had (`SubscriptionExpiringSoon`,
-- `SubscriptionExpired`, `SubscriptionGraceEnded`), copied from the events by the
-- `subscriptions` projector, each with the deadline it was for; and the indexes that let the
-- deadline scheduler (`src/subscriptions/deadlines.rs`) find the notices that are due
-- without reading every subscription.
alter table rm_subscriptions add column notice_reminded_for timestamptz;
alter table rm_subscriptions add column notice_reminded_days int;
alter table rm_subscriptions add column notice_expired_for timestamptz;
alter table rm_subscriptions add column notice_grace_until timestamptz;
alter table rm_subscriptions add column notice_grace_ended_for timestamptz;

-- The expression in these indexes is the deadline in force (the aggregate's
-- `record_deadlines`: the trial's end while trialing, unless the period ends first); the
-- queries in `src/read/deadlines.rs` spell it the same way, so that the indexes serve them.

-- Usable subscriptions with no notice yet for their deadline.
create index rm_subscriptions_deadline_unnoticed on rm_subscriptions ((
    case when status = 'trialing' and trial_ends_at is not null
          and (expires_at is null or trial_ends_at <= expires_at)
        then trial_ends_at else expires_at end))
    where deleted_at is null and status in ('trialing', 'active', 'past_due')
      and notice_reminded_for is distinct from (
          case when status = 'trialing' and trial_ends_at is not null
                and (expires_at is null or trial_ends_at <= expires_at)
              then trial_ends_at else expires_at end)
      and notice_expired_for is distinct from (
          case when status = 'trialing' and trial_ends_at is not null
                and (expires_at is null or trial_ends_at <= expires_at)
              then trial_ends_at else expires_at end);

-- Usable subscriptions reminded of their deadline, not yet expired.
create index rm_subscriptions_deadline_reminded on rm_subscriptions ((
    case when status = 'trialing' and trial_ends_at is not null
          and (expires_at is null or trial_ends_at <= expires_at)
        then trial_ends_at else expires_at end))
    where deleted_at is null and status in ('trialing', 'active', 'past_due')
      and notice_reminded_for = (
          case when status = 'trialing' and trial_ends_at is not null
                and (expires_at is null or trial_ends_at <= expires_at)
              then trial_ends_at else expires_at end)
      and notice_expired_for is distinct from (
          case when status = 'trialing' and trial_ends_at is not null
                and (expires_at is null or trial_ends_at <= expires_at)
              then trial_ends_at else expires_at end);

-- Expired (for the deadline in force) in grace, whose grace has not been recorded as ended.
create index rm_subscriptions_grace_unnoticed on rm_subscriptions (notice_grace_until)
    where deleted_at is null and status in ('trialing', 'active', 'past_due')
      and notice_expired_for = (
          case when status = 'trialing' and trial_ends_at is not null
                and (expires_at is null or trial_ends_at <= expires_at)
              then trial_ends_at else expires_at end)
      and notice_grace_until is not null
      and notice_grace_ended_for is distinct from notice_expired_for;
