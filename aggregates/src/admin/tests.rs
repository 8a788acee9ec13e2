//! Given/when/then tests of the `AdminUser` aggregate: one test per rule.
#![allow(clippy::unwrap_used)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::{AggregateTestExecutor, TestFramework};

use super::{AdminCommand, AdminError, AdminEvent, AdminUser};
use crate::values::{AdminId, Email, Role};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// When commands are handled unless a test says otherwise.
fn now() -> DateTime<Utc> {
    t0() + Duration::days(1)
}

fn email() -> Email {
    Email::parse("ann@example.com").unwrap()
}

fn admin_id() -> AdminId {
    AdminId::for_email(&email())
}

/// A well-shaped argon2id PHC string (the aggregate only checks the shape).
fn password_hash(salt: &str) -> String {
    format!("$argon2id$v=19$m=19456,t=2,p=1${salt}$K9Jq3dGq7vQ4c2l1b3Zf1YxWm8Zr0xJ1dC7pT3e5l2U")
}

fn create(password_hash: String, role: Role) -> AdminCommand {
    AdminCommand::CreateAdmin {
        admin_id: admin_id(),
        email: email(),
        password_hash,
        role,
        at: t0(),
    }
}

/// An enabled admin with role `admin`, created at `t0()`.
fn created() -> Vec<AdminEvent> {
    vec![AdminEvent::AdminCreated {
        admin_id: admin_id(),
        email: email(),
        password_hash: password_hash("c2FsdHNhbHQx"),
        role: Role::Admin,
        at: t0(),
    }]
}

/// `created()` then disabled.
fn disabled() -> Vec<AdminEvent> {
    let mut events = created();
    events.push(AdminEvent::AdminDisabled { at: t0() });
    events
}

fn given(events: Vec<AdminEvent>) -> AggregateTestExecutor<AdminUser> {
    TestFramework::<AdminUser>::with(()).given(events)
}

/// One of every command kind but `CreateAdmin`.
fn every_non_create_command() -> Vec<AdminCommand> {
    vec![
        AdminCommand::ChangeRole {
            role: Role::Auditor,
            at: now(),
        },
        AdminCommand::ChangePassword {
            password_hash: password_hash("bmV3c2FsdDI"),
            at: now(),
        },
        AdminCommand::DisableAdmin { at: now() },
    ]
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn create_admin_emits_admin_created() {
    TestFramework::<AdminUser>::with(())
        .given_no_previous_events()
        .when(create(password_hash("c2FsdHNhbHQx"), Role::Auditor))
        .then_expect_events(vec![AdminEvent::AdminCreated {
            admin_id: admin_id(),
            email: email(),
            password_hash: password_hash("c2FsdHNhbHQx"),
            role: Role::Auditor,
            at: t0(),
        }]);
}

#[test]
fn create_an_existing_admin_is_already_exists() {
    given(created())
        .when(create(password_hash("c2FsdHNhbHQx"), Role::Admin))
        .then_expect_error(AdminError::AlreadyExists);
}

#[test]
fn create_over_a_disabled_admin_is_already_exists() {
    given(disabled())
        .when(create(password_hash("c2FsdHNhbHQx"), Role::Admin))
        .then_expect_error(AdminError::AlreadyExists);
}

#[test]
fn create_with_a_plaintext_password_is_invalid_password_hash() {
    for plaintext in [
        "",
        "hunter2",
        "correct horse battery staple and then some more words",
    ] {
        given(vec![])
            .when(create(plaintext.to_owned(), Role::Admin))
            .then_expect_error(AdminError::InvalidPasswordHash);
    }
}

#[test]
fn create_with_a_non_argon2id_hash_is_invalid_password_hash() {
    let argon2i = password_hash("c2FsdHNhbHQx").replacen("$argon2id$", "$argon2i$", 1);
    let bcrypt = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned();
    for hash in [argon2i, bcrypt, "$argon2id$".to_owned()] {
        given(vec![])
            .when(create(hash, Role::Admin))
            .then_expect_error(AdminError::InvalidPasswordHash);
    }
}

#[test]
fn every_command_on_a_missing_admin_is_not_found() {
    for command in every_non_create_command() {
        TestFramework::<AdminUser>::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(AdminError::NotFound);
    }
}

#[test]
fn every_command_after_disable_is_disabled() {
    for command in every_non_create_command() {
        given(disabled())
            .when(command)
            .then_expect_error(AdminError::Disabled);
    }
}

#[test]
fn disable_admin_emits_admin_disabled() {
    given(created())
        .when(AdminCommand::DisableAdmin { at: now() })
        .then_expect_events(vec![AdminEvent::AdminDisabled { at: now() }]);
}

#[test]
fn change_role_emits_role_changed() {
    given(created())
        .when(AdminCommand::ChangeRole {
            role: Role::Auditor,
            at: now(),
        })
        .then_expect_events(vec![AdminEvent::AdminRoleChanged {
            previous_role: Role::Admin,
            role: Role::Auditor,
            at: now(),
        }]);
}

#[test]
fn change_to_the_same_role_emits_no_events() {
    given(created())
        .when(AdminCommand::ChangeRole {
            role: Role::Admin,
            at: now(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn change_role_follows_the_previous_role_change() {
    let mut events = created();
    events.push(AdminEvent::AdminRoleChanged {
        previous_role: Role::Admin,
        role: Role::Auditor,
        at: t0(),
    });
    given(events)
        .when(AdminCommand::ChangeRole {
            role: Role::Auditor,
            at: now(),
        })
        .then_expect_events(vec![]);
}

#[test]
fn change_password_emits_password_changed() {
    given(created())
        .when(AdminCommand::ChangePassword {
            password_hash: password_hash("bmV3c2FsdDI"),
            at: now(),
        })
        .then_expect_events(vec![AdminEvent::AdminPasswordChanged {
            password_hash: password_hash("bmV3c2FsdDI"),
            at: now(),
        }]);
}

#[test]
fn change_password_to_a_plaintext_is_invalid_password_hash() {
    given(created())
        .when(AdminCommand::ChangePassword {
            password_hash: "hunter2".to_owned(),
            at: now(),
        })
        .then_expect_error(AdminError::InvalidPasswordHash);
}
