//! `run`: the scheduled daemon, its shutdown, its lock, and its stall watch.

use std::time::{Duration, Instant};

use helpdesk_sync::sim::{Endpoint, Fault, SimConfig};

use crate::helpers::*;

#[tokio::test]
async fn cycles_follow_the_schedule_and_sigterm_exits_cleanly() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 20,
        detail_limit_per_second: 10_000,
        list_limit_per_second: 10_000,
        ..SimConfig::default()
    })
    .await;
    let ws = TestConfig::new(&sim, &db).every_second().workspace();
    let mut daemon = ws.daemon();
    daemon
        .expect_count("\"cycle finished\"", 2, Duration::from_secs(30))
        .await;
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 20);
    // The second cycle found nothing to do: each ticket was fetched once.
    assert_eq!(sim.state.detail_requests(None), 20);
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(daemon.count("daemon stopped") == 1);
}

#[tokio::test]
async fn sigterm_mid_cycle_keeps_everything_fetched_and_leaves_nothing_claimed() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 80,
        latency: Duration::from_millis(400),
        list_limit_per_second: 10_000,
        ..SimConfig::default()
    })
    .await;
    let ws = TestConfig::new(&sim, &db)
        .detail_rate(8.0)
        .every_second()
        .shutdown_grace("5s")
        .workspace();
    let mut daemon = ws.daemon();
    let state = sim.state.clone();
    assert!(
        wait_for(Duration::from_secs(30), || state.detail_requests(None)
            >= 15)
        .await
    );
    let asked = Instant::now();
    daemon.sigterm();
    let status = daemon.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}: {:?}", daemon.lines());
    // In-flight requests finish within the grace period (400 ms each here), not the whole queue.
    assert!(
        asked.elapsed() < Duration::from_secs(7),
        "{:?}",
        asked.elapsed()
    );

    // Nothing fetched is lost, nothing stays claimed, the rest waits for the next run.
    let answered: std::collections::HashSet<String> = sim
        .state
        .requests()
        .into_iter()
        .filter(|r| r.status == 200 && r.endpoint == Endpoint::Detail)
        .filter_map(|r| r.ticket_id)
        .collect();
    let stored = db
        .count("SELECT count(*) FROM tickets WHERE content_source = 'detail'")
        .await;
    assert_eq!(stored as usize, answered.len());
    assert!(stored < 80, "the whole queue was worked before stopping");
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE last_outcome = 'ok'")
            .await,
        stored
    );
    // Conversations are read beside the details: none stays claimed either.
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE messages_claimed_by IS NOT NULL")
            .await,
        0
    );
}

#[tokio::test]
async fn two_daemons_on_one_database_never_both_sync() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 30,
        latency: Duration::from_millis(100),
        list_limit_per_second: 10_000,
        detail_limit_per_second: 10_000,
        ..SimConfig::default()
    })
    .await;
    let ws = TestConfig::new(&sim, &db)
        .detail_rate(20.0)
        .every_second()
        .workspace();
    let mut first = ws.daemon();
    first
        .expect_log("daemon started", Duration::from_secs(30))
        .await;
    let mut second = ws.daemon();
    second
        .expect_log("another helpdesk-sync is syncing", Duration::from_secs(30))
        .await;
    first
        .expect_count("\"cycle finished\"", 2, Duration::from_secs(30))
        .await;
    assert_eq!(
        second.count("\"cycle finished\""),
        0,
        "the second daemon synced too"
    );
    for id in sim.state.ticket_ids() {
        assert_eq!(
            sim.state.detail_requests(Some(&id)),
            1,
            "{id} fetched twice"
        );
    }

    // The first stops; the second takes over.
    first.stop_within(Duration::from_secs(10)).await;
    second
        .expect_log("\"cycle finished\"", Duration::from_secs(20))
        .await;
    assert_eq!(second.count("obtained the helpdesk lock"), 1);
    second.stop_within(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_stalled_cycle_is_ended_and_the_daemon_carries_on() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        tickets: 3,
        detail_limit_per_second: 10_000,
        list_limit_per_second: 10_000,
        ..SimConfig::default()
    })
    .await;
    // Every detail request hangs for 30 s (the request timeout is longer).
    sim.state.inject_any(std::iter::repeat_n(
        Fault::Delay(Duration::from_secs(30)),
        3,
    ));
    let ws = TestConfig::new(&sim, &db)
        .request_timeout("60s")
        .every_second()
        .stall_timeout("2s")
        .shutdown_grace("1s")
        .workspace();
    let mut daemon = ws.daemon();
    daemon
        .expect_log("\"stalled\"", Duration::from_secs(30))
        .await;
    assert!(daemon.count("made no progress") >= 1);
    // The faults are used up: the next cycles fetch the tickets.
    assert!(
        daemon
            .wait_until(Duration::from_secs(30), |lines| {
                lines.iter().any(|l| {
                    l.contains("\"cycle finished\"")
                        && l.contains("\"outcome\":\"ok\"")
                        && l.contains("\"changed\":3")
                })
            })
            .await,
        "{:?}",
        daemon.lines()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")
            .await,
        0
    );
    daemon.stop_within(Duration::from_secs(10)).await;
}

/// A backlog larger than one cycle's claim budget (one schedule interval) runs in cycles back to
/// back: when the budget is spent with work still due, the next cycle starts at once instead of
/// at the tick after the one the cycle outlasted (before: idle for about an interval between
/// every two cycles, half the time during a long conversation backlog).
#[tokio::test]
async fn a_backlog_runs_in_cycles_back_to_back_not_tick_to_tick() {
    let db = TestDb::new().await;
    // 40 conversations at 1 read/s: about 40 s of work, four 10-second claim budgets.
    let sim = start_sim(SimConfig {
        message_limit_per_second: 1,
        ..unlimited_sim(40)
    })
    .await;
    let ws = Workspace::configured(
        &sim,
        &db,
        "message_requests_per_second = 1.0\nmessage_requests_per_second_ceiling = 1.0\n",
        "schedule = \"*/10 * * * * *\"\n",
    );
    let daemon = ws.daemon();
    daemon
        .expect_log(
            "work is left after the cycle's claim budget; the next cycle starts now",
            Duration::from_secs(120),
        )
        .await;
    // The cycle after it has started (its row exists).
    let mut runs = 0;
    for _ in 0..600 {
        runs = db.count("SELECT count(*) FROM sync_runs").await;
        if runs >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(runs >= 2, "no second cycle: {runs} run(s)");
    // Back to back: the second cycle started within moments of the first's end, not at the
    // next 10-second tick after the one skipped (coarse: 3 s on a loaded machine; before, 5–10 s).
    let gap_ms = db
        .count(
            "SELECT (extract(epoch FROM b.started_at - a.finished_at) * 1000)::bigint
               FROM sync_runs a JOIN sync_runs b ON b.run_id = (
                    SELECT min(run_id) FROM sync_runs WHERE run_id > a.run_id)
              WHERE a.run_id = (SELECT min(run_id) FROM sync_runs)",
        )
        .await;
    assert!(
        gap_ms < 3_000,
        "the next cycle began {gap_ms} ms after the first ended"
    );
    daemon.stop().await;
}
