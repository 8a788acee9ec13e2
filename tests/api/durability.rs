//! The embedded store keeps every write it acknowledged, even when the server is killed
//! without warning, and its read models catch up after the restart.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::helpers::{server_env, ApiClient, ServerProcess};

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sigkilled_embedded_server_keeps_every_acknowledged_write_and_catches_up() {
    let dir =
        std::env::temp_dir().join(format!("flowlytix-durability-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = server_env(
        &format!("sqlite://{}", dir.join("flowlytix.db").display()),
        &dir.join("keys"),
        None,
    );
    let mut server = ServerProcess::start(&env).await;
    let api = ApiClient::login(&server.address).await;
    let created = api
        .create(json!({"customer_email": "dur@example.com", "customer_name": "Durable", "plan": "pro", "max_devices": 10000}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let key = created["license_key"].as_str().unwrap().to_owned();

    // Four writers activate devices until the server disappears; each 201 is a write the
    // server acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (licensing, key, acknowledged) = (
            api.licensing().with_timeout(Duration::from_secs(5)),
            key.clone(),
            acknowledged.clone(),
        );
        writers.push(tokio::spawn(async move {
            for n in 0..100_000 {
                let fingerprint = format!("writer-{writer}-device-{n}");
                let device = json!({"fingerprint": fingerprint});
                match licensing.try_activate_device(&key, device).await {
                    Ok(answer) if answer.status == StatusCode::CREATED => {
                        acknowledged.lock().unwrap().push(fingerprint);
                    }
                    Ok(answer) => panic!("unexpected answer before the kill: {}", answer.status),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    while acknowledged.lock().unwrap().len() < 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().await;
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(acknowledged.len() >= 60);

    // Restarted on the same files: every acknowledged activation is there.
    let server = ServerProcess::start(&env).await;
    let api = ApiClient::login(&server.address).await;
    let subscription = api.get(&format!("/api/v1/subscriptions/{id}")).await;
    let stored: Vec<&str> = subscription["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["fingerprint_hash"].as_str().unwrap())
        .collect();
    for fingerprint in &acknowledged {
        assert!(
            stored.contains(&sha256_hex(fingerprint).as_str()),
            "acknowledged {fingerprint} was lost"
        );
    }
    // A write in flight at the kill may have committed without its answer arriving.
    assert!(stored.len() >= acknowledged.len() && stored.len() <= acknowledged.len() + 4);

    // The read models catch up with the log, and agree with it.
    api.wait_for_read_models(Duration::from_secs(20)).await;
    let devices = api
        .get(&format!("/api/v1/devices?subscription_id={id}&per_page=1"))
        .await;
    assert_eq!(devices["total"].as_u64().unwrap() as usize, stored.len());
    let verdict = api.validate(&key, acknowledged.last().unwrap()).await;
    assert_eq!(verdict["code"], "VALID");
}
