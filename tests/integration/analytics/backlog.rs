//! The daily backlog table, reconstructed for past days from hand-made histories and kept up to
//! date by each sync: every day present (zeros included), the stretch before the first
//! observation counted as open with an unknown status, time zones, incremental refreshes.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use super::{id, ms, setup, sync_ids, user};
use crate::helpers::*;

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
}

fn day(month: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, month, d).unwrap()
}

/// One backlog row: (status, agent_owner_id, open_tickets).
type Group = (Option<i16>, Option<String>, i32);

async fn backlog(db: &TestDb, on: NaiveDate) -> Vec<Group> {
    sqlx::query_as(
        "SELECT status, agent_owner_id, open_tickets FROM daily_backlog WHERE day = $1
         ORDER BY status NULLS FIRST, agent_owner_id NULLS FIRST",
    )
    .bind(on)
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

fn ticket(n: u64, status: i64, created: DateTime<Utc>, updated: Option<DateTime<Utc>>) -> Value {
    json!({"ticket_id": id(n), "status": status, "channel": 9, "created_at": ms(created),
           "updated_at": updated.map_or(-1, ms)})
}

fn closed(mut t: Value, at: DateTime<Utc>) -> Value {
    t["closed_at"] = json!(ms(at));
    t["updated_at"] = json!(ms(at));
    t
}

#[tokio::test]
async fn the_daily_backlog_is_reconstructed_for_every_day_and_refreshed_incrementally() {
    let (db, sim, ws) = setup().await;
    let (e, f, a, b, c) = (id(70), id(71), id(72), id(73), id(74));
    let mut with_owner = ticket(73, 2, at(3, 2, 8), Some(at(3, 2, 9)));
    with_owner["agent_owner"] = user("ou_bob", "Bob");
    for t in [
        // E: first seen closed at 11:00 the day it was created at 10:00.
        closed(ticket(70, 51, at(2, 20, 10), None), at(2, 20, 11)),
        // F: created on the 25th, first seen processing on the 26th at 12:00.
        ticket(71, 2, at(2, 25, 10), Some(at(2, 26, 12))),
        // A: watched from creation.
        ticket(72, 1, at(3, 1, 10), Some(at(3, 1, 10))),
        // B: created 08:00, processing from 09:00, owned by Bob.
        with_owner.clone(),
        // C: never updated.
        ticket(74, 1, at(3, 2, 20), None),
    ] {
        sim.state
            .put_ticket(t["ticket_id"].as_str().unwrap(), t.clone());
    }
    sync_ids(
        &ws,
        &[e.clone(), f.clone(), a.clone(), b.clone(), c.clone()],
    )
    .await;
    // F closes on the 27th at 09:00, A on March 3rd at 12:00.
    sim.state.put_ticket(
        &f,
        closed(ticket(71, 51, at(2, 25, 10), None), at(2, 27, 9)),
    );
    sim.state
        .put_ticket(&a, closed(ticket(72, 51, at(3, 1, 10), None), at(3, 3, 12)));
    sync_ids(&ws, &[f.clone(), a.clone()]).await;

    let bob = Some("ou_bob".to_owned());
    let nothing: Vec<Group> = vec![(None, None, 0)];
    assert_eq!(
        backlog(&db, day(2, 20)).await,
        nothing,
        "E closed the same day"
    );
    for d in 21..=24 {
        assert_eq!(backlog(&db, day(2, d)).await, nothing, "2-{d}");
    }
    assert_eq!(
        backlog(&db, day(2, 25)).await,
        vec![(None, None, 1)],
        "F open, its status not observed yet"
    );
    let status_label: Option<String> =
        sqlx::query_scalar("SELECT status_label FROM daily_backlog WHERE day = '2026-02-25'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(status_label.as_deref(), Some("not observed"));
    assert_eq!(backlog(&db, day(2, 26)).await, vec![(Some(2), None, 1)]);
    assert_eq!(backlog(&db, day(2, 27)).await, nothing);
    assert_eq!(backlog(&db, day(3, 1)).await, vec![(Some(1), None, 1)]);
    assert_eq!(
        backlog(&db, day(3, 2)).await,
        vec![(Some(1), None, 2), (Some(2), bob.clone(), 1)]
    );
    let b_and_c = vec![(Some(1), None, 1), (Some(2), bob.clone(), 1)];
    assert_eq!(backlog(&db, day(3, 3)).await, b_and_c);
    assert_eq!(backlog(&db, Utc::now().date_naive()).await, b_and_c);
    let days: i64 = db
        .count("SELECT count(DISTINCT day) FROM daily_backlog")
        .await;
    assert_eq!(
        days,
        (Utc::now().date_naive() - day(2, 20)).num_days() + 1,
        "a day is missing"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM daily_backlog WHERE day < '2026-02-20'")
            .await,
        0
    );

    // In Shanghai (UTC+8) the 2nd ends at 16:00 UTC: A and B open, C not created yet.
    sqlx::query("UPDATE report_settings SET timezone = 'Asia/Shanghai'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("SELECT refresh_daily_backlog()")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        backlog(&db, day(3, 2)).await,
        vec![(Some(1), None, 1), (Some(2), bob.clone(), 1)]
    );
    sqlx::query("UPDATE report_settings SET timezone = 'UTC'")
        .execute(&db.pool)
        .await
        .unwrap();

    // B closes on the 5th at 10:00: the days from its first stay on are recomputed.
    sim.state.put_ticket(&b, closed(with_owner, at(3, 5, 10)));
    let mut b_closed = sim.state.ticket(&b).unwrap();
    b_closed["status"] = json!(51);
    sim.state.put_ticket(&b, b_closed);
    sync_ids(&ws, std::slice::from_ref(&b)).await;
    assert_eq!(
        backlog(&db, day(3, 2)).await,
        vec![(Some(1), None, 2), (Some(2), bob.clone(), 1)]
    );
    assert_eq!(backlog(&db, day(3, 4)).await, b_and_c);
    assert_eq!(backlog(&db, day(3, 5)).await, vec![(Some(1), None, 1)]);
    assert_eq!(
        backlog(&db, Utc::now().date_naive()).await,
        vec![(Some(1), None, 1)]
    );
    // Nothing changed since: a refresh has nothing to do.
    let written: i32 = sqlx::query_scalar("SELECT refresh_daily_backlog()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(written, 0);
}
