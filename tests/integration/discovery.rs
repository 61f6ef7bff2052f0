//! Discovery through the list API, freshness and the id sources, through `sync`.

use helpdesk_sync::sim::{Endpoint, Fault};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn discovery_reads_past_the_10000_row_cap() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(12_000)).await;
    // Discover everything, fetch a single ticket: this test is about the list side (ids only;
    // storing list rows is tests/integration/list_first.rs).
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .max_tickets_per_cycle(1)
        .store_list_rows(false)
        .workspace();
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("windows split at the 10,000-row cap"),
        "{text}"
    );
    assert!(text.contains("history backfill complete"), "{text}");
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state").await,
        12_000
    );
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 1);
    // Every id the simulator has, none other.
    let missing = db
        .count(&format!(
            "SELECT count(*) FROM generate_series(0, 11999) i
             WHERE NOT EXISTS (SELECT 1 FROM ticket_sync_state WHERE ticket_id = ({} + i)::text)",
            helpdesk_sync::sim::data::FIRST_TICKET_ID
        ))
        .await;
    assert_eq!(missing, 0);
}

#[tokio::test]
async fn after_a_full_sync_only_changes_cost_detail_calls() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(120)).await;
    let ws = TestConfig::new(&sim, &db).fast_list().workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 120);
    assert_eq!(sim.state.detail_requests(None), 120);

    // Right after: the incremental scan finds nothing new; zero detail calls, one list page
    // per window (tickets created since the watermark, then tickets updated since it).
    let lists_before = list_requests(&sim);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(
        sim.state.detail_requests(None),
        120,
        "unchanged tickets refetched"
    );
    let lists = list_requests(&sim);
    assert_eq!(
        lists - lists_before,
        2,
        "one page each covers the created and the updated window"
    );

    // k changes → exactly k detail calls.
    let ids = sim.state.ticket_ids();
    for id in &ids[10..13] {
        sim.state.update_ticket(id, |t| t["status"] = json!(51));
    }
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert_eq!(sim.state.detail_requests(None), 123, "{}", stdout(&out));
    for id in &ids[10..13] {
        assert_eq!(sim.state.detail_requests(Some(id)), 2, "{id}");
    }
    let status: i16 = sqlx::query_scalar("SELECT status FROM tickets WHERE ticket_id = $1")
        .bind(&ids[11])
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, 51);
}

#[tokio::test]
async fn the_watermark_survives_restarts_and_only_moves_forward() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(30)).await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .discovery_overlap("10m")
        .workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let first = watermark(&db).await;
    // A new process: no second backfill, the window starts at the stored watermark.
    let lists_before = list_requests(&sim);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let second = watermark(&db).await;
    assert!(second > first, "{second} <= {first}");
    let lists = list_requests(&sim);
    assert_eq!(
        lists - lists_before,
        2,
        "one created page, one updated page"
    );

    // A ticket changed inside the overlap is fetched once, stored once.
    let id = sim.state.ticket_ids()[4].clone();
    sim.state.update_ticket(&id, |t| t["score"] = json!(3));
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(sim.state.detail_requests(Some(&id)), 2);
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 30);
    assert_eq!(db.count("SELECT count(*) FROM ticket_sync_state").await, 30);
}

#[tokio::test]
async fn a_failing_list_api_costs_discovery_only() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(10)).await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .max_attempts(2)
        .workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let before = watermark(&db).await;

    // The list API fails past its retries; an explicitly queued ticket is still fetched.
    sim.state
        .inject_list([Fault::InternalError, Fault::NotJson]);
    let id = sim.state.ticket_ids()[3].clone();
    assert_ok(&ws.run(&["enqueue", &id], &[], None).await);
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("discovery incomplete"),
        "{}",
        stdout(&out)
    );
    assert_eq!(sim.state.detail_requests(Some(&id)), 2);
    assert_eq!(
        watermark(&db).await,
        before,
        "the watermark moved past an unread window"
    );

    // Next cycle, the list answers again and the watermark moves on.
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert!(watermark(&db).await > before);
}

#[tokio::test]
async fn known_ids_query_feeds_the_queue_and_a_broken_one_is_contained() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(10)).await;
    let ids = sim.state.ticket_ids();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE crm_escalations (ticket text);
         INSERT INTO crm_escalations VALUES ('{}'), ('{}'), ('not an id'), (NULL);",
        ids[2], ids[5]
    )))
    .execute(&db.pool)
    .await
    .unwrap();
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .discover(false)
        .known_ids_query("SELECT ticket FROM crm_escalations WHERE ticket IS NOT NULL")
        .workspace();
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("known_ids_query: 2 new ids"),
        "{}",
        stdout(&out)
    );
    assert_eq!(db.count("SELECT count(*) FROM tickets").await, 2);
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state WHERE source = 'query'")
            .await,
        2
    );

    let broken = TestConfig::new(&sim, &db)
        .fast_list()
        .discover(false)
        .known_ids_query("SELECT nope FROM nowhere")
        .workspace();
    let file = broken.write_file("ids.txt", &ids_text(&ids[7..8]));
    assert_ok(
        &broken
            .run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    let out = broken.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stderr(&out).contains("known_ids_query failed"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nowhere"),
        "the SQL error is logged: {}",
        stderr(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM tickets").await,
        3,
        "the cycle went on"
    );
}

#[tokio::test]
async fn a_cycle_stops_at_max_tickets_and_the_next_resumes_by_priority() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(10)).await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .discover(false)
        .max_tickets_per_cycle(4)
        .workspace();
    let ids = sim.state.ticket_ids();
    let file = ws.write_file("ids.txt", &ids_text(&ids));
    assert_ok(
        &ws.run(&["enqueue", "--file", file.to_str().unwrap()], &[], None)
            .await,
    );
    for expected in [4, 8, 10, 10] {
        assert_ok(&ws.run(&["sync"], &[], None).await);
        assert_eq!(db.count("SELECT count(*) FROM tickets").await, expected);
    }
    assert!(
        sim.state
            .requests()
            .iter()
            .all(|r| r.endpoint != Endpoint::List),
        "discover = false still listed"
    );
    // Open tickets are due again after open_refresh, closed ones after closed_refresh.
    let wrong_due = db
        .count(
            "SELECT count(*) FROM ticket_sync_state s JOIN tickets t USING (ticket_id)
             WHERE (t.status < 50 AND s.next_due_at - s.last_fetched_at NOT BETWEEN interval '59 minutes' AND interval '61 minutes')
                OR (t.status >= 50 AND s.next_due_at - s.last_fetched_at NOT BETWEEN interval '6 days 23 hours' AND interval '7 days 1 hour')",
        )
        .await;
    assert_eq!(wrong_due, 0);
    // An explicit request jumps the queue: priority over routine refreshes.
    let priority: i16 =
        sqlx::query_scalar("SELECT priority FROM ticket_sync_state WHERE ticket_id = $1")
            .bind(&ids[0])
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(priority, 0, "priority is reset once fetched");
}

/// 1,000 tickets synced, the update-time window starting a second before the last sync.
async fn synced_thousand() -> (TestDb, helpdesk_sync::sim::SimServer, Workspace) {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(1_000)).await;
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .discovery_overlap("1s")
        .workspace();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    (db, sim, ws)
}

/// 600 of 1,000 synced tickets changed (an update-time window of three pages),
/// and the first of them in list order (created first): paging that window, the list drops it
/// off page 1 when it changes again, and the rows behind it move up a place. (Tickets whose
/// generated `updated_at` lies ahead of now are left out: a change now would look older.)
async fn three_changed_pages(sim: &helpdesk_sync::sim::SimServer) -> (Vec<String>, String) {
    let now = chrono::Utc::now().timestamp_millis();
    let changed: Vec<String> = sim
        .state
        .ticket_ids()
        .into_iter()
        .filter(|id| sim.state.ticket(id).expect("a ticket")["updated_at"].as_i64() < Some(now))
        .take(600)
        .collect();
    assert_eq!(changed.len(), 600);
    for id in &changed {
        sim.state.update_ticket(id, |t| t["status"] = json!(51));
    }
    let created = |id: &String| sim.state.ticket(id).expect("a ticket")["created_at"].as_i64();
    let first = changed
        .iter()
        .min_by_key(|id| (created(id), (*id).clone()))
        .expect("changed tickets")
        .clone();
    (changed, first)
}

/// Tickets among `ids` whose stored version is not the simulator's latest (`updated_at`).
async fn not_stored_as_changed(
    db: &TestDb,
    sim: &helpdesk_sync::sim::SimServer,
    ids: &[String],
) -> Vec<String> {
    let latest: Vec<i64> = ids
        .iter()
        .map(|id| {
            sim.state.ticket(id).expect("a ticket")["updated_at"]
                .as_i64()
                .expect("ms")
        })
        .collect();
    sqlx::query_scalar(
        "SELECT i FROM unnest($1::text[], $2::bigint[]) AS latest(i, ms)
         WHERE NOT EXISTS (SELECT 1 FROM tickets
                           WHERE ticket_id = i
                             AND (extract(epoch FROM updated_at) * 1000)::bigint = ms)",
    )
    .bind(ids)
    .bind(&latest)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_ticket_changing_while_its_window_is_paged_costs_no_other_ticket() {
    let (db, sim, ws) = synced_thousand().await;
    let (changed, first) = three_changed_pages(&sim).await;
    // Asking for page 2, the list no longer shows `first` on page 1: the 201st row moved onto
    // page 1, already read, and page 2 starts after it. Only the re-read of page 1 sees it.
    sim.state.update_on_list_page(2, &first);
    let lists_before = list_requests(&sim);
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let others: Vec<String> = changed.into_iter().filter(|id| *id != first).collect();
    assert_eq!(
        not_stored_as_changed(&db, &sim, &others).await,
        Vec::<String>::new(),
        "{}",
        stdout(&out)
    );
    // The created window (1 page), the updated window's 3 pages and re-read, then once more
    // (the re-read is the first page of that pass).
    assert_eq!(list_requests(&sim) - lists_before, 1 + 4 + 3);
}

#[tokio::test]
async fn a_window_that_never_holds_still_is_not_passed_and_is_read_next_cycle() {
    let (db, sim, ws) = synced_thousand().await;
    let before = watermark(&db).await;
    let (changed, first) = three_changed_pages(&sim).await;
    // A ticket of the window changes during every pass (five, the most one cycle makes).
    let movers: Vec<&String> = std::iter::once(&first)
        .chain(changed.iter().filter(|id| **id != first).take(4))
        .collect();
    for id in &movers {
        sim.state.update_on_list_page(2, id);
    }
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("kept changing while it was paged"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        watermark(&db).await,
        before,
        "the watermark moved past a window never read whole"
    );
    // Next cycle the window holds still: every change is stored, the movers' too.
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(watermark(&db).await > before);
    assert_eq!(
        not_stored_as_changed(&db, &sim, &changed).await,
        Vec::<String>::new(),
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn a_part_of_history_that_never_holds_still_keeps_the_resume_point_while_later_parts_are_read()
 {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(12_000)).await;
    // History from 91 days ago (the simulator's tickets are up to 90 days old): 12,000 rows are
    // over the cap, so the range is split in two parts of ~6,000, read oldest first.
    let since = (chrono::Utc::now() - chrono::Duration::days(91)).to_rfc3339();
    let ws = TestConfig::new(&sim, &db)
        .fast_list()
        .backfill_since(&since)
        .max_tickets_per_cycle(1)
        .store_list_rows(false)
        .workspace();
    let mut by_created: Vec<(i64, String)> = sim
        .state
        .ticket_ids()
        .into_iter()
        .map(|id| {
            (
                sim.state.ticket(&id).expect("a ticket")["created_at"]
                    .as_i64()
                    .unwrap_or(0),
                id,
            )
        })
        .collect();
    by_created.sort();
    // The oldest part loses one of its first tickets each time its page 2 is asked for: every
    // pass over it (five, the most one cycle makes) finds its total moved. The newer part is
    // read whole between those passes (each re-read goes with the next pages asked for).
    for (_, id) in &by_created[..5] {
        sim.state.delete_on_list_page(2, id);
    }
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert!(
        stdout(&out).contains("kept changing while it was paged"),
        "{}",
        stdout(&out)
    );
    let backfill = || async {
        sqlx::query_as::<_, (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>, bool)>(
            "SELECT scanned_until, range_start, completed FROM discovery_state WHERE scan = 'backfill'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap()
    };
    let (resume, start, completed) = backfill().await;
    assert_eq!(
        resume, start,
        "the resume point passed a part never read whole"
    );
    assert!(!completed);
    let newest = &by_created.last().expect("tickets").1;
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_sync_state WHERE ticket_id = '{newest}'"
        ))
        .await,
        1,
        "the newer part was read meanwhile"
    );

    // Next cycle the history holds still: read to its end, every ticket known.
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert!(backfill().await.2, "the backfill did not complete");
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sync_state").await,
        12_000
    );
}
