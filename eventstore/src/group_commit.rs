//! Group commit for SQLite: appends that wait for the file's one writer at the same time
//! are written in one transaction, so they share one commit (one fsync under
//! `synchronous=FULL`) instead of queueing for one each.
//!
//! Each append joins its file's queue and waits for its turn at writing. Whoever gets the
//! turn takes everything queued by then, its own append among them (or finds its append
//! already committed by the one before, and is done). Every append of a group gets its own
//! savepoint, so one that loses a race for a sequence (a conflict) is rolled back alone; an
//! append alone in its group goes without one, and its failure rolls the group back.
//! Each caller is answered only after the group's commit: an acknowledged append is as
//! durable as one committed alone.

use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::oneshot;

use crate::db::{of_sqlite_file, Conn, Db, PerSqliteFile, WriterTurn};
use crate::error::{classify, AppendError, StoreError};
use crate::with_conn;
use crate::write::Append;

/// At most this many appends share a commit (a bound on one transaction's size).
const MAX_GROUP: usize = 64;

type Reply = oneshot::Sender<Result<Vec<i64>, AppendError>>;
/// Appends waiting to be written to one file, each with where to send its outcome.
type Queue = Arc<Mutex<Vec<(Append, Reply)>>>;

static QUEUES: PerSqliteFile<Queue> = LazyLock::new(Default::default);

pub async fn append(db: &Db, append: Append) -> Result<Vec<i64>, AppendError> {
    let Db::Sqlite(pool) = db else {
        unreachable!("group commit is for SQLite");
    };
    let queue = of_sqlite_file(&QUEUES, pool);
    let (reply, mut answer) = oneshot::channel();
    queue
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((append, reply));
    let turn = db.writer_turn().await;
    if let Ok(answered) = answer.try_recv() {
        // The writer before took this append into its group.
        return answered;
    }
    let group: Vec<(Append, Reply)> = {
        let mut waiting = queue.lock().unwrap_or_else(|e| e.into_inner());
        let take = waiting.len().min(MAX_GROUP);
        waiting.drain(..take).collect()
    };
    if group.is_empty() {
        // Taken by the group before, whose writer lets the turn go at its commit and answers
        // just after.
        drop(turn);
        return answer.await.unwrap_or_else(|_| Err(unanswered()));
    }
    // Written by a task of its own: if this caller is given up on (its client left), the
    // others of its group are still answered, and the turn is let go only after the commit.
    let db = db.clone();
    let written = tokio::spawn(write_group(db, turn, group));
    let _ = written.await;
    answer.await.unwrap_or_else(|_| Err(unanswered()))
}

fn unanswered() -> AppendError {
    AppendError::Store(StoreError::Unanswered(
        "the writer of its group stopped before the commit",
    ))
}

/// Writes the group in one transaction and answers each append after the commit.
async fn write_group(db: Db, turn: Option<WriterTurn>, group: Vec<(Append, Reply)>) {
    let alone = group.len() == 1;
    let mut tx = match db.begin_in_turn(turn).await {
        Ok(tx) => tx,
        Err(error) => return fail_all(group.into_iter().map(|(_, reply)| reply).collect(), &error),
    };
    let mut answered = Vec::with_capacity(group.len());
    for (append, reply) in group {
        let outcome = write_one(tx.conn(), append, alone).await;
        answered.push((reply, outcome));
    }
    // A lone append has no savepoint: one that failed part-way (its events inserted, its
    // snapshot refused) is undone only by rolling the transaction back. Its caller is told
    // it failed, so it must not commit: a retried create would make a duplicate.
    if answered.iter().all(|(_, outcome)| outcome.is_err()) {
        if let Err(error) = tx.rollback().await {
            tracing::warn!(%error, "rolling back a group of failed appends failed");
        }
        for (reply, outcome) in answered {
            let _ = reply.send(outcome);
        }
        return;
    }
    if let Err(error) = tx.commit().await {
        return fail_all(
            answered.into_iter().map(|(reply, _)| reply).collect(),
            &error,
        );
    }
    for (reply, outcome) in answered {
        let _ = reply.send(outcome);
    }
}

/// One append of a group, under a savepoint of its own unless it is alone.
async fn write_one(
    mut conn: Conn<'_>,
    append: Append,
    alone: bool,
) -> Result<Vec<i64>, AppendError> {
    if alone {
        return append.write(conn).await;
    }
    execute(conn.reborrow(), "savepoint one_append").await?;
    let written = append.write(conn.reborrow()).await;
    if written.is_err() {
        execute(conn.reborrow(), "rollback to one_append").await?;
    }
    execute(conn, "release one_append").await?;
    written
}

async fn execute(conn: Conn<'_>, sql: &'static str) -> Result<(), AppendError> {
    with_conn!(conn, c => sqlx::query(sql).execute(&mut *c).await.map(|_| ())).map_err(classify)
}

fn fail_all(replies: Vec<Reply>, error: &sqlx::Error) {
    tracing::warn!(%error, appends = replies.len(), "a group of appends was not committed");
    for reply in replies {
        let _ = reply.send(Err(AppendError::Store(StoreError::Unanswered(
            "the group it was written with was not committed",
        ))));
    }
}

#[cfg(test)]
mod tests {
    use futures::future::join_all;
    use serde_json::json;

    use crate::append::append;
    use crate::error::AppendError;
    use crate::testing::sqlite_store;
    use crate::write::{Append, NewEvent, NewSnapshot};
    use crate::Db;

    async fn store() -> Db {
        sqlite_store("group-commit").await
    }

    fn first_event_of(aggregate_id: &str) -> Append {
        Append {
            aggregate_type: "TestCounter",
            aggregate_id: aggregate_id.to_owned(),
            events: vec![NewEvent {
                sequence: 1,
                event_type: "Added".into(),
                event_version: "1".into(),
                payload: json!({ "Added": 1 }),
            }],
            metadata: json!({}),
            snapshot: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn appends_committed_together_keep_their_own_outcomes() {
        let db = store().await;
        // Twenty at once: they queue behind one another's turns and are written in groups.
        // Ten race for the same first sequence of one aggregate, ten are alone on theirs.
        let racing = (0..10).map(|_| append(&db, first_event_of("contested")));
        let alone = (0..10).map(|n| append(&db, first_event_of(&format!("own-{n}"))));
        let (racing, alone) = tokio::join!(join_all(racing), join_all(alone));
        let won: Vec<_> = racing.iter().filter(|r| r.is_ok()).collect();
        assert_eq!(won.len(), 1, "exactly one takes the sequence");
        assert!(racing
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(AppendError::Conflict))));
        // A conflict in a group rolls back that append only.
        let mut positions: Vec<i64> = alone.into_iter().map(|r| r.unwrap()[0]).collect();
        positions.push(won[0].as_ref().unwrap()[0]);
        positions.sort_unstable();
        positions.dedup();
        assert_eq!(positions.len(), 11);
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        let (rows, max): (i64, i64) =
            sqlx::query_as("select count(*), max(global_position) from events")
                .fetch_one(pool)
                .await
                .unwrap();
        assert_eq!(rows, 11);
        assert_eq!(positions.last(), Some(&max));
    }

    #[tokio::test]
    async fn a_lone_append_whose_snapshot_fails_writes_nothing() {
        let db = store().await;
        let Db::Sqlite(pool) = &db else {
            unreachable!()
        };
        // The injected failure: the events insert succeeds, the snapshot upsert after it
        // is refused.
        sqlx::query(
            "create trigger refuse_snapshot before insert on snapshots
             when new.aggregate_id = 'doomed'
             begin select raise(abort, 'injected snapshot failure'); end",
        )
        .execute(pool)
        .await
        .unwrap();
        let with_snapshot = Append {
            snapshot: Some(NewSnapshot {
                format: 1,
                payload: json!({ "total": 1 }),
            }),
            ..first_event_of("doomed")
        };
        let answered = append(&db, with_snapshot).await;
        assert!(answered.is_err(), "the caller is told it failed");
        let rows: i64 = sqlx::query_scalar("select count(*) from events")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(rows, 0, "and nothing of it was committed");
        // The store goes on: the same first sequence can still be taken.
        assert!(append(&db, first_event_of("doomed")).await.is_ok());
    }
}
