//! Several helpdesks, one daemon, one app budget (issue 26): `[[helpdesks]]` through the
//! binary, one helpdesk failing alone, the upgrade of a single-helpdesk database, and the
//! commands that pick a helpdesk.

use std::time::Duration;

use crate::helpers::*;

/// A helpdesk the simulator does not know (its token is refused, as a revoked one is).
const OTHER_ID: &str = "7000000000000000002";

/// Sync-run outcomes of `helpdesk`, oldest first.
async fn outcomes(db: &TestDb, helpdesk: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT outcome FROM sync_runs WHERE helpdesk_id = $1 ORDER BY run_id")
        .bind(helpdesk)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

/// A helpdesk whose token is refused fails its own cycles; the other helpdesk of the same app
/// syncs everything, in `sync` (exit 1, naming the failed one) and in the daemon (its cycles
/// go on, and a change is stored).
#[tokio::test]
async fn a_refused_helpdesk_fails_alone_and_the_other_keeps_syncing() {
    let sim = start_sim(unlimited_sim(30)).await;
    let db = TestDb::new().await;
    let c = sim.state.config().clone();
    let ws = TestConfig::new(&sim, &db)
        .every_second()
        .helpdesks(&[
            ("Support", c.helpdesk_id.as_str(), c.helpdesk_token.as_str()),
            ("HR", OTHER_ID, "revoked-token"),
        ])
        .workspace();

    let out = ws.run(&["sync"], &[], None).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains(&format!("HR ({OTHER_ID})")), "{text}");
    assert!(text.contains("1 of 2 helpdesks failed"), "{text}");
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 30);
    assert_eq!(outcomes(&db, &c.helpdesk_id).await, ["ok"]);
    assert_eq!(outcomes(&db, OTHER_ID).await, ["fatal"]);
    // Every queue row is the synced helpdesk's.
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_sync_state WHERE helpdesk_id = '{}'",
            c.helpdesk_id
        ))
        .await,
        30
    );

    // The daemon: the refused helpdesk's cycles fail, the other's go on and store a change.
    let daemon = Daemon::spawn(&ws);
    let id = sim.state.ticket_ids()[3].clone();
    sim.state
        .update_ticket(&id, |t| t["status"] = serde_json::json!(51));
    let stored = async {
        for _ in 0..600 {
            let status: i64 = db
                .count(&format!(
                    "SELECT COALESCE(max(status), 0)::bigint FROM tickets WHERE ticket_id = '{id}'"
                ))
                .await;
            if status == 51 && outcomes(&db, OTHER_ID).await.len() >= 3 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(stored.await, "{:#?}", daemon.lines());
    // The last one may still be running.
    let ok = outcomes(&db, &c.helpdesk_id).await;
    assert!(
        ok.len() >= 3 && ok.iter().all(|o| o == "ok" || o == "running"),
        "{ok:?}"
    );
    assert!(
        outcomes(&db, OTHER_ID)
            .await
            .iter()
            .all(|o| o == "fatal" || o == "running"),
        "{:?}",
        outcomes(&db, OTHER_ID).await
    );
    daemon.terminate(Duration::from_secs(30)).await;
}

/// A database synced by the single-helpdesk config goes on under `[[helpdesks]]` (that
/// helpdesk plus another): nothing is fetched again that did not change, the history is
/// kept, and queue rows from before the upgrade (no helpdesk) are adopted.
#[tokio::test]
async fn an_upgraded_single_helpdesk_database_keeps_its_history() {
    let sim = start_sim(unlimited_sim(40)).await;
    let db = TestDb::new().await;
    let c = sim.state.config().clone();
    let single = TestConfig::new(&sim, &db).workspace();
    assert_ok(&single.run(&["sync"], &[], None).await);
    // A change, so there is history to keep.
    let changed = sim.state.ticket_ids()[0].clone();
    sim.state
        .update_ticket(&changed, |t| t["status"] = serde_json::json!(51));
    assert_ok(&single.run(&["sync"], &[], None).await);
    // An id queued but never fetched, as the single-helpdesk daemon may leave one.
    assert_ok(
        &single
            .run(&["enqueue", &sim.state.ticket_ids()[39]], &[], None)
            .await,
    );
    // Rows as the previous release left them: the migration added the column empty.
    sqlx::query("UPDATE ticket_sync_state SET helpdesk_id = NULL")
        .execute(&db.pool)
        .await
        .unwrap();
    let versions = db.count("SELECT count(*) FROM ticket_versions").await;
    let transitions = db.count("SELECT count(*) FROM ticket_status_history").await;
    let runs = db.count("SELECT count(*) FROM sync_runs").await;
    let details = sim.state.detail_requests(None);

    let several = TestConfig::new(&sim, &db)
        .helpdesks(&[
            ("Support", c.helpdesk_id.as_str(), c.helpdesk_token.as_str()),
            ("HR", OTHER_ID, "not-yet-valid"),
        ])
        .workspace();
    let out = several.run(&["sync"], &[], None).await;
    // The second helpdesk's token is refused by this simulator (one helpdesk): exit 1.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // Only the queued id was due: no unchanged ticket was fetched again.
    assert_eq!(
        sim.state.detail_requests(None) - details,
        1,
        "{}",
        stdout(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_versions").await,
        versions
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_status_history").await,
        transitions
    );
    assert_eq!(db.count("SELECT count(*) FROM sync_runs").await, runs + 2);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE helpdesk_id IS NULL")
            .await,
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_sync_state WHERE helpdesk_id = '{}'",
            c.helpdesk_id
        ))
        .await,
        40
    );
    // The changed ticket's versions (before and after its change) are still there.
    assert!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_versions WHERE ticket_id = '{changed}'"
        ))
        .await
            >= 2
    );
}

/// `enqueue` with several helpdesks must be told whose tickets these are; `--helpdesk`
/// (id or name) picks one for `enqueue` and `sync`; a name no helpdesk has is exit 2.
#[tokio::test]
async fn commands_pick_a_helpdesk_by_id_or_name() {
    let sim = start_sim(unlimited_sim(5)).await;
    let db = TestDb::new().await;
    let c = sim.state.config().clone();
    let ws = TestConfig::new(&sim, &db)
        .helpdesks(&[
            ("Support", c.helpdesk_id.as_str(), c.helpdesk_token.as_str()),
            ("HR", OTHER_ID, "revoked-token"),
        ])
        .workspace();
    let id = sim.state.ticket_ids()[0].clone();
    let out = ws.run(&["enqueue", &id], &[], None).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--helpdesk"), "{}", stderr(&out));
    let out = ws
        .run(&["enqueue", "--helpdesk", "Nobody", &id], &[], None)
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_ok(
        &ws.run(&["enqueue", "--helpdesk", "Support", &id], &[], None)
            .await,
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_sync_state WHERE helpdesk_id = '{}'",
            c.helpdesk_id
        ))
        .await,
        1
    );
    // Only the helpdesk picked syncs (the other, refused, is not tried): exit 0.
    let out = ws
        .run(&["sync", "--helpdesk", &c.helpdesk_id], &[], None)
        .await;
    assert_ok(&out);
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 5);
    assert!(outcomes(&db, OTHER_ID).await.is_empty());
}
