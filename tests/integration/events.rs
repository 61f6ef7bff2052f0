//! Webhook events through `run`: the simulator seals events the way Feishu does and posts them
//! to the daemon's event path; the queue, the fetches and the stored rows are checked.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helpdesk_sync::events::{TICKET_CREATED, TICKET_UPDATED, encrypt, signature};
use helpdesk_sync::sim::{Endpoint, Fault, SimConfig, SimServer};
use serde_json::{Value, json};

use crate::helpers::*;

/// A daemon with events on, its log lines, and its event URL.
pub(crate) struct Daemon {
    daemon: crate::harness::Daemon,
    pub(crate) lines: Arc<Mutex<Vec<String>>>,
    pub(crate) url: String,
}

impl Daemon {
    pub(crate) async fn start(ws: &Workspace) -> Self {
        let daemon = ws.daemon();
        daemon
            .expect_log("\"cycle finished\"", Duration::from_secs(30))
            .await;
        let address = daemon
            .address("receiving webhook events")
            .expect("the daemon logs where it receives events");
        Self {
            lines: daemon.log(),
            daemon,
            url: format!("http://{address}/feishu/events"),
        }
    }

    pub(crate) async fn stop(mut self) {
        self.daemon.stop_within(Duration::from_secs(15)).await;
    }
}

fn workspace(sim: &SimServer, db: &TestDb) -> Workspace {
    workspace_with(sim, db, "")
}

/// Events on, a listener on a free port, cycles only at start and for events.
pub(crate) fn workspace_with(sim: &SimServer, db: &TestDb, feishu_extra: &str) -> Workspace {
    TestConfig::new(sim, db)
        .fast_list()
        .feishu_lines(feishu_extra)
        .rarely()
        .http()
        .events(sim)
        .workspace()
}

pub(crate) fn http() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

/// Posts a body with headers; returns the status and the response text.
async fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, String) {
    let mut request = http().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("POST the event");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn stored_status(db: &TestDb, id: &str) -> Option<i16> {
    sqlx::query_scalar("SELECT status FROM tickets WHERE ticket_id = $1")
        .bind(id)
        .fetch_optional(&db.pool)
        .await
        .unwrap()
        .flatten()
}

#[tokio::test]
async fn the_url_challenge_is_answered_and_its_token_checked() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(5)).await;
    let daemon = Daemon::start(&workspace(&sim, &db)).await;
    let c = sim.state.config();
    // Feishu sends the check encrypted when an Encrypt Key is set.
    let challenge = json!({"type": "url_verification", "challenge": "abc-123",
                           "token": c.verification_token});
    let body =
        json!({"encrypt": encrypt(&c.encrypt_key, challenge.to_string().as_bytes(), [3; 16])});
    let asked = Instant::now();
    let (status, text) = post(&daemon.url, &[], body.to_string().into_bytes()).await;
    assert!(asked.elapsed() < Duration::from_secs(1));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"challenge": "abc-123"})
    );

    let wrong = json!({"type": "url_verification", "challenge": "x", "token": "not-it"});
    let body = json!({"encrypt": encrypt(&c.encrypt_key, wrong.to_string().as_bytes(), [3; 16])});
    let (status, _) = post(&daemon.url, &[], body.to_string().into_bytes()).await;
    assert_eq!(status, 401);
    daemon.stop().await;
}

#[tokio::test]
async fn a_signed_event_gets_its_ticket_fetched_within_a_second() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(20)).await;
    let daemon = Daemon::start(&workspace(&sim, &db)).await;
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 20);
    let id = sim.state.ticket_ids()[7].clone();
    let before = sim.state.detail_requests(Some(&id));

    sim.state.update_ticket(&id, |t| t["status"] = json!(3));
    let event = sim.state.ticket_event(TICKET_UPDATED, &id, "ev-prompt-1");
    let sent = Instant::now();
    let status = sim
        .state
        .deliver_event(&http(), &daemon.url, &event)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let acked = sent.elapsed();
    // Durable before the acknowledgement: the receipt and the due ticket are there already.
    assert_eq!(
        db.count("SELECT count(*) FROM event_receipts WHERE outcome = 'queued'")
            .await,
        1
    );
    let state = sim.state.clone();
    assert!(
        wait_for(Duration::from_secs(1), || state.detail_requests(Some(&id))
            > before)
        .await,
        "no fetch within 1 s of the event (acknowledged after {acked:?})"
    );
    let fetched_after = sent.elapsed();
    assert!(
        wait_for(Duration::from_secs(5), || count(
            &daemon.lines,
            "\"trigger\":\"event\""
        ) >= 1)
        .await
    );
    assert_eq!(stored_status(&db, &id).await, Some(3));
    // Only that ticket was fetched, and no list call was made for an event.
    assert_eq!(sim.state.detail_requests(None), 21);
    let runs = db
        .count("SELECT count(*) FROM sync_runs WHERE trigger = 'event'")
        .await;
    assert!(runs >= 1);
    eprintln!("acknowledged in {acked:?}, fetch began within {fetched_after:?}");

    // The same event delivered again (Feishu redelivers): acknowledged, nothing fetched.
    let status = sim
        .state
        .deliver_event(&http(), &daemon.url, &event)
        .await
        .unwrap();
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sim.state.detail_requests(None), 21);
    daemon.stop().await;
}

#[tokio::test]
async fn forged_stale_garbled_and_foreign_events_are_refused_and_enqueue_nothing() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(10)).await;
    let daemon = Daemon::start(&workspace(&sim, &db)).await;
    let details_before = sim.state.detail_requests(None);
    let queue_before = db
        .count("SELECT count(*) FROM ticket_sync_state WHERE next_due_at <= now()")
        .await;
    let id = sim.state.ticket_ids()[2].clone();
    sim.state.update_ticket(&id, |t| t["status"] = json!(4));
    let event = sim.state.ticket_event(TICKET_UPDATED, &id, "ev-bad");
    let now = chrono::Utc::now().timestamp();
    let key = sim.state.config().encrypt_key.clone();

    // A body changed after signing.
    let (headers, mut body) = sim.state.seal_event(&event, now);
    let n = body.len();
    body[n - 5] = if body[n - 5] == b'A' { b'B' } else { b'A' };
    assert_eq!(post(&daemon.url, &headers, body).await.0, 401, "tampered");

    // A replay: signed correctly, six minutes old.
    let (headers, body) = sim.state.seal_event(&event, now - 360);
    let (status, text) = post(&daemon.url, &headers, body).await;
    assert_eq!(status, 401, "stale: {text}");

    // Sealed with another app's key.
    let foreign = {
        let plain = event.to_string();
        let body = json!({"encrypt": encrypt("another-key", plain.as_bytes(), [9; 16])})
            .to_string()
            .into_bytes();
        let ts = now.to_string();
        let sig = signature(&ts, "n1", "another-key", &body);
        (
            vec![
                ("x-lark-request-timestamp", ts),
                ("x-lark-request-nonce", "n1".to_owned()),
                ("x-lark-signature", sig),
            ],
            body,
        )
    };
    assert_eq!(
        post(&daemon.url, &foreign.0, foreign.1).await.0,
        401,
        "wrong key"
    );

    // Garbage base64, correctly signed: 400.
    let body = br#"{"encrypt":"***not base64***"}"#.to_vec();
    let ts = now.to_string();
    let headers = vec![
        ("x-lark-request-timestamp", ts.clone()),
        ("x-lark-request-nonce", "n2".to_owned()),
        ("x-lark-signature", signature(&ts, "n2", &key, &body)),
    ];
    assert_eq!(post(&daemon.url, &headers, body).await.0, 400, "garbage");

    // Not JSON at all, and an unsigned plaintext event: refused.
    assert_eq!(post(&daemon.url, &[], b"hello".to_vec()).await.0, 400);
    assert_eq!(
        post(&daemon.url, &[], event.to_string().into_bytes())
            .await
            .0,
        401
    );

    // An event type we do not use: acknowledged, ignored.
    let other = sim.state.ticket_event(TICKET_UPDATED, &id, "ev-other");
    let mut other = other;
    other["header"]["event_type"] = json!("helpdesk.notification.state_change_v1");
    let (headers, body) = sim.state.seal_event(&other, now);
    assert_eq!(post(&daemon.url, &headers, body).await.0, 200);

    // A ticket of another helpdesk of the same app: acknowledged, ignored.
    let mut foreign_desk = sim.state.ticket_event(TICKET_UPDATED, &id, "ev-other-desk");
    foreign_desk["event"]["object"]["helpdesk_id"] = json!("7000000000000000001");
    let (headers, body) = sim.state.seal_event(&foreign_desk, now);
    assert_eq!(post(&daemon.url, &headers, body).await.0, 200);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sim.state.detail_requests(None), details_before);
    assert_eq!(db.count("SELECT count(*) FROM event_receipts").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE next_due_at <= now()")
            .await,
        queue_before
    );
    assert_eq!(count(&daemon.lines, "event rejected"), 6);
    daemon.stop().await;
}

#[tokio::test]
async fn a_burst_of_1000_events_for_100_tickets_costs_at_most_100_fetches() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(100)).await;
    let daemon = Daemon::start(&workspace(&sim, &db)).await;
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 100);
    let before = sim.state.detail_requests(None);
    let ids = sim.state.ticket_ids();
    for id in &ids {
        sim.state.update_ticket(id, |t| t["status"] = json!(2));
    }
    // 10 events per ticket, interleaved, 16 in flight at a time.
    let client = http();
    let events: Vec<Value> = (0..1000)
        .map(|i| {
            let id = &ids[i % 100];
            let kind = if i < 100 {
                TICKET_CREATED
            } else {
                TICKET_UPDATED
            };
            sim.state.ticket_event(kind, id, &format!("ev-burst-{i}"))
        })
        .collect();
    let started = Instant::now();
    for chunk in events.chunks(16) {
        let sends = chunk
            .iter()
            .map(|e| sim.state.deliver_event(&client, &daemon.url, e));
        for status in futures::future::join_all(sends).await {
            assert_eq!(status.unwrap(), 200);
        }
    }
    let delivered = started.elapsed();
    let updated = || async {
        db.count("SELECT count(*) FROM tickets WHERE status = 2")
            .await
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while updated().await < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(updated().await, 100);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fetches = sim.state.detail_requests(None) - before;
    assert!(
        fetches <= 100,
        "{fetches} detail fetches for 100 changed tickets"
    );
    assert_eq!(db.count("SELECT count(*) FROM event_receipts").await, 1000);
    eprintln!("1000 events delivered in {delivered:?}; {fetches} detail fetches");
    daemon.stop().await;
}

#[tokio::test]
async fn events_arriving_during_a_cycle_are_not_lost() {
    let db = TestDb::new().await;
    // A slow backfill (300 ms per ticket at 10/s) so events land while the cycle runs.
    let sim = start_sim(SimConfig {
        latency: Duration::from_millis(300),
        ..unlimited_sim(60)
    })
    .await;
    let ws = workspace_with(&sim, &db, "detail_requests_per_second = 10.0\n");
    let mut daemon = ws.daemon();
    daemon
        .expect_log("receiving webhook events", Duration::from_secs(30))
        .await;
    let address = daemon.address("receiving webhook events").unwrap();
    let url = format!("http://{address}/feishu/events");
    // Wait until 20 tickets are stored, then change 5 of those and announce it, mid-cycle.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db
        .count("SELECT count(*) FROM tickets WHERE content_source = 'detail'")
        .await
        < 20
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT ticket_id FROM tickets WHERE content_source = 'detail' ORDER BY ticket_id LIMIT 5",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 5);
    assert_eq!(
        daemon.count("\"cycle finished\""),
        0,
        "the first cycle should still run"
    );
    let client = http();
    for (i, id) in stored.iter().enumerate() {
        sim.state.update_ticket(id, |t| t["status"] = json!(5));
        let event = sim
            .state
            .ticket_event(TICKET_UPDATED, id, &format!("ev-mid-{i}"));
        assert_eq!(
            sim.state
                .deliver_event(&client, &url, &event)
                .await
                .unwrap(),
            200
        );
    }
    // The backfill finishes, the events' tickets are fetched again and stored with status 5.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut done = 0;
        for id in &stored {
            if stored_status(&db, id).await == Some(5) {
                done += 1;
            }
        }
        if done == stored.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of 5 changes stored: {:?}",
            daemon.lines()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every detail fetched (list rows put all 60 in `tickets` from the start; a ticket whose
    // status already was 5 passes the loop above before its re-fetch).
    let details = "SELECT count(*) FROM tickets WHERE content_source = 'detail'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count(details).await < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db.count(details).await, 60);
    for id in &stored {
        assert_eq!(sim.state.detail_requests(Some(id)), 2, "{id}");
    }
    // Fetched again by the running backfill (events outrank it in the queue), not by a cycle
    // after it: the first cycle made 60 + 5 detail requests.
    daemon
        .expect_log("\"cycle finished\"", Duration::from_secs(10))
        .await;
    let first_cycle: Value = daemon
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "cycle finished")
        .unwrap();
    assert_eq!(first_cycle["detail_requests"], 65, "{first_cycle}");
    daemon.stop_within(Duration::from_secs(15)).await;
}

#[tokio::test]
async fn subscribe_events_is_idempotent_and_names_a_wrong_credential() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(1)).await;
    let ws = workspace(&sim, &db);
    for _ in 0..2 {
        let out = ws.run(&["subscribe-events"], &[], None).await;
        assert_ok(&out);
        assert!(
            stdout(&out).contains("ticket.created_v1"),
            "{}",
            stdout(&out)
        );
    }
    assert_eq!(
        sim.state.subscriptions(),
        vec![
            ("helpdesk.ticket".to_owned(), "ticket.created_v1".to_owned()),
            ("helpdesk.ticket".to_owned(), "ticket.updated_v1".to_owned()),
            (
                "helpdesk.ticket_message".to_owned(),
                "ticket_message.created_v1".to_owned()
            ),
        ]
    );
    assert_eq!(sim.state.count_status(Endpoint::Subscribe, 200), 2);

    let wrong = TestConfig::new(&sim, &db)
        .feishu("helpdesk_token", "wrong")
        .workspace();
    let out = wrong.run(&["subscribe-events"], &[], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("feishu.helpdesk_token"),
        "{}",
        stderr(&out)
    );
}

/// Issue 22 item 16: a read-after-write re-fetch (the event's first detail answer was the
/// version before the event's) waited for the next scheduled tick: here a yearly schedule, so
/// until the next year. The daemon now wakes for the re-fetch's own due time (5 s after the
/// lagging answer) and fetches just what is due.
#[tokio::test]
async fn a_read_after_write_refetch_comes_at_its_own_time_not_the_next_tick() {
    use helpdesk_sync::sim::Fault;
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(5)).await;
    let daemon = Daemon::start(&workspace(&sim, &db)).await;
    let id = sim.state.ticket_ids()[1].clone();
    let before = sim.state.ticket(&id).unwrap();
    sim.state.update_ticket(&id, |t| t["status"] = json!(3));
    // The API's next answer for it is still the version before the update.
    sim.state
        .inject(&id, [Fault::ticket_body(&before.to_string())]);
    let requests = sim.state.detail_requests(None);
    let event = sim.state.ticket_event(TICKET_UPDATED, &id, "ev-lag-16");
    let sent = Instant::now();
    let status = sim
        .state
        .deliver_event(&http(), &daemon.url, &event)
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mut stored = None;
    while sent.elapsed() < Duration::from_secs(30) {
        stored = stored_status(&db, &id).await;
        if stored == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        stored,
        Some(3),
        "the update was not stored within 30 s: {:?}",
        daemon.lines.lock().unwrap()
    );
    eprintln!("stored {:?} after the event", sent.elapsed());
    // The lagging answer and the one that caught up: nothing else was fetched.
    assert_eq!(sim.state.detail_requests(Some(&id)), 3);
    assert_eq!(sim.state.detail_requests(None), requests + 2);
    daemon.stop().await;
}

/// An event's request outlives a failed fetch: the ticket's first fetch after the event fails
/// (the API erring on every attempt), and the retry answers the version before the event's
/// (read-after-write lag). The failure kept what the event asked for (the version, the
/// priority), so the lagging answer is fetched again until the event's version is stored;
/// before, the failure dropped it and the lagging answer counted as current.
#[tokio::test]
async fn an_events_version_is_still_wanted_after_a_failed_fetch() {
    use helpdesk_sync::sim::Fault;
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(5)).await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .discover(false)
        .rarely()
        .http()
        .events(&sim)
        .max_attempts(2)
        .workspace();
    let id = sim.state.ticket_ids()[2].clone();
    assert_ok(&ws.run(&["enqueue", &id], &[], None).await);
    let daemon = Daemon::start(&ws).await;
    let before = sim.state.ticket(&id).unwrap();
    let changed = if stored_status(&db, &id).await == Some(3) {
        4
    } else {
        3
    };
    sim.state
        .update_ticket(&id, |t| t["status"] = json!(changed));
    sim.state
        .inject(&id, [Fault::InternalError, Fault::InternalError]);
    let event = sim
        .state
        .ticket_event(TICKET_UPDATED, &id, "ev-failed-then-lag");
    let status = sim.state.deliver_event(&http(), &daemon.url, &event).await;
    assert_eq!(status.unwrap(), 200);
    let mut failed = false;
    for _ in 0..100 {
        let outcome: Option<String> =
            sqlx::query_scalar("SELECT last_outcome FROM ticket_sync_state WHERE ticket_id = $1")
                .bind(&id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if outcome.as_deref() == Some("failed") {
            failed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    daemon.stop().await;
    assert!(failed, "the fetch after the event did not fail");
    let (wanted, priority): (bool, i16) = sqlx::query_as(
        "SELECT wanted_updated_at IS NOT NULL, priority FROM ticket_sync_state WHERE ticket_id = $1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        wanted && priority > 0,
        "the event's request was dropped ({priority})"
    );
    // The retry's time (its backoff passed), and its answer lags behind the event.
    sim.state
        .inject(&id, [Fault::ticket_body(&before.to_string())]);
    sqlx::query("UPDATE ticket_sync_state SET next_due_at = now() WHERE ticket_id = $1")
        .bind(&id)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_ne!(
        stored_status(&db, &id).await,
        Some(changed),
        "the lagging answer"
    );
    // The re-fetch for the lag is due 5 s later.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(stored_status(&db, &id).await, Some(changed));
}

/// Issue 26: one event path for every configured helpdesk. An event about a ticket of either
/// helpdesk is queued in that helpdesk's queue (and fetched with its token); one about a
/// helpdesk not configured is acknowledged and ignored, as before.
#[tokio::test]
async fn one_event_path_queues_each_helpdesks_tickets_in_its_own_queue() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(4).with_helpdesks(2)).await;
    let desks = sim.state.helpdesks().to_vec();
    let ws = crate::observability::helpdesks_config(&sim, &db)
        .fast_list()
        .rarely()
        .http()
        .events(&sim)
        .workspace();
    let daemon = Daemon::start(&ws).await;
    let client = http();
    let mut changed = Vec::new();
    for (n, desk) in desks.iter().enumerate() {
        let id = sim.state.helpdesk_ticket_ids(&desk.helpdesk_id)[0].clone();
        sim.state.update_ticket(&id, |t| t["status"] = json!(4));
        let event = sim
            .state
            .ticket_event(TICKET_UPDATED, &id, &format!("ev-desk-{n}"));
        assert_eq!(
            event["event"]["object"]["helpdesk_id"],
            desk.helpdesk_id.as_str()
        );
        let status = sim.state.deliver_event(&client, &daemon.url, &event).await;
        assert_eq!(status.unwrap(), 200);
        changed.push((id, desk.helpdesk_id.clone()));
    }
    // Each in its own helpdesk's queue, both receipts recorded.
    for (id, desk) in &changed {
        let queued: Option<String> =
            sqlx::query_scalar("SELECT helpdesk_id FROM ticket_sync_state WHERE ticket_id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(queued.as_deref(), Some(desk.as_str()), "{id}");
    }
    assert_eq!(db.count("SELECT count(*) FROM event_receipts").await, 2);

    // A helpdesk of the same app that is not configured: acknowledged, not recorded.
    let id = &changed[0].0;
    let mut foreign = sim
        .state
        .ticket_event(TICKET_UPDATED, id, "ev-unknown-desk");
    foreign["event"]["object"]["helpdesk_id"] = json!("7000000000000000099");
    let status = sim
        .state
        .deliver_event(&client, &daemon.url, &foreign)
        .await;
    assert_eq!(status.unwrap(), 200);
    assert_eq!(db.count("SELECT count(*) FROM event_receipts").await, 2);
    let metrics = client
        .get(daemon.url.replace("/feishu/events", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "helpdesk_sync_events_total{outcome=\"queued\"} 2",
        "helpdesk_sync_events_total{outcome=\"ignored\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // Both fetched, each with its own helpdesk's token, within the event's cycle.
    let stored = |id: String| {
        let db = &db;
        async move { stored_status(db, &id).await }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    for (id, _) in &changed {
        while stored(id.clone()).await != Some(4) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            stored(id.clone()).await,
            Some(4),
            "{id} fetched after its event"
        );
    }
    daemon.stop().await;
}

/// A new ticket (created now, never updated since) of helpdesk `helpdesk_id`: `n` picks its id
/// among the helpdesk's unused ones.
fn new_ticket_of(sim: &SimServer, helpdesk_id: &str, n: usize) -> String {
    let template = sim.state.helpdesk_ticket_ids(helpdesk_id)[0].clone();
    let number = sim
        .state
        .helpdesks()
        .iter()
        .position(|h| h.helpdesk_id == helpdesk_id)
        .expect("a helpdesk of the simulator");
    let id = helpdesk_sync::sim::helpdesk_ticket_id(number, 100 + n);
    let mut ticket = sim.state.ticket(&template).expect("a ticket");
    let now = chrono::Utc::now().timestamp_millis();
    ticket["ticket_id"] = json!(id);
    ticket["created_at"] = json!(now);
    ticket["updated_at"] = json!(now);
    sim.state.put_ticket(&id, ticket);
    id
}

/// Queues ticket `id` under helpdesk `helpdesk_id`, due now (as an unscoped event or query
/// could queue another helpdesk's ticket before).
async fn queue_under(db: &TestDb, id: &str, helpdesk_id: &str) {
    sqlx::query(
        "INSERT INTO ticket_sync_state (ticket_id, source, priority, helpdesk_id)
         VALUES ($1, 'event', 20, $2)",
    )
    .bind(id)
    .bind(helpdesk_id)
    .execute(&db.pool)
    .await
    .unwrap();
}

/// With several helpdesks, a message event that names no helpdesk, about a ticket not queued
/// yet, is acknowledged and not recorded: queued without its helpdesk, the first helpdesk would
/// adopt it and fetch it with its own token, and another helpdesk's ticket answers "not found"
/// there (it was marked deleted). Discovery finds the ticket in its own helpdesk and reads its
/// conversation. A row queued under the wrong helpdesk before (as this path did) is mended by
/// the listing: the lister owns it.
#[tokio::test]
async fn a_message_event_naming_no_helpdesk_never_marks_another_helpdesks_ticket_deleted() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(4).with_helpdesks(2)).await;
    let (first, second) = crate::helpdesks::first_two(&sim);
    let ws = crate::observability::helpdesks_config(&sim, &db)
        .fast_list()
        .rarely()
        .messages(true)
        .http()
        .events(&sim)
        .workspace();
    // Two new tickets of the second helpdesk, each with a guest message.
    let new_ticket = |n: usize| {
        let id = new_ticket_of(&sim, &second, n);
        let message =
            sim.state
                .add_message(&id, helpdesk_sync::sim::messages::Sender::Guest, "hello?");
        (id, message)
    };
    let daemon = Daemon::start(&ws).await;
    // Its first cycle over (both helpdesks' tickets stored), the new tickets come.
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.count("SELECT count(*) FROM tickets").await < 8 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 8);
    let (unseen, message) = new_ticket(0);
    let (misqueued, _) = new_ticket(1);
    let client = http();
    let mut event = sim.state.message_event(&unseen, &message, "ev-msg-no-desk");
    event["event"]["ticket"]
        .as_object_mut()
        .expect("the event's ticket")
        .remove("helpdesk_id");
    let status = sim.state.deliver_event(&client, &daemon.url, &event).await;
    assert_eq!(status.unwrap(), 200);
    // Acknowledged, not recorded, nothing fetched for it (a wrong fetch would come within the
    // event's cycle, at once).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(db.count("SELECT count(*) FROM event_receipts").await, 0);
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_sync_state WHERE ticket_id = '{unseen}'"
        ))
        .await,
        0
    );
    assert_eq!(sim.state.detail_requests(Some(&unseen)), 0);
    daemon.stop().await;

    // The row this path used to leave: queued under the first helpdesk.
    queue_under(&db, &misqueued, &first).await;

    assert_ok(&ws.run(&["sync"], &[], None).await);
    for id in [&unseen, &misqueued] {
        let (owner, deleted): (Option<String>, bool) = sqlx::query_as(
            "SELECT t.helpdesk_id, t.deleted_at IS NOT NULL FROM tickets t WHERE t.ticket_id = $1",
        )
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            (owner.as_deref(), deleted),
            (Some(second.as_str()), false),
            "{id}"
        );
        let queued_under: Option<String> =
            sqlx::query_scalar("SELECT helpdesk_id FROM ticket_sync_state WHERE ticket_id = $1")
                .bind(id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(queued_under.as_deref(), Some(second.as_str()), "{id}");
    }
    assert!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_messages WHERE ticket_id = '{unseen}'"
        ))
        .await
            >= 1,
        "the conversation was read"
    );
}

/// A listing moves a queue row to the helpdesk that lists the ticket while another helpdesk's
/// worker is fetching it with its own token: that fetch's "not found" marks nothing deleted and
/// parks nothing; the row is given back, due, to its owner.
#[tokio::test]
async fn a_not_found_from_the_wrong_helpdesk_while_its_row_moves_marks_nothing_deleted() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(4).with_helpdesks(2)).await;
    let (first, second) = crate::helpdesks::first_two(&sim);
    let ws = crate::observability::helpdesks_config(&sim, &db)
        .fast_list()
        .messages(false)
        .request_timeout("30s")
        .workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    // A new ticket of the second helpdesk, queued under the first, its detail answering slowly.
    let id = new_ticket_of(&sim, &second, 0);
    queue_under(&db, &id, &first).await;
    sim.state
        .inject(&id, [Fault::Delay(Duration::from_secs(8))]);

    // The first helpdesk claims it and asks (8 s); meanwhile the second lists it.
    let first_args = ["sync", "--helpdesk", first.as_str()];
    let first_run = ws.run(&first_args, &[], None);
    let second_run = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        while db
            .count(&format!(
                "SELECT count(*) FROM ticket_sync_state WHERE ticket_id = '{id}' AND claimed_by IS NOT NULL"
            ))
            .await
            == 0
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ws.run(&["sync", "--helpdesk", &second], &[], None).await
    };
    let (first_out, second_out) = tokio::join!(first_run, second_run);
    assert_ok(&first_out);
    assert_ok(&second_out);
    // The first helpdesk's "not found" came after the move (its one request, 8 s late).
    assert_eq!(sim.state.detail_requests(Some(&id)), 1);
    let (owner, deleted): (Option<String>, bool) = sqlx::query_as(
        "SELECT helpdesk_id, deleted_at IS NOT NULL FROM tickets WHERE ticket_id = $1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((owner.as_deref(), deleted), (Some(second.as_str()), false));
    let (queued_under, parked): (Option<String>, bool) = sqlx::query_as(
        "SELECT helpdesk_id, next_due_at = 'infinity' FROM ticket_sync_state WHERE ticket_id = $1",
    )
    .bind(&id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        (queued_under.as_deref(), parked),
        (Some(second.as_str()), false)
    );

    // Its owner fetches it next.
    assert_ok(&ws.run(&["sync", "--helpdesk", &second], &[], None).await);
    let source: String =
        sqlx::query_scalar("SELECT content_source FROM tickets WHERE ticket_id = $1")
            .bind(&id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(source, "detail");
}
