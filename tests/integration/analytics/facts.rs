//! The columns analysts ask for first, on hand-made tickets with hand-computed values: first
//! reply from creation, queue wait, first resolution, ratings and bot-only tickets, labels in
//! two languages, every day in the daily stats, people by role, notes with honest names.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use serde_json::json;

use super::{id, ms, setup, sync_ids, user};

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

#[tokio::test]
async fn new_ticket_facts_columns_match_hand_computed_values() {
    let (db, sim, ws) = setup().await;
    let c = Utc.with_ymd_and_hms(2026, 3, 20, 8, 0, 0).unwrap();
    let q = id(50);
    let base = json!({"ticket_id": q, "created_at": ms(c), "channel": 2, "ticket_type": 2,
                      "guest": user("ou_gina", "Gina")});
    let step = |status: i64, updated: i64, extra: serde_json::Value| {
        let mut t = base.clone();
        t["status"] = json!(status);
        t["updated_at"] = json!(ms(c + secs(updated)));
        for (k, v) in extra.as_object().unwrap() {
            t[k] = v.clone();
        }
        t
    };
    let agent = json!({"agents": [user("ou_bob", "Bob")], "agent_owner": user("ou_bob", "Bob"),
                       "agent_entry_time": ms(c + secs(360)),
                       "agent_first_response_time": ms(c + secs(400)),
                       "agent_first_response_duration": 40});
    // Watched from creation: created, queued at +60, an agent enters at +360 and replies at
    // +400, closed at +1000 with score 0 (not a defined code).
    for t in [
        step(1, 0, json!({})),
        step(3, 60, json!({})),
        step(2, 360, agent.clone()),
        {
            let mut t = step(51, 1000, agent.clone());
            t["closed_at"] = json!(ms(c + secs(1000)));
            t["closed_by"] = user("ou_bob", "Bob");
            t["score"] = json!(0);
            t["solve"] = json!(2);
            t["dissatisfaction_reason"] = json!({"zh_cn": "等待太久", "en_us": "Waited too long", "ja_jp": "待ち時間が長すぎる"});
            t
        },
    ] {
        sim.state.put_ticket(&q, t);
        sync_ids(&ws, std::slice::from_ref(&q)).await;
    }

    type Facts = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        bool,
        Option<DateTime<Utc>>,
        Option<i64>,
        Option<i64>,
        i64,
        bool,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let facts: Facts = sqlx::query_as(
        "SELECT first_reply_seconds, first_response_seconds, queue_wait_seconds,
                history_complete, first_closed_at, first_resolution_seconds, resolution_seconds,
                reopen_count, is_rated, score_label, closed_by_name, dissatisfaction_reason_ja_jp
         FROM ticket_facts WHERE ticket_id = $1",
    )
    .bind(&q)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        facts,
        (
            Some(400),
            Some(40),
            Some(300),
            true,
            Some(c + secs(1000)),
            Some(1000),
            Some(1000),
            0,
            false,
            None,
            Some("Bob".into()),
            Some("待ち時間が長すぎる".into()),
        )
    );
    type Labels = (String, String, String, String, String, Option<String>, i32);
    let labels: Labels = sqlx::query_as(
        "SELECT solve_label, solve_label_zh_cn, status_label_zh_cn, channel_label_zh_cn,
                ticket_type_label_zh_cn, score_label_zh_cn, status_sort_order
         FROM ticket_facts WHERE ticket_id = $1",
    )
    .bind(&q)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        labels,
        (
            "solved".into(),
            "已解决".into(),
            "被客服关闭".into(),
            "二维码".into(),
            "人工".into(),
            None,
            7
        )
    );

    // Bot-only: the API sends its agent durations as 0; they are NULL. A human ticket's
    // genuine 0 stays 0.
    let bot = id(51);
    let human = id(52);
    let b = Utc.with_ymd_and_hms(2026, 3, 22, 23, 0, 0).unwrap();
    sim.state.put_ticket(
        &bot,
        json!({"ticket_id": bot, "status": 50, "ticket_type": 1, "created_at": ms(b),
               "updated_at": ms(b + secs(30)), "closed_at": ms(b + secs(30)), "score": 3,
               "agent_first_response_duration": 0, "bot_service_duration": 0,
               "agent_resolution_time": 0, "actual_processing_time": 0,
               "agent_service_duration": 0.0}),
    );
    sim.state.put_ticket(
        &human,
        json!({"ticket_id": human, "status": 2, "ticket_type": 2, "created_at": ms(b),
               "updated_at": ms(b), "agents": [user("ou_bob", "Bob")],
               "agent_entry_time": ms(b), "agent_first_response_time": ms(b),
               "agent_first_response_duration": 0, "bot_service_duration": 0}),
    );
    sync_ids(&ws, &[bot.clone(), human.clone()]).await;
    type Api = (
        bool,
        bool,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<f64>,
    );
    let api = |ticket: String| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, Api>(
                "SELECT is_bot_only, is_rated, api_first_response_seconds, api_bot_service_seconds,
                        api_agent_resolution_seconds, api_actual_processing_seconds,
                        api_agent_service_minutes
                 FROM ticket_facts WHERE ticket_id = $1",
            )
            .bind(ticket)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(
        api(bot.clone()).await,
        (true, true, None, None, None, None, None)
    );
    assert_eq!(
        api(human.clone()).await,
        (false, false, Some(0), Some(0), None, None, None)
    );
    // The deprecated names answer the same as the api_ ones.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM ticket_facts WHERE
               agent_resolution_seconds IS DISTINCT FROM api_agent_resolution_seconds
            OR actual_processing_seconds IS DISTINCT FROM api_actual_processing_seconds
            OR bot_service_seconds IS DISTINCT FROM api_bot_service_seconds
            OR agent_service_minutes IS DISTINCT FROM api_agent_service_minutes"
        )
        .await,
        0
    );

    // Every day from the first ticket to today, zeros included: 2026-03-21 had nothing.
    type Day = (NaiveDate, i64, i64, i64, Option<f64>);
    let days: Vec<Day> = sqlx::query_as(
        "SELECT day, tickets_created, tickets_closed, score_none, first_reply_seconds_median
         FROM daily_ticket_stats ORDER BY day",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let d = |m, d| NaiveDate::from_ymd_opt(2026, m, d).unwrap();
    assert_eq!(days[0], (d(3, 20), 1, 1, 1, Some(400.0)));
    assert_eq!(days[1], (d(3, 21), 0, 0, 0, None));
    // The bot ticket was created 23:00 and closed 23:00:30 on the 22nd; the human one is open.
    assert_eq!(days[2], (d(3, 22), 2, 1, 0, Some(0.0)));
    assert_eq!(days.last().unwrap().0, Utc::now().date_naive());
    assert_eq!(
        days.len() as i64,
        (Utc::now().date_naive() - d(3, 20)).num_days() + 1,
        "a day is missing"
    );
}

#[tokio::test]
async fn people_have_roles_and_notes_name_their_author_honestly() {
    let (db, sim, ws) = setup().await;
    let c = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap();
    let t = id(60);
    sim.state.put_ticket(
        &t,
        json!({"ticket_id": t, "status": 2, "created_at": ms(c), "updated_at": ms(c),
               "guest": user("ou_gina", "Gina"), "agents": [user("ou_bob", "Bob")],
               "collaborators": [user("ou_cleo", "Cleo")],
               "comments": {"content": "call back", "created_at": ms(c), "id": 12,
                            "user_id": 7262656095919128578u64, "user_name": "Bob"}}),
    );
    sync_ids(&ws, std::slice::from_ref(&t)).await;
    let roles: Vec<(String, String, bool, bool)> = sqlx::query_as(
        "SELECT user_id, role, is_agent, is_guest FROM helpdesk_people ORDER BY user_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        roles,
        vec![
            ("ou_bob".into(), "agent".into(), true, false),
            ("ou_cleo".into(), "agent".into(), true, false),
            ("ou_gina".into(), "guest".into(), false, true),
        ]
    );
    let note: (i64, i64, String) =
        sqlx::query_as("SELECT note_id, author_id, author_name FROM ticket_notes")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(note, (12, 7262656095919128578, "Bob".into()));
}
