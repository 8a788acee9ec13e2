//! What the panel takes in and gives out (issue 21): its forms and query strings pass the
//! JSON API's own checks, and its CSV export stays text in any spreadsheet.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{count_events_of_type, spawn_app};
use crate::panel::Browser;

/// What a spreadsheet skips before it looks for a formula: whitespace, the format
/// characters these tests use, and the quotes of a part read as a quoted cell.
fn first_visible(cell: &str) -> Option<char> {
    cell.chars().find(|c| {
        !(c.is_whitespace()
            || matches!(
                c,
                '"' | '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}' | '\u{200e}'
            ))
    })
}

fn starts_formula(cell: &str) -> bool {
    first_visible(cell).is_some_and(|c| "=+-@＝＋－＠".contains(c))
}

#[tokio::test]
async fn the_csv_export_stays_text_in_any_spreadsheet() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    // Each name, and what the export must hold for it.
    let guarded = |name: &str| format!("'{name}");
    let cases: Vec<(&str, String)> = vec![
        ("=1+2", guarded("=1+2")),
        ("+1", guarded("+1")),
        ("-1", guarded("-1")),
        ("@SUM(A1)", guarded("@SUM(A1)")),
        ("  =1+2", guarded("  =1+2")),
        ("\u{a0}=1+2", guarded("\u{a0}=1+2")),
        ("\u{202f}@x", guarded("\u{202f}@x")),
        ("\u{200b}=1+2", guarded("\u{200b}=1+2")),
        ("\u{200d}\u{feff}+1", guarded("\u{200d}\u{feff}+1")),
        ("\u{2060}-1", guarded("\u{2060}-1")),
        ("\t=1+2", guarded("\t=1+2")),
        ("\r=1+2", "'\r'=1+2".to_owned()),
        ("a\n@x", "a\n'@x".to_owned()),
        ("＝1+2", guarded("＝1+2")),
        ("＋1", guarded("＋1")),
        ("－1", guarded("－1")),
        ("＠SUM(A1)", guarded("＠SUM(A1)")),
        ("x;=cmd|' /C calc'!A0", "x;'=cmd|' /C calc'!A0".to_owned()),
        ("Plain Name", "Plain Name".to_owned()),
    ];
    let mut position = 0;
    for (n, (name, _)) in cases.iter().enumerate() {
        let created = app
            .create_subscription(json!({
                "customer_email": format!("c{n}@example.com"), "customer_name": name,
                "organization": "a;+1", "plan": "pro", "max_devices": 1,
            }))
            .await;
        position = created["position"].as_i64().unwrap();
    }
    browser
        .page(&format!("/admin/subscriptions?min_position={position}"))
        .await;
    let response = browser.get("/admin/subscriptions/export.csv").await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("\"id\",\"customer_email\",\"customer_name\","),
        "every cell quoted, the header's too:\n{text}"
    );
    assert!(text.contains(",\"x;'=cmd|' /C calc'!A0\","), "{text}");

    // As a comma-separated spreadsheet reads it: every name comes back, guarded.
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), cases.len(), "{text}");
    for (n, (name, expected)) in cases.iter().enumerate() {
        let email = format!("c{n}@example.com");
        let row = rows.iter().find(|r| r[1] == email).unwrap();
        assert_eq!(&row[2], expected.as_str(), "the name {name:?}");
        assert_eq!(&row[3], "a;'+1");
    }
    // As a semicolon-separated spreadsheet (most of Europe) splits it: no cell is a formula.
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .flexible(true)
        .from_reader(text.as_bytes());
    for record in reader.records() {
        for cell in record.unwrap().iter() {
            assert!(!starts_formula(cell), "{cell:?} would run, in:\n{text}");
        }
    }
}

#[tokio::test]
async fn panel_forms_refuse_what_the_json_api_refuses_and_store_nothing() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    let token = browser.form_token().await;
    let api_body = json!({
        "customer_email": "nul@example.com", "customer_name": "Bad\u{0}Name",
        "plan": "pro", "max_devices": 1,
    });
    let api = app
        .admin(Method::POST, "/api/v1/subscriptions")
        .json(&api_body)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let form = |name: &'static str, value: &'static str| {
        let mut fields = vec![
            ("csrf", token.as_str()),
            ("customer_email", "nul@example.com"),
            ("customer_name", "Good Name"),
            ("plan", "pro"),
            ("max_devices", "1"),
        ];
        fields.retain(|(k, _)| *k != name);
        fields.push((name, value));
        fields
    };
    for fields in [
        form("customer_name", "Bad\u{0}Name"),
        form("organization", "\u{0}"),
        form("features", "sync,\u{0}x"),
        form("customer_email", "nul\u{0}@example.com"),
        form("max_devices\u{0}", "1"),
    ] {
        let response = browser.post("/admin/subscriptions/new", &fields).await;
        let status = response.status();
        let page = response.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{fields:?}:\n{page}"
        );
        assert!(page.contains("NUL"), "the page says why:\n{page}");
    }
    // The sign-in form too: the JSON sign-in refuses the same body with 422.
    let response = browser
        .post(
            "/admin/login",
            &[("email", "a\u{0}@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 0);

    // And the same form without the NUL is stored.
    let response = browser
        .post(
            "/admin/subscriptions/new",
            &form("customer_name", "Good Name"),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(count_events_of_type(&app, "SubscriptionCreated").await, 1);
}

#[tokio::test]
async fn panel_pages_refuse_a_nul_in_the_query_as_the_api_does() {
    let app = spawn_app().await;
    let browser = Browser::signed_in(&app).await;
    app.subscription_with_devices(1).await;
    let api = app
        .admin(Method::GET, "/api/v1/subscriptions?q=%00")
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::BAD_REQUEST);
    for path in [
        "/admin/subscriptions?q=%00",
        "/admin/subscriptions?q=%00abc",
        "/admin/subscriptions/export.csv?q=%00",
        "/admin/subscriptions?status=%00",
        "/admin/devices?q=%00",
        "/admin/events?event_type=a%00",
        "/admin/webhooks?page=%00",
        "/admin?from=%00",
    ] {
        let response = browser.get(path).await;
        let status = response.status();
        let page = response.text().await.unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}:\n{page}");
        assert!(page.contains("NUL"), "{path} says why:\n{page}");
    }
    // A literal percent sign is a search like any other.
    let response = browser.get("/admin/subscriptions?q=%2500").await;
    assert_eq!(response.status(), StatusCode::OK);
}
