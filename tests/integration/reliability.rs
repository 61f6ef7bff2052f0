//! The fault matrix (docs/reliability.md): each fault against the simulator and a real
//! Postgres, proving 0 rows lost, 0 duplicates and a clear log line. Faults covered elsewhere
//! are named in the doc next to their tests.

use std::time::{Duration, Instant};

use helpdesk_sync::sim::{Endpoint, Fault, SimConfig, SimServer};
use serde_json::json;

use crate::helpers::*;

async fn table_counts(db: &TestDb) -> Vec<(&'static str, i64)> {
    let mut counts = Vec::new();
    for table in TABLES {
        counts.push((
            table,
            db.count(&format!("SELECT count(*) FROM {table}")).await,
        ));
    }
    counts
}

/// What a fault-free sync of `sim` stores, synced into a database of its own.
async fn reference_counts(sim: &SimServer) -> Vec<(&'static str, i64)> {
    let db = TestDb::new().await;
    let ws = TestConfig::new(sim, &db).fast_list().workspace();
    let requests_before = sim.state.requests().len();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let counts = table_counts(&db).await;
    assert!(sim.state.requests().len() > requests_before);
    counts
}

/// Nothing lost, nothing twice: same counts as the reference, every ticket once in the queue,
/// nothing left claimed or failed.
async fn assert_complete(db: &TestDb, sim: &SimServer, reference: &[(&'static str, i64)]) {
    assert_eq!(table_counts(db).await, reference);
    let tickets = sim.state.ticket_ids().len() as i64;
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, tickets);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state").await,
        tickets
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM ticket_sync_state
             WHERE claimed_by IS NOT NULL OR last_outcome IS DISTINCT FROM 'ok'"
        )
        .await,
        0
    );
}

/// Logs go to stderr, the summary to stdout.
fn all_output(out: &std::process::Output) -> String {
    format!("{}\n{}", stdout(out), stderr(out))
}

/// Fault 1: a burst of 429 (and 400 + 99991400) with `x-ogw-ratelimit-reset`: every worker
/// waits as told, then the cycle completes.
#[tokio::test]
async fn rate_limit_bursts_are_waited_out_as_told() {
    let sim = start_sim(unlimited_sim(40)).await;
    let reference = reference_counts(&sim).await;
    let db = TestDb::new().await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .max_in_flight(8)
        .workspace();
    let requests_before = sim.state.requests().len();
    sim.state.inject_any([
        Fault::RateLimited { reset_seconds: 2 },
        Fault::RateLimited { reset_seconds: 2 },
        Fault::RateLimited400 { reset_seconds: 1 },
    ]);
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert_complete(&db, &sim, &reference).await;

    let log = all_output(&out);
    assert!(
        log.contains("rate limited by the API; all workers pause"),
        "{log}"
    );
    let details: Vec<_> = sim.state.requests()[requests_before..]
        .iter()
        .filter(|r| r.endpoint == Endpoint::Detail)
        .cloned()
        .collect();
    let limited: Vec<_> = details
        .iter()
        .filter(|r| r.status == 429 || r.status == 400)
        .collect();
    assert_eq!(limited.len(), 3, "{details:?}");
    // After the first 429 (reset 2 s) no request is sent for ~2 s: requests already in flight
    // when it arrived may land just after it, then nothing until the pause is over.
    let first = limited[0].arrived;
    let sent_during_pause = details
        .iter()
        .filter(|r| r.arrived > first + Duration::from_millis(100))
        .filter(|r| r.arrived < first + Duration::from_millis(1900))
        .count();
    assert_eq!(sent_during_pause, 0, "{details:?}");
}

/// Fault 2: another client shares the app's quota, so the simulator allows 5/s while we pace
/// at 9/s. Every ticket is stored, none fails, and the 429s stay few (we slow down instead
/// of hammering).
#[tokio::test]
async fn a_quota_shared_with_another_client_costs_time_not_tickets() {
    let sim = start_sim(SimConfig {
        tickets: 50,
        detail_limit_per_second: 5,
        list_limit_per_second: 10_000,
        ..SimConfig::default()
    })
    .await;
    let db = TestDb::new().await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .detail_rate(9.0)
        .workspace();
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let limited = sim.state.count_status(Endpoint::Detail, 429);
    let answered = sim.state.count_status(Endpoint::Detail, 200);
    assert_eq!(answered, 50, "{}", all_output(&out));
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 50);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE last_outcome <> 'ok'")
            .await,
        0
    );
    // The pace adapts (halved per 429, regained slowly), so the 429s stay few: at most one
    // per ten tickets. (Without adapting: 9 in this run, about one per second.)
    assert!(limited <= 5, "{limited} × 429 for 50 tickets");
    // And our own pace was never exceeded while probing for the free share.
    assert!(sim.state.max_per_second(Endpoint::Detail) <= 9);
}

/// Fault 5 (second half): valid JSON with wrong types in some fields. The ticket is stored,
/// the unusable fields are NULL, each is named in a warning, and the raw JSON keeps them.
#[tokio::test]
async fn wrong_field_types_are_stored_as_null_with_a_warning() {
    let sim = start_sim(unlimited_sim(5)).await;
    let ids = sim.state.ticket_ids();
    sim.state.update_ticket(&ids[2], |t| {
        t["status"] = json!("open");
        t["score"] = json!({"stars": 5});
        t["tags"] = json!("urgent");
    });
    let db = TestDb::new().await;
    let ws = TestConfig::new(&sim, &db).fast_list().workspace();
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 5);
    let (status, score, raw_status): (Option<i16>, Option<i16>, String) =
        sqlx::query_as("SELECT status, score, raw->>'status' FROM tickets WHERE ticket_id = $1")
            .bind(&ids[2])
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((status, score), (None, None));
    assert_eq!(raw_status, "open");
    let log = all_output(&out);
    for field in ["status", "score", "tags"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&ids[2]) && l.contains(field) && l.contains("WARN")),
            "no warning naming {field}: {log}"
        );
    }
}

/// Fault 9: the database terminates every session of ours mid-cycle. The cycle ends cleanly
/// (retried or failed, never half-written), and the next one completes with nothing lost.
#[tokio::test]
async fn database_sessions_killed_mid_cycle_lose_nothing() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(100),
        ..unlimited_sim(60)
    })
    .await;
    let reference = reference_counts(&sim).await;
    let db = TestDb::new().await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .detail_rate(20.0)
        .workspace();
    let details_before = sim.state.detail_requests(None);
    let first = {
        let ws = &ws;
        let run = async move { ws.run(&["sync"], &[], None).await };
        let kill = async {
            let state = sim.state.clone();
            assert!(
                wait_for(Duration::from_secs(30), || state.detail_requests(None)
                    >= details_before + 20)
                .await
            );
            let killed = db
                .count(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                     WHERE datname = current_database() AND application_name = 'helpdesk-sync') k",
                )
                .await;
            assert!(killed > 0, "no helpdesk-sync session to terminate");
        };
        let (out, ()) = tokio::join!(run, kill);
        out
    };
    let log = all_output(&first);
    assert!(
        log.contains("terminating connection due to administrator command"),
        "no log line names the fault: {log}"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")
            .await,
        0,
        "claims left behind"
    );

    // The next cycle (forced for anything the first one failed) completes.
    let ids = sim.state.ticket_ids();
    let file = ws.write_file("ids.txt", &ids_text(&ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_complete(&db, &sim, &reference).await;
}

/// Fault 10: `run` starts while the database does not exist yet: one clear line per attempt,
/// backing off (1 s, 2 s, 4 s …) rather than spinning; it syncs once the database appears, and
/// SIGTERM while waiting exits 0.
#[tokio::test]
async fn run_waits_for_an_unreachable_database_with_backoff() {
    let sim = start_sim(unlimited_sim(10)).await;
    let db = TestDb::new().await;
    let mut ws = TestConfig::new(&sim, &db)
        .fast_list()
        .every_second()
        .workspace();
    let later = format!("{}_later", db.name());
    ws.db_url = db.url_for(&later);

    let mut daemon = ws.daemon();
    let started = Instant::now();
    daemon
        .expect_count("database unreachable; retrying", 3, Duration::from_secs(20))
        .await;
    // Attempts at 0, 1 and 3 s: the third cannot come before the 1 + 2 s of backoff.
    assert!(started.elapsed() >= Duration::from_millis(2900));
    {
        let lines = daemon.lines();
        let line = lines
            .iter()
            .find(|l| l.contains("database unreachable"))
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
        let error = parsed["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&later),
            "the line names the database: {line}"
        );
        assert!(error.contains("does not exist"), "and why: {line}");
    }
    let attempts = daemon.count("database unreachable; retrying");

    // The database appears: the daemon connects, migrates and syncs.
    let later_db = db.create_sibling(&later).await;
    let state = sim.state.clone();
    daemon
        .expect_log("cycle finished", Duration::from_secs(30))
        .await;
    assert!(state.detail_requests(None) >= 10);
    assert_eq!(later_db.count("SELECT count(*) FROM tickets").await, 10);
    assert!(daemon.count("database unreachable; retrying") <= attempts + 1);
    daemon.stop_within(Duration::from_secs(10)).await;

    // SIGTERM while still waiting for the database: a clean, prompt exit.
    let mut ws2 = TestConfig::new(&sim, &db).fast_list().workspace();
    ws2.db_url = db.url_for(&format!("{}_never", db.name()));
    let mut waiting = ws2.daemon();
    waiting
        .expect_log("database unreachable; retrying", Duration::from_secs(20))
        .await;
    let asked = Instant::now();
    waiting.stop_within(Duration::from_secs(5)).await;
    assert!(asked.elapsed() < Duration::from_secs(3));
}

/// Fault 12: SIGKILL mid-batch leaves tickets claimed by a dead worker. The next start takes
/// the helpdesk lock (the dead session's lock died with it), releases those claims, and
/// finishes the work: every ticket once, nothing claimed.
#[tokio::test]
async fn sigkill_mid_batch_then_restart_finishes_without_duplicates() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(300),
        ..unlimited_sim(60)
    })
    .await;
    let reference = reference_counts(&sim).await;
    let db = TestDb::new().await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .detail_rate(20.0)
        .every_second()
        .workspace();
    let details_before = sim.state.detail_requests(None);
    let daemon = ws.daemon();
    let state = sim.state.clone();
    assert!(
        wait_for(Duration::from_secs(30), || state.detail_requests(None)
            >= details_before + 20)
        .await
    );
    daemon.kill().await;
    let claimed = db
        .count("SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")
        .await;
    assert!(claimed > 0, "the kill should leave claimed tickets behind");
    assert!(
        db.count("SELECT count(*) FROM tickets WHERE content_source = 'detail'")
            .await
            < 60
    );

    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let log = all_output(&out);
    assert!(
        log.contains("released claims left by a worker that stopped without releasing them"),
        "{log}"
    );
    assert_complete(&db, &sim, &reference).await;
}

/// Fault 13: the list API repeats rows within a page and across pages. Each ticket is queued
/// once and fetched once.
#[tokio::test]
async fn repeated_list_rows_make_no_duplicates() {
    let sim = start_sim(SimConfig {
        list_repeats_rows: true,
        ..unlimited_sim(450)
    })
    .await;
    let db = TestDb::new().await;
    let ws = TestConfig::new(&sim, &db).fast_list().workspace();
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 450);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state").await,
        450
    );
    assert_eq!(sim.state.detail_requests(None), 450, "{}", stdout(&out));
    for id in sim.state.ticket_ids().iter().step_by(50) {
        assert_eq!(sim.state.detail_requests(Some(id)), 1, "{id}");
    }
}

/// Fault 14: the database refuses one ticket (a CHECK-like trigger, as a full disk would a
/// write). Its batch rolls back and is rewritten ticket by ticket, so the others commit; the
/// refused ticket is marked failed and stored once the fault clears.
#[tokio::test]
async fn a_refused_write_rolls_back_its_batch_and_the_ticket_is_retried() {
    let sim = start_sim(unlimited_sim(60)).await;
    let reference = reference_counts(&sim).await;
    let db = TestDb::new().await;
    let ws = TestConfig::new(&sim, &db).fast_list().workspace();
    let ids = sim.state.ticket_ids();
    // A ticket with agents, so the refusal comes after its ticket row was written.
    let refused = (30..60)
        .find(|&i| {
            sim.state.ticket(&ids[i]).unwrap()["agents"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
        .expect("a ticket with agents");
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.ticket_id = '{}' THEN
           RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100';
         END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON ticket_agents
           FOR EACH ROW EXECUTE FUNCTION refuse();",
        ids[refused]
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let log = all_output(&out);
    assert!(
        log.contains("batch rejected by the database; writing its tickets one by one"),
        "{log}"
    );
    // All or nothing per ticket: the refused one has no row in any table.
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 59);
    for table in [
        "tickets",
        "ticket_agents",
        "ticket_tags",
        "ticket_custom_fields",
    ] {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE ticket_id = $1"
        )))
        .bind(&ids[refused])
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(rows, 0, "{table}");
    }
    let (outcome, error): (String, String) = sqlx::query_as(
        "SELECT last_outcome, last_error FROM ticket_sync_state WHERE ticket_id = $1",
    )
    .bind(&ids[refused])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(outcome, "failed");
    assert!(error.contains("No space left on device"), "{error}");

    // The fault clears; the ticket is retried (enqueue forces it now) and stored.
    sqlx::raw_sql("DROP TRIGGER refuse ON ticket_agents")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_ok(&ws.run(&["enqueue", &ids[refused]], &[], None).await);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_complete(&db, &sim, &reference).await;
}
