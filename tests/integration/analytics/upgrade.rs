//! An installation upgraded from the first analytics schema: its stored history is corrected
//! by the new rules, stays are built, and bot-only zero durations become NULL.

use chrono::{DateTime, TimeZone, Utc};

use crate::helpers::*;

/// Applies the migrations that existed before analytics v2, as an older release would have.
async fn migrate_to_v1(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "20261127" {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let old = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    old.run(&db.pool).await.unwrap();
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, day, hour, 0, 0).unwrap()
}

#[tokio::test]
async fn an_upgrade_corrects_stored_history_and_builds_stays() {
    let db = TestDb::new().await;
    migrate_to_v1(&db).await;
    // As the first release stored them: a never-updated ticket first seen on June 1st (its
    // history dated at our fetch); a ticket closed at 10:00 and rated at 12:00 (the close dated
    // at the rating); a bot-only ticket with the API's zero durations.
    sqlx::raw_sql(
        "INSERT INTO tickets (ticket_id, status, created_at, updated_at, closed_at, raw, fetched_at,
                              agent_first_response_duration_seconds, bot_service_duration_seconds)
         VALUES ('1001', 1, '2026-01-01 00:00Z', NULL, NULL, '{}', '2026-06-01 00:00Z', NULL, NULL),
                ('1002', 51, '2026-01-02 00:00Z', '2026-01-03 12:00Z', '2026-01-03 10:00Z', '{}',
                 '2026-01-03 13:00Z', NULL, NULL),
                ('1003', 50, '2026-01-04 00:00Z', '2026-01-04 00:01Z', '2026-01-04 00:01Z', '{}',
                 '2026-01-04 01:00Z', 0, 0);
         INSERT INTO ticket_versions (ticket_id, content_hash, observed_at, status, updated_at, raw)
         VALUES ('1002', 'a', '2026-01-02 01:00Z', 2, '2026-01-02 00:00Z', '{}'),
                ('1002', 'b', '2026-01-03 13:00Z', 51, '2026-01-03 12:00Z',
                 '{\"closed_at\": 1767434400000}');
         INSERT INTO ticket_status_history
             (ticket_id, from_status, to_status, changed_at, changed_at_source, observed_at)
         VALUES ('1001', NULL, 1, '2026-06-01 00:00Z', 'observed', '2026-06-01 00:00Z'),
                ('1002', NULL, 2, '2026-01-02 00:00Z', 'updated_at', '2026-01-02 01:00Z'),
                ('1002', 2, 51, '2026-01-03 12:00Z', 'updated_at', '2026-01-03 13:00Z'),
                ('1003', NULL, 50, '2026-01-04 00:01Z', 'updated_at', '2026-01-04 01:00Z');",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let ws = TestConfig::empty(&db).workspace();
    assert_ok(&ws.run(&["migrate"], &[], None).await);

    let history: Vec<(String, DateTime<Utc>, String)> = sqlx::query_as(
        "SELECT ticket_id, changed_at, changed_at_source FROM ticket_status_history
         ORDER BY ticket_id, transition_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        vec![
            ("1001".into(), at(1, 0), "created_at".into()),
            ("1002".into(), at(2, 0), "updated_at".into()),
            // 1767434400000 ms = 2026-01-03 10:00 UTC.
            ("1002".into(), at(3, 10), "closed_at".into()),
            (
                "1003".into(),
                at(4, 0) + chrono::Duration::minutes(1),
                "updated_at".into()
            ),
        ]
    );
    let stays: Vec<(String, i32, Option<i16>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT ticket_id, stay_no, status, entered_at FROM ticket_status_stays
         ORDER BY ticket_id, stay_no",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stays,
        vec![
            ("1001".into(), 1, Some(1), at(1, 0)),
            ("1002".into(), 1, Some(2), at(2, 0)),
            ("1002".into(), 2, Some(51), at(3, 10)),
            // Its stored version has no closed_at: the minute before the first observation
            // stays unobserved.
            ("1003".into(), 0, None, at(4, 0)),
            (
                "1003".into(),
                1,
                Some(50),
                at(4, 0) + chrono::Duration::minutes(1)
            ),
        ]
    );
    let zeros: (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT agent_first_response_duration_seconds, bot_service_duration_seconds
         FROM tickets WHERE ticket_id = '1003'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(zeros, (None, None));
    // The backlog is due for its first refresh, which fills every day since January 1st.
    sqlx::query("SELECT refresh_daily_backlog()")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM daily_backlog WHERE day = '2026-01-02' AND status = 1")
            .await,
        1
    );
}
