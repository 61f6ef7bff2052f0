//! `enqueue` + `sync` against the simulator and a real Postgres, through the binary.

use std::time::Duration;

use helpdesk_sync::sim::{Endpoint, Fault, SimConfig};
use serde_json::{Value, json};

use crate::helpers::*;

/// A simulator whose rate limit stays out of the way (pacing has its own test).
fn sim_config(tickets: usize) -> SimConfig {
    SimConfig {
        tickets,
        detail_limit_per_second: 10_000,
        ..SimConfig::default()
    }
}

/// Enqueue every simulated id from a file and run one sync; returns the ids.
async fn sync_all(ws: &Workspace, ids: &[String]) {
    let file = ws.write_file("ids.txt", &ids_text(ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    assert_ok(&ws.run(&["sync"], &[], None).await);
}

/// Distinct `id`s in a JSON list (the API may repeat a person; we store each once).
fn distinct_ids(list: Option<&Value>) -> i64 {
    let mut ids: Vec<&str> = list
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v["id"].as_str()).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    ids.len() as i64
}

/// Every table's content as text, with each row's xmin (its write transaction).
async fn snapshot(db: &TestDb) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT xmin::text, t::text FROM {table} t ORDER BY 2");
        let table_rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&db.pool)
            .await
            .unwrap();
        rows.extend(table_rows);
    }
    rows
}

#[tokio::test]
async fn full_sync_stores_every_ticket_with_its_children() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(60)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    sync_all(&ws, &ids).await;

    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 60);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE last_outcome = 'ok' AND claimed_by IS NULL")
            .await,
        60
    );
    // Child rows match the API's JSON ticket by ticket.
    for id in &ids {
        let t = sim.state.ticket(id).unwrap();
        let len = |field: &str| distinct_ids(t.get(field));
        let comments = match t.get("comments") {
            Some(Value::Array(a)) => a.len(),
            Some(Value::Object(_)) => 1,
            _ => 0,
        } as i64;
        let q = |table: &str| format!("SELECT count(*) FROM {table} WHERE ticket_id = '{id}'");
        assert_eq!(
            db.count(&q("ticket_agents")).await,
            len("agents"),
            "{id} agents"
        );
        assert_eq!(
            db.count(&q("ticket_collaborators")).await,
            len("collaborators"),
            "{id}"
        );
        assert_eq!(db.count(&q("ticket_tags")).await, len("tags"), "{id} tags");
        assert_eq!(
            db.count(&q("ticket_custom_fields")).await,
            len("customized_fields"),
            "{id}"
        );
        assert_eq!(
            db.count(&q("ticket_comments")).await,
            comments,
            "{id} comments"
        );
    }
    // Quirks: ids above 2^53 exact, -1 → NULL, raw kept with unknown fields.
    let user_ids: Vec<i64> =
        sqlx::query_scalar("SELECT DISTINCT user_id FROM ticket_comments ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(user_ids, vec![7262656095919128578, 7262656095919128579]);
    let never_updated = helpdesk_sync::sim::ticket_id(0); // index 0: updated_at = -1
    let updated: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT updated_at FROM tickets WHERE ticket_id = $1")
            .bind(&never_updated)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(updated, None);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM tickets WHERE raw ? 'field_added_after_this_client_was_written'"
        )
        .await,
        ids.iter().enumerate().filter(|(i, _)| i % 7 == 0).count() as i64
    );
    // Every person referenced is a user row.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM tickets t WHERE guest_id IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM helpdesk_users u WHERE u.user_id = t.guest_id)"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn resyncing_unchanged_tickets_changes_no_row() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(30)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    sync_all(&ws, &ids).await;
    let before = snapshot(&db).await;
    let requests_before = sim.state.detail_requests(None);

    sync_all(&ws, &ids).await;
    assert_eq!(
        sim.state.detail_requests(None),
        requests_before + 30,
        "refetched"
    );
    assert_eq!(
        snapshot(&db).await,
        before,
        "an unchanged re-sync rewrote rows"
    );

    // A sync with nothing due makes no call at all.
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(sim.state.detail_requests(None), requests_before + 30);
}

#[tokio::test]
async fn an_update_is_reflected_exactly() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(10)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    sync_all(&ws, &ids).await;
    // Index 1 has tags and custom fields.
    let id = ids[1].clone();
    let before = sim.state.ticket(&id).unwrap();
    let removed_tag = before["tags"][0]["id"].as_str().unwrap().to_owned();
    sim.state.update_ticket(&id, |t| {
        t["agents"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "ou_new_agent", "name": "New Agent"}));
        t["tags"].as_array_mut().unwrap().remove(0);
        t["customized_fields"][0]["value"] = json!("Desktop");
        t["status"] = json!(51);
    });
    let other_before: String =
        sqlx::query_scalar("SELECT xmin::text FROM tickets WHERE ticket_id = $1")
            .bind(&ids[2])
            .fetch_one(&db.pool)
            .await
            .unwrap();
    sync_all(&ws, &ids).await;

    let agents: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM ticket_agents WHERE ticket_id = $1 ORDER BY position",
    )
    .bind(&id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(agents.last().map(String::as_str), Some("ou_new_agent"));
    assert_eq!(agents.len() as i64, distinct_ids(before.get("agents")) + 1);
    let tags: Vec<String> =
        sqlx::query_scalar("SELECT tag_id FROM ticket_tags WHERE ticket_id = $1")
            .bind(&id)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(!tags.contains(&removed_tag), "removed tag still there");
    assert_eq!(tags.len(), before["tags"].as_array().unwrap().len() - 1);
    let value: String = sqlx::query_scalar(
        "SELECT value FROM ticket_custom_fields WHERE ticket_id = $1 AND position = 1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(value, "Desktop");
    let name: String =
        sqlx::query_scalar("SELECT name FROM helpdesk_users WHERE user_id = 'ou_new_agent'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(name, "New Agent");
    let other_after: String =
        sqlx::query_scalar("SELECT xmin::text FROM tickets WHERE ticket_id = $1")
            .bind(&ids[2])
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        other_before, other_after,
        "an unchanged ticket was rewritten"
    );
}

#[tokio::test]
async fn deleted_ticket_is_soft_deleted_and_invalid_id_parked() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(5)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    sync_all(&ws, &ids).await;
    let children_before = db.count("SELECT count(*) FROM ticket_agents").await;

    sim.state.delete_ticket(&ids[0]);
    // 42 is digits, so enqueue accepts it; the API calls it a bad request (154000).
    let mut with_invalid = ids.clone();
    with_invalid.push("42".into());
    sync_all(&ws, &with_invalid).await;

    let deleted: (Option<chrono::DateTime<chrono::Utc>>, String) = sqlx::query_as(
        "SELECT t.deleted_at, s.last_outcome FROM tickets t JOIN ticket_sync_state s USING (ticket_id)
         WHERE ticket_id = $1",
    )
    .bind(&ids[0])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(deleted.0.is_some(), "deleted_at not set");
    assert_eq!(deleted.1, "not_found");
    assert_eq!(
        db.count("SELECT count(*) FROM tickets").await,
        5,
        "rows kept"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_agents").await,
        children_before
    );

    let invalid: (String, Option<i64>, bool) = sqlx::query_as(
        "SELECT last_outcome, last_error_code, next_due_at = 'infinity'
         FROM ticket_sync_state WHERE ticket_id = '42'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(invalid, ("invalid_id".into(), Some(154000), true));

    // Parked tickets cost nothing next time.
    let before = sim.state.detail_requests(None);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(sim.state.detail_requests(None), before);
}

#[tokio::test]
async fn transient_failures_are_retried_to_success() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(12)).await;
    let ws = TestConfig::new(&sim, &db).request_timeout("1s").workspace();
    let ids = sim.state.ticket_ids();
    sim.state.inject(
        &ids[0],
        [Fault::InternalError, Fault::BadGateway, Fault::Truncated],
    );
    sim.state
        .inject(&ids[1], [Fault::Delay(Duration::from_secs(3))]);
    sim.state.inject(&ids[2], [Fault::ConnectionDrop]);
    sim.state
        .inject(&ids[3], [Fault::RateLimited { reset_seconds: 1 }]);
    sim.state
        .inject(&ids[4], [Fault::RateLimited400 { reset_seconds: 1 }]);
    sync_all(&ws, &ids).await;

    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 12);
    let attempts: i32 =
        sqlx::query_scalar("SELECT last_attempt_count FROM ticket_sync_state WHERE ticket_id = $1")
            .bind(&ids[0])
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(attempts, 4);
    assert_eq!(sim.state.count_status(Endpoint::Detail, 429), 1);
}

#[tokio::test]
async fn a_bad_body_fails_only_its_ticket() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(10)).await;
    let ws = TestConfig::new(&sim, &db).max_attempts(2).workspace();
    let ids = sim.state.ticket_ids();
    sim.state.inject(&ids[3], [Fault::NotJson, Fault::NotJson]);
    sync_all(&ws, &ids).await;

    assert_eq!(
        db.count("SELECT count(*) FROM tickets WHERE content_source = 'detail'")
            .await,
        9
    );
    let (outcome, error, retry_later): (String, String, bool) = sqlx::query_as(
        "SELECT last_outcome, last_error, next_due_at > now() + interval '30 seconds'
         FROM ticket_sync_state WHERE ticket_id = $1",
    )
    .bind(&ids[3])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(outcome, "failed");
    assert!(error.contains("not JSON"), "{error}");
    assert!(retry_later);

    // The next try (forced by enqueue) succeeds and clears the failure.
    sync_all(&ws, &ids[3..4]).await;
    assert_eq!(
        db.count("SELECT count(*) FROM tickets WHERE content_source = 'detail'")
            .await,
        10
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE consecutive_failures > 0")
            .await,
        0
    );
}

#[tokio::test]
async fn a_token_invalidated_mid_run_is_refreshed_once() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(40)).await;
    let ws = TestConfig::new(&sim, &db)
        .detail_rate(40.0)
        .max_in_flight(4)
        .workspace();
    let ids = sim.state.ticket_ids();
    let file = ws.write_file("ids.txt", &ids_text(&ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );

    let state = sim.state.clone();
    let invalidator = tokio::spawn(async move {
        while state.detail_requests(None) < 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        state.invalidate_tokens();
    });
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    invalidator.await.unwrap();
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 40);
    assert_eq!(
        sim.state.count_status(Endpoint::Token, 200),
        2,
        "one refresh"
    );
}

#[tokio::test]
async fn wrong_helpdesk_token_is_fatal_and_touches_nothing() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(8)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    sync_all(&ws, &ids).await;
    let before = snapshot(&db).await;

    let file = ws.write_file("ids.txt", &ids_text(&ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    let out = ws
        .run(
            &["sync"],
            &[("HELPDESK_SYNC__FEISHU__HELPDESK_TOKEN", "wrong")],
            None,
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("helpdesk authorization was rejected"), "{err}");
    assert!(err.contains("feishu.helpdesk_token"), "{err}");
    assert_eq!(snapshot(&db).await, before, "stored rows changed");
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")
            .await,
        0,
        "claims left behind"
    );
    // Still due: the next good run fetches them.
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE next_due_at <= now()")
            .await,
        8
    );
}

#[tokio::test]
async fn wrong_app_secret_is_fatal_with_a_clear_message() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(3)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    let file = ws.write_file("ids.txt", &ids_text(&ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    let out = ws
        .run(
            &["sync"],
            &[("HELPDESK_SYNC__FEISHU__APP_SECRET", "nope")],
            None,
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("the Feishu app was rejected"), "{err}");
    assert!(err.contains("10014"), "{err}");
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 0);
    assert_eq!(
        sim.state.detail_requests(None),
        0,
        "detail calls without a token"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_output_even_at_trace_level() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(5)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    let file = ws.write_file("ids.txt", &ids_text(&ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    sim.state.inject(&ids[0], [Fault::InternalError]);
    let out = ws
        .run(
            &["sync", "--log-format", "json"],
            &[("RUST_LOG", "trace")],
            None,
        )
        .await;
    assert_ok(&out);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        all.len() > 1000,
        "trace output expected, got {} bytes",
        all.len()
    );
    let c = sim.state.config();
    let header = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.helpdesk_id, c.helpdesk_token))
    };
    let mut secrets = vec![c.app_secret.clone(), c.helpdesk_token.clone(), header];
    secrets.extend(sim.state.issued_tokens());
    assert!(secrets.len() >= 4);
    for secret in secrets {
        assert!(!all.contains(&secret), "secret {secret} leaked");
    }
}

#[tokio::test]
async fn pacing_never_exceeds_the_api_limit_in_any_second() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 40,
        latency: Duration::from_millis(300),
        jitter: Duration::from_millis(100),
        ..SimConfig::default()
    })
    .await;
    let ws = TestConfig::new(&sim, &db)
        .detail_rate(9.0)
        .max_in_flight(16)
        .workspace();
    let ids = sim.state.ticket_ids();
    sync_all(&ws, &ids).await;
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 40);
    assert_eq!(
        sim.state.count_status(Endpoint::Detail, 429),
        0,
        "rate limited"
    );
    let peak = sim.state.max_per_second(Endpoint::Detail);
    assert!(peak <= 10, "{peak} requests arrived within one second");
}

#[tokio::test]
async fn token_refreshes_do_not_release_a_burst() {
    let db = TestDb::new().await;
    // Tokens live 4 s (refreshed every 2 s) and take 300 ms to issue.
    let sim = start_sim(SimConfig {
        tickets: 45,
        latency: Duration::from_millis(300),
        jitter: Duration::from_millis(100),
        token_ttl: Duration::from_secs(4),
        token_latency: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let ws = TestConfig::new(&sim, &db)
        .detail_rate(9.0)
        .max_in_flight(16)
        .workspace();
    let ids = sim.state.ticket_ids();
    sync_all(&ws, &ids).await;
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 45);
    assert!(
        sim.state.count_status(Endpoint::Token, 200) >= 3,
        "tokens were not refreshed"
    );
    assert_eq!(
        sim.state.count_status(Endpoint::Detail, 429),
        0,
        "rate limited"
    );
    let peak = sim.state.max_per_second(Endpoint::Detail);
    assert!(peak <= 10, "{peak} requests arrived within one second");
}

#[tokio::test]
async fn a_database_rejection_fails_only_that_ticket() {
    let db = TestDb::new().await;
    let sim = start_sim(sim_config(20)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let ids = sim.state.ticket_ids();
    // Migrate first, then make the database refuse one ticket (like a full disk would a batch).
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    let trigger = format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN IF NEW.ticket_id = '{}' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON tickets FOR EACH ROW EXECUTE FUNCTION refuse();",
        ids[7]
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(trigger))
        .execute(&db.pool)
        .await
        .unwrap();
    sync_all(&ws, &ids).await;
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 19);
    let (outcome, error): (String, String) = sqlx::query_as(
        "SELECT last_outcome, last_error FROM ticket_sync_state WHERE ticket_id = $1",
    )
    .bind(&ids[7])
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(outcome, "failed");
    assert!(error.contains("injected failure"), "{error}");
}
