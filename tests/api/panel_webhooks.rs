//! The panel's webhook pages over HTTP: the secret shown once, the same events and actor
//! as the JSON API, form tokens, the auditor's read-only view, escaping, and the delivery
//! log with its `Redeliver` button against a real receiver.

use reqwest::header::{CACHE_CONTROL, LOCATION};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::panel::{auditor, has_event_handler, unlabelled_controls, Browser, CSP};
use crate::webhooks::receiver::{eventually, Receiver};
use crate::webhooks::{settled_feed, LOCAL, PATIENCE};

/// A name that never resolves: nothing is delivered anywhere.
const NOWHERE: &str = "https://hooks.invalid/flowlytix";

/// The endpoint id in the first link to a webhook's page.
fn webhook_id_in(html: &str) -> String {
    let marker = "href=\"/admin/webhooks/";
    let start = html
        .match_indices(marker)
        .map(|(i, _)| i + marker.len())
        .find(|&i| !html[i..].starts_with("new"))
        .unwrap();
    html[start..start + 36].to_owned()
}

fn secret_in(html: &str) -> String {
    let start = html.find("whsec_").unwrap();
    html[start..start + html[start..].find('<').unwrap()].to_owned()
}

/// Creates an endpoint through the form; returns its id and the page that answered.
async fn create(browser: &Browser, url: &str, types: &str, description: &str) -> (String, String) {
    let token = browser.form_token().await;
    let response = browser
        .post(
            "/admin/webhooks/new",
            &[
                ("csrf", &token),
                ("url", url),
                ("event_types", types),
                ("description", description),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let html = response.text().await.unwrap();
    (webhook_id_in(&html), html)
}

/// The endpoint's events in the feed: (type, actor).
async fn history(app: &TestApp, id: &str) -> Vec<(String, String)> {
    settled_feed(app)
        .await
        .iter()
        .filter(|item| item["aggregate_id"] == id)
        .map(|item| {
            (
                item["event_type"].as_str().unwrap().to_owned(),
                item["metadata"]["actor"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The admin's id as the JSON API records it as actor.
async fn api_actor(app: &TestApp) -> String {
    let created = app.subscription_with_devices(1).await;
    let id = created["id"].as_str().unwrap();
    let feed = settled_feed(app).await;
    let item = feed.iter().find(|item| item["aggregate_id"] == id).unwrap();
    item["metadata"]["actor"].as_str().unwrap().to_owned()
}

/// Through a confirmation step: the confirm page, then its `Confirm`.
async fn confirmed(browser: &Browser, id: &str, action: &str) -> reqwest::Response {
    let page = browser
        .page(&format!("/admin/webhooks/{id}/confirm?action={action}"))
        .await;
    assert!(page.contains(">Confirm<"), "{action}");
    let form_action = format!("/admin/webhooks/{id}/actions/{action}");
    assert!(page.contains(&form_action));
    let token = browser.form_token().await;
    browser.post(&form_action, &[("csrf", &token)]).await
}

#[tokio::test]
async fn creating_a_webhook_shows_its_secret_once_and_every_page_is_strict() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let list = browser.page("/admin/webhooks").await;
    assert!(list.contains("<h1>Webhooks</h1>"));
    assert!(list.contains("href=\"/admin/webhooks\" aria-current=\"page\">Webhooks<"));
    assert!(list.contains(">New webhook<"));
    let (id, html) = create(&browser, NOWHERE, "", "Billing system").await;
    let secret = secret_in(&html);
    assert!(secret.len() > 20, "{secret}");
    assert!(html.contains("data-copy=\"signing-secret\""));
    // Never again: not in the detail, not in the list.
    let detail = browser.page(&format!("/admin/webhooks/{id}")).await;
    assert!(detail.contains(&format!("<h1>{NOWHERE}</h1>")));
    assert!(detail.contains("Billing system") && detail.contains(">all<"));
    assert!(!detail.contains(&secret) && !detail.contains("whsec_"));
    let position = html
        .split("min_position=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    let list = browser
        .page(&format!("/admin/webhooks?min_position={position}"))
        .await;
    assert!(list.contains(&format!("href=\"/admin/webhooks/{id}\">{NOWHERE}<")));
    assert!(list.contains(">enabled<") && list.contains("Billing system"));
    assert!(!list.contains("whsec_"));
    // The same event as the API's create, by the same actor.
    let actor = api_actor(&app).await;
    assert_eq!(
        history(&app, &id).await,
        [("WebhookEndpointCreated".to_owned(), actor)]
    );
    for path in [
        "/admin/webhooks".to_owned(),
        "/admin/webhooks/new".to_owned(),
        format!("/admin/webhooks/{id}"),
        format!("/admin/webhooks/{id}/confirm?action=disable"),
        format!("/admin/webhooks/{id}/confirm?action=rotate-secret"),
    ] {
        let response = browser.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store", "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains("<h1"), "{path} has an h1");
        assert!(
            !html.contains("style=") && !html.contains("<script>"),
            "{path}"
        );
        assert!(!has_event_handler(&html), "{path}");
        let unlabelled = unlabelled_controls(&html);
        assert!(unlabelled.is_empty(), "{path}: unlabelled {unlabelled:?}");
        // Signed out, each leads to the sign-in page.
        let signed_out = Browser::new(&app).get(&path).await;
        assert_eq!(signed_out.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(signed_out.headers()[LOCATION], "/admin/login", "{path}");
    }
}

#[tokio::test]
async fn a_refused_form_shows_why_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let before = app.event_count().await;
    let response = browser
        .post(
            "/admin/webhooks/new",
            &[
                ("csrf", &token),
                ("url", "http://hooks.invalid/plain"),
                ("event_types", "SubscriptionCreated"),
                ("description", "kept"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("must be https"));
    assert!(html.contains("value=\"http://hooks.invalid/plain\""));
    assert!(html.contains("value=\"SubscriptionCreated\"") && html.contains("value=\"kept\""));
    assert_eq!(app.event_count().await, before);
    // The edit form too.
    let (id, _) = create(&browser, NOWHERE, "", "").await;
    let before = app.event_count().await;
    let response = browser
        .post(
            &format!("/admin/webhooks/{id}"),
            &[
                ("csrf", &token),
                ("url", "ftp://hooks.invalid/x"),
                ("event_types", ""),
                ("description", "typed"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("role=\"alert\"") && html.contains("value=\"ftp://hooks.invalid/x\""));
    assert!(html.contains("value=\"typed\""));
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn edits_and_actions_write_the_same_events_as_the_api() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let (id, created) = create(&browser, NOWHERE, "", "first").await;
    let first_secret = secret_in(&created);
    let detail = format!("/admin/webhooks/{id}");
    let token = browser.form_token().await;
    let edited = "https://hooks.invalid/edited";
    let response = browser
        .post(
            &detail,
            &[
                ("csrf", &token),
                ("url", edited),
                ("event_types", "SubscriptionCreated, DeviceActivated"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], detail);
    let page = browser.page(&detail).await;
    assert!(page.contains(&format!("<h1>{edited}</h1>")));
    assert!(page.contains("SubscriptionCreated, DeviceActivated"));
    let view = app.api().get(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(view["url"], edited);
    assert_eq!(
        view["event_types"],
        json!(["SubscriptionCreated", "DeviceActivated"])
    );
    assert_eq!(view["description"], Value::Null);
    // Saved unchanged: nothing written.
    let before = app.event_count().await;
    let response = browser
        .post(
            &detail,
            &[
                ("csrf", &token),
                ("url", edited),
                ("event_types", "SubscriptionCreated,DeviceActivated"),
                ("description", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.event_count().await, before);

    let response = confirmed(&browser, &id, "disable").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = browser.page(&detail).await;
    assert!(page.contains("disabled by an admin") && page.contains(">Enable<"));
    assert!(!page.contains(">Disable<"));
    let response = confirmed(&browser, &id, "enable").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(browser.page(&detail).await.contains(">Disable<"));

    let response = confirmed(&browser, &id, "rotate-secret").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let rotated = secret_in(&response.text().await.unwrap());
    assert_ne!(rotated, first_secret);
    assert!(!browser.page(&detail).await.contains("whsec_"));

    let response = confirmed(&browser, &id, "delete").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let to = response.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(to.starts_with("/admin/webhooks?min_position="), "{to}");
    assert!(!browser.page(&to).await.contains(edited));
    assert_eq!(browser.get(&detail).await.status(), StatusCode::NOT_FOUND);

    let actor = api_actor(&app).await;
    let events: Vec<(String, String)> = [
        "WebhookEndpointCreated",
        "WebhookEndpointUpdated",
        "WebhookEndpointDisabled",
        "WebhookEndpointEnabled",
        "WebhookEndpointSecretRotated",
        "WebhookEndpointDeleted",
    ]
    .iter()
    .map(|t| ((*t).to_owned(), actor.clone()))
    .collect();
    assert_eq!(history(&app, &id).await, events);
}

#[tokio::test]
async fn a_webhook_form_without_the_token_or_from_another_site_is_refused() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let (id, _) = create(&browser, NOWHERE, "", "").await;
    let token = browser.form_token().await;
    let before = app.event_count().await;
    let fields = [("url", NOWHERE), ("description", "changed")];
    let refused = [
        browser.post("/admin/webhooks/new", &fields).await,
        browser
            .post(&format!("/admin/webhooks/{id}"), &fields)
            .await,
        browser
            .post(
                &format!("/admin/webhooks/{id}/actions/delete"),
                &[("csrf", "0".repeat(64).as_str())],
            )
            .await,
        browser
            .post_with(
                &format!("/admin/webhooks/{id}/actions/disable"),
                &[("csrf", &token)],
                &[("sec-fetch-site", "cross-site")],
            )
            .await,
    ];
    for response in refused {
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{}",
            response.url()
        );
    }
    assert_eq!(app.event_count().await, before);
}

#[tokio::test]
async fn the_auditor_sees_webhooks_without_a_write_control_and_is_refused_writes() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    let admin = Browser::signed_in(&app).await;
    let (id, _) = create(&admin, &receiver.url, "", "watched").await;
    let detail = format!("/admin/webhooks/{id}");
    // A delivery in the log, so that its row is shown too.
    assert!(
        wait_for_log(&admin, &detail, "WebhookEndpointCreated").await,
        "no attempt in the log"
    );
    let auditor = auditor(&app).await;
    for path in ["/admin/webhooks", detail.as_str()] {
        let html = auditor.page(path).await;
        assert!(html.contains(&receiver.url), "{path}");
        for control in [
            ">New webhook<",
            ">Save<",
            ">Disable<",
            ">Enable<",
            ">Rotate secret<",
            ">Delete<",
            ">Redeliver<",
            "method=\"post\" action=\"/admin/webhooks",
            "/confirm",
        ] {
            assert!(
                !html.contains(control),
                "{path} shows {control} to an auditor"
            );
        }
    }
    assert!(auditor
        .page(&detail)
        .await
        .contains("WebhookEndpointCreated"));
    let delivery = delivery_ids(&app, &id).await[0].clone();
    let attempts_before = attempts_of(&app, &id, &delivery).await;
    let token = auditor.form_token().await;
    let before = app.event_count().await;
    let form = [
        ("csrf", token.as_str()),
        ("url", "https://hooks.invalid/auditor"),
        ("event_types", ""),
        ("description", ""),
    ];
    let refused = [
        auditor.get("/admin/webhooks/new").await,
        auditor
            .get(&format!("{detail}/confirm?action=delete"))
            .await,
        auditor.post("/admin/webhooks/new", &form).await,
        auditor.post(&detail, &form).await,
        auditor
            .post(
                &format!("{detail}/actions/rotate-secret"),
                &[("csrf", &token)],
            )
            .await,
        auditor
            .post(&format!("{detail}/actions/disable"), &[("csrf", &token)])
            .await,
        auditor
            .post(
                &format!("{detail}/deliveries/{delivery}/redeliver"),
                &[("csrf", &token)],
            )
            .await,
    ];
    for response in refused {
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{}",
            response.url()
        );
    }
    assert_eq!(app.event_count().await, before);
    // Other events (the auditor's own AdminCreated) may be delivered meanwhile: what must
    // not happen is another attempt at the delivery the auditor tried to redeliver.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        attempts_of(&app, &id, &delivery).await,
        attempts_before,
        "nothing redelivered"
    );
}

#[tokio::test]
async fn webhook_text_is_escaped_where_it_is_shown() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let url = "https://hooks.invalid/in?x=<script>alert(1)</script>";
    let (id, html) = create(&browser, url, "", "<script>alert(2)</script>").await;
    let list = browser.page("/admin/webhooks").await;
    let detail = browser.page(&format!("/admin/webhooks/{id}")).await;
    for page in [&html, &list, &detail] {
        assert!(!page.contains("<script>"));
    }
    assert!(detail.contains("alert(2)") && detail.contains("&#60;script&#62;alert(2)"));
    assert!(detail.contains("&#60;script&#62;alert(1)"));
}

/// Every delivery id in the endpoint's log, as the API lists it.
async fn delivery_ids(app: &TestApp, id: &str) -> Vec<String> {
    let mut ids: Vec<String> = crate::webhooks::delivery_log(&app.api(), id)
        .await
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.dedup();
    ids
}

/// How many attempts the delivery log records for `delivery`.
async fn attempts_of(app: &TestApp, id: &str, delivery: &str) -> usize {
    crate::webhooks::delivery_log(&app.api(), id)
        .await
        .iter()
        .filter(|a| a["id"] == delivery)
        .count()
}

/// Waits until the page's delivery log shows an attempt at `event_type`.
async fn wait_for_log(browser: &Browser, path: &str, event_type: &str) -> bool {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::time::Instant::now() < deadline {
        let html = browser.page(path).await;
        if html.contains(&format!("<td>{event_type}</td>")) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn the_delivery_log_shows_attempts_and_redeliver_queues_one_again() {
    let app = spawn_app_with(LOCAL).await;
    let receiver = Receiver::start().await;
    let browser = Browser::signed_in(&app).await;
    let (id, _) = create(&browser, &receiver.url, "SubscriptionCreated", "").await;
    let detail = format!("/admin/webhooks/{id}");
    assert!(browser
        .page(&detail)
        .await
        .contains("No delivery attempted yet."));
    receiver.fail_next(1);
    app.subscription_with_devices(1).await;
    // A failed attempt, then the retry that succeeded.
    assert!(eventually(PATIENCE, || receiver.received().len() >= 2).await);
    assert!(wait_for_log(&browser, &detail, "SubscriptionCreated").await);
    assert!(
        wait_for_log(&browser, &detail, "204").await,
        "no successful attempt"
    );
    let html = browser.page(&detail).await;
    assert!(html.contains("<td>500</td>") && html.contains(" ms</td>"));
    let delivery = delivery_ids(&app, &id).await;
    assert_eq!(delivery.len(), 1, "{delivery:?}");
    let button = format!("action=\"{detail}/deliveries/{}/redeliver\"", delivery[0]);
    assert!(html.contains(&button) && html.contains(">Redeliver<"));
    let token = browser.form_token().await;
    let response = browser
        .post(
            &format!("{detail}/deliveries/{}/redeliver", delivery[0]),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], detail);
    // Sent again, under the same webhook-id, and logged.
    assert!(eventually(PATIENCE, || receiver.received().len() >= 3).await);
    let received = receiver.received();
    assert_eq!(received[2].webhook_id(), received[0].webhook_id());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut attempts = vec![];
    while attempts.len() < 3 && tokio::time::Instant::now() < deadline {
        attempts = crate::webhooks::delivery_log(&app.api(), &id).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert_eq!(attempts[2]["status_code"], 204);
    // An unknown delivery is a 404 page, not a 500.
    let response = browser
        .post(
            &format!("{detail}/deliveries/{}/redeliver", uuid::Uuid::new_v4()),
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
