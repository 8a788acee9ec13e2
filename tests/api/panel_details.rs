//! The panel's finer points over HTTP: actors shown by name (the recorded id kept in a
//! title or a link), a subscription's metadata on its page and in the CSV export, and the
//! webhook form's event types as checkboxes.

use flowlytix_aggregates::{AdminId, Email};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp, ADMIN_EMAIL};
use crate::panel::{unlabelled_controls, Browser};

fn admin_id() -> String {
    AdminId::for_email(&Email::parse(ADMIN_EMAIL).unwrap()).to_string()
}

/// A subscription with metadata (and a device, so a license acts too), once the read
/// models show it.
async fn subscription_with_metadata(app: &TestApp, browser: &Browser) -> Value {
    let created = app
        .create_subscription(json!({
            "customer_email": "meta@example.com", "customer_name": "Meta Customer",
            "plan": "pro", "max_devices": 2,
            "metadata": {
                "crm_id": "CRM-7",
                "note": "<script>alert(1)</script> & co",
                "formula": "x;=cmd",
                "tags": ["a", "b"],
            },
        }))
        .await;
    let key = created["license_key"].as_str().unwrap();
    assert_eq!(
        app.activate(key, "meta-laptop").await.status(),
        StatusCode::CREATED
    );
    app.wait_for_read_models().await;
    browser
        .page(&format!(
            "/admin/subscriptions?min_position={}",
            created["position"]
        ))
        .await;
    created
}

#[tokio::test]
async fn the_events_page_and_the_history_name_their_actors() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let created = subscription_with_metadata(&app, &browser).await;
    let id = created["id"].as_str().unwrap();
    let admin = admin_id();

    let events = browser
        .page(&format!("/admin/events?aggregate_id={id}"))
        .await;
    // The admin by email, the recorded id kept in the title.
    assert!(
        events.contains(&format!("<span title=\"{admin}\">{ADMIN_EMAIL}</span>")),
        "{events}"
    );
    // The license by its customer, linked to the subscription, the recorded actor in the
    // title.
    assert!(
        events.contains(&format!(
            "<a href=\"/admin/subscriptions/{id}\" title=\"license:{id}\">license (Meta Customer)</a>"
        )),
        "{events}"
    );
    // `system` as recorded (the first admin's creation).
    let admins = browser.page("/admin/events?aggregate_type=AdminUser").await;
    assert!(admins.contains(">system</td>"), "{admins}");

    // The subscription's history: the same names.
    let detail = browser.page(&format!("/admin/subscriptions/{id}")).await;
    assert!(detail.contains(&format!("<span title=\"{admin}\">{ADMIN_EMAIL}</span>")));
    assert!(detail.contains("license (Meta Customer)</a>"));
}

#[tokio::test]
async fn a_subscriptions_metadata_is_on_its_page_escaped_and_in_the_csv() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let created = subscription_with_metadata(&app, &browser).await;
    let id = created["id"].as_str().unwrap();

    let detail = browser.page(&format!("/admin/subscriptions/{id}")).await;
    assert!(detail.contains("<h2 id=\"metadata-heading\">Metadata</h2>"));
    assert!(detail.contains("<th scope=\"row\"><code>crm_id</code></th><td>CRM-7</td>"));
    // Text as it is (escaped), anything else as JSON.
    assert!(detail.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; co"));
    assert!(!detail.contains("<script>alert(1)"));
    assert!(
        detail.contains("<td>[&#34;a&#34;,&#34;b&#34;]</td>"),
        "{detail}"
    );

    // One without metadata says so.
    let bare = app.subscription_with_devices(1).await;
    let bare_page = browser
        .page(&format!(
            "/admin/subscriptions/{}",
            bare["id"].as_str().unwrap()
        ))
        .await;
    assert!(bare_page.contains("No metadata."));

    let csv = browser
        .get("/admin/subscriptions/export.csv?q=meta")
        .await
        .text()
        .await
        .unwrap();
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let header = reader.headers().unwrap().clone();
    let column = header.iter().position(|h| h == "metadata").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    let cell = &rows[0][column];
    // Compact JSON, defused where a `;`-splitting spreadsheet would start a formula.
    assert!(cell.starts_with("{\"crm_id\":\"CRM-7\""), "{cell}");
    assert!(cell.contains("\"formula\":\"x;'=cmd\""), "{cell}");
    assert!(cell.contains("\"tags\":[\"a\",\"b\"]"), "{cell}");
}

#[tokio::test]
async fn the_webhook_form_takes_event_types_as_ticked_boxes() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let form = browser.page("/admin/webhooks/new").await;
    assert!(form.contains("<legend>Event types</legend>"));
    for group in [
        "Subscription",
        "Product, Entitlement, Policy",
        "AdminUser",
        "WebhookEndpoint",
    ] {
        assert!(
            form.contains(&format!("<legend>{group}</legend>")),
            "{group}"
        );
    }
    for event_type in flowlytix_aggregates::webhook_endpoint::EVENT_TYPES {
        assert!(
            form.contains(&format!("name=\"event_types\" value=\"{event_type}\"")),
            "a box for {event_type}"
        );
    }
    assert_eq!(unlabelled_controls(&form), Vec::<String>::new());

    // Two boxes ticked: the field comes twice.
    let token = browser.form_token().await;
    let response = browser
        .post(
            "/admin/webhooks/new",
            &[
                ("csrf", token.as_str()),
                ("url", "https://hooks.invalid/ticked"),
                ("event_types", "SubscriptionCreated"),
                ("event_types", "PolicyCreated"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let html = response.text().await.unwrap();
    let marker = "href=\"/admin/webhooks/";
    let start = html.find(marker).unwrap() + marker.len();
    let id = html[start..start + 36].to_owned();
    let view = app.api().get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(
        view["event_types"],
        json!(["SubscriptionCreated", "PolicyCreated"])
    );
    // The edit form shows those two ticked, and no other.
    let page = browser.page(&format!("/admin/webhooks/{id}")).await;
    assert_eq!(page.matches(" checked>").count(), 2, "{page}");
    assert!(page.contains("value=\"PolicyCreated\" checked>"));

    // None ticked: every event type (null), as before.
    let response = browser
        .post(
            &format!("/admin/webhooks/{id}"),
            &[
                ("csrf", token.as_str()),
                ("url", "https://hooks.invalid/ticked"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let view = app.api().get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(view["event_types"], Value::Null);

    // A text field sent twice is still refused, and an unknown type is named.
    let twice = browser
        .post(
            "/admin/webhooks/new",
            &[
                ("csrf", token.as_str()),
                ("url", "https://hooks.invalid/a"),
                ("url", "https://hooks.invalid/b"),
            ],
        )
        .await;
    assert_eq!(twice.status(), StatusCode::BAD_REQUEST);
    let unknown = browser
        .post(
            "/admin/webhooks/new",
            &[
                ("csrf", token.as_str()),
                ("url", "https://hooks.invalid/c"),
                ("event_types", "NoSuchEvent"),
            ],
        )
        .await;
    assert_eq!(unknown.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
