//! Who the actors in event metadata are, by name: an admin id is its email, `license:<id>`
//! its subscription's customer. One batch per kind for a whole page of events.

use std::collections::HashMap;

use flowlytix_projections::{with_db, Db};
use sqlx::QueryBuilder;
use uuid::Uuid;

/// The most distinct actors one lookup resolves (a page of events names far fewer); the
/// rest are shown as recorded.
const MAX_ACTORS: usize = 500;

/// The prefix of an actor that is a license (a device acting through its key).
pub const LICENSE_PREFIX: &str = "license:";

/// What an actor recorded in event metadata stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// An admin, by id (the admin's UUID, derived from the email).
    Admin(Uuid),
    /// A device acting through the key of this subscription.
    License(Uuid),
    /// `system`, `token:<id>` or anything not known: shown as recorded.
    Other,
}

impl ActorKind {
    pub fn of(actor: &str) -> Self {
        if let Some(id) = actor.strip_prefix(LICENSE_PREFIX) {
            return Uuid::parse_str(id).map_or(Self::Other, Self::License);
        }
        Uuid::parse_str(actor).map_or(Self::Other, Self::Admin)
    }
}

/// The names found for a set of actors.
#[derive(Debug, Default)]
pub struct ActorNames {
    /// Admin id → email.
    pub admins: HashMap<Uuid, String>,
    /// Subscription id → customer name (the email when the name is blank).
    pub customers: HashMap<Uuid, String>,
}

/// Names for these actors: admins' emails from their `AdminCreated` events (there is no
/// read model of admins, and an admin's email never changes: the id is derived from it), and
/// customers from `rm_subscriptions`. At most one query per kind, whatever the count.
pub async fn names<'a>(
    db: &Db,
    actors: impl IntoIterator<Item = &'a str>,
) -> Result<ActorNames, sqlx::Error> {
    let mut admins: Vec<Uuid> = vec![];
    let mut licenses: Vec<Uuid> = vec![];
    for actor in actors {
        let (list, id) = match ActorKind::of(actor) {
            ActorKind::Admin(id) => (&mut admins, id),
            ActorKind::License(id) => (&mut licenses, id),
            ActorKind::Other => continue,
        };
        if !list.contains(&id) && list.len() < MAX_ACTORS {
            list.push(id);
        }
    }
    let mut names = ActorNames::default();
    if !admins.is_empty() {
        let rows: Vec<(String, Option<String>)> = with_db!(db, pool => {
            let mut query = QueryBuilder::new(
                "select aggregate_id, payload -> 'AdminCreated' ->> 'email' from events
                 where aggregate_type = 'AdminUser' and event_type = 'AdminCreated'
                   and aggregate_id in (",
            );
            let mut ids = query.separated(", ");
            for id in &admins {
                ids.push_bind(id.to_string());
            }
            query.push(")");
            query.build_query_as().fetch_all(pool).await?
        });
        names.admins = rows
            .into_iter()
            .filter_map(|(id, email)| Some((Uuid::parse_str(&id).ok()?, email?)))
            .collect();
    }
    if !licenses.is_empty() {
        let rows: Vec<(Uuid, String, String)> = with_db!(db, pool => {
            let mut query = QueryBuilder::new(
                "select id, customer_name, customer_email from rm_subscriptions where id in (",
            );
            let mut ids = query.separated(", ");
            for id in &licenses {
                ids.push_bind(*id);
            }
            query.push(")");
            query.build_query_as().fetch_all(pool).await?
        });
        names.customers = rows
            .into_iter()
            .map(|(id, name, email)| {
                let shown = if name.trim().is_empty() { email } else { name };
                (id, shown)
            })
            .collect();
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_are_told_apart_by_form() {
        let id = Uuid::new_v4();
        assert_eq!(ActorKind::of(&id.to_string()), ActorKind::Admin(id));
        assert_eq!(
            ActorKind::of(&format!("license:{id}")),
            ActorKind::License(id)
        );
        for other in ["system", "token:abc", "license:nope", "", "admin"] {
            assert_eq!(ActorKind::of(other), ActorKind::Other, "{other:?}");
        }
    }
}
