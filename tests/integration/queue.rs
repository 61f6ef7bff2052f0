//! The queue's order and claims, through the library (the order is not visible from the CLI).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use helpdesk_sync::config::Settings;
use helpdesk_sync::domain::TicketId;
use helpdesk_sync::store::Store;
use helpdesk_sync::store::queue::Source;

use crate::helpers::*;

async fn store(db: &TestDb) -> Store {
    let settings =
        Settings::from_toml_str("", [("DATABASE_URL".to_owned(), db.url.clone())]).unwrap();
    let store = Store::connect(&settings.database).await.unwrap();
    store.migrate().await.unwrap();
    store
}

fn id(n: u64) -> TicketId {
    TicketId::parse(&(6626871355780366000 + n).to_string()).unwrap()
}

async fn exec(db: &TestDb, sql: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn explicit_and_new_first_then_changed_then_refreshes_oldest_first() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    // Stored tickets 1-3: two refreshes due (1 older than 2), and 3, not due yet.
    exec(
        &db,
        format!(
            "INSERT INTO tickets (ticket_id, raw, fetched_at, updated_at)
             SELECT (6626871355780366000 + i)::text, '{{}}', now(), '2026-01-01'
             FROM generate_series(1, 3) i;
             INSERT INTO ticket_sync_state (ticket_id, source, priority, next_due_at, last_outcome)
             VALUES ('{}', 'discovery', 0, now() - interval '2 hours', 'ok'),
                    ('{}', 'discovery', 0, now() - interval '1 hour', 'ok'),
                    ('{}', 'discovery', 0, now() + interval '1 hour', 'ok');",
            id(1),
            id(2),
            id(3)
        ),
    )
    .await;
    // The list shows 3 changed and 4 new; someone asks for 5 explicitly.
    let listed: BTreeMap<String, Option<DateTime<Utc>>> = [
        (id(3).into_string(), Some(Utc::now())),
        (id(4).into_string(), Some(Utc::now())),
    ]
    .into_iter()
    .collect();
    let noted = store.note_listed(&listed).await.unwrap();
    assert_eq!((noted.queued, noted.new), (2, 1));
    store.enqueue(&[id(5)], Source::Cli).await.unwrap();

    let due_by = store.now().await.unwrap();
    let claimed = store
        .claim_due(10, due_by, Duration::from_secs(60), "test")
        .await
        .unwrap();
    let order: Vec<String> = claimed.into_iter().map(|c| c.ticket_id).collect();
    // 4 (new) and 5 (explicit) share the top priority, in the order they became due.
    let expected: Vec<String> = [4, 5, 3, 1, 2].map(|n| id(n).into_string()).to_vec();
    assert_eq!(order, expected);
    // Claimed tickets are not handed out twice.
    let again = store
        .claim_due(10, due_by, Duration::from_secs(60), "other")
        .await
        .unwrap();
    assert!(again.is_empty());
}

#[tokio::test]
async fn an_unchanged_listing_queues_nothing_and_never_updated_equals_null() {
    let db = TestDb::new().await;
    let store = store(&db).await;
    exec(
        &db,
        format!(
            "INSERT INTO tickets (ticket_id, raw, fetched_at, updated_at)
             VALUES ('{}', '{{}}', now(), '2026-01-01T00:00:00Z'), ('{}', '{{}}', now(), NULL);",
            id(1),
            id(2)
        ),
    )
    .await;
    let listed: BTreeMap<String, Option<DateTime<Utc>>> = [
        (
            id(1).into_string(),
            Some("2026-01-01T00:00:00Z".parse().unwrap()),
        ),
        // updated_at = -1 in the list arrives as None, like the stored NULL.
        (id(2).into_string(), None),
    ]
    .into_iter()
    .collect();
    let noted = store.note_listed(&listed).await.unwrap();
    assert_eq!(noted.queued, 0);
    assert_eq!(db.count("SELECT count(*) FROM ticket_sync_state").await, 0);
}
