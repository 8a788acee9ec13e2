//! Actors as the panel shows them: an admin by email, a license by its customer, anything
//! else as recorded; the recorded id stays in the element's `title`.

use flowlytix_projections::Db;

use crate::read::actors::{self, ActorKind, ActorNames};

pub struct ActorShown {
    /// What the reader sees.
    pub text: String,
    /// As recorded in the event's metadata (what the Events filter takes).
    pub raw: String,
    /// The subscription's page, for a license.
    pub link: Option<String>,
}

impl ActorShown {
    fn new(raw: &str, names: &ActorNames) -> Self {
        let (text, link) = match ActorKind::of(raw) {
            ActorKind::Admin(id) => (names.admins.get(&id).cloned(), None),
            ActorKind::License(id) => (
                names
                    .customers
                    .get(&id)
                    .map(|customer| format!("license ({customer})")),
                Some(format!("/admin/subscriptions/{id}")),
            ),
            ActorKind::Other => (None, None),
        };
        Self {
            text: text.unwrap_or_else(|| raw.to_owned()),
            raw: raw.to_owned(),
            link,
        }
    }

    /// Whether the text differs from the recorded actor (then the title carries the latter).
    pub fn renamed(&self) -> bool {
        self.text != self.raw
    }
}

/// The actors as shown, in the order given, from one batch of lookups.
pub async fn shown(db: &Db, raw: &[String]) -> Result<Vec<ActorShown>, sqlx::Error> {
    let names = actors::names(db, raw.iter().map(String::as_str)).await?;
    Ok(raw.iter().map(|a| ActorShown::new(a, &names)).collect())
}
