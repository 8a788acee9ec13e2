//! The admin operations on webhook endpoints against a real (SQLite) store, without HTTP:
//! secrets shown once and kept sealed, the delivery policy, rotation, deletion, redelivery.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use flowlytix_aggregates::webhook_endpoint::SEALED_PREFIX;
use flowlytix_aggregates::{WebhookEndpointError, WebhookEndpointId};
use flowlytix_eventstore::log::events_after;
use flowlytix_projections::LogCursor;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::secrets::SECRET_PREFIX;
use super::{CreateWebhookRequest, UpdateWebhookRequest, WebhookError, WithSecret};
use crate::bus::{EventBus, InProcessBus};
use crate::read::webhooks::AttemptQuery;
use crate::store::{Db, ExecuteError};
use crate::test_support::{metadata, services, sqlite, Services};

const URL: &str = "https://hooks.example.com/flowlytix";

fn request(url: &str) -> CreateWebhookRequest {
    CreateWebhookRequest {
        url: url.into(),
        event_types: None,
        description: Some("billing".into()),
        enabled: None,
    }
}

async fn create(s: &Services) -> (WebhookEndpointId, WithSecret) {
    let created = s.webhooks.create(request(URL), metadata()).await.unwrap();
    let id = created.committed.aggregate.state().unwrap().id;
    (id, created)
}

/// The key bytes a receiver decodes from a shown secret.
fn key_bytes(shown: &SecretString) -> Vec<u8> {
    let encoded = shown
        .expose_secret()
        .strip_prefix(SECRET_PREFIX)
        .expect("a shown secret starts with whsec_");
    STANDARD.decode(encoded).unwrap()
}

/// Every event payload stored for `id`, as text.
async fn stored_payloads(db: &Db, id: WebhookEndpointId) -> Vec<String> {
    sqlx::query_scalar("select payload from events where aggregate_id = $1 order by sequence")
        .bind(id.to_string())
        .fetch_all(sqlite(db))
        .await
        .unwrap()
}

/// What the publisher does without NATS: every committed event projected in-process, the
/// webhook queue included.
async fn publish_everything(db: &Db) {
    let mut connection = db.acquire().await.unwrap();
    let events: Vec<_> = events_after(connection.conn(), LogCursor::default(), 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, event)| event)
        .collect();
    drop(connection);
    InProcessBus::new(db.clone(), flowlytix_projections::streaming_projectors())
        .publish(&events)
        .await
        .unwrap();
}

#[tokio::test]
async fn creation_shows_the_secret_once_and_keeps_it_only_sealed() {
    let s = services().await;

    let (id, created) = create(&s).await;

    let key = key_bytes(&created.secret);
    assert_eq!(key.len(), 32);
    let (endpoint, _) = s.webhooks.endpoint(id).await.unwrap();
    let state = endpoint.state().unwrap();
    assert_eq!(state.settings.url, URL);
    assert!(state.enabled, "enabled unless asked otherwise");
    let sealed = state.sealed_secret.as_str();
    assert!(sealed.starts_with(SEALED_PREFIX), "sealed");
    // The sealed form opens to the shown key with this server's secret, and shows none of it.
    let opened = s.webhooks.secrets.open(id, &state.sealed_secret).unwrap();
    assert_eq!(opened.expose_secret(), key.as_slice());
    let shown = created.secret.expose_secret();
    let encoded_key = STANDARD.encode(&key);
    assert!(!sealed.contains(&encoded_key));
    // Nor does the event log.
    let payloads = stored_payloads(&s.store.db, id).await;
    assert_eq!(payloads.len(), 1, "one creation event");
    for payload in payloads {
        assert!(!payload.contains(shown) && !payload.contains(&encoded_key));
        assert!(payload.contains(SEALED_PREFIX), "{payload}");
    }
}

#[tokio::test]
async fn a_url_the_policy_refuses_is_neither_created_nor_set() {
    let s = services().await;
    for url in [
        "http://hooks.example.com/in",
        "https://127.0.0.1/in",
        "https://user:pw@hooks.example.com/in",
    ] {
        let id = WebhookEndpointId(Uuid::new_v4());
        let refused = s
            .webhooks
            .create_with_id(id, request(url), metadata())
            .await;
        assert!(matches!(refused, Err(WebhookError::UrlRefused(_))), "{url}");
        assert!(
            matches!(s.webhooks.endpoint(id).await, Err(WebhookError::NotFound)),
            "nothing was stored for {url}"
        );
    }

    let (id, _) = create(&s).await;
    let refused = s
        .webhooks
        .update(
            id,
            UpdateWebhookRequest {
                url: Some("https://10.0.0.7/in".into()),
                ..UpdateWebhookRequest::default()
            },
            metadata(),
        )
        .await;
    assert!(matches!(refused, Err(WebhookError::UrlRefused(_))));
    let (endpoint, version) = s.webhooks.endpoint(id).await.unwrap();
    assert_eq!(endpoint.state().unwrap().settings.url, URL);
    assert_eq!(version, 1, "no event was written");

    // A URL the policy allows is set.
    let other = "https://other.example.com/in";
    let updated = s
        .webhooks
        .update(
            id,
            UpdateWebhookRequest {
                url: Some(other.into()),
                description: Some(None),
                ..UpdateWebhookRequest::default()
            },
            metadata(),
        )
        .await
        .unwrap();
    let state = updated.aggregate.state().unwrap();
    assert_eq!(state.settings.url, other);
    assert_eq!(state.settings.description, None);
}

#[tokio::test]
async fn rotating_the_secret_seals_a_new_one_and_keeps_the_old_for_the_grace() {
    let s = services().await;
    let (id, created) = create(&s).await;
    let before = s.webhooks.endpoint(id).await.unwrap().0;

    let rotated = s.webhooks.rotate_secret(id, metadata()).await.unwrap();

    let new_key = key_bytes(&rotated.secret);
    assert_ne!(new_key, key_bytes(&created.secret));
    let state = rotated.committed.aggregate.state().unwrap();
    let before = before.state().unwrap();
    assert_ne!(state.sealed_secret, before.sealed_secret);
    let opened = s.webhooks.secrets.open(id, &state.sealed_secret).unwrap();
    assert_eq!(opened.expose_secret(), new_key.as_slice());
    let previous = state
        .previous_secret
        .as_ref()
        .expect("the old secret is kept");
    assert_eq!(previous.sealed_secret, before.sealed_secret);
    // What a later load sees, not only what the command returned.
    let (reloaded, _) = s.webhooks.endpoint(id).await.unwrap();
    assert_eq!(reloaded.state().unwrap().sealed_secret, state.sealed_secret);
}

#[tokio::test]
async fn a_deleted_endpoint_is_not_found_and_takes_no_more_changes() {
    let s = services().await;
    let (id, _) = create(&s).await;

    s.webhooks.delete(id, metadata()).await.unwrap();

    assert!(matches!(
        s.webhooks.endpoint(id).await,
        Err(WebhookError::NotFound)
    ));
    let rotate = s.webhooks.rotate_secret(id, metadata()).await;
    assert!(matches!(
        rotate,
        Err(WebhookError::Command(ExecuteError::Domain(
            WebhookEndpointError::Deleted
        )))
    ));
    // Its delivery log stays readable (history); an endpoint never created has none.
    let query = AttemptQuery {
        after: None,
        limit: None,
    };
    assert!(s.webhooks.delivery_log(id, &query).await.is_ok());
    let unknown = WebhookEndpointId(Uuid::new_v4());
    assert!(matches!(
        s.webhooks.delivery_log(unknown, &query).await,
        Err(WebhookError::NotFound)
    ));
    assert!(matches!(
        s.webhooks.endpoint(unknown).await,
        Err(WebhookError::NotFound)
    ));
}

#[tokio::test]
async fn redelivery_needs_a_delivery_of_that_endpoint() {
    let s = services().await;
    let (id, _) = create(&s).await;
    let (other, _) = create(&s).await;
    // An event for the endpoints, queued as the publisher would queue it.
    s.subscription(1).await;
    publish_everything(&s.store.db).await;
    let delivery: Uuid =
        sqlx::query_scalar("select id from webhook_deliveries where endpoint_id = $1 limit 1")
            .bind(id.as_uuid())
            .fetch_one(sqlite(&s.store.db))
            .await
            .expect("the subscription's events were queued for the endpoint");

    s.webhooks.redeliver(id, delivery).await.unwrap();

    assert!(matches!(
        s.webhooks.redeliver(id, Uuid::new_v4()).await,
        Err(WebhookError::DeliveryNotFound)
    ));
    assert!(
        matches!(
            s.webhooks.redeliver(other, delivery).await,
            Err(WebhookError::DeliveryNotFound)
        ),
        "another endpoint's delivery is not found"
    );
    s.webhooks.delete(id, metadata()).await.unwrap();
    assert!(matches!(
        s.webhooks.redeliver(id, delivery).await,
        Err(WebhookError::NotFound)
    ));
}
