//! Reading the log in commit order, on PostgreSQL: by the writing transaction's id as a
//! number (xid8), then by position.

use flowlytix_eventstore::log::{events_after, LogCursor};
use flowlytix_projections::{Conn, Db};
use sqlx::PgPool;

use crate::helpers::{fresh_database, skip_unless_postgres};

#[tokio::test]
async fn the_log_is_read_in_numeric_transaction_id_order_not_as_text() {
    if skip_unless_postgres() {
        return;
    }
    let pool = PgPool::connect(&fresh_database().await).await.unwrap();
    flowlytix_server::store::migrate(&Db::Postgres(pool.clone()))
        .await
        .unwrap();
    // As text "10" sorts before "9"; as transaction ids 9 committed first. Positions follow
    // insertion (10 first) so that neither order hides the other.
    for (aggregate, tx_id) in [
        ("written-by-tx-10", "10"),
        ("written-by-tx-9", "9"),
        ("also-tx-10", "10"),
    ] {
        sqlx::query(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, tx_id)
             values ('Test', $1, 1, 'Tested', '1', '{}', '{}', $2::xid8)",
        )
        .bind(aggregate)
        .bind(tx_id)
        .execute(&pool)
        .await
        .unwrap();
    }
    let mut connection = pool.acquire().await.unwrap();
    let all = events_after(Conn::Postgres(&mut connection), LogCursor::default(), 10)
        .await
        .unwrap();
    let order: Vec<&str> = all.iter().map(|(_, e)| e.aggregate_id.as_str()).collect();
    assert_eq!(order, ["written-by-tx-9", "written-by-tx-10", "also-tx-10"]);
    assert_eq!(all[0].0.tx_id, 9);

    // Resuming after the first event finds the other two, none skipped.
    let rest = events_after(Conn::Postgres(&mut connection), all[0].0, 10)
        .await
        .unwrap();
    let order: Vec<&str> = rest.iter().map(|(_, e)| e.aggregate_id.as_str()).collect();
    assert_eq!(order, ["written-by-tx-10", "also-tx-10"]);
    let one_by_one = events_after(Conn::Postgres(&mut connection), all[0].0, 1)
        .await
        .unwrap();
    assert_eq!(one_by_one[0].1.aggregate_id, "written-by-tx-10");
}
