//! A server killed without warning in the middle of deliveries: the next one resumes from
//! the durable queue, and the receiver still sees every event, in order.

use std::time::Duration;

use super::delivery::{assert_delivered_once_in_order, expected_ids};
use super::receiver::{eventually, Receiver};
use super::{process_env, some_activity, webhook_for, PATIENCE};
use crate::helpers::{ApiClient, ServerProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_server_loses_no_delivery_and_the_next_one_resumes() {
    let mut env = process_env().await;
    env.push(("WEBHOOK_TIMEOUT".into(), "1s".into()));

    let receiver = Receiver::start().await;
    receiver.hang();
    let mut first = ServerProcess::start(&env).await;
    let api = ApiClient::login(&first.address).await;
    let webhook = webhook_for(&api, &receiver).await;
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    some_activity(&api, 2).await;
    assert!(
        eventually(PATIENCE, || receiver.received().len() >= 2).await,
        "deliveries were in flight"
    );
    first.kill().await;

    receiver.answer();
    let second = ServerProcess::start(&env).await;
    let api = api.at(&second.address);
    some_activity(&api, 1).await;
    let expected = expected_ids(&api, &webhook).await.len();
    assert!(
        eventually(PATIENCE, || receiver.unique().len() >= expected).await,
        "{} of {expected} after the restart; its log:\n{}",
        receiver.unique().len(),
        second.log_text()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_delivered_once_in_order(&api, &receiver, &webhook, &secret).await;
}
