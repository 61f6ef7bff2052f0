//! List-first ingestion through `sync`: listed rows stored before any detail, the detail
//! winning and verifying them field by field, no false history, and a list that lies or is
//! hostile (wrong totals, half an emoji).

use helpdesk_sync::sim::{ListTotal, SimConfig};
use serde_json::{Value, json};

use crate::helpers::*;

const FAST: &str = "list_requests_per_second = 500.0\n";

/// `(content_source, tags_known, status, agents as stored)` of one ticket.
async fn stored(db: &TestDb, id: &str) -> (String, bool, Option<i16>, Vec<String>) {
    let (source, tags_known, status): (String, bool, Option<i16>) = sqlx::query_as(
        "SELECT content_source, tags_known, status FROM tickets WHERE ticket_id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let agents: Vec<String> = sqlx::query_scalar(
        "SELECT user_id FROM ticket_agents WHERE ticket_id = $1 ORDER BY position",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    (source, tags_known, status, agents)
}

/// A ticket's agent ids in API order, each once (a repeated agent is stored once).
fn agent_ids(ticket: &Value) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for agent in ticket["agents"].as_array().into_iter().flatten() {
        let id = agent["id"].as_str().unwrap().to_owned();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

async fn tag_count(db: &TestDb, id: &str) -> i64 {
    db.count(&format!(
        "SELECT count(*) FROM ticket_tags WHERE ticket_id = '{id}'"
    ))
    .await
}

#[tokio::test]
async fn listed_rows_make_the_copy_whole_before_the_details_which_then_verify_them() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(30)).await;
    let ids = sim.state.ticket_ids();
    // One detail this cycle: everything else is known from the list only.
    let ws = Workspace::configured(&sim, &db, FAST, "max_tickets_per_cycle = 1\n");
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(sim.state.detail_requests(None), 1);
    assert_eq!(db.count("SELECT count(*) FROM ticket_facts").await, 30);
    assert_eq!(
        db.count("SELECT count(*) FROM tickets WHERE content_source = 'list' AND NOT tags_known")
            .await,
        29
    );
    // Every list-stored ticket has its status, people, durations and custom fields now.
    for id in &ids {
        let truth = sim.state.ticket(id).unwrap();
        let (source, tags_known, status, agents) = stored(&db, id).await;
        assert_eq!(status, truth["status"].as_i64().map(|s| s as i16), "{id}");
        assert_eq!(agents, agent_ids(&truth), "{id}");
        let fields = db
            .count(&format!(
                "SELECT count(*) FROM ticket_custom_fields WHERE ticket_id = '{id}'"
            ))
            .await;
        let truth_fields = truth["customized_fields"].as_array().map_or(0, Vec::len);
        assert_eq!(fields as usize, truth_fields, "{id}");
        if source == "list" {
            assert!(!tags_known);
            assert_eq!(
                tag_count(&db, id).await,
                0,
                "tags are unknown, not invented"
            );
        }
    }
    let provenance = db
        .count("SELECT count(*) FROM ticket_provenance WHERE NOT is_verified AND NOT tags_known")
        .await;
    assert_eq!(provenance, 29);

    // The details follow: every ticket verified, tags known, no second version or transition.
    let ws = Workspace::configured(&sim, &db, FAST, "");
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    assert_eq!(sim.state.detail_requests(None), 30);
    assert_eq!(
        db.count("SELECT count(*) FROM tickets WHERE content_source = 'detail' AND tags_known AND list_raw IS NULL")
            .await,
        30
    );
    for id in &ids {
        let truth = sim.state.ticket(id).unwrap();
        let tags = truth["tags"].as_array().map_or(0, Vec::len);
        assert_eq!(tag_count(&db, id).await as usize, tags, "{id}");
    }
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_versions").await,
        30,
        "one version per ticket"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_status_history").await,
        30,
        "one transition per ticket"
    );
    // Every compared field agreed; the verification counted each list-stored ticket once.
    assert_eq!(
        db.count("SELECT count(*) FROM list_field_agreement WHERE NOT trusted OR differed > 0")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT agreed FROM list_field_agreement WHERE field = 'status'")
            .await,
        30
    );
    assert_eq!(
        db.count("SELECT count(*) FROM list_field_agreement WHERE field = 'tags'")
            .await,
        0
    );
}

#[tokio::test]
async fn a_new_ticket_from_the_list_gets_its_detail_before_changed_ones() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(10)).await;
    let ws = Workspace::configured(&sim, &db, FAST, "max_tickets_per_cycle = 1\n");
    let full = Workspace::configured(&sim, &db, FAST, "");
    assert_ok(&full.run(&["sync"], &[], None).await);
    let ids = sim.state.ticket_ids();
    // An old ticket changes, then a new one appears: the new one's detail comes first.
    sim.state.update_ticket(&ids[0], |t| t["status"] = json!(3));
    let new_id = (ids.last().unwrap().parse::<u64>().unwrap() + 1).to_string();
    let mut ticket = sim.state.ticket(&ids[1]).unwrap();
    ticket["ticket_id"] = json!(new_id);
    ticket["created_at"] = json!(chrono::Utc::now().timestamp_millis());
    ticket["updated_at"] = json!(chrono::Utc::now().timestamp_millis());
    sim.state.put_ticket(&new_id, ticket);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(sim.state.detail_requests(Some(&new_id)), 1);
    assert_eq!(sim.state.detail_requests(Some(&ids[0])), 1);
    // The changed ticket's new status is stored already, from its list row.
    let (source, tags_known, status, _) = stored(&db, &ids[0]).await;
    assert_eq!(
        (source.as_str(), tags_known, status),
        ("list", true, Some(3))
    );
}

#[tokio::test]
async fn a_field_the_list_gets_wrong_or_lacks_is_not_taken_from_it() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        list_rows_alter: vec!["score".into()],
        list_rows_drop: vec!["agents".into()],
        ..unlimited_sim(12)
    })
    .await;
    let ids = sim.state.ticket_ids();
    let ws = Workspace::configured(&sim, &db, FAST, "");
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        log.matches("no longer taken from list rows").count(),
        1,
        "logged once, naming the field: {log}"
    );
    assert!(log.contains("score"), "{log}");
    let (trusted, differed, agreed): (bool, i64, i64) = sqlx::query_as(
        "SELECT trusted, differed, agreed FROM list_field_agreement WHERE field = 'score'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let scored = ids
        .iter()
        .filter(|id| sim.state.ticket(id).unwrap().get("score").is_some())
        .count() as i64;
    assert!(!trusted);
    assert_eq!((differed, agreed), (scored, 0));
    // status and check say it.
    let status = stdout(&ws.run(&["status"], &[], None).await);
    assert!(
        status.contains(&format!(
            "not taken from list rows: score ({scored} of {scored})"
        )),
        "{status}"
    );
    assert!(status.contains("lists lack: agents"), "{status}");
    let check = ws.run(&["check"], &[], None).await;
    let check = format!(
        "{}{}",
        stdout(&check),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(check.contains("not taken from list rows: score"), "{check}");
    let (agents_trusted, missing): (bool, i64) =
        sqlx::query_as("SELECT trusted, missing FROM list_field_agreement WHERE field = 'agents'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(
        agents_trusted,
        "a field the list lacks is not one it gets wrong"
    );
    assert_eq!(missing, 12);
    // The wrong list values never made history: one version per ticket, the detail's score.
    assert_eq!(db.count("SELECT count(*) FROM ticket_versions").await, 12);
    assert_eq!(
        db.count(
            "SELECT count(*) FROM ticket_versions v JOIN tickets t USING (ticket_id)
                  WHERE v.raw->'score' IS DISTINCT FROM t.raw->'score'"
        )
        .await,
        0
    );

    // A later change, seen in the list only (no detail this cycle): status from the row;
    // score, agents and tags as the detail last gave them.
    let id = &ids[4];
    let before = sim.state.ticket(id).unwrap();
    sim.state.update_ticket(id, |t| {
        t["status"] = json!(3);
        t["score"] = json!(1);
        t["agents"] = json!([]);
    });
    let tags_before = tag_count(&db, id).await;
    // Its detail fails this cycle: what is stored of the change came from the list.
    sim.state.inject(
        id,
        std::iter::repeat_n(helpdesk_sync::sim::Fault::InternalError, 8),
    );
    let out = ws.run(&["sync"], &[], None).await;
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(
        log.matches("no longer taken from list rows").count(),
        0,
        "the distrust persisted; not logged again: {log}"
    );
    let (source, tags_known, status, agents) = stored(&db, id).await;
    assert_eq!(
        (source.as_str(), tags_known, status),
        ("list", true, Some(3))
    );
    assert_eq!(agents, agent_ids(&before), "agents: the list lacks them");
    let score: Option<i16> = sqlx::query_scalar("SELECT score FROM tickets WHERE ticket_id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(score, before["score"].as_i64().map(|s| s as i16));
    assert_eq!(
        tag_count(&db, id).await,
        tags_before,
        "tags stay as the detail gave them"
    );
}

#[tokio::test]
async fn a_list_that_gets_the_status_wrong_is_no_longer_stored_and_made_no_history() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        list_rows_alter: vec!["status".into()],
        ..unlimited_sim(8)
    })
    .await;
    let ws = Workspace::configured(&sim, &db, FAST, "");
    assert_ok(&ws.run(&["sync"], &[], None).await);
    // The list's wrong status was replaced by the detail's: one transition each, the true one.
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_status_history").await,
        8
    );
    for id in sim.state.ticket_ids() {
        let to: Option<i16> =
            sqlx::query_scalar("SELECT to_status FROM ticket_status_history WHERE ticket_id = $1")
                .bind(&id)
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(
            to,
            sim.state.ticket(&id).unwrap()["status"]
                .as_i64()
                .map(|s| s as i16)
        );
    }
    // From now on list rows are not stored: a new ticket is known by id only until its detail.
    let ids = sim.state.ticket_ids();
    let new_id = (ids.last().unwrap().parse::<u64>().unwrap() + 1).to_string();
    let mut ticket = sim.state.ticket(&ids[0]).unwrap();
    ticket["ticket_id"] = json!(new_id);
    ticket["created_at"] = json!(chrono::Utc::now().timestamp_millis());
    sim.state.put_ticket(&new_id, ticket);
    sim.state.inject(
        &new_id,
        std::iter::repeat_n(helpdesk_sync::sim::Fault::InternalError, 8),
    );
    let out = ws.run(&["sync"], &[], None).await;
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(log.contains("list rows are not stored"), "{log}");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM tickets WHERE ticket_id = '{new_id}'"
        ))
        .await,
        0
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_sync_state WHERE ticket_id = '{new_id}'"
        ))
        .await,
        1
    );
}

#[tokio::test]
async fn totals_that_lie_end_nothing_early_and_split_nothing_forever() {
    for lie in [ListTotal::Zero, ListTotal::PageLength, ListTotal::OverCap] {
        let db = TestDb::new().await;
        let sim = start_sim(SimConfig {
            list_total: lie,
            ..unlimited_sim(450)
        })
        .await;
        let ws = Workspace::configured(
            &sim,
            &db,
            FAST,
            "max_tickets_per_cycle = 1\nstore_list_rows = false\n",
        );
        let out = ws.run(&["sync"], &[], None).await;
        assert_ok(&out);
        assert!(
            stdout(&out).contains("history backfill complete"),
            "{lie:?}"
        );
        assert_eq!(
            db.count("SELECT count(*) FROM ticket_sync_state").await,
            450,
            "{lie:?}: every ticket found"
        );
        let calls = list_requests(&sim);
        assert!(calls <= 40, "{lie:?}: {calls} list calls for 450 tickets");
    }
}

#[tokio::test]
async fn half_an_emoji_in_one_listed_ticket_costs_neither_the_page_nor_the_ticket() {
    let db = TestDb::new().await;
    let sim = start_sim(SimConfig {
        list_body_replace: vec![("@@HALF@@".into(), "\\ud83d".into())],
        ..unlimited_sim(5)
    })
    .await;
    let ids = sim.state.ticket_ids();
    let last = ids.last().unwrap().clone();
    sim.state.update_ticket(&last, |t| {
        t["comments"] = json!({"content": "broken @@HALF@@ emoji", "created_at": 1_700_000_000_000_i64, "id": 7, "user_id": 7})
    });
    // The only detail of the cycle goes to another ticket: the last one is stored from its row.
    let ws = Workspace::configured(&sim, &db, FAST, "max_tickets_per_cycle = 1\n");
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(db.count("SELECT count(*) FROM ticket_sync_state").await, 5);
    let content: String =
        sqlx::query_scalar("SELECT content FROM ticket_comments WHERE ticket_id = $1")
            .bind(&last)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(content, "broken \u{fffd} emoji");
}

/// `(status, tags_known, content_source)` of every stored ticket, by id.
async fn stored_all(
    db: &TestDb,
) -> std::collections::BTreeMap<String, (Option<i16>, bool, String)> {
    let rows: Vec<(String, Option<i16>, bool, String)> = sqlx::query_as(
        "SELECT ticket_id, status, tags_known, content_source FROM tickets ORDER BY ticket_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, status, tags, source)| (id, (status, tags, source)))
        .collect()
}

/// Per ticket, the transitions recorded: `(to_status, content_source)` in order.
async fn transitions(db: &TestDb, id: &str) -> Vec<(Option<i16>, String)> {
    sqlx::query_as(
        "SELECT to_status, content_source FROM ticket_status_history WHERE ticket_id = $1
         ORDER BY transition_id",
    )
    .bind(id)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

/// Issue 22 item 5: list rows whose `updated_at` runs ahead of the detail's (a list on another
/// clock: by 60 s, or by 1 ms) were kept as "the newer version" for good: the detail never
/// replaced them (wrong statuses from a lying list, tags unknown, false transitions) and the
/// verification, which compared equal `updated_at` only, never ran. Now the detail replaces
/// list content whatever the clocks say, the list's history is the detail's, the verification
/// pairs a row with its detail through the list's clock offset (learned), and an unchanged
/// ticket is neither stored from its row again nor fetched again.
#[tokio::test]
async fn a_list_row_ahead_of_its_detail_never_outlives_it() {
    for (ahead, lying) in [(60_000_i64, true), (1, false)] {
        let db = TestDb::new().await;
        let sim = start_sim(SimConfig {
            list_updated_at_ahead_ms: ahead,
            list_rows_alter: if lying {
                vec!["status".into()]
            } else {
                Vec::new()
            },
            ..unlimited_sim(80)
        })
        .await;
        let ids = sim.state.ticket_ids();
        let ws = Workspace::configured(&sim, &db, FAST, "");
        assert_ok(&ws.run(&["sync"], &[], None).await);
        let truth = |id: &str| {
            sim.state.ticket(id).unwrap()["status"]
                .as_i64()
                .map(|s| s as i16)
        };
        let stored = stored_all(&db).await;
        let wrong_status = ids.iter().filter(|id| stored[*id].0 != truth(id)).count();
        let unverified = stored.values().filter(|s| !s.1 || s.2 != "detail").count();
        let mut false_transitions = 0;
        for id in &ids {
            let seen = transitions(&db, id).await;
            false_transitions += seen
                .iter()
                .filter(|(to, source)| *to != truth(id) || source != "detail")
                .count()
                + seen.len().saturating_sub(1);
        }
        eprintln!(
            "ahead {ahead} ms, lying {lying}: {wrong_status} wrong statuses, {unverified} unverified, \
             {false_transitions} false transitions"
        );
        assert_eq!(
            (wrong_status, unverified, false_transitions),
            (0, 0, 0),
            "ahead {ahead} ms"
        );
        assert_eq!(db.count("SELECT count(*) FROM ticket_versions").await, 80);
        // The verification ran across the clocks: a lying status is caught, an honest one
        // agreed for every ticket.
        let (trusted, agreed, differed): (bool, i64, i64) = sqlx::query_as(
            "SELECT trusted, agreed, differed FROM list_field_agreement WHERE field = 'status'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        if lying {
            assert!(
                !trusted && differed > 0,
                "{agreed} agreed, {differed} differed"
            );
            let status = stdout(&ws.run(&["status"], &[], None).await);
            assert!(
                status.contains("not taken from list rows: status"),
                "{status}"
            );
        } else {
            assert_eq!((trusted, agreed, differed), (true, 80, 0));
        }
        // The version stamp pairs rows with details across the clocks; it is not a compared
        // field (compared, it differed by the offset in every pair and was distrusted).
        assert_eq!(
            db.count("SELECT count(*) FROM list_field_agreement WHERE field = 'updated_at'")
                .await,
            0,
            "ahead {ahead} ms"
        );

        // Ten tickets change: each is fetched once, one version and one transition each; the
        // other seventy cost nothing, then and in the next pass.
        let before = sim.state.detail_requests(None);
        for id in &ids[..10] {
            sim.state.update_ticket(id, |t| t["status"] = json!(4));
        }
        assert_ok(&ws.run(&["sync"], &[], None).await);
        assert_eq!(
            sim.state.detail_requests(None) - before,
            10,
            "ahead {ahead} ms"
        );
        assert_ok(&ws.run(&["sync"], &[], None).await);
        assert_eq!(
            sim.state.detail_requests(None) - before,
            10,
            "ahead {ahead} ms"
        );
        assert_eq!(db.count("SELECT count(*) FROM ticket_versions").await, 90);
        let stored = stored_all(&db).await;
        for id in &ids {
            assert_eq!(stored[id].0, truth(id), "{id}");
            assert_eq!(
                (stored[id].1, stored[id].2.as_str()),
                (true, "detail"),
                "{id}"
            );
        }
        let changed_transitions = db
            .count("SELECT count(*) FROM ticket_status_history WHERE to_status = 4 AND content_source = 'detail'")
            .await;
        let truly_4 = ids[10..].iter().filter(|id| truth(id) == Some(4)).count() as i64;
        assert_eq!(changed_transitions, 10 + truly_4);
        assert_eq!(
            db.count("SELECT count(*) FROM ticket_status_history WHERE content_source = 'list'")
                .await,
            0
        );
    }
}

/// Issue 22 item 6: a ticket whose detail answers 404 (deleted) while the list still shows it
/// was written back from its list row (`deleted_at` cleared) and never checked again: the
/// overlap brought back the recently updated ones, `sync --since` all of them. A list row now
/// never clears `deleted_at`; the list showing a version the 404 did not answer gets one more
/// detail check, and only a detail 200 brings the ticket back.
#[tokio::test]
async fn a_list_row_never_brings_back_a_ticket_its_detail_calls_deleted() {
    let db = TestDb::new().await;
    let sim = start_sim(unlimited_sim(40)).await;
    let ids = sim.state.ticket_ids();
    let ws = Workspace::configured(&sim, &db, FAST, "");
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(db.count("SELECT count(*) FROM ticket_facts").await, 40);
    // Four tickets are updated (within the overlap) and stored, then deleted upstream: their
    // detail answers 404 while the list still shows the version stored.
    let gone: Vec<String> = ids[..4].to_vec();
    for id in &gone {
        sim.state.update_ticket(id, |t| t["status"] = json!(3));
    }
    assert_ok(&ws.run(&["sync"], &[], None).await);
    for id in &gone {
        sim.state.delete_detail_only(id);
    }
    let mut enqueue = vec!["enqueue"];
    enqueue.extend(gone.iter().map(String::as_str));
    assert_ok(&ws.run(&enqueue, &[], None).await);
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let deleted = || async {
        db.count("SELECT count(*) FROM tickets WHERE deleted_at IS NOT NULL")
            .await
    };
    assert_eq!(deleted().await, 4, "the detail's 404 marks them deleted");
    let requests = sim.state.detail_requests(None);
    // The overlap lists them again, then a backfill lists every ticket.
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(deleted().await, 4, "the overlap brought some back");
    assert_ok(&ws.run(&["sync", "--since", "2020-01-01"], &[], None).await);
    assert_eq!(deleted().await, 4, "the backfill brought some back");
    assert_eq!(db.count("SELECT count(*) FROM ticket_facts").await, 36);
    assert_eq!(
        sim.state.detail_requests(None),
        requests,
        "the versions the 404 answered are not checked again"
    );
    // One comes back upstream and changes: the list shows a new version, its detail answers.
    sim.state.restore_detail(&gone[0]);
    sim.state
        .update_ticket(&gone[0], |t| t["status"] = json!(2));
    // Another only changes in the list: checked once more, still 404, still deleted.
    sim.state
        .update_ticket(&gone[1], |t| t["status"] = json!(2));
    assert_ok(&ws.run(&["sync"], &[], None).await);
    assert_eq!(deleted().await, 3);
    assert_eq!(
        sim.state.detail_requests(Some(&gone[1])),
        4,
        "twice stored, the 404, the new version's check"
    );
    let status: Option<i16> = sqlx::query_scalar("SELECT status FROM tickets WHERE ticket_id = $1")
        .bind(&gone[0])
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(status, Some(2));
    assert_eq!(db.count("SELECT count(*) FROM ticket_facts").await, 37);
}
