//! Learned paces (issue 25 item 2): the messages endpoint's limit is not published, so the
//! daemon learns it against a simulator with a true limit, keeps it across a restart and
//! shows it in `status`. Coarse tolerances; no timing asserted (speed is in
//! `benches/learned_pace.rs`).

use helpdesk_sync::sim::{Endpoint, SimConfig};

use crate::helpers::*;

/// The simulator's true messages limit, requests per sliding second.
const LIMIT: usize = 6;

#[tokio::test]
async fn the_messages_pace_is_learned_near_the_true_limit_kept_across_a_restart_and_shown() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        message_limit_per_second: LIMIT,
        ..unlimited_sim(100)
    })
    .await;
    let ws = TestConfig::new(&sim, &db)
        .discover(false)
        .detail_rate(100.0)
        .feishu("message_requests_per_second", 2.0)
        .feishu("message_requests_per_second_ceiling", 40.0)
        .workspace();
    let ids = sim.state.ticket_ids();
    let mut enqueue = vec!["enqueue"];
    enqueue.extend(ids.iter().map(String::as_str));
    assert_ok(&ws.run(&enqueue, &[], None).await);
    assert_ok(&ws.run(&["sync"], &[], None).await);

    // Every conversation was read, with few 429s on the way.
    let stored: i64 = db
        .count("SELECT count(DISTINCT ticket_id) FROM ticket_messages")
        .await;
    assert!(stored > 50, "{stored} conversations stored");
    let calls = sim.state.count_status(Endpoint::Messages, 200);
    let limited = sim.state.count_status(Endpoint::Messages, 429);
    assert!(
        limited <= 10.max(calls / 20),
        "{limited} of {} messages calls answered 429",
        calls + limited
    );

    // The learned pace is stored near the true limit: below it, and well above the start.
    let (rate, limit, last_cut): (f64, Option<f64>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as(
            "SELECT rate_per_second, limit_per_second, last_cut_at FROM learned_rates
             WHERE app_id = $1 AND endpoint = 'messages'",
        )
        .bind(&sim.state.config().app_id)
        .fetch_one(&db.pool)
        .await
        .expect("a learned messages pace is stored");
    assert!(
        rate >= 0.5 * LIMIT as f64 && rate <= 1.05 * LIMIT as f64,
        "learned {rate}/s against a true limit of {LIMIT}/s"
    );
    assert!(last_cut.is_some(), "the climb met the limit once at least");
    assert!(
        limit.is_some_and(|l| l <= 1.5 * LIMIT as f64),
        "limit estimate {limit:?}"
    );

    // `status` shows it: one line per learned endpoint.
    let status = ws.run(&["status"], &[], None).await;
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains(&format!(
            "pace:      messages learned {rate:.1}/s (ceiling 40.0/s)"
        )),
        "{text}"
    );
    assert!(
        text.contains("pace:      catalog"),
        "the catalog's pace has its line too: {text}"
    );

    // A restart starts from the stored pace, not from the configured 2/s.
    assert_ok(&ws.run(&enqueue, &[], None).await);
    let again = ws
        .run(&["sync"], &[("RUST_LOG", "helpdesk_sync=info")], None)
        .await;
    assert_ok(&again);
    let log = String::from_utf8_lossy(&again.stderr);
    // The log is JSON lines when not on a terminal.
    let started_from: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| {
            l["message"] == "starting from the pace learned before" && l["endpoint"] == "messages"
        })
        .filter_map(|l| l["pace_per_s"].as_f64())
        .collect();
    assert_eq!(started_from, vec![rate], "{log}");
}

/// `run` exports each learned pace on `/metrics`, beside its ceiling.
#[tokio::test]
async fn the_learned_paces_are_gauges_on_metrics() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(20)).await;
    let ws = TestConfig::new(&sim, &db)
        .schedule("*/2 * * * * *")
        .http()
        .feishu("message_requests_per_second", 3.0)
        .feishu("message_requests_per_second_ceiling", 30.0)
        .workspace();
    let daemon = Daemon::spawn(&ws);
    daemon
        .expect_log("\"cycle finished\"", std::time::Duration::from_secs(60))
        .await;
    let address = daemon
        .address("HTTP endpoint listening")
        .expect("the daemon logs its HTTP address");
    let metrics = reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    // 20 conversations read without a 429: the pace rose from its start, within its ceiling.
    let learned = value("helpdesk_sync_learned_rate_per_second{endpoint=\"messages\"}");
    assert!((3.0..=30.0).contains(&learned), "{learned}");
    assert_eq!(
        value("helpdesk_sync_learned_rate_ceiling_per_second{endpoint=\"messages\"}"),
        30.0
    );
    daemon.stop().await;
}

/// A ceiling below its start is a config error naming the key (exit 2), before anything runs.
#[tokio::test]
async fn a_ceiling_below_the_start_is_a_config_error() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(1)).await;
    let ws = TestConfig::new(&sim, &db)
        .feishu("catalog_requests_per_second", 10.0)
        .feishu("catalog_requests_per_second_ceiling", 5.0)
        .workspace();
    let out = ws.run(&["status"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("feishu.catalog_requests_per_second_ceiling"),
        "{stderr}"
    );
    assert!(sim.state.requests().is_empty());
}
