//! Reliability, round three, "Operators, logs and run records": what an operator reads (logs,
//! `check`, `status`, `sync_runs`, the summary) stays true and keeps no secret, and the custom
//! field catalog survives a hostile answer. Each test reproduces one item of issue 22.

use std::time::Duration;

use base64::Engine;
use helpdesk_sync::sim::{Endpoint, Fault, HELPDESK_ID, SimConfig};
use serde_json::{Value, json};

use crate::helpers::*;

const FAST: &str = "list_requests_per_second = 500.0\n";

/// Logs go to stderr, the summary and `check` steps to stdout.
fn all_output(out: &std::process::Output) -> String {
    format!("{}\n{}", stdout(out), stderr(out))
}

fn helpdesk_header(helpdesk_id: &str, token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{helpdesk_id}:{token}"))
}

/// Rows of `table` whose text (every column) contains `needle`.
async fn rows_containing(db: &TestDb, table: &str, needle: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} r WHERE strpos(r::text, $1) > 0"
    )))
    .bind(needle)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Item 10: an API whose error `msg` echoes the request (both auth headers, and the token
/// request's body with the app secret), on every endpoint: detail, messages, catalog, list,
/// token, events subscription. No secret in use reaches a log line (debug level), `check`
/// output, `sync_runs` or `ticket_sync_state`.
#[tokio::test]
async fn an_api_echoing_auth_headers_leaks_no_secret_anywhere() {
    let sim = start_sim(SimConfig {
        echo_auth_in_errors: true,
        ..unlimited_sim(6)
    })
    .await;
    let ids = sim.state.ticket_ids();
    let many = |f: Fault| std::iter::repeat_n(f, 50);
    sim.state
        .inject(&ids[0], many(Fault::api_code(400, 1234, "refused")));
    sim.state.inject(&ids[1], many(Fault::InternalError));
    sim.state
        .inject_messages(&ids[2], many(Fault::InternalError));
    sim.state.inject_catalog(many(Fault::InternalError));
    let db = TestDb::new().await;
    let log = [("RUST_LOG", "helpdesk_sync=debug")];
    let json_sync = ["--log-format", "json", "sync"];
    let ws = Workspace::configured(&sim, &db, &format!("{FAST}max_attempts = 2\n"), "");
    let mut outputs = Vec::new();
    // Detail, messages and catalog errors; then list errors (discovery).
    let out = ws.run(&json_sync, &log, None).await;
    assert_ok(&out);
    outputs.push(all_output(&out));
    sim.state.inject_list(many(Fault::InternalError));
    outputs.push(all_output(&ws.run(&json_sync, &log, None).await));
    outputs.push(all_output(&ws.run(&["check"], &log, None).await));
    // Wrong secrets are secrets too: the helpdesk token (fatal run, `check`, subscription)…
    let wrong_helpdesk = "wrong-helpdesk-token-0a1b2c3d";
    let bad_helpdesk = Workspace::configured(
        &sim,
        &db,
        &format!("{FAST}max_attempts = 2\nhelpdesk_token = {wrong_helpdesk:?}\n"),
        "",
    );
    for args in [&json_sync[..], &["check"], &["subscribe-events"]] {
        outputs.push(all_output(&bad_helpdesk.run(args, &log, None).await));
    }
    // …and the app secret (the token endpoint echoes the request body).
    let wrong_secret = "wrong-app-secret-9z8y7x6w";
    let bad_secret = Workspace::configured(
        &sim,
        &db,
        &format!("{FAST}max_attempts = 2\napp_secret = {wrong_secret:?}\n"),
        "",
    );
    for args in [&json_sync[..], &["check"]] {
        outputs.push(all_output(&bad_secret.run(args, &log, None).await));
    }

    let c = sim.state.config();
    let mut secrets = vec![
        c.app_secret.clone(),
        c.helpdesk_token.clone(),
        helpdesk_header(&c.helpdesk_id, &c.helpdesk_token),
        wrong_helpdesk.to_owned(),
        helpdesk_header(&c.helpdesk_id, wrong_helpdesk),
        wrong_secret.to_owned(),
    ];
    secrets.extend(sim.state.issued_tokens());
    assert!(secrets.len() >= 8, "{secrets:?}");
    let everything = outputs.join("\n");
    // The echo happened, and what it said is still there, redacted.
    assert!(everything.contains("request was:"), "{everything}");
    assert!(everything.contains("[REDACTED]"), "{everything}");
    let mut leaks = Vec::new();
    for secret in &secrets {
        let printed = everything.matches(secret.as_str()).count();
        let runs = rows_containing(&db, "sync_runs", secret).await;
        let queue = rows_containing(&db, "ticket_sync_state", secret).await;
        if printed + runs as usize + queue as usize > 0 {
            leaks.push(format!(
                "{secret}: {printed} printed, {runs} sync_runs, {queue} ticket_sync_state"
            ));
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
    // Every stored error kind was exercised (else the zero above proves little).
    let errors = |sql: &str| {
        let (pool, sql) = (db.pool.clone(), sql.to_owned());
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert!(
        errors("SELECT count(*) FROM ticket_sync_state WHERE last_error LIKE '%request was:%'")
            .await
            >= 2
    );
    assert!(
        errors(
            "SELECT count(*) FROM ticket_sync_state WHERE messages_last_error LIKE '%request was:%'"
        )
        .await
            >= 1
    );
    assert!(errors("SELECT count(*) FROM sync_runs WHERE error LIKE '%request was:%'").await >= 3);
}

/// Item 12: a first-install backfill failing every run (each run "ok", discovery incomplete)
/// is reported stuck once `health.discovery_stuck_after` has passed since it last moved.
#[tokio::test]
async fn a_backfill_failing_every_run_is_reported_stuck() {
    let sim = start_sim(unlimited_sim(5)).await;
    sim.state
        .inject_list(std::iter::repeat_n(Fault::InternalError, 1000));
    let db = TestDb::new().await;
    let ws = Workspace::configured(
        &sim,
        &db,
        &format!("{FAST}max_attempts = 1\n"),
        "\n[health]\ndiscovery_stuck_after = \"3s\"\n",
    );
    for run in 0..4 {
        if run > 0 {
            tokio::time::sleep(Duration::from_millis(1200)).await;
        }
        let out = ws.run(&["sync"], &[], None).await;
        assert_ok(&out);
        assert!(
            stdout(&out).contains("discovery incomplete"),
            "{}",
            stdout(&out)
        );
    }
    let ok_runs = db
        .count("SELECT count(*) FROM sync_runs WHERE outcome = 'ok'")
        .await;
    assert_eq!(ok_runs, 4);
    let out = ws.run(&["status", "--json"], &[], None).await;
    let report: Value = serde_json::from_str(&stdout(&out)).expect("status JSON");
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("the history backfill has not moved")
            && problems.contains("health.discovery_stuck_after"),
        "{report:#}"
    );
    assert_eq!(out.status.code(), Some(1), "{report:#}");
}

/// Item 17 (SIGKILL): a worker killed mid-cycle leaves its `sync_runs` row running; the next
/// worker to hold the helpdesk lock closes it as `abandoned`, with a reason and `finished_at`.
#[tokio::test]
async fn runs_left_running_by_a_killed_worker_are_closed_as_abandoned() {
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(300),
        ..unlimited_sim(40)
    })
    .await;
    let db = TestDb::new().await;
    let ws = Workspace::configured(
        &sim,
        &db,
        &format!("{FAST}detail_requests_per_second = 10.0\n"),
        "schedule = \"* * * * * *\"\n",
    );
    for _ in 0..2 {
        let before = sim.state.detail_requests(None);
        let daemon = ws.daemon();
        let state = sim.state.clone();
        assert!(
            wait_for(Duration::from_secs(30), || state.detail_requests(None)
                >= before + 5)
            .await
        );
        daemon.kill().await;
    }
    let running = "SELECT count(*) FROM sync_runs WHERE outcome = 'running'";
    assert!(
        db.count(running).await >= 1,
        "a killed cycle leaves its row running"
    );
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stderr(&out).contains("closed runs left running"),
        "{}",
        stderr(&out)
    );
    assert_eq!(db.count(running).await, 0);
    let abandoned: Vec<(Option<chrono::DateTime<chrono::Utc>>, Option<String>)> =
        sqlx::query_as("SELECT finished_at, error FROM sync_runs WHERE outcome = 'abandoned'")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    // Both killed cycles: the second daemon closed the first one's row, `sync` the second's.
    assert_eq!(abandoned.len(), 2);
    for (finished_at, error) in &abandoned {
        assert!(finished_at.is_some());
        assert!(
            error
                .as_deref()
                .unwrap_or("")
                .contains("ended without completing"),
            "{error:?}"
        );
    }
    assert_eq!(
        db.count("SELECT count(*) FROM sync_runs WHERE outcome = 'ok'")
            .await,
        1
    );
}

/// Item 17 (database failure, process alive): the database refuses a cycle's completion; the
/// daemon keeps it and writes it before its next run once the database takes it again. The
/// row ends with the cycle's real outcome and counts, not "running".
#[tokio::test]
async fn a_run_completion_the_database_refused_is_written_when_it_comes_back() {
    let sim = start_sim(unlimited_sim(20)).await;
    let db = TestDb::new().await;
    let ws = Workspace::configured(&sim, &db, FAST, "schedule = \"* * * * * *\"\n");
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    // Completing a run (an UPDATE of sync_runs) fails while this trigger exists.
    for sql in [
        "CREATE FUNCTION refuse_run_updates() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'simulated database failure'; END $$",
        "CREATE TRIGGER refuse_run_updates BEFORE UPDATE ON sync_runs
         FOR EACH ROW EXECUTE FUNCTION refuse_run_updates()",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    let daemon = ws.daemon();
    let lines = daemon.log();
    assert!(
        wait_for(Duration::from_secs(60), || count(
            &lines,
            "cannot complete the run in sync_runs"
        ) >= 2)
        .await,
        "{:?}",
        lines.lock().unwrap()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM sync_runs WHERE run_id = 1 AND outcome = 'running'")
            .await,
        1
    );
    sqlx::query("DROP TRIGGER refuse_run_updates ON sync_runs")
        .execute(&db.pool)
        .await
        .unwrap();
    let finished = "SELECT count(*) FROM sync_runs WHERE run_id = 1 AND outcome = 'ok'
                    AND finished_at IS NOT NULL AND tickets_changed = 20";
    let mut done = false;
    for _ in 0..300 {
        if db.count(finished).await == 1 {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.terminate(Duration::from_secs(30)).await;
    assert!(done, "{:?}", lines.lock().unwrap());
    assert_eq!(
        db.count("SELECT count(*) FROM sync_runs WHERE outcome = 'running'")
            .await,
        0
    );
}

/// A catalog item: a dropdown field named `n`.
fn catalog_field(id: &str, name: &str, options: Value) -> Value {
    json!({
        "ticket_customized_field_id": id, "helpdesk_id": HELPDESK_ID, "key_name": name,
        "display_name": name, "field_type": "dropdown", "position": "1", "visible": true,
        "editable": true, "required": false, "dropdown_options": {"children": options},
    })
}

/// A chain of options `depth` levels deep.
fn option_chain(depth: usize) -> Value {
    let mut children = json!([]);
    for level in (1..=depth).rev() {
        children = json!([{"tag": format!("l{level}"), "display_name": format!("Level {level}"),
                           "children": children}]);
    }
    children
}

/// Item 17 (catalog): a 200-deep option tree keeps its field (three levels of options, a
/// warning), and a field id listed twice is stored and counted once.
#[tokio::test]
async fn a_deep_option_tree_and_a_duplicate_field_id_keep_every_field_once() {
    let sim = start_sim(unlimited_sim(3)).await;
    sim.state.set_catalog(vec![
        catalog_field("7000000000000000001", "deep", option_chain(200)),
        catalog_field("7000000000000000002", "twice", option_chain(1)),
        catalog_field("7000000000000000003", "plain", option_chain(2)),
        catalog_field("7000000000000000002", "twice_again", option_chain(1)),
    ]);
    let db = TestDb::new().await;
    let ws = Workspace::new(&sim, &db, FAST);
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("custom field catalog: 3 fields"),
        "{}",
        stdout(&out)
    );
    let log = stderr(&out);
    assert!(log.contains("lists field ids it listed before"), "{log}");
    assert!(log.contains("nested deeper than 3 levels"), "{log}");
    let fields: Vec<(String, String)> =
        sqlx::query_as("SELECT field_id, key_name FROM custom_field_catalog ORDER BY field_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        fields,
        vec![
            ("7000000000000000001".into(), "deep".into()),
            ("7000000000000000002".into(), "twice_again".into()),
            ("7000000000000000003".into(), "plain".into()),
        ]
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM custom_field_options WHERE field_id = '7000000000000000001'"
        )
        .await,
        3
    );
}

/// Item 17 (catalog): page tokens that loop (the last page points back to the first) end the
/// reading at the first token seen twice: 3 requests, not 100.
#[tokio::test]
async fn a_catalog_page_token_loop_stops_at_the_first_repeat() {
    let sim = start_sim(SimConfig {
        catalog_loops: true,
        ..unlimited_sim(3)
    })
    .await;
    let catalog: Vec<Value> = (0..150)
        .map(|i| {
            catalog_field(
                &format!("70000000000000{i:05}"),
                &format!("f{i}"),
                option_chain(1),
            )
        })
        .collect();
    sim.state.set_catalog(catalog);
    let db = TestDb::new().await;
    let ws = Workspace::new(&sim, &db, FAST);
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let catalog_requests = sim.state.count_status(Endpoint::Catalog, 200);
    assert_eq!(catalog_requests, 3, "{}", all_output(&out));
    assert!(
        stderr(&out).contains("page tokens loop"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("custom field catalog: 150 fields"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM custom_field_catalog").await,
        150
    );
}

/// Item 17 (summary): every detail answered older than stored is counted as processed, and
/// said so, not "N due, 0 processed".
#[tokio::test]
async fn the_summary_counts_answers_older_than_stored() {
    let sim = start_sim(unlimited_sim(12)).await;
    let db = TestDb::new().await;
    let ws = Workspace::configured(&sim, &db, FAST, "discover = false\nmessages = false\n");
    let ids = sim.state.ticket_ids();
    let file = ws.write_file("ids.txt", &ids_text(&ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    assert_ok(&ws.run(&["sync"], &[], None).await);
    // What is stored is now newer than anything the API will answer (a ticket never
    // updated, `updated_at` NULL, stays unchanged).
    let older = sqlx::query("UPDATE tickets SET updated_at = updated_at + interval '1 hour'")
        .execute(&db.pool)
        .await
        .unwrap()
        .rows_affected();
    let dated = db
        .count("SELECT count(*) FROM tickets WHERE updated_at IS NOT NULL")
        .await;
    assert!(older == 12 && dated >= 10, "{dated} of {older}");
    sqlx::query("UPDATE ticket_sync_state SET next_due_at = now()")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let summary = stdout(&out);
    assert!(summary.contains("12 due, 12 processed"), "{summary}");
    assert!(
        summary.contains(&format!(
            "{} unchanged, {dated} older than stored (kept the stored version)",
            12 - dated
        )),
        "{summary}"
    );
    assert_eq!(
        db.count(
            "SELECT tickets_older_skipped + tickets_unchanged FROM sync_runs
             ORDER BY run_id DESC LIMIT 1"
        )
        .await,
        12
    );
    assert_eq!(
        db.count("SELECT tickets_older_skipped FROM sync_runs ORDER BY run_id DESC LIMIT 1")
            .await,
        dated
    );
}
