//! The analytics layer on hand-made tickets with hand-computed expectations: durations in the
//! views, time in status, history, re-normalization, and every example query in the docs.

use chrono::{DateTime, TimeZone, Utc};
use helpdesk_sync::sim::{SimConfig, SimServer};
use serde_json::{Value, json};

use crate::helpers::*;

mod backlog;
mod catalog;
mod facts;
mod helpdesks;
mod history;
mod reporting;
mod sla;
mod upgrade;

pub(super) fn ms(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 20, 0, 0).unwrap()
}

pub(super) fn id(n: u64) -> String {
    (helpdesk_sync::sim::data::FIRST_TICKET_ID + 100 + n).to_string()
}

pub(super) fn user(id: &str, name: &str) -> Value {
    json!({"id": id, "name": name})
}

/// A: closed by an agent; the API's durations agree with the timestamps.
fn ticket_a() -> Value {
    let c = t0();
    let entry = c + chrono::Duration::seconds(120);
    json!({
        "ticket_id": id(1), "helpdesk_id": "1", "status": 51, "solve": 2, "score": 3,
        "channel": 9, "ticket_type": 2,
        "guest": user("ou_alice", "Alice"), "agent_owner": user("ou_bob", "Bob"),
        "agents": [user("ou_bob", "Bob")],
        "created_at": ms(c), "updated_at": ms(c + chrono::Duration::seconds(7200)),
        "closed_at": ms(c + chrono::Duration::seconds(7200)),
        "agent_entry_time": ms(entry),
        "agent_first_response_time": ms(entry + chrono::Duration::seconds(300)),
        "agent_last_response_time": ms(entry + chrono::Duration::seconds(1800)),
        "agent_first_response_duration": 300, "bot_service_duration": 120,
        "agent_resolution_time": 7080, "actual_processing_time": 6000,
        "agent_service_duration": 30.0,
    })
}

/// B: open, an unknown channel, and an API duration that disagrees with the timestamps.
fn ticket_b() -> Value {
    let c = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
    let entry = c + chrono::Duration::seconds(10);
    json!({
        "ticket_id": id(2), "status": 3, "channel": 77, "ticket_type": 2,
        "guest": user("ou_carol", "Carol"),
        "created_at": ms(c), "updated_at": ms(c), "closed_at": 0,
        "agent_entry_time": ms(entry),
        "agent_first_response_time": ms(entry + chrono::Duration::seconds(60)),
        "agent_first_response_duration": 999,
    })
}

/// C: created the same day, then deleted upstream.
fn ticket_c() -> Value {
    json!({"ticket_id": id(3), "status": 1, "created_at": ms(t0()), "updated_at": -1})
}

pub(super) async fn setup() -> (TestDb, SimServer, Workspace) {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 0,
        detail_limit_per_second: 10_000,
        ..SimConfig::default()
    })
    .await;
    let ws = TestConfig::new(&sim, &db).discover(false).workspace();
    (db, sim, ws)
}

pub(super) async fn sync_ids(ws: &Workspace, ids: &[String]) {
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().map(String::as_str));
    assert_ok(&ws.run(&args, &[], None).await);
    assert_ok(&ws.run(&["sync"], &[], None).await);
}

#[tokio::test]
async fn ticket_facts_durations_match_hand_computed_values() {
    let (db, sim, ws) = setup().await;
    for t in [ticket_a(), ticket_b(), ticket_c()] {
        let ticket_id = t["ticket_id"].as_str().unwrap().to_owned();
        sim.state.put_ticket(&ticket_id, t);
    }
    sync_ids(&ws, &[id(1), id(2), id(3)]).await;
    sim.state.delete_ticket(&id(3));
    sync_ids(&ws, &[id(3)]).await;

    type Row = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
        bool,
        bool,
    );
    let row = |ticket: String| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, Row>(
                "SELECT first_response_seconds, api_first_response_seconds, resolution_seconds,
                        agent_resolution_seconds, agent_resolution_seconds_from_timestamps,
                        bot_service_seconds, bot_service_seconds_from_timestamps,
                        actual_processing_seconds, agent_service_minutes,
                        agent_service_minutes_from_timestamps::float8, is_closed, is_solved
                 FROM ticket_facts WHERE ticket_id = $1",
            )
            .bind(ticket)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        row(id(1)).await,
        (
            Some(300),
            Some(300),
            Some(7200),
            Some(7080),
            Some(7080),
            Some(120),
            Some(120),
            Some(6000),
            Some(30.0),
            Some(30.0),
            true,
            true
        )
    );
    // B: the API says 999 s to first response, the timestamps say 60 s: both are there.
    assert_eq!(
        row(id(2)).await,
        (
            Some(60),
            Some(999),
            None,
            None,
            None,
            None,
            Some(10),
            None,
            None,
            None,
            false,
            false
        )
    );
    let labels: (String, String, String, String, String, Option<String>) = sqlx::query_as(
        "SELECT a.status_label, a.channel_label, a.ticket_type_label, a.guest_name,
                b.channel_label, a.agent_owner_name
         FROM ticket_facts a, ticket_facts b WHERE a.ticket_id = $1 AND b.ticket_id = $2",
    )
    .bind(id(1))
    .bind(id(2))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        labels,
        (
            "closed by agent".into(),
            "Open API".into(),
            "human".into(),
            "Alice".into(),
            "other (77)".into(),
            Some("Bob".into())
        )
    );

    // A status code the label table does not know loads, labelled as unknown.
    let e = id(5);
    sim.state.put_ticket(
        &e,
        json!({"ticket_id": e, "status": 60, "created_at": ms(t0())}),
    );
    sync_ids(&ws, std::slice::from_ref(&e)).await;
    let unknown: (String, bool) =
        sqlx::query_as("SELECT status_label, is_closed FROM ticket_facts WHERE ticket_id = $1")
            .bind(&e)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(unknown, ("unknown (60)".into(), true));
    sqlx::query("DELETE FROM tickets WHERE ticket_id = $1")
        .bind(&e)
        .execute(&db.pool)
        .await
        .unwrap();

    // Deleted tickets: in ticket_facts_all only.
    assert_eq!(db.count("SELECT count(*) FROM ticket_facts").await, 2);
    assert_eq!(db.count("SELECT count(*) FROM ticket_facts_all").await, 3);

    // Days follow report_settings.timezone: A was created 20:00 UTC, 04:00 next day in Shanghai.
    let day = || async {
        sqlx::query_scalar::<_, chrono::NaiveDate>(
            "SELECT created_date FROM ticket_facts WHERE ticket_id = $1",
        )
        .bind(id(1))
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    assert_eq!(day().await.to_string(), "2026-03-01");
    sqlx::query("UPDATE report_settings SET timezone = 'Asia/Shanghai'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(day().await.to_string(), "2026-03-02");
    let bad_zone = sqlx::query("UPDATE report_settings SET timezone = 'Mars/Olympus'")
        .execute(&db.pool)
        .await;
    assert!(bad_zone.is_err(), "an unknown time zone was accepted");
    sqlx::query("UPDATE report_settings SET timezone = 'UTC'")
        .execute(&db.pool)
        .await
        .unwrap();

    // Daily stats for 2026-03-01: created A and B (C deleted), closed A.
    // First response of A and B: 300 and 60 → median 180, p90 60 + 0.9·240 = 276.
    type Day = (
        i64,
        i64,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        i64,
        i64,
    );
    let stats: Day = sqlx::query_as(
        "SELECT tickets_created, tickets_closed, first_response_seconds_median,
                first_response_seconds_p90, resolution_seconds_median, resolution_seconds_p90,
                score_satisfied, score_unsatisfied
         FROM daily_ticket_stats WHERE day = '2026-03-01'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        stats,
        (
            2,
            1,
            Some(180.0),
            Some(276.0),
            Some(7200.0),
            Some(7200.0),
            1,
            0
        )
    );
}

#[tokio::test]
async fn time_in_status_sums_a_sequence_of_changes_and_history_ignores_resyncs() {
    let (db, sim, ws) = setup().await;
    let start = Utc.with_ymd_and_hms(2026, 3, 5, 9, 0, 0).unwrap();
    let d = id(4);
    // status at offset (seconds from creation): 1@0, 2@100, 4@400, 2@1000, 51@1500.
    for (status, offset) in [(1, 0), (2, 100), (4, 400), (2, 1000), (51, 1500)] {
        let at = start + chrono::Duration::seconds(offset);
        let mut t = json!({
            "ticket_id": d, "status": status, "created_at": ms(start), "updated_at": ms(at),
        });
        if status >= 50 {
            t["closed_at"] = json!(ms(at));
        }
        sim.state.put_ticket(&d, t);
        sync_ids(&ws, std::slice::from_ref(&d)).await;
    }
    // Re-syncing the same content adds neither a version nor a transition.
    sync_ids(&ws, std::slice::from_ref(&d)).await;
    assert_eq!(db.count("SELECT count(*) FROM ticket_versions").await, 5);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_status_history").await,
        5
    );

    let spent: Vec<(i16, i64, i64, bool)> = sqlx::query_as(
        "SELECT status, seconds, times_entered, is_current FROM ticket_time_in_status
         WHERE ticket_id = $1 ORDER BY status",
    )
    .bind(&d)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    // 1: 100 s; 2: 300 + 500 = 800 s (entered twice); 4: 600 s; 51: closed, 0 s.
    assert_eq!(
        spent,
        vec![
            (1, 100, 1, false),
            (2, 800, 2, false),
            (4, 600, 1, false),
            (51, 0, 1, false)
        ]
    );
    let total: i64 = spent.iter().map(|s| s.1).sum();
    let resolution: i64 =
        sqlx::query_scalar("SELECT resolution_seconds FROM ticket_facts WHERE ticket_id = $1")
            .bind(&d)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        total, resolution,
        "time in status must add up to the resolution time"
    );

    let transitions: Vec<(Option<i16>, Option<i16>, String)> = sqlx::query_as(
        "SELECT from_status, to_status, changed_at_source FROM ticket_status_history
         WHERE ticket_id = $1 ORDER BY transition_id",
    )
    .bind(&d)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(transitions[0], (None, Some(1), "updated_at".into()));
    // The close is timed by closed_at.
    assert_eq!(transitions[4], (Some(2), Some(51), "closed_at".into()));
}

#[tokio::test]
async fn reprocess_rebuilds_from_raw_without_api_calls_or_new_history() {
    let (db, sim, ws) = setup().await;
    for t in [ticket_a(), ticket_b(), ticket_c()] {
        let ticket_id = t["ticket_id"].as_str().unwrap().to_owned();
        sim.state.put_ticket(&ticket_id, t);
    }
    sync_ids(&ws, &[id(1), id(2), id(3)]).await;
    sim.state.delete_ticket(&id(3));
    sync_ids(&ws, &[id(3)]).await;
    let requests = sim.state.requests().len();
    // Damage the normalized tables as an old parser bug would have.
    sqlx::raw_sql(
        "UPDATE tickets SET status = NULL, agent_first_response_duration_seconds = NULL;
         DELETE FROM ticket_agents; DELETE FROM helpdesk_users WHERE user_id = 'ou_carol'
         AND NOT EXISTS (SELECT 1 FROM tickets WHERE guest_id = 'ou_carol');",
    )
    .execute(&db.pool)
    .await
    .unwrap();

    let out = ws.run(&["reprocess"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("reprocessed 3 tickets"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        sim.state.requests().len(),
        requests,
        "reprocess called the API"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM tickets WHERE status IS NULL")
            .await,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM ticket_agents").await, 1);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_facts WHERE api_first_response_seconds = 999")
            .await,
        1
    );
    // Same content: no new versions; the deleted ticket stays deleted.
    assert_eq!(db.count("SELECT count(*) FROM ticket_versions").await, 3);
    assert_eq!(
        db.count("SELECT count(*) FROM tickets WHERE deleted_at IS NOT NULL")
            .await,
        1
    );

    let out = ws.run(&["reprocess", "--ticket", &id(1)], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("reprocessed 1 tickets"),
        "{}",
        stdout(&out)
    );
    let out = ws.run(&["reprocess", "--ticket", "x1"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
}

/// Every ```sql block of docs/analytics.md runs and returns rows on a realistic data set.
#[tokio::test]
async fn every_example_query_in_the_docs_runs() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 150,
        detail_limit_per_second: 10_000,
        list_limit_per_second: 10_000,
        ..SimConfig::default()
    })
    .await;
    // A default calendar and a calendar-time resolution target, so the SLA queries have
    // business times and running clocks.
    let sla = "[sla]\ndefault_calendar = \"all\"\n[sla.calendars.all]\ntimezone = \"UTC\"\nhours = { daily = [\"00:00-24:00\"] }\n\
               [[sla.targets]]\nid = \"resolution\"\nmetric = \"full_resolution\"\nminutes = 60\n\
               business_hours = false\n";
    let ws = TestConfig::new(&sim, &db).fast_list().raw(sla).workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    // Some status changes, so the history views have something to show.
    for id in sim.state.ticket_ids().iter().take(20) {
        sim.state.update_ticket(id, |t| t["status"] = json!(51));
    }
    assert_ok(&ws.run(&["sync"], &[], None).await);

    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md"))
        .expect("docs/analytics.md");
    let queries: Vec<&str> = docs
        .split("```sql")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .collect();
    assert!(
        queries.len() >= 10,
        "only {} example queries",
        queries.len()
    );
    for query in queries {
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(query.to_owned()))
            .fetch_all(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{query}\n{e}"));
        assert!(!rows.is_empty(), "no rows from:\n{query}");
    }
}

/// Every table, view and column the product creates says what it is (Metabase shows these).
#[tokio::test]
async fn every_relation_and_column_has_a_comment() {
    let db = TestDb::new().await;
    let ws = TestConfig::empty(&db).workspace();
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    let missing: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         WHERE c.relkind IN ('r', 'v') AND c.relname <> '_sqlx_migrations'
           AND obj_description(c.oid, 'pg_class') IS NULL
         UNION ALL
         SELECT c.relname || '.' || a.attname FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.relkind IN ('r', 'v') AND c.relname <> '_sqlx_migrations'
           AND col_description(c.oid, a.attnum) IS NULL
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(missing.is_empty(), "no COMMENT on: {missing:#?}");
}

/// README's table list names every table the product creates, and every view it recommends.
#[tokio::test]
async fn the_readme_lists_every_table_and_view() {
    let db = TestDb::new().await;
    let ws = TestConfig::empty(&db).workspace();
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let relations: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         WHERE c.relkind IN ('r', 'v') AND c.relname <> '_sqlx_migrations'
           AND c.relname NOT LIKE '%\\_all' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let missing: Vec<&String> = relations
        .iter()
        .filter(|r| !readme.contains(&format!("`{r}`")))
        .collect();
    assert!(missing.is_empty(), "README does not name: {missing:?}");
}
