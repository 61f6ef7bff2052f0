//! The operator's view: `status`, `check`, `/metrics` `/healthz` `/readyz`, JSON logs.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::*;

async fn status_json(ws: &Workspace) -> (Option<i32>, Value) {
    let out = ws.run(&["status", "--json"], &[], None).await;
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}): {}", stdout(&out)));
    (out.status.code(), json)
}

#[tokio::test]
async fn status_judges_empty_healthy_failed_and_stale_databases() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(10)).await;
    let ws = TestConfig::new(&sim, &db).workspace();

    // Not even migrated: a clear message.
    let out = ws.run(&["status"], &[], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("helpdesk-sync migrate"),
        "{}",
        stderr(&out)
    );

    // Empty: nothing ever ran.
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(1));
    assert_eq!(json["healthy"], false);
    assert!(
        json["problems"][0]
            .as_str()
            .unwrap()
            .contains("no sync run"),
        "{json}"
    );

    // Healthy.
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(0), "{json}");
    assert_eq!(json["last_run"]["outcome"], "ok");
    assert_eq!(json["last_run"]["tickets_changed"], 10);
    assert_eq!(json["queue"]["known"], 10);
    assert!(json["discovery"]["watermark"].is_string());
    let out = ws.run(&["status"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).starts_with("helpdesk-sync status: OK"),
        "{}",
        stdout(&out)
    );

    // The last run failed: credentials rejected.
    let ids = sim.state.ticket_ids();
    assert_ok(&ws.run(&["enqueue", &ids[0]], &[], None).await);
    let bad = ws
        .run(
            &["sync"],
            &[("HELPDESK_SYNC__FEISHU__HELPDESK_TOKEN", "wrong")],
            None,
        )
        .await;
    assert_eq!(bad.status.code(), Some(1));
    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(1));
    assert_eq!(json["last_run"]["outcome"], "fatal");
    let problems = json["problems"].to_string();
    assert!(
        problems.contains("ended fatal") && problems.contains("helpdesk authorization"),
        "{problems}"
    );

    // Recovered, then stale: the data is older than open_refresh × 2.
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(status_json(&ws).await.0, Some(0));
    sqlx::raw_sql(
        "UPDATE ticket_sync_state SET last_fetched_at = now() - interval '3 hours';
         UPDATE sync_runs SET started_at = started_at - interval '3 hours',
                              finished_at = finished_at - interval '3 hours';",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(1));
    assert!(json["problems"].to_string().contains("stale"), "{json}");

    // A crashed run stays visible.
    sqlx::raw_sql(
        "INSERT INTO sync_runs (helpdesk_id, trigger, worker, started_at)
         VALUES ('6626871355780366330', 'schedule', 'gone:1:0', now() - interval '1 hour')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let out = ws.run(&["status"], &[], None).await;
    assert!(stdout(&out).contains("never finished"), "{}", stdout(&out));
}

#[tokio::test]
async fn check_names_each_wrong_credential_distinctly() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(3)).await;
    let ws = TestConfig::new(&sim, &db).workspace();
    let id = sim.state.ticket_ids()[1].clone();

    let out = ws.run(&["check", "--ticket", &id], &[], None).await;
    assert_ok(&out);
    let text = stdout(&out);
    for step in ["config:", "database:", "token:", "list:", "detail:"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(step) && l.contains(" OK ")),
            "{step} not OK:\n{text}"
        );
    }

    let cases: [(&str, &str, &str, &str); 3] = [
        (
            "HELPDESK_SYNC__FEISHU__APP_SECRET",
            "wrong",
            "token:",
            "feishu.app_secret",
        ),
        (
            "HELPDESK_SYNC__FEISHU__HELPDESK_TOKEN",
            "wrong",
            "list:",
            "feishu.helpdesk_token",
        ),
        (
            "HELPDESK_SYNC__FEISHU__BASE_URL",
            "http://127.0.0.1:9",
            "token:",
            "Connection refused",
        ),
    ];
    for (key, value, step, reason) in cases {
        let out = ws.run(&["check"], &[(key, value)], None).await;
        assert_eq!(out.status.code(), Some(1), "{key}");
        let text = stdout(&out);
        let line = text
            .lines()
            .find(|l| l.contains("FAILED"))
            .unwrap_or_else(|| panic!("{key}: no FAILED line:\n{text}"));
        assert!(
            line.starts_with(step) && line.contains(reason),
            "{key}: {line}"
        );
    }
    // A missing secret is a configuration problem: exit 2, before any request.
    let before = sim.state.requests().len();
    let ws = TestConfig::empty(&db)
        .feishu("base_url", sim.base_url())
        .feishu("app_id", "a")
        .feishu("helpdesk_id", "1")
        .workspace();
    let out = ws.run(&["check"], &[], None).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stdout(&out).contains("config:   FAILED"),
        "{}",
        stdout(&out)
    );
    assert_eq!(sim.state.requests().len(), before);
}

#[tokio::test]
async fn metrics_health_and_json_logs_during_a_run() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(25)).await;
    let ws = TestConfig::new(&sim, &db)
        .schedule("*/2 * * * * *")
        .http()
        .workspace();
    let mut daemon = Daemon::spawn_with(&ws, &[("RUST_LOG", "debug")]);
    daemon
        .expect_log("\"cycle finished\"", Duration::from_secs(30))
        .await;
    let address = daemon
        .address("HTTP endpoint listening")
        .expect("the daemon logs its HTTP address");
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("http://{address}{path}");
        let http = http.clone();
        async move { http.get(url).send().await.expect("HTTP request") }
    };

    let metrics = get("/metrics").await.text().await.unwrap();
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{metrics}"))
    };
    // Per-helpdesk series carry the helpdesk id; the app's token requests carry none.
    let desk = sim.state.config().helpdesk_id.clone();
    let of = |series: &str, labels: &str| format!("{series}{{helpdesk=\"{desk}\",{labels}}}");
    assert!(
        value(&of(
            "helpdesk_sync_api_requests_total",
            "endpoint=\"detail\",outcome=\"ok\""
        )) >= 25.0
    );
    assert!(
        value(&of(
            "helpdesk_sync_api_requests_total",
            "endpoint=\"list\",outcome=\"ok\""
        )) >= 1.0
    );
    assert!(
        value("helpdesk_sync_api_requests_total{helpdesk=\"\",endpoint=\"token\",outcome=\"ok\"}")
            >= 1.0
    );
    assert!(value("helpdesk_sync_api_request_duration_seconds_count{endpoint=\"detail\"}") >= 25.0);
    assert!(
        value(&of(
            "helpdesk_sync_tickets_written_total",
            "result=\"changed\""
        )) >= 25.0
    );
    assert_eq!(
        value(&of("helpdesk_sync_queue_tickets", "state=\"known\"")),
        25.0
    );
    assert!(value(&of("helpdesk_sync_cycles_total", "outcome=\"ok\"")) >= 1.0);
    assert!(value("helpdesk_sync_token_refreshes_total") >= 1.0);
    assert_eq!(
        value(&format!(
            "helpdesk_sync_helpdesk_info{{helpdesk=\"{desk}\",name=\"{desk}\"}}"
        )),
        1.0
    );
    assert_eq!(
        value(&of(
            "helpdesk_sync_health_problems",
            "cause=\"last_run_failed\""
        )),
        0.0
    );
    let now = chrono::Utc::now().timestamp() as f64;
    let last = value(&format!(
        "helpdesk_sync_last_success_timestamp_seconds{{helpdesk=\"{desk}\"}}"
    ));
    assert!((now - last).abs() < 60.0, "last success {last}, now {now}");
    // Every series the Grafana dashboard charts exists.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/deploy/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .expect("the dashboard is valid JSON");
    let exprs = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_owned());
    for expr in exprs {
        for name in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if name.starts_with("helpdesk_sync_") {
                let base = name.trim_end_matches("_bucket");
                assert!(
                    metrics.contains(base),
                    "dashboard uses {name}, /metrics lacks it"
                );
            }
        }
    }

    assert_eq!(get("/healthz").await.status(), 200);
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);

    daemon.sigterm();
    daemon.wait_exit(Duration::from_secs(10)).await;
    // JSON logs: every line parses; no secret anywhere.
    let c = sim.state.config();
    let all = daemon.lines();
    assert!(all.len() > 5);
    for line in &all {
        let parsed: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(
            parsed["level"].is_string() && parsed["timestamp"].is_string(),
            "{line}"
        );
        for secret in [&c.app_secret, &c.helpdesk_token] {
            assert!(!line.contains(secret.as_str()), "secret in {line}");
        }
        for token in sim.state.issued_tokens() {
            assert!(!line.contains(&token), "tenant token in {line}");
        }
    }
}

#[tokio::test]
async fn readyz_reports_a_fatal_last_cycle() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(3)).await;
    let ws = TestConfig::new(&sim, &db)
        .schedule("0 0 * * * *")
        .http()
        .workspace();
    let mut daemon = Daemon::spawn_with(&ws, &[("HELPDESK_SYNC__FEISHU__APP_SECRET", "wrong")]);
    daemon
        .expect_log("credentials rejected", Duration::from_secs(30))
        .await;
    let address = daemon
        .address("HTTP endpoint listening")
        .expect("HTTP address");
    let ready = reqwest::get(format!("http://{address}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("fatal"));
    daemon.stop_within(Duration::from_secs(10)).await;
}

/// A config for every helpdesk the simulator serves: the app in `[feishu]`, one
/// `[[helpdesks]]` table each (name, id, token).
pub(crate) fn helpdesks_config(sim: &helpdesk_sync::sim::SimServer, db: &TestDb) -> TestConfig {
    let desks = sim.state.helpdesks().to_vec();
    let list: Vec<(&str, &str, &str)> = desks
        .iter()
        .map(|h| {
            (
                h.name.as_str(),
                h.helpdesk_id.as_str(),
                h.helpdesk_token.as_str(),
            )
        })
        .collect();
    TestConfig::new(sim, db).helpdesks(&list)
}

/// Issue 26: with two helpdesks, `status` judges each on its own rows (queue, runs, lock) and
/// names the unhealthy one; the healthy one stays OK, and the exit code is 1.
#[tokio::test]
async fn status_names_the_unhealthy_helpdesk_among_several() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(3).with_helpdesks(2)).await;
    let desks = sim.state.helpdesks().to_vec();
    let (ok, broken) = (&desks[0], &desks[1]);
    let ws = helpdesks_config(&sim, &db).workspace();
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    // One good run each, then the second helpdesk's token is rejected.
    for (desk, outcome, error) in [
        (ok, "ok", None),
        (broken, "ok", None),
        (
            broken,
            "fatal",
            Some("helpdesk authorization rejected (feishu.helpdesk_token): 401"),
        ),
    ] {
        sqlx::query(
            "INSERT INTO sync_runs (helpdesk_id, trigger, worker, started_at, finished_at,
                                    outcome, error)
             VALUES ($1, 'schedule', 'test:1:0', now(), now(), $2, $3)",
        )
        .bind(&desk.helpdesk_id)
        .bind(outcome)
        .bind(error)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    // Three queued tickets for the first, one for the second.
    for (id, desk) in [("11", ok), ("12", ok), ("13", ok), ("21", broken)] {
        sqlx::query(
            "INSERT INTO ticket_sync_state (ticket_id, source, helpdesk_id) VALUES ($1, 'cli', $2)",
        )
        .bind(format!("66268713557803{id}"))
        .bind(&desk.helpdesk_id)
        .execute(&db.pool)
        .await
        .unwrap();
    }

    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(1), "{json:#}");
    assert_eq!(json["healthy"], false);
    let problems: Vec<&str> = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let named = format!("helpdesk {} ({}): ", broken.name, broken.helpdesk_id);
    assert!(
        problems.iter().any(|p| p.starts_with(&named)
            && p.contains("ended fatal")
            && p.contains("helpdesk authorization rejected")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().all(|p| p.starts_with(&named)),
        "only the broken helpdesk is named: {problems:#?}"
    );
    let each = json["helpdesks"].as_array().unwrap();
    assert_eq!(each.len(), 2);
    assert_eq!(each[0]["helpdesk_id"], ok.helpdesk_id.as_str());
    assert_eq!(each[0]["name"], ok.name.as_str());
    assert_eq!(each[0]["healthy"], true, "{json:#}");
    assert_eq!(each[0]["queue"]["known"], 3);
    assert_eq!(each[1]["healthy"], false);
    assert_eq!(each[1]["queue"]["known"], 1);
    assert_eq!(each[1]["last_run"]["outcome"], "fatal");
    assert_eq!(each[1]["causes"], serde_json::json!(["last_run_failed"]));
    // The whole database's totals stay at the top.
    assert_eq!(json["queue"]["known"], 4);

    let out = ws.run(&["status"], &[], None).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for line in [
        "helpdesk-sync status: UNHEALTHY".to_owned(),
        format!("helpdesk {} ({}): OK", ok.name, ok.helpdesk_id),
        format!(
            "helpdesk {} ({}): UNHEALTHY",
            broken.name, broken.helpdesk_id
        ),
        "  queue:     3 known".to_owned(),
        "  queue:     1 known".to_owned(),
        format!("  - {named}the last run"),
    ] {
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }

    // The second recovers: every helpdesk healthy, exit 0.
    sqlx::query(
        "INSERT INTO sync_runs (helpdesk_id, trigger, worker, started_at, finished_at, outcome)
         VALUES ($1, 'schedule', 'test:1:0', now(), now(), 'ok')",
    )
    .bind(&broken.helpdesk_id)
    .execute(&db.pool)
    .await
    .unwrap();
    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(0), "{json:#}");
}

/// The last finished run of `helpdesk`: its outcome.
async fn last_outcome(db: &TestDb, helpdesk: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT outcome FROM sync_runs WHERE helpdesk_id = $1 AND finished_at IS NOT NULL
         ORDER BY run_id DESC LIMIT 1",
    )
    .bind(helpdesk)
    .fetch_optional(&db.pool)
    .await
    .unwrap()
}

/// Polls `check` every 100 ms for up to `limit`; whether it came true.
async fn eventually<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Issue 26, item 4: one daemon, two helpdesks; the second's token is revoked. That helpdesk
/// alone is unhealthy — `status` exits 1 naming it, `/readyz` answers 503 naming it,
/// `health_problems{helpdesk,cause="last_run_failed"}` is 1 for it and 0 for the other — while
/// the other keeps syncing (a change upstream is stored). Restored, everything is healthy again.
#[tokio::test]
async fn a_revoked_token_fails_its_helpdesk_alone_in_status_readyz_and_metrics() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(6).with_helpdesks(2)).await;
    let desks = sim.state.helpdesks().to_vec();
    let (good, revoked) = (&desks[0], &desks[1]);
    let ws = helpdesks_config(&sim, &db)
        .every_second()
        .http()
        .workspace();
    let daemon = ws.daemon();
    let address = {
        daemon
            .expect_log("HTTP endpoint listening", Duration::from_secs(30))
            .await;
        daemon
            .address("HTTP endpoint listening")
            .expect("HTTP address")
    };
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let (http, url) = (http.clone(), format!("http://{address}{path}"));
        async move {
            let response = http.get(url).send().await.expect("HTTP request");
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    for desk in [good, revoked] {
        assert!(
            eventually(Duration::from_secs(30), || async {
                last_outcome(&db, &desk.helpdesk_id).await.as_deref() == Some("ok")
            })
            .await,
            "{} never synced: {:#?}",
            desk.name,
            daemon.lines()
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            get("/readyz").await.0 == 200
        })
        .await,
        "{:?}",
        get("/readyz").await
    );

    sim.state.revoke_helpdesk_token(&revoked.helpdesk_id);
    assert!(
        eventually(Duration::from_secs(30), || async {
            last_outcome(&db, &revoked.helpdesk_id).await.as_deref() == Some("fatal")
        })
        .await,
        "the revoked helpdesk's cycle never failed: {:#?}",
        daemon.lines()
    );
    let named = format!("helpdesk {} ({})", revoked.name, revoked.helpdesk_id);

    // status: exit 1, every problem about the revoked helpdesk, the other healthy.
    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(1), "{json:#}");
    let problems: Vec<&str> = json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(&format!("{named}: the last run")) && p.contains("ended fatal")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().all(|p| p.starts_with(&named)),
        "{problems:#?}"
    );
    assert_eq!(json["helpdesks"][0]["healthy"], true, "{json:#}");
    assert_eq!(json["helpdesks"][1]["healthy"], false, "{json:#}");
    let text = stdout(&ws.run(&["status"], &[], None).await);
    assert!(text.contains(&format!("{named}: UNHEALTHY")), "{text}");
    assert!(
        text.contains(&format!(
            "helpdesk {} ({}): OK",
            good.name, good.helpdesk_id
        )),
        "{text}"
    );
    // Each helpdesk's lock is held by the daemon.
    assert_eq!(text.matches("  lock:      held by ").count(), 2, "{text}");

    // /readyz: 503 naming the revoked helpdesk only.
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!(
            "not ready: last_run_failed: {named}: the last run"
        )),
        "{body}"
    );
    assert!(!body.contains(&good.helpdesk_id), "{body}");

    // /metrics: the cause is 1 for the revoked helpdesk, 0 for the other.
    let (_, metrics) = get("/metrics").await;
    for (desk, value) in [(revoked, 1), (good, 0)] {
        let line = format!(
            "helpdesk_sync_health_problems{{helpdesk=\"{}\",cause=\"last_run_failed\"}} {value}",
            desk.helpdesk_id
        );
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    for desk in [good, revoked] {
        let info = format!(
            "helpdesk_sync_helpdesk_info{{helpdesk=\"{}\",name=\"{}\"}} 1",
            desk.helpdesk_id, desk.name
        );
        assert!(metrics.contains(&info), "{info}\n{metrics}");
    }
    assert!(
        metrics.contains(&format!(
            "helpdesk_sync_cycles_total{{helpdesk=\"{}\",outcome=\"fatal\"}}",
            revoked.helpdesk_id
        )),
        "{metrics}"
    );

    // The other helpdesk keeps syncing: a change upstream is stored.
    let id = sim.state.helpdesk_ticket_ids(&good.helpdesk_id)[2].clone();
    sim.state
        .update_ticket(&id, |t| t["status"] = serde_json::json!(51));
    assert!(
        eventually(Duration::from_secs(30), || async {
            db.count(&format!(
                "SELECT count(*) FROM tickets WHERE ticket_id = '{id}' AND status = 51"
            ))
            .await
                == 1
        })
        .await,
        "{:#?}",
        daemon.lines()
    );

    // Restored: its next cycle succeeds and everything is healthy again.
    sim.state.restore_helpdesk_token(&revoked.helpdesk_id);
    assert!(
        eventually(Duration::from_secs(30), || async {
            get("/readyz").await.0 == 200
        })
        .await,
        "{:?}",
        get("/readyz").await
    );
    let (code, json) = status_json(&ws).await;
    assert_eq!(code, Some(0), "{json:#}");
    daemon.terminate(Duration::from_secs(30)).await;
}

/// `check` with two helpdesks: the app's token once, one `list` line per helpdesk; a revoked
/// helpdesk token fails its own line, named, and the other's stays OK (exit 1).
#[tokio::test]
async fn check_lists_every_helpdesk_and_names_the_one_refused() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(2).with_helpdesks(2)).await;
    let desks = sim.state.helpdesks().to_vec();
    let ws = helpdesks_config(&sim, &db).workspace();
    assert_ok(&ws.run(&["check"], &[], None).await);
    sim.state.revoke_helpdesk_token(&desks[1].helpdesk_id);
    let out = ws.run(&["check"], &[], None).await;
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let lists: Vec<&str> = text.lines().filter(|l| l.starts_with("list:")).collect();
    assert_eq!(lists.len(), 2, "{text}");
    let name = |n: usize| format!("helpdesk {} ({})", desks[n].name, desks[n].helpdesk_id);
    assert!(
        lists[0].contains(" OK ") && lists[0].contains(&format!("{} answers", name(0))),
        "{text}"
    );
    assert!(
        lists[1].contains("FAILED") && lists[1].contains(&format!("{}: ", name(1))),
        "{text}"
    );
    let tokens = text.lines().filter(|l| l.starts_with("token:")).count();
    assert_eq!(tokens, 1, "{text}");
}
