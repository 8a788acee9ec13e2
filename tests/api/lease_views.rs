//! What the read side shows of leases: the lease fields and the state they make (live,
//! borrowed, dead) in every device view and in the panel's device tables, and floating seats
//! per policy and day in the analytics and on the dashboard, rebuilt alike by a replay.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{product_with_policies, ApiClient, TestApp};
use crate::panel::Browser;

/// A product `app` and one policy per `(code, settings)`; returns their ids in order.
pub async fn policies(api: &ApiClient, policies: &[(&str, Value)]) -> Vec<String> {
    product_with_policies(api, policies)
        .await
        .iter()
        .map(|policy| policy["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A subscription following `policy`: its id and license key.
pub async fn follower(api: &ApiClient, policy: &str, n: usize) -> (String, String) {
    let created = api
        .create(json!({"customer_email": format!("seat{n}@example.com"),
            "customer_name": format!("Seat {n}"), "policy": policy}))
        .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["license_key"].as_str().unwrap().to_owned(),
    )
}

/// Activates `fingerprint`: its device id and token.
pub async fn activate(api: &ApiClient, key: &str, fingerprint: &str) -> (String, String) {
    let answer = api
        .licensing()
        .activate(key, fingerprint)
        .await
        .expect_status(StatusCode::CREATED);
    (
        answer["device_id"].as_str().unwrap().to_owned(),
        answer["token"].as_str().unwrap().to_owned(),
    )
}

fn instant(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("an instant, not {value}"))
        .parse()
        .unwrap()
}

async fn device(api: &ApiClient, id: &str) -> Value {
    api.get(&format!("/api/v1/devices/{id}")).await
}

/// The devices list's items by id, once the read models have every write.
async fn listed(app: &TestApp) -> Vec<Value> {
    app.wait_for_read_models().await;
    app.api().list_all("/api/v1/devices").await
}

fn state_in(list: &[Value], id: &str) -> Value {
    let item = list
        .iter()
        .find(|d| d["id"] == id)
        .unwrap_or_else(|| panic!("device {id} is listed"));
    item["state"].clone()
}

#[tokio::test]
async fn device_views_show_the_lease_and_the_state_it_makes() {
    let app = crate::helpers::spawn_app().await;
    let api = app.api();
    let ids = policies(
        &api,
        &[
            (
                "beat",
                json!({"require_heartbeat": true, "heartbeat_duration": "PT1S",
                    "heartbeat_cull": "keep"}),
            ),
            (
                "float",
                json!({"license_model": "floating", "require_heartbeat": true,
                    "heartbeat_duration": "PT1H", "max_borrow": "P7D"}),
            ),
        ],
    )
    .await;
    let (_, beat_key) = follower(&api, &ids[0], 1).await;
    let (float_id, float_key) = follower(&api, &ids[1], 2).await;
    let (_, plain_key) = api.create_simple(3, "pro", 2).await;

    // A device under no lease is live, with no lease fields.
    let (plain, _) = activate(&api, &plain_key, "plain").await;
    let view = device(&api, &plain).await;
    assert_eq!(view["state"], "live", "{view}");
    for field in ["last_heartbeat_at", "lease_expires_at", "borrowed_until"] {
        assert!(view[field].is_null(), "{field}: {view}");
    }

    // A leased device is live until its deadline; a heartbeat shows and moves it on.
    let (roaming, token) = activate(&api, &float_key, "roaming").await;
    let view = device(&api, &roaming).await;
    assert_eq!(view["state"], "live", "{view}");
    assert!(instant(&view["lease_expires_at"]) > Utc::now() + Duration::minutes(50));
    assert!(view["last_heartbeat_at"].is_null(), "{view}");
    let beat = api
        .licensing()
        .post("heartbeat", &json!({"token": token}))
        .await
        .expect_status(StatusCode::OK);
    let view = device(&api, &roaming).await;
    assert_eq!(view["state"], "live", "{view}");
    assert!(!view["last_heartbeat_at"].is_null(), "{view}");
    assert_eq!(
        instant(&view["lease_expires_at"]),
        instant(&beat["lease_expires_at"])
    );

    // Borrowed: offline by leave until `borrowed_until`, which is its deadline too.
    let until = Utc::now() + Duration::days(2);
    let borrowed = api
        .licensing()
        .post(
            "heartbeat",
            &json!({"token": beat["token"], "borrow_until": until.to_rfc3339()}),
        )
        .await
        .expect_status(StatusCode::OK);
    let view = device(&api, &roaming).await;
    assert_eq!(view["state"], "borrowed", "{view}");
    assert_eq!(
        instant(&view["borrowed_until"]),
        instant(&borrowed["borrowed_until"])
    );
    assert_eq!(
        instant(&view["lease_expires_at"]),
        instant(&borrowed["lease_expires_at"])
    );

    // Past its deadline without a heartbeat, a device is dead (kept active: `keep`).
    let (dying, _) = activate(&api, &beat_key, "dying").await;
    let deadline = instant(&device(&api, &dying).await["lease_expires_at"]);
    let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(300)).await;
    let view = device(&api, &dying).await;
    assert_eq!(view["state"], "dead", "{view}");
    assert_eq!(view["status"], "active", "{view}");

    // The list, the subscription's devices and the panel say the same.
    let list = listed(&app).await;
    assert_eq!(state_in(&list, &plain), "live");
    assert_eq!(state_in(&list, &roaming), "borrowed");
    assert_eq!(state_in(&list, &dying), "dead");
    let subscription = api.get(&format!("/api/v1/subscriptions/{float_id}")).await;
    assert_eq!(subscription["devices"][0]["state"], "borrowed");
    let browser = Browser::signed_in(&app).await;
    let page = browser.page("/admin/devices").await;
    for text in [
        "Last heartbeat",
        "Lease deadline",
        ">State<",
        "status-live",
        "status-borrowed",
        "status-dead",
    ] {
        assert!(page.contains(text), "the devices page shows {text}");
    }
    let page = browser
        .page(&format!("/admin/subscriptions/{float_id}"))
        .await;
    assert!(page.contains("Lease deadline") && page.contains("status-borrowed"));

    // Deactivated otherwise than by its lease, a device has no state.
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/devices/{plain}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.unwrap();
    assert!(view["state"].is_null(), "{view}");
}

/// The floating seats of the one floating policy, from the device analytics.
async fn floating_seats(api: &ApiClient) -> Value {
    let analytics = api.get("/api/v1/analytics/devices").await;
    let seats = analytics["floating_seats"].as_array().unwrap().clone();
    assert_eq!(seats.len(), 1, "only the floating policy: {seats:?}");
    seats[0].clone()
}

/// `(in use now, today's peak, today's in use)`.
fn figures(seats: &Value) -> (i64, i64, i64) {
    let today = seats["daily"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["day"], Utc::now().date_naive().to_string());
    (
        seats["in_use"].as_i64().unwrap(),
        today["peak"].as_i64().unwrap(),
        today["in_use"].as_i64().unwrap(),
    )
}

#[tokio::test]
async fn floating_seats_count_activations_drop_on_checkin_and_keep_the_days_peak() {
    let app = crate::helpers::spawn_app().await;
    let api = app.api();
    let browser = Browser::signed_in(&app).await;
    assert!(!browser.page("/admin").await.contains("Floating seats"));
    let ids = policies(
        &api,
        &[
            (
                "float",
                json!({"license_model": "floating", "max_devices": 5}),
            ),
            ("fixed", json!({})),
        ],
    )
    .await;
    let (_, first) = follower(&api, &ids[0], 1).await;
    let (_, second) = follower(&api, &ids[0], 2).await;
    let (_, fixed) = follower(&api, &ids[1], 3).await;
    let (_, token) = activate(&api, &first, "f1").await;
    let (f2, _) = activate(&api, &first, "f2").await;
    activate(&api, &second, "f3").await;
    activate(&api, &fixed, "n1").await;

    app.wait_for_read_models().await;
    let seats = floating_seats(&api).await;
    assert_eq!(seats["policy"], "app/float");
    assert_eq!(figures(&seats), (3, 3, 3));

    // A seat checked in is free again; the day keeps its peak.
    api.licensing()
        .post("checkin", &json!({"token": token}))
        .await
        .expect_status(StatusCode::NO_CONTENT);
    app.wait_for_read_models().await;
    assert_eq!(figures(&floating_seats(&api).await), (2, 3, 2));

    // So is one an admin deactivates.
    let response = api
        .admin(Method::DELETE, &format!("/api/v1/devices/{f2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    app.wait_for_read_models().await;
    assert_eq!(figures(&floating_seats(&api).await), (1, 3, 1));
    let dashboard = api.get("/api/v1/analytics/dashboard").await;
    assert_eq!(dashboard["floating_seats"][0]["in_use"], 1);

    // A replay rebuilds the same figures from the events.
    flowlytix_projections::replay::replay(&app.db, &|_| {})
        .await
        .expect("replay");
    assert_eq!(figures(&floating_seats(&api).await), (1, 3, 1));

    let page = browser.page("/admin").await;
    let section = page
        .split("id=\"seats-heading\"")
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .expect("the dashboard shows floating seats");
    assert!(section.contains("app/float"), "{section}");
    assert!(
        !section.contains("app/fixed"),
        "a node-locked policy has no seats"
    );
}
