//! `run`: the scheduled daemon, its shutdown, its lock, and its stall watch.

use std::time::{Duration, Instant};

use helpdesk_sync::sim::{Fault, SimConfig};

use crate::helpers::*;

const EVERY_SECOND: &str = "schedule = \"* * * * * *\"\n";

async fn wait_exit(child: &mut tokio::process::Child, limit: Duration) -> std::process::ExitStatus {
    tokio::time::timeout(limit, child.wait())
        .await
        .expect("the daemon did not exit in time")
        .expect("wait for the daemon")
}

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
    let ws = Workspace::configured(&sim, &db, "", EVERY_SECOND);
    let mut daemon = ws.spawn_run(&[]);
    let lines = collect_lines(&mut daemon);
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &lines,
            "\"cycle finished\""
        ) >= 2)
        .await,
        "fewer than two cycles: {:?}",
        lines.lock().unwrap()
    );
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 20);
    // The second cycle found nothing to do: each ticket was fetched once.
    assert_eq!(sim.state.detail_requests(None), 20);
    terminate(&daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(10)).await;
    assert!(status.success(), "{status:?}");
    assert!(count(&lines, "daemon stopped") == 1);
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
    let ws = Workspace::configured(
        &sim,
        &db,
        "detail_requests_per_second = 8.0\n",
        &format!("{EVERY_SECOND}shutdown_grace = \"5s\"\n"),
    );
    let mut daemon = ws.spawn_run(&[]);
    let lines = collect_lines(&mut daemon);
    let state = sim.state.clone();
    assert!(
        wait_for(Duration::from_secs(30), || state.detail_requests(None)
            >= 15)
        .await
    );
    let asked = Instant::now();
    terminate(&daemon);
    let status = wait_exit(&mut daemon, Duration::from_secs(15)).await;
    assert!(status.success(), "{status:?}: {:?}", lines.lock().unwrap());
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
        .filter(|r| r.status == 200)
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
    let ws = Workspace::configured(
        &sim,
        &db,
        "detail_requests_per_second = 20.0\n",
        EVERY_SECOND,
    );
    let mut first = ws.spawn_run(&[]);
    let first_lines = collect_lines(&mut first);
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &first_lines,
            "daemon started"
        ) == 1)
        .await
    );
    let mut second = ws.spawn_run(&[]);
    let second_lines = collect_lines(&mut second);
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &second_lines,
            "another helpdesk-sync is syncing"
        ) == 1)
        .await,
        "{:?}",
        second_lines.lock().unwrap()
    );
    assert!(
        wait_for(Duration::from_secs(30), || count(
            &first_lines,
            "\"cycle finished\""
        ) >= 2)
        .await
    );
    assert_eq!(
        count(&second_lines, "\"cycle finished\""),
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
    terminate(&first);
    assert!(
        wait_exit(&mut first, Duration::from_secs(10))
            .await
            .success()
    );
    assert!(
        wait_for(Duration::from_secs(20), || count(
            &second_lines,
            "\"cycle finished\""
        ) >= 1)
        .await,
        "{:?}",
        second_lines.lock().unwrap()
    );
    assert_eq!(count(&second_lines, "obtained the helpdesk lock"), 1);
    terminate(&second);
    assert!(
        wait_exit(&mut second, Duration::from_secs(10))
            .await
            .success()
    );
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
    let ws = Workspace::configured(
        &sim,
        &db,
        "request_timeout = \"60s\"\n",
        &format!("{EVERY_SECOND}stall_timeout = \"2s\"\nshutdown_grace = \"1s\"\n"),
    );
    let mut daemon = ws.spawn_run(&[]);
    let lines = collect_lines(&mut daemon);
    assert!(
        wait_for(Duration::from_secs(30), || count(&lines, "\"stalled\"")
            >= 1)
        .await,
        "{:?}",
        lines.lock().unwrap()
    );
    assert!(count(&lines, "made no progress") >= 1);
    // The faults are used up: the next cycles fetch the tickets.
    assert!(
        wait_for(Duration::from_secs(30), || {
            lines.lock().unwrap().iter().any(|l| {
                l.contains("\"cycle finished\"")
                    && l.contains("\"outcome\":\"ok\"")
                    && l.contains("\"changed\":3")
            })
        })
        .await,
        "{:?}",
        lines.lock().unwrap()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE claimed_by IS NOT NULL")
            .await,
        0
    );
    terminate(&daemon);
    assert!(
        wait_exit(&mut daemon, Duration::from_secs(10))
            .await
            .success()
    );
}
