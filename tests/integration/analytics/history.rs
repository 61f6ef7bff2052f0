//! Status history on hand-made tickets, changed between syncs: closes timed by `closed_at`,
//! reopens, what happened before the first observation, deletion stopping the clock, and the
//! invariants (spans tile the ticket's life; time in status adds up to the resolution).

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use super::{id, ms, setup, sync_ids};
use crate::helpers::*;

/// A span as the tests compare it: (stay_no, status, entered_at, left_at, entered_via).
type Span = (
    i32,
    Option<i16>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    String,
);

async fn spans(db: &TestDb, ticket: &str) -> Vec<Span> {
    sqlx::query_as(
        "SELECT stay_no, status, entered_at, left_at, entered_via FROM ticket_status_spans_all
         WHERE ticket_id = $1 ORDER BY stay_no",
    )
    .bind(ticket)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

async fn put_and_sync(sim: &helpdesk_sync::sim::SimServer, ws: &Workspace, ticket: Value) {
    let ticket_id = ticket["ticket_id"].as_str().unwrap().to_owned();
    sim.state.put_ticket(&ticket_id, ticket);
    sync_ids(ws, &[ticket_id]).await;
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

/// Time in status of a ticket: (status, seconds, times_entered, is_current), by sort order.
async fn time_in_status(db: &TestDb, ticket: &str) -> Vec<(Option<i16>, i64, i64, bool)> {
    sqlx::query_as(
        "SELECT status, seconds, times_entered, is_current FROM ticket_time_in_status
         WHERE ticket_id = $1 ORDER BY status_sort_order",
    )
    .bind(ticket)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// Reopened, then closed again; closed at 10:00 and rated at 12:00 (updated_at moves, the
/// close does not). Every value computed by hand from the times below.
#[tokio::test]
async fn a_reopened_ticket_has_first_and_full_resolution_and_closes_are_timed_by_closed_at() {
    let (db, sim, ws) = setup().await;
    let c = Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap();
    let r = id(20);
    let ticket = |status: i64, updated: i64, closed: Option<i64>| {
        let mut t = json!({"ticket_id": r, "status": status, "created_at": ms(c),
                           "updated_at": ms(c + secs(updated)), "agents": [{"id": "ou_bob"}],
                           "agent_entry_time": ms(c + secs(60)),
                           "agent_first_response_time": ms(c + secs(90))});
        if let Some(at) = closed {
            t["closed_at"] = json!(ms(c + secs(at)));
        }
        t
    };
    put_and_sync(&sim, &ws, ticket(1, 0, None)).await;
    put_and_sync(&sim, &ws, ticket(2, 600, None)).await;
    // Closed at +3600, rated at +7200: the API's updated_at is the rating.
    put_and_sync(&sim, &ws, ticket(51, 7200, Some(3600))).await;
    // Reopened at +10000; the API keeps the stale closed_at.
    put_and_sync(&sim, &ws, ticket(2, 10_000, Some(3600))).await;

    type Open = (
        bool,
        Option<DateTime<Utc>>,
        Option<chrono::NaiveDate>,
        Option<i64>,
        Option<i64>,
        Option<DateTime<Utc>>,
        Option<i64>,
        i64,
        Option<i64>,
    );
    let open: Open = sqlx::query_as(
        "SELECT is_closed, closed_at, closed_date, resolution_seconds,
                agent_resolution_seconds_from_timestamps, first_closed_at,
                first_resolution_seconds, reopen_count, unsolved_age_seconds
         FROM ticket_facts WHERE ticket_id = $1",
    )
    .bind(&r)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let age = (Utc::now() - c).num_seconds();
    assert_eq!(
        (
            open.0, open.1, open.2, open.3, open.4, open.5, open.6, open.7
        ),
        (
            false,
            None,
            None,
            None,
            None,
            Some(c + secs(3600)),
            Some(3600),
            1
        ),
        "closed-only columns must be NULL while reopened"
    );
    let unsolved = open.8.expect("an open ticket has an unsolved age");
    assert!((unsolved - age).abs() <= 5, "{unsolved} vs {age}");

    // Closed again at +20000.
    put_and_sync(&sim, &ws, ticket(51, 20_000, Some(20_000))).await;
    type Closed = (
        Option<i64>,
        Option<i64>,
        i64,
        Option<i64>,
        Option<DateTime<Utc>>,
    );
    let closed: Closed = sqlx::query_as(
        "SELECT resolution_seconds, first_resolution_seconds, reopen_count,
                    unsolved_age_seconds, closed_at FROM ticket_facts WHERE ticket_id = $1",
    )
    .bind(&r)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        closed,
        (Some(20_000), Some(3600), 1, None, Some(c + secs(20_000)))
    );

    // Stays: 1 [0, 600), 2 [600, 3600) (not 7200: the close is timed by closed_at),
    // 51 [3600, 10000), 2 [10000, 20000), 51 [20000, now).
    let got = spans(&db, &r).await;
    let want: Vec<Span> = vec![
        (1, Some(1), c, Some(c + secs(600)), "updated_at".into()),
        (
            2,
            Some(2),
            c + secs(600),
            Some(c + secs(3600)),
            "updated_at".into(),
        ),
        (
            3,
            Some(51),
            c + secs(3600),
            Some(c + secs(10_000)),
            "closed_at".into(),
        ),
        (
            4,
            Some(2),
            c + secs(10_000),
            Some(c + secs(20_000)),
            "updated_at".into(),
        ),
        (5, Some(51), c + secs(20_000), None, "closed_at".into()),
    ];
    assert_eq!(got, want);
    // Time in status: 1 → 600; 2 → 3000 + 10000; 51 → 6400 while reopened, the final close 0.
    assert_eq!(
        time_in_status(&db, &r).await,
        vec![
            (Some(1), 600, 1, false),
            (Some(2), 13_000, 2, false),
            (Some(51), 6400, 2, false),
        ]
    );
    // Every stay adds up to the full resolution, reopens included.
    assert_eq!(600 + 13_000 + 6400, 20_000);
}

/// Before the first observation: a never-updated ticket has been in its status since
/// creation; a ticket first seen closed entered that status at closed_at; any other stretch
/// is unobserved (status NULL), never credited to the first observed status.
#[tokio::test]
async fn time_before_the_first_observation_is_modelled_honestly() {
    let (db, sim, ws) = setup().await;
    let c = Utc.with_ymd_and_hms(2026, 4, 1, 6, 0, 0).unwrap();
    let never_updated = id(30);
    let first_seen_closed = id(31);
    let first_seen_open = id(32);
    let watched = id(33);
    for t in [
        json!({"ticket_id": never_updated, "status": 1, "created_at": ms(c), "updated_at": -1}),
        json!({"ticket_id": first_seen_closed, "status": 52, "created_at": ms(c),
               "updated_at": ms(c + secs(6000)), "closed_at": ms(c + secs(5000))}),
        json!({"ticket_id": first_seen_open, "status": 2, "created_at": ms(c),
               "updated_at": ms(c + secs(300))}),
        json!({"ticket_id": watched, "status": 1, "created_at": ms(c), "updated_at": ms(c)}),
    ] {
        sim.state
            .put_ticket(t["ticket_id"].as_str().unwrap(), t.clone());
    }
    sync_ids(
        &ws,
        &[
            never_updated.clone(),
            first_seen_closed.clone(),
            first_seen_open.clone(),
            watched.clone(),
        ],
    )
    .await;

    assert_eq!(
        spans(&db, &never_updated).await,
        vec![(1, Some(1), c, None, "created_at".into())]
    );
    assert_eq!(
        spans(&db, &first_seen_closed).await,
        vec![
            (0, None, c, Some(c + secs(5000)), "unobserved".into()),
            (1, Some(52), c + secs(5000), None, "closed_at".into()),
        ]
    );
    assert_eq!(
        spans(&db, &first_seen_open).await,
        vec![
            (0, None, c, Some(c + secs(300)), "unobserved".into()),
            (1, Some(2), c + secs(300), None, "updated_at".into()),
        ]
    );
    assert_eq!(
        spans(&db, &watched).await,
        vec![(1, Some(1), c, None, "updated_at".into())]
    );
    let complete: Vec<(String, bool, Option<i64>)> = sqlx::query_as(
        "SELECT ticket_id, history_complete, queue_wait_seconds FROM ticket_facts
         WHERE ticket_id = ANY($1) ORDER BY ticket_id",
    )
    .bind([
        &never_updated,
        &first_seen_closed,
        &first_seen_open,
        &watched,
    ])
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        complete,
        vec![
            (never_updated.clone(), true, Some(0)),
            (first_seen_closed.clone(), false, None),
            (first_seen_open.clone(), false, None),
            (watched.clone(), true, Some(0)),
        ]
    );
    // The closed ticket: 5000 s unobserved, 0 in its final status; sum = resolution_seconds.
    assert_eq!(
        time_in_status(&db, &first_seen_closed).await,
        vec![(None, 5000, 1, false), (Some(52), 0, 1, false)]
    );
    let resolution: Option<i64> =
        sqlx::query_scalar("SELECT resolution_seconds FROM ticket_facts WHERE ticket_id = $1")
            .bind(&first_seen_closed)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(resolution, Some(5000));

    // Synced today, created in April: no entry into any status is dated today.
    let today: i64 = db
        .count(
            "SELECT count(*) FROM ticket_status_spans
             WHERE entered_at >= date_trunc('day', now())",
        )
        .await;
    assert_eq!(today, 0, "first observations dated at our fetch");
}

/// A deleted ticket's clock stops at its deletion, and the views leave it out.
#[tokio::test]
async fn time_stops_at_deletion() {
    let (db, sim, ws) = setup().await;
    let c = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap();
    let d = id(40);
    put_and_sync(
        &sim,
        &ws,
        json!({"ticket_id": d, "status": 2, "created_at": ms(c), "updated_at": ms(c + secs(100))}),
    )
    .await;
    sim.state.delete_ticket(&d);
    sync_ids(&ws, std::slice::from_ref(&d)).await;
    let deleted_at: DateTime<Utc> =
        sqlx::query_scalar("SELECT deleted_at FROM tickets WHERE ticket_id = $1")
            .bind(&d)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let last: (Option<DateTime<Utc>>, i64, bool) = sqlx::query_as(
        "SELECT left_at, seconds, is_current FROM ticket_status_spans_all
         WHERE ticket_id = $1 AND stay_no = 1",
    )
    .bind(&d)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let expected = (deleted_at - (c + secs(100))).num_seconds();
    assert_eq!(last, (Some(deleted_at), expected, false));
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let later: i64 = sqlx::query_scalar(
        "SELECT seconds FROM ticket_status_spans_all WHERE ticket_id = $1 AND stay_no = 1",
    )
    .bind(&d)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(later, expected, "a deleted ticket's time kept running");
    for view in [
        "ticket_status_spans",
        "ticket_time_in_status",
        "ticket_facts",
    ] {
        let n = db
            .count(&format!(
                "SELECT count(*) FROM {view} WHERE ticket_id = '{d}'"
            ))
            .await;
        assert_eq!(n, 0, "{view} shows a deleted ticket");
    }
}

/// On every ticket of a realistic set, changed between syncs: spans tile [created_at, now)
/// (a deleted ticket: up to its deletion) without gaps or overlaps, and a closed ticket's time
/// in status adds up to its resolution time.
#[tokio::test]
async fn spans_tile_every_tickets_life_and_add_up_to_the_resolution() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(80)).await;
    let ws = TestConfig::new(&sim, &db).fast_list().workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let ids = sim.state.ticket_ids();
    for (i, t) in ids.iter().enumerate().take(30) {
        // Close some, reopen others (closed_at stays as it was), delete a few.
        match i % 3 {
            0 => sim.state.update_ticket(t, |t| {
                t["status"] = json!(51);
                t["closed_at"] = json!(Utc::now().timestamp_millis() - 1000);
            }),
            1 => sim.state.update_ticket(t, |t| t["status"] = json!(2)),
            _ => sim.state.delete_ticket(t),
        }
    }
    let mut args = vec!["enqueue"];
    args.extend(ids.iter().take(30).map(String::as_str));
    assert_ok(&ws.run(&args, &[], None).await);
    assert_ok(&ws.run(&["sync"], &[], None).await);

    type Row = (
        String,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT s.ticket_id, t.created_at, t.deleted_at, s.entered_at, s.left_at
         FROM ticket_status_spans_all s JOIN tickets t USING (ticket_id)
         ORDER BY s.ticket_id, s.stay_no",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut by_ticket: std::collections::BTreeMap<String, Vec<Row>> = Default::default();
    for row in rows {
        by_ticket.entry(row.0.clone()).or_default().push(row);
    }
    assert_eq!(
        by_ticket.len(),
        db.count("SELECT count(*) FROM tickets").await as usize
    );
    for (ticket, spans) in &by_ticket {
        let created = spans[0].1.expect("generated tickets have created_at");
        assert_eq!(
            spans[0].3, created,
            "{ticket}: the first span starts at creation"
        );
        for pair in spans.windows(2) {
            assert_eq!(pair[0].4, Some(pair[1].3), "{ticket}: gap or overlap");
        }
        let last = spans.last().unwrap();
        assert_eq!(
            last.4, last.2,
            "{ticket}: the last span ends at the deletion, or runs"
        );
    }

    let mismatched: Vec<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT f.ticket_id, f.resolution_seconds, sum(s.seconds)::bigint
         FROM ticket_facts f JOIN ticket_time_in_status s USING (ticket_id)
         WHERE f.is_closed
         GROUP BY f.ticket_id, f.resolution_seconds
         HAVING abs(f.resolution_seconds - sum(s.seconds)) > 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(mismatched.is_empty(), "{mismatched:?}");
    assert!(
        db.count("SELECT count(*) FROM ticket_facts WHERE is_closed")
            .await
            > 10
    );
}
