//! Business hours and SLA targets on hand-made calendars and tickets, every expected value
//! computed by hand: weekends, holidays (whole and partial), daylight saving in New York (spring
//! forward, fall back) and none in Shanghai, 24/7, intervals crossing midnight, a year end,
//! starts and ends outside business hours, start = end, spans of years; SLA clocks met, missed,
//! running past due, reopened, per customer wait, recomputed when a calendar or target changes,
//! never duplicated by a re-fetch; `[sla]` seeding and its errors.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{id, ms, setup, sync_ids, user};
use crate::helpers::*;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn business_seconds(pool: &PgPool, start: &str, end: &str, calendar: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT business_seconds($1, $2, $3)")
        .bind(utc(start))
        .bind(utc(end))
        .bind(calendar)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn due(pool: &PgPool, start: &str, minutes: i64, calendar: &str) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT business_time_add($1, $2, $3)")
        .bind(utc(start))
        .bind((minutes * 60) as f64)
        .bind(calendar)
        .fetch_one(pool)
        .await
        .unwrap()
}

const H: i64 = 3600;

/// Calendars made by hand in SQL, as an analyst would.
const CALENDARS: &str = "
    INSERT INTO business_calendars (calendar_id, timezone, is_default) VALUES
        ('ny', 'America/New_York', true), ('ny_24x7', 'America/New_York', false),
        ('ny_night', 'America/New_York', false), ('sh', 'Asia/Shanghai', false),
        ('sh_24x7', 'Asia/Shanghai', false);
    INSERT INTO business_hours (calendar_id, weekday, opens_at, closes_at)
    SELECT 'ny', d, '09:00'::time, '17:00'::time FROM generate_series(1, 5) d
    UNION ALL SELECT 'ny_24x7', d, '00:00', '24:00' FROM generate_series(1, 7) d
    UNION ALL SELECT 'ny_night', d, '22:00', '06:00' FROM generate_series(1, 7) d
    UNION ALL SELECT 'sh', d, '09:00', '18:00' FROM generate_series(1, 5) d
    UNION ALL SELECT 'sh_24x7', d, '00:00', '24:00' FROM generate_series(1, 7) d;
    INSERT INTO business_holidays (calendar_id, holiday_date, closed_from, closed_until, name) VALUES
        ('ny', '2026-03-16', '00:00', '24:00', 'a whole day'),
        ('ny', '2026-03-18', '12:00', '24:00', 'an afternoon'),
        ('ny_night', '2026-03-21', '00:00', '24:00', 'Saturday off'),
        ('sh', '2027-01-01', '00:00', '24:00', 'New Year');
";

#[tokio::test]
async fn business_seconds_match_hand_computed_values() {
    let db = TestDb::new().await;
    helpdesk_sync::store::MIGRATOR.run(&db.pool).await.unwrap();
    sqlx::raw_sql(CALENDARS).execute(&db.pool).await.unwrap();
    let p = &db.pool;
    let bs = |a: &'static str, b: &'static str, c: &'static str| business_seconds(p, a, b, c);

    // A weekend: Friday 16:00 to Monday 10:00 is Friday's last hour and Monday's first.
    assert_eq!(
        bs(
            "2026-03-13T16:00:00-04:00",
            "2026-03-16T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(H),
        "Monday 2026-03-16 is a holiday: only Friday's hour counts"
    );
    assert_eq!(
        bs(
            "2026-03-27T16:00:00-04:00",
            "2026-03-30T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(2 * H)
    );
    // A holiday: Friday 16:00 to Tuesday 10:00 over the holiday Monday 2026-03-16.
    assert_eq!(
        bs(
            "2026-03-13T16:00:00-04:00",
            "2026-03-17T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(2 * H)
    );
    // A partial holiday: Wednesday 2026-03-18 closes at 12:00: 09:00 to Thursday 09:00 is 3 h.
    assert_eq!(
        bs(
            "2026-03-18T09:00:00-04:00",
            "2026-03-19T09:00:00-04:00",
            "ny"
        )
        .await,
        Some(3 * H)
    );
    // Spring forward (Sunday 2026-03-08, 02:00 EST -> 03:00 EDT): Friday 16:00 EST to Monday
    // 10:00 EDT is still 2 business hours (the offset changed in between, the hours did not).
    assert_eq!(
        bs(
            "2026-03-06T16:00:00-05:00",
            "2026-03-09T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(2 * H)
    );
    // ... and 24/7 over that night: Saturday noon to Sunday noon is 23 real hours.
    assert_eq!(
        bs(
            "2026-03-07T12:00:00-05:00",
            "2026-03-08T12:00:00-04:00",
            "ny_24x7"
        )
        .await,
        Some(23 * H)
    );
    // Fall back (Sunday 2026-11-01, 02:00 EDT -> 01:00 EST): 25 real hours; business hours
    // Friday 16:00 EDT to Monday 10:00 EST still 2.
    assert_eq!(
        bs(
            "2026-10-31T12:00:00-04:00",
            "2026-11-01T12:00:00-05:00",
            "ny_24x7"
        )
        .await,
        Some(25 * H)
    );
    assert_eq!(
        bs(
            "2026-10-30T16:00:00-04:00",
            "2026-11-02T10:00:00-05:00",
            "ny"
        )
        .await,
        Some(2 * H)
    );
    // A zone without daylight saving: Shanghai's 24 hours stay 24 on both dates.
    assert_eq!(
        bs(
            "2026-03-07T12:00:00+08:00",
            "2026-03-08T12:00:00+08:00",
            "sh_24x7"
        )
        .await,
        Some(24 * H)
    );
    assert_eq!(
        bs(
            "2026-10-31T12:00:00+08:00",
            "2026-11-01T12:00:00+08:00",
            "sh_24x7"
        )
        .await,
        Some(24 * H)
    );
    // 24/7: a whole (non-DST) week is 168 hours.
    assert_eq!(
        bs(
            "2026-06-01T00:00:00+08:00",
            "2026-06-08T00:00:00+08:00",
            "sh_24x7"
        )
        .await,
        Some(168 * H)
    );
    // An interval crossing midnight (22:00-06:00): Saturday noon to Sunday noon holds the
    // night Saturday 22:00 to Sunday 06:00: 8 h; on the spring-forward night 7 real hours, on
    // the fall-back night 9.
    assert_eq!(
        bs(
            "2026-03-14T12:00:00-04:00",
            "2026-03-15T12:00:00-04:00",
            "ny_night"
        )
        .await,
        Some(8 * H)
    );
    assert_eq!(
        bs(
            "2026-03-07T12:00:00-05:00",
            "2026-03-08T12:00:00-04:00",
            "ny_night"
        )
        .await,
        Some(7 * H)
    );
    assert_eq!(
        bs(
            "2026-10-31T12:00:00-04:00",
            "2026-11-01T12:00:00-05:00",
            "ny_night"
        )
        .await,
        Some(9 * H)
    );
    // ... and into a holiday: Friday 2026-03-20 22:00 to Saturday (a holiday) closes at
    // midnight: 2 h; Saturday's own night is closed too.
    assert_eq!(
        bs(
            "2026-03-20T12:00:00-04:00",
            "2026-03-21T23:59:00-04:00",
            "ny_night"
        )
        .await,
        Some(2 * H)
    );
    // A year end: Thursday 2026-12-31 17:00 to Monday 2027-01-04 10:00 in Shanghai, New
    // Year's Day (Friday) a holiday: 1 h on Thursday, 1 h on Monday.
    assert_eq!(
        bs(
            "2026-12-31T17:00:00+08:00",
            "2027-01-04T10:00:00+08:00",
            "sh"
        )
        .await,
        Some(2 * H)
    );
    // Start or end outside business hours.
    assert_eq!(
        bs(
            "2026-03-10T07:00:00-04:00",
            "2026-03-10T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(H)
    );
    assert_eq!(
        bs(
            "2026-03-10T16:00:00-04:00",
            "2026-03-10T20:00:00-04:00",
            "ny"
        )
        .await,
        Some(H)
    );
    assert_eq!(
        bs(
            "2026-03-14T08:00:00-04:00",
            "2026-03-15T20:00:00-04:00",
            "ny"
        )
        .await,
        Some(0),
        "a whole weekend is no business time (not NULL, not negative)"
    );
    // start = end, inside and outside hours.
    assert_eq!(
        bs(
            "2026-03-10T10:00:00-04:00",
            "2026-03-10T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(0)
    );
    assert_eq!(
        bs(
            "2026-03-14T10:00:00-04:00",
            "2026-03-14T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(0)
    );
    // Seconds count: 09:00:00 to 09:00:59.9 is 59 whole seconds.
    assert_eq!(
        bs(
            "2026-03-10T09:00:00-04:00",
            "2026-03-10T09:00:59.9-04:00",
            "ny"
        )
        .await,
        Some(59)
    );
    // The default calendar (ny) without naming it; an unknown calendar is NULL, never 0.
    let default: Option<i64> =
        sqlx::query_scalar("SELECT business_seconds('2026-03-10 08:00-04', '2026-03-10 18:00-04')")
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!(default, Some(8 * H));
    assert_eq!(
        bs(
            "2026-03-10T08:00:00-04:00",
            "2026-03-10T18:00:00-04:00",
            "nope"
        )
        .await,
        None
    );
    // A calendar without opening hours is NULL too (dbt_zendesk's all-zero results, #121).
    sqlx::query("INSERT INTO business_calendars (calendar_id, timezone) VALUES ('closed', 'UTC')")
        .execute(p)
        .await
        .unwrap();
    assert_eq!(
        bs(
            "2026-03-10T08:00:00-04:00",
            "2026-03-10T18:00:00-04:00",
            "closed"
        )
        .await,
        None
    );

    // Spans of years: 2024-01-01 to 2029-01-01 in New York, counted day by day here; fast.
    let mut expected = 0;
    let mut day = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let holidays = [
        NaiveDate::from_ymd_opt(2026, 3, 16).unwrap(),
        NaiveDate::from_ymd_opt(2026, 3, 18).unwrap(),
    ];
    while day < NaiveDate::from_ymd_opt(2029, 1, 1).unwrap() {
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            expected += if day == holidays[0] {
                0
            } else if day == holidays[1] {
                3 * H
            } else {
                8 * H
            };
        }
        day = day.succ_opt().unwrap();
    }
    let started = std::time::Instant::now();
    assert_eq!(
        bs(
            "2024-01-01T00:00:00-05:00",
            "2029-01-01T00:00:00-05:00",
            "ny"
        )
        .await,
        Some(expected)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // Reversed: the same, negative.
    assert_eq!(
        bs(
            "2029-01-01T00:00:00-05:00",
            "2024-01-01T00:00:00-05:00",
            "ny"
        )
        .await,
        Some(-expected)
    );

    // Due times: Friday 16:00 EST + 4 business hours = Monday 12:00 EDT (over the DST change);
    // + 1 h is Friday 17:00 (due at the close, not at Monday's opening); a start outside
    // hours waits for the opening; the holiday Monday is skipped.
    assert_eq!(
        due(p, "2026-03-06T16:00:00-05:00", 240, "ny").await,
        Some(utc("2026-03-09T12:00:00-04:00"))
    );
    assert_eq!(
        due(p, "2026-03-06T16:00:00-05:00", 60, "ny").await,
        Some(utc("2026-03-06T17:00:00-05:00"))
    );
    assert_eq!(
        due(p, "2026-03-14T10:00:00-04:00", 30, "ny").await,
        Some(utc("2026-03-17T09:30:00-04:00"))
    );
    assert_eq!(
        due(p, "2026-12-31T17:30:00+08:00", 60, "sh").await,
        Some(utc("2027-01-04T09:30:00+08:00"))
    );

    // Editing a calendar takes effect at once for business_seconds (its periods are rebuilt
    // by a trigger), and marks the SLA results for recomputation.
    sqlx::query("UPDATE business_hours SET opens_at = '08:00' WHERE calendar_id = 'ny'")
        .execute(p)
        .await
        .unwrap();
    assert_eq!(
        bs(
            "2026-03-27T16:00:00-04:00",
            "2026-03-30T10:00:00-04:00",
            "ny"
        )
        .await,
        Some(3 * H)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM sla_refresh_state WHERE stale_since IS NOT NULL")
            .await,
        1
    );
    // Bad rows are refused by name.
    for bad in [
        "INSERT INTO business_calendars (calendar_id, timezone) VALUES ('x', 'Mars/Olympus')",
        "INSERT INTO business_hours VALUES ('ny', 8, '09:00', '17:00')",
        "INSERT INTO business_hours VALUES ('ny', 6, '09:00', '09:00')",
        "INSERT INTO business_calendars (calendar_id, timezone, is_default) VALUES ('y', 'UTC', true)",
        "INSERT INTO sla_targets (target_id, metric, target_minutes) VALUES ('t', 'first_response', 5)",
    ] {
        assert!(
            sqlx::query(bad).execute(p).await.is_err(),
            "accepted: {bad}"
        );
    }
}

/// The `[sla]` section of the tests' tickets: New York business hours (default), targets.
const SLA_TOML: &str = r#"
[sla]
default_calendar = "ny"

[sla.calendars.ny]
timezone = "America/New_York"
hours = { weekdays = ["09:00-17:00"] }
holidays = ["2026-03-16", "2027-01-01"]

[[sla.targets]]
id = "vip-reply"
metric = "first_reply"
minutes = 30
business_hours = false
priority = 10
tag = "vip"

[[sla.targets]]
id = "reply"
metric = "first_reply"
minutes = 120

[[sla.targets]]
id = "first-resolution"
metric = "first_resolution"
minutes = 120
channel = 9

[[sla.targets]]
id = "resolution"
metric = "full_resolution"
minutes = 240

[[sla.targets]]
id = "next-reply"
metric = "next_reply"
minutes = 30
business_hours = false
"#;

type Sla = (
    String,
    i32,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<bool>,
    bool,
);

async fn sla_rows(pool: &PgPool, ticket: &str) -> Vec<Sla> {
    sqlx::query_as(
        "SELECT target_id, instance_no, started_at, breach_at, achieved_at, stopped_at,
                elapsed_seconds, is_breached, is_active
         FROM ticket_sla WHERE ticket_id = $1 ORDER BY target_id, instance_no",
    )
    .bind(ticket)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn message(n: u64, at: DateTime<Utc>, who: &str) -> Value {
    json!({"id": n, "message_id": format!("om_{n}"), "message_type": "text",
           "created_at": ms(at), "content": json!({"text": "hi"}).to_string(),
           "user_name": who, "avatar_url": "https://a", "user_id": who})
}

#[tokio::test]
async fn ticket_sla_and_business_columns_match_hand_computed_values() {
    let (db, sim, _) = setup().await;
    let ws = Workspace::configured(&sim, &db, "", &format!("discover = false\n{SLA_TOML}"));
    let people = json!({"guest": user("ou_gina", "Gina"), "agents": [user("ou_bob", "Bob")],
                        "agent_owner": user("ou_bob", "Bob")});
    let ticket = |n: u64, fields: Value| {
        let mut t = people.clone();
        t["ticket_id"] = json!(id(n));
        t["ticket_type"] = json!(2);
        for (k, v) in fields.as_object().unwrap() {
            t[k] = v.clone();
        }
        t
    };

    // A: created Friday 16:00 EST (DST starts on Sunday), first reply Monday 10:00 EDT, closed
    // Monday 12:00 EDT. Channel 9: the first-resolution target applies.
    let a_created = utc("2026-03-06T16:00:00-05:00");
    let a_reply = utc("2026-03-09T10:00:00-04:00");
    let a_closed = utc("2026-03-09T12:00:00-04:00");
    // B: tagged vip (its own first-reply target, 30 calendar minutes), open, never answered.
    let b_created = utc("2026-03-10T11:00:00-04:00");
    // C: created Tuesday 09:00, closed 10:00, reopened at 11:00 and open since.
    let c_created = utc("2026-03-10T09:00:00-04:00");
    // D: a conversation: waits 10:00 -> 10:20 (met), 11:00 + 11:05 -> 11:50 (missed), 12:00
    // unanswered (running, past due now).
    let d_created = utc("2026-03-11T09:55:00-04:00");
    // E: over a year end: created Thursday 2026-12-31 16:00 EST, New Year's Day (Friday) a
    // holiday, first reply Monday 2027-01-04 10:00, closed 12:00.
    let e_created = utc("2026-12-31T16:00:00-05:00");
    let e_reply = utc("2027-01-04T10:00:00-05:00");
    let e_closed = utc("2027-01-04T12:00:00-05:00");
    let at = |t: DateTime<Utc>| ms(t);
    sim.state.put_ticket(
        &id(60),
        ticket(
            60,
            json!({"status": 51, "channel": 9, "created_at": at(a_created),
                   "updated_at": at(a_closed), "closed_at": at(a_closed),
                   "agent_entry_time": at(a_reply), "agent_first_response_time": at(a_reply)}),
        ),
    );
    sim.state.put_ticket(
        &id(61),
        ticket(
            61,
            json!({"status": 3, "channel": 2, "created_at": at(b_created),
                   "updated_at": at(b_created), "tags": [{"id": "7", "name": "vip"}]}),
        ),
    );
    sim.state.put_ticket(
        &id(62),
        ticket(
            62,
            json!({"status": 51, "channel": 2, "created_at": at(c_created),
                   "updated_at": at(c_created + Duration::hours(1)),
                   "closed_at": at(c_created + Duration::hours(1))}),
        ),
    );
    sim.state.put_ticket(
        &id(63),
        ticket(
            63,
            json!({"status": 2, "channel": 2, "created_at": at(d_created),
                   "updated_at": at(d_created)}),
        ),
    );
    let m = |h: u32, min: u32| Utc.with_ymd_and_hms(2026, 3, 11, h + 4, min, 0).unwrap();
    sim.state.put_messages(
        &id(63),
        vec![
            message(1, m(10, 0), "ou_gina"),
            message(2, m(10, 20), "ou_bob"),
            message(3, m(11, 0), "ou_gina"),
            message(4, m(11, 5), "ou_gina"),
            message(5, m(11, 50), "ou_bob"),
            message(6, m(12, 0), "ou_gina"),
        ],
    );
    sim.state.put_ticket(
        &id(64),
        ticket(
            64,
            json!({"status": 51, "channel": 2, "created_at": at(e_created),
                   "updated_at": at(e_closed), "closed_at": at(e_closed),
                   "agent_entry_time": at(e_reply), "agent_first_response_time": at(e_reply),
                   "customized_fields": [{"id": "6794281200000000001", "value": "iOS",
                                          "key_name": "platform", "display_name": "Platform",
                                          "position": 1}]}),
        ),
    );
    let all = [id(60), id(61), id(62), id(63), id(64)];
    sync_ids(&ws, &all).await;
    // C is reopened after the first sync.
    sim.state.update_ticket(&id(62), |t| {
        t["status"] = json!(2);
        t["updated_at"] = json!(at(c_created + Duration::hours(2)));
    });
    sync_ids(&ws, std::slice::from_ref(&id(62))).await;

    // A, every clock by hand (New York business hours, 09:00-17:00 on weekdays):
    // first reply, 120 business minutes: Friday 16-17 (1 h) + Monday 09-10 (1 h) = 2 h, due
    // Monday 10:00 EDT, achieved exactly then: met. First and full resolution: Friday 1 h +
    // Monday 09-12 (3 h) = 4 h; first resolution (120 min) due Monday 10:00, missed; full
    // resolution (240 min) due Monday 12:00, met.
    let due_10 = utc("2026-03-09T10:00:00-04:00");
    assert_eq!(
        sla_rows(&db.pool, &id(60)).await,
        vec![
            (
                "first-resolution".into(),
                1,
                a_created,
                Some(due_10),
                Some(a_closed),
                None,
                Some(4 * H),
                Some(true),
                false
            ),
            (
                "reply".into(),
                1,
                a_created,
                Some(due_10),
                Some(a_reply),
                None,
                Some(2 * H),
                Some(false),
                false
            ),
            (
                "resolution".into(),
                1,
                a_created,
                Some(a_closed),
                Some(a_closed),
                None,
                Some(4 * H),
                Some(false),
                false
            ),
        ]
    );
    type Business = (
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let business = |n: u64| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, Business>(
                "SELECT first_reply_seconds, first_reply_business_seconds,
                        first_resolution_business_seconds, resolution_business_seconds,
                        business_calendar_id
                 FROM ticket_facts WHERE ticket_id = $1",
            )
            .bind(id(n))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // Friday 21:00 UTC to Monday 14:00 UTC: 65 wall-clock hours, 2 business hours.
    assert_eq!(
        business(60).await,
        (
            Some(65 * H),
            Some(2 * H),
            Some(4 * H),
            Some(4 * H),
            Some("ny".into())
        )
    );

    // B: the vip target wins first reply (priority 10), 30 calendar minutes: due 11:30, open
    // and unanswered: breached now, still running. Full resolution runs too (due 15:00).
    let b = sla_rows(&db.pool, &id(61)).await;
    assert_eq!(b.len(), 2, "{b:?}");
    assert_eq!(
        (&b[0].0, b[0].3, b[0].7, b[0].8),
        (
            &"resolution".to_owned(),
            Some(utc("2026-03-10T15:00:00-04:00")),
            Some(true),
            true
        )
    );
    assert_eq!(
        (&b[1].0, b[1].3, b[1].4, b[1].7, b[1].8),
        (
            &"vip-reply".to_owned(),
            Some(b_created + Duration::minutes(30)),
            None,
            Some(true),
            true
        )
    );
    // Running clocks count up to now: elapsed is at least the wall-clock time since then.
    assert!(b[1].6.unwrap() >= (Utc::now() - b_created).num_seconds() - 5);

    // C, reopened: the first resolution stays achieved at the first close (1 h); the full
    // resolution runs again (due Tuesday 13:00) and is breached now; no first reply ever and
    // the ticket closed once: the reply clock stopped at that close (1 h), missing its 2 h
    // target is not claimed: not breached.
    let c = sla_rows(&db.pool, &id(62)).await;
    let c_close = c_created + Duration::hours(1);
    assert_eq!(
        c,
        vec![
            (
                "reply".into(),
                1,
                c_created,
                Some(c_created + Duration::hours(2)),
                None,
                Some(c_close),
                Some(H),
                Some(false),
                false
            ),
            (
                "resolution".into(),
                1,
                c_created,
                Some(c_created + Duration::hours(4)),
                None,
                None,
                c.get(1).and_then(|r| r.6),
                Some(true),
                true
            ),
        ]
    );
    assert_eq!(business(62).await.2, Some(H));
    assert_eq!(business(62).await.3, None, "reopened: no full resolution");

    // D: one next-reply clock per customer wait, 30 calendar minutes each.
    let d: Vec<Sla> = sla_rows(&db.pool, &id(63))
        .await
        .into_iter()
        .filter(|r| r.0 == "next-reply")
        .collect();
    assert_eq!(
        d,
        vec![
            (
                "next-reply".into(),
                1,
                m(10, 0),
                Some(m(10, 30)),
                Some(m(10, 20)),
                None,
                Some(20 * 60),
                Some(false),
                false
            ),
            (
                "next-reply".into(),
                2,
                m(11, 0),
                Some(m(11, 30)),
                Some(m(11, 50)),
                None,
                Some(50 * 60),
                Some(true),
                false
            ),
            (
                "next-reply".into(),
                3,
                m(12, 0),
                Some(m(12, 30)),
                None,
                None,
                d.get(2).and_then(|r| r.6),
                Some(true),
                true
            ),
        ]
    );

    // E: first reply Thursday 16-17 + Monday 09-10 = 2 business hours (Friday is New Year's
    // Day, then the weekend), due Monday 10:00, met exactly; resolution 1 + 3 = 4 hours, due
    // Monday 12:00, met exactly. Creation to first reply is 90 hours on the wall clock.
    assert_eq!(
        sla_rows(&db.pool, &id(64)).await,
        vec![
            (
                "reply".into(),
                1,
                e_created,
                Some(e_reply),
                Some(e_reply),
                None,
                Some(2 * H),
                Some(false),
                false
            ),
            (
                "resolution".into(),
                1,
                e_created,
                Some(e_closed),
                Some(e_closed),
                None,
                Some(4 * H),
                Some(false),
                false
            ),
        ]
    );
    assert_eq!(
        business(64).await,
        (
            Some(90 * H),
            Some(2 * H),
            Some(4 * H),
            Some(4 * H),
            Some("ny".into())
        )
    );

    // The documented "breach rate by channel per week", by hand: decided clocks plus running
    // ones past due. Week of 2026-03-02: A (Open API): first reply met, first resolution
    // missed, full resolution met. Week of 03-09 (QR code): first reply B missed, C stopped in
    // time, D running past due; full resolution B, C, D running past due; next reply D: met,
    // missed, running past due.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md")).unwrap();
    let breach_rate = docs
        .split("Breach rate by channel per week")
        .nth(1)
        .and_then(|b| b.split("```sql").nth(1))
        .and_then(|b| b.split("```").next())
        .expect("the breach rate query");
    let rates: Vec<(NaiveDate, String, String, i64, i64, String)> =
        sqlx::query_as::<_, (NaiveDate, String, String, i64, i64, String)>(sqlx::AssertSqlSafe(
            format!(
                "SELECT week, channel_label, metric, clocks, breached, breach_percent::text FROM ({}) q",
                breach_rate.trim().trim_end_matches(';')
            ),
        ))
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let week = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
    let row = |w, c: &str, m: &str, n, b, p: &str| (week(w), c.into(), m.into(), n, b, p.into());
    assert_eq!(
        rates,
        vec![
            row(2, "Open API", "first_reply", 1, 0, "0.0"),
            row(2, "Open API", "first_resolution", 1, 1, "100.0"),
            row(2, "Open API", "full_resolution", 1, 0, "0.0"),
            row(9, "QR code", "first_reply", 3, 2, "66.7"),
            row(9, "QR code", "full_resolution", 3, 3, "100.0"),
            row(9, "QR code", "next_reply", 3, 2, "66.7"),
            (
                NaiveDate::from_ymd_opt(2026, 12, 28).unwrap(),
                "QR code".into(),
                "first_reply".into(),
                1,
                0,
                "0.0".into()
            ),
            (
                NaiveDate::from_ymd_opt(2026, 12, 28).unwrap(),
                "QR code".into(),
                "full_resolution".into(),
                1,
                0,
                "0.0".into()
            ),
        ]
    );

    // A re-fetch changes nothing and never duplicates a clock.
    let before = db.count("SELECT count(*) FROM ticket_sla_results").await;
    sync_ids(&ws, &all).await;
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sla_results").await,
        before
    );

    // Changing the calendar changes the results without a resync: opening at 08:00, A's
    // first reply takes Friday 1 h + Monday 08-10 = 3 h and is due Monday 09:00: missed.
    sqlx::query("UPDATE business_hours SET opens_at = '08:00' WHERE calendar_id = 'ny'")
        .execute(&db.pool)
        .await
        .unwrap();
    let recomputed: i64 = sqlx::query_scalar("SELECT refresh_sla()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(recomputed, 5);
    let reply: (Option<DateTime<Utc>>, Option<i64>, Option<bool>) = sqlx::query_as(
        "SELECT breach_at, elapsed_seconds, is_breached FROM ticket_sla
         WHERE ticket_id = $1 AND target_id = 'reply'",
    )
    .bind(id(60))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        reply,
        (
            Some(utc("2026-03-09T09:00:00-04:00")),
            Some(3 * H),
            Some(true)
        )
    );
    assert_eq!(business(60).await.1, Some(3 * H));
    // ... and a target edit too: 240 business minutes for the first reply, met again. The
    // sync applies it by itself at the end of its cycle.
    sqlx::query("UPDATE sla_targets SET target_minutes = 240 WHERE target_id = 'reply'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    let met: Option<bool> = sqlx::query_scalar(
        "SELECT is_breached FROM ticket_sla WHERE ticket_id = $1 AND target_id = 'reply'",
    )
    .bind(id(60))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(met, Some(false));
    // Removing the vip target hands B to the default first-reply target.
    sqlx::query("DELETE FROM sla_targets WHERE target_id = 'vip-reply'")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("SELECT refresh_sla()")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM ticket_sla WHERE ticket_id = '{}' AND target_id = 'reply'",
            id(61)
        ))
        .await,
        1
    );

    // Conditions on a custom field (by display name) and on the ticket type, made in SQL:
    // E (platform iOS) takes the 15-minute target (priority 1 beats 100): due 16:15 EST,
    // answered 90 hours later: breached; no ticket is a bot ticket, so "bots" applies to none
    // until its condition says human (priority 0: every first reply then).
    sqlx::raw_sql(
        "INSERT INTO sla_targets (target_id, metric, target_minutes, business_hours, priority,
                                  custom_field, custom_field_value, ticket_type)
         VALUES ('ios-first-reply', 'first_reply', 15, false, 1, 'Platform', 'iOS', NULL),
                ('bots', 'first_reply', 5, false, 0, NULL, NULL, 1);
         SELECT refresh_sla();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let ios: (String, Option<DateTime<Utc>>, Option<i64>, Option<bool>) = sqlx::query_as(
        "SELECT target_id, breach_at, elapsed_seconds, is_breached FROM ticket_sla
         WHERE ticket_id = $1 AND metric = 'first_reply'",
    )
    .bind(id(64))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        ios,
        (
            "ios-first-reply".into(),
            Some(e_created + Duration::minutes(15)),
            Some(90 * H),
            Some(true)
        )
    );
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sla WHERE target_id = 'bots'")
            .await,
        0
    );
    sqlx::raw_sql(
        "UPDATE sla_targets SET ticket_type = 2 WHERE target_id = 'bots'; SELECT refresh_sla();",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sla WHERE target_id = 'bots'")
            .await,
        5
    );
}

#[tokio::test]
async fn sla_seeding_replaces_only_config_rows_and_bad_values_exit_2() {
    let db = TestDb::new().await;
    let base = format!("[database]\nurl = {:?}\n", db.url);
    let ws = Workspace::with_toml(&format!("{base}{SLA_TOML}"), &db);
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    assert_eq!(
        db.count("SELECT count(*) FROM sla_targets WHERE source = 'config'")
            .await,
        5
    );
    assert_eq!(
        db.count("SELECT count(*) FROM business_hours WHERE calendar_id = 'ny'")
            .await,
        5
    );
    // An analyst's own target survives seeding; an unchanged section writes nothing.
    sqlx::query(
        "INSERT INTO sla_targets (target_id, metric, target_minutes, calendar_id)
         VALUES ('mine', 'first_reply', 60, 'ny')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE sla_refresh_state SET stale_since = NULL")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    assert_eq!(
        db.count("SELECT count(*) FROM sla_refresh_state WHERE stale_since IS NULL")
            .await,
        1,
        "an unchanged [sla] section rewrote rows"
    );
    // A changed section replaces the config rows, not the analyst's.
    let fewer = SLA_TOML.replace(
        "hours = { weekdays = [\"09:00-17:00\"] }",
        "hours = { daily = [\"00:00-24:00\"] }",
    );
    let fewer = fewer
        .split("[[sla.targets]]")
        .take(2)
        .collect::<Vec<_>>()
        .join("[[sla.targets]]");
    let ws2 = Workspace::with_toml(&format!("{base}{fewer}"), &db);
    assert_ok(&ws2.run(&["migrate"], &[], None).await);
    let targets: Vec<(String, String)> =
        sqlx::query_as("SELECT target_id, source FROM sla_targets ORDER BY target_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        targets,
        vec![
            ("mine".into(), "sql".into()),
            ("vip-reply".into(), "config".into())
        ]
    );
    assert_eq!(
        db.count("SELECT count(*) FROM business_hours WHERE calendar_id = 'ny'")
            .await,
        7
    );

    // Bad values: exit 2, the key named, nothing written.
    for (section, key) in [
        (
            "[sla.calendars.x]\ntimezone = \"Mars/Olympus\"\nhours = { mon = [\"09:00-17:00\"] }\n",
            "sla.calendars.x.timezone",
        ),
        (
            "[sla.calendars.x]\ntimezone = \"UTC\"\nhours = { mon = [\"9am-5pm\"] }\n",
            "sla.calendars.x.hours.mon",
        ),
        (
            "[[sla.targets]]\nid = \"t\"\nmetric = \"first_reply\"\nminutes = 5\ncalendar = \"nowhere\"\n",
            "sla.targets[0].calendar",
        ),
        (
            "[[sla.targets]]\nid = \"t\"\nmetric = \"solve\"\nminutes = 5\n",
            "sla.targets[0].metric",
        ),
    ] {
        let bad = Workspace::with_toml(&format!("{base}{section}"), &db);
        let out = bad.run(&["migrate"], &[], None).await;
        assert_eq!(out.status.code(), Some(2), "{section}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{section}: {}", stderr(&out));
    }
    assert_eq!(db.count("SELECT count(*) FROM sla_targets").await, 2);
}

/// The setup block of docs/analytics.md ("Setting it up") works as written: New York office
/// hours with a lunch break and Christmas.
#[tokio::test]
async fn the_documented_setup_block_works() {
    let db = TestDb::new().await;
    helpdesk_sync::store::MIGRATOR.run(&db.pool).await.unwrap();
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md")).unwrap();
    let setup = docs
        .split("```postgresql")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a setup block");
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup.to_owned()))
        .execute(&db.pool)
        .await
        .unwrap();
    // Thursday 2026-12-24 08:00 to Monday 12-28 10:00: Thursday 09-12 and 13-17 (7 h),
    // Christmas closed, the weekend closed, Monday 09-10 (1 h).
    let seconds: Option<i64> =
        sqlx::query_scalar("SELECT business_seconds('2026-12-24 08:00-05', '2026-12-28 10:00-05')")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(seconds, Some(8 * H));
    assert_eq!(db.count("SELECT count(*) FROM sla_targets").await, 2);
}

/// Calendars at the edges (issue 22), made in SQL as an analyst would: intervals and a partial
/// holiday that daylight saving turns inside out, 24/7 and a night calendar at both ends of
/// the covered range, Chatham (+13:45).
const EDGE_CALENDARS: &str = "
    INSERT INTO business_calendars (calendar_id, timezone) VALUES
        ('ny_gap', 'America/New_York'), ('syd_gap', 'Australia/Sydney'),
        ('ny_all', 'America/New_York'), ('ny_night', 'America/New_York'),
        ('chatham', 'Pacific/Chatham'), ('office', 'America/New_York');
    INSERT INTO business_hours (calendar_id, weekday, opens_at, closes_at) VALUES
        ('ny_gap', 7, '02:30', '03:00'), ('syd_gap', 7, '02:45', '03:15');
    INSERT INTO business_hours (calendar_id, weekday, opens_at, closes_at)
    SELECT 'ny_all', d, '00:00'::time, '24:00'::time FROM generate_series(1, 7) d
    UNION ALL SELECT 'chatham', d, '00:00', '24:00' FROM generate_series(1, 7) d
    UNION ALL SELECT 'ny_night', d, '22:00', '06:00' FROM generate_series(1, 7) d
    UNION ALL SELECT 'office', d, '09:00', '17:00' FROM generate_series(1, 5) d;
    INSERT INTO business_holidays (calendar_id, holiday_date, closed_from, closed_until, name)
    VALUES ('ny_all', '2026-03-08', '02:30', '03:00', 'in the skipped hour');
";

async fn due_seconds(
    pool: &PgPool,
    start: &str,
    seconds: f64,
    calendar: &str,
) -> Option<DateTime<Utc>> {
    sqlx::query_scalar("SELECT business_time_add($1, $2, $3)")
        .bind(utc(start))
        .bind(seconds)
        .bind(calendar)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn business_time_at_its_edges_matches_hand_computed_values() {
    let db = TestDb::new().await;
    helpdesk_sync::store::MIGRATOR.run(&db.pool).await.unwrap();
    // Before: refused whole, "range lower bound must be less than or equal to range upper
    // bound" (02:30 on the spring-forward night reads as 03:30 EDT, after the 03:00 close).
    sqlx::raw_sql(EDGE_CALENDARS)
        .execute(&db.pool)
        .await
        .expect("calendars daylight saving turns inside out are accepted");
    let p = &db.pool;
    let bs = |a: &'static str, b: &'static str, c: &'static str| business_seconds(p, a, b, c);

    // New York, Sunday 02:30-03:00: two weeks hold the Sundays 2026-03-01 (30 min) and
    // 2026-03-08, the spring-forward day, whose 02:30-03:00 does not exist: no business time.
    assert_eq!(
        bs(
            "2026-03-01T00:00:00-05:00",
            "2026-03-15T00:00:00-04:00",
            "ny_gap"
        )
        .await,
        Some(1800)
    );
    assert_eq!(
        bs(
            "2026-03-08T00:00:00-05:00",
            "2026-03-09T00:00:00-04:00",
            "ny_gap"
        )
        .await,
        Some(0)
    );
    // Due times wait over the empty Sunday: 30 min from after the 03-01 close is the next
    // Sunday that has the interval, 2026-03-15 02:30-03:00 EDT.
    assert_eq!(
        due(p, "2026-03-01T04:00:00-05:00", 30, "ny_gap").await,
        Some(utc("2026-03-15T03:00:00-04:00"))
    );
    // Sydney, Sunday 02:45-03:15: clocks go 02:00 AEST -> 03:00 AEDT on Sunday 2026-10-04;
    // 09-27 counts 30 min, 10-04 none.
    assert_eq!(
        bs(
            "2026-09-27T00:00:00+10:00",
            "2026-10-11T00:00:00+11:00",
            "syd_gap"
        )
        .await,
        Some(1800)
    );
    // 24/7 New York with a holiday 02:30-03:00 on 2026-03-08 (times that do not exist): it
    // closes nothing; Saturday (24 h) and Sunday (23 h).
    assert_eq!(
        bs(
            "2026-03-07T00:00:00-05:00",
            "2026-03-09T00:00:00-04:00",
            "ny_all"
        )
        .await,
        Some(47 * H)
    );

    // The covered range is local dates 2010-01-01 .. 2050-12-31 in each calendar's zone.
    // Before: NULL before 2010-01-02 00:00 UTC and from 2050-12-30 00:00 UTC.
    assert_eq!(
        bs(
            "2010-01-01T12:00:00-05:00",
            "2010-01-01T13:00:00-05:00",
            "ny_all"
        )
        .await,
        Some(H)
    );
    assert_eq!(
        bs(
            "2010-01-01T00:00:00-05:00",
            "2010-01-01T01:00:00-05:00",
            "ny_all"
        )
        .await,
        Some(H)
    );
    assert_eq!(
        bs(
            "2050-12-31T22:00:00-05:00",
            "2051-01-01T00:00:00-05:00",
            "ny_all"
        )
        .await,
        Some(2 * H)
    );
    // One second outside, at either end: NULL, never a partial count.
    assert_eq!(
        bs(
            "2009-12-31T23:59:59-05:00",
            "2010-01-01T01:00:00-05:00",
            "ny_all"
        )
        .await,
        None
    );
    assert_eq!(
        bs(
            "2050-12-31T23:00:00-05:00",
            "2051-01-01T00:00:01-05:00",
            "ny_all"
        )
        .await,
        None
    );
    // The night that opened on 2009-12-31 22:00 is open on 2010-01-01 until 06:00: 6 h.
    assert_eq!(
        bs(
            "2010-01-01T00:00:00-05:00",
            "2010-01-01T08:00:00-05:00",
            "ny_night"
        )
        .await,
        Some(6 * H)
    );
    // Chatham (+13:45 in summer): 2010-01-02 10:00 plus one hour; its first and last local
    // hours.
    assert_eq!(
        due(p, "2010-01-02T10:00:00+13:45", 60, "chatham").await,
        Some(utc("2010-01-02T11:00:00+13:45"))
    );
    assert_eq!(
        bs(
            "2010-01-01T00:00:00+13:45",
            "2010-01-01T01:00:00+13:45",
            "chatham"
        )
        .await,
        Some(H)
    );
    assert_eq!(
        bs(
            "2050-12-31T23:00:00+13:45",
            "2050-12-31T23:30:00+13:45",
            "chatham"
        )
        .await,
        Some(1800)
    );

    // business_time_add with 0 and negative seconds (office: 09:00-17:00 on weekdays).
    // From inside hours, 0 is the start itself.
    assert_eq!(
        due_seconds(p, "2026-03-10T10:00:00-04:00", 0.0, "office").await,
        Some(utc("2026-03-10T10:00:00-04:00"))
    );
    // From outside hours, 0 waits for the opening, as 60 s waits for the opening and one
    // minute: Saturday -> Monday 09:00; the close itself (17:00) is outside hours.
    assert_eq!(
        due_seconds(p, "2026-03-14T10:00:00-04:00", 0.0, "office").await,
        Some(utc("2026-03-16T09:00:00-04:00"))
    );
    assert_eq!(
        due_seconds(p, "2026-03-14T10:00:00-04:00", 60.0, "office").await,
        Some(utc("2026-03-16T09:01:00-04:00"))
    );
    assert_eq!(
        due_seconds(p, "2026-03-10T17:00:00-04:00", 0.0, "office").await,
        Some(utc("2026-03-11T09:00:00-04:00"))
    );
    // ... while a target that runs out at the close is due at the close.
    assert_eq!(
        due_seconds(p, "2026-03-10T16:00:00-04:00", 3600.0, "office").await,
        Some(utc("2026-03-10T17:00:00-04:00"))
    );
    // Negative seconds are not a due time: NULL (before: the start itself).
    assert_eq!(
        due_seconds(p, "2026-03-10T10:00:00-04:00", -60.0, "office").await,
        None
    );
}

/// A ticket of the tests below: Gina's, Bob the agent.
fn plain_ticket(n: u64, fields: Value) -> Value {
    let mut t = json!({"ticket_id": id(n), "ticket_type": 2, "channel": 2,
                       "guest": user("ou_gina", "Gina"), "agents": [user("ou_bob", "Bob")],
                       "agent_owner": user("ou_bob", "Bob")});
    for (k, v) in fields.as_object().unwrap() {
        t[k] = v.clone();
    }
    t
}

/// Issue 22, items 1 and 4: an `[sla]` section with calendars daylight saving turns inside
/// out (New York Sunday 02:30-03:00, Sydney Sunday 02:45-03:15, a partial holiday in New
/// York's skipped hour) is seeded and `migrate` and `sync` go on; a seeded calendar removed
/// from the section while a target made by hand names it is kept, named in the log, and does
/// not stop `migrate` either.
#[tokio::test]
async fn calendars_the_database_once_refused_never_stop_migrate_or_sync() {
    let (db, sim, _) = setup().await;
    let section = r#"
[sla]
default_calendar = "ny_all"

[sla.calendars.ny_gap]
timezone = "America/New_York"
hours = { sun = ["02:30-03:00"] }

[sla.calendars.syd]
timezone = "Australia/Sydney"
hours = { sun = ["02:45-03:15"] }

[sla.calendars.ny_all]
timezone = "America/New_York"
hours = { daily = ["00:00-24:00"] }
holidays = ["2026-03-08 02:30-03:00"]

[[sla.targets]]
id = "reply"
metric = "first_reply"
minutes = 60
"#;
    let ws = Workspace::configured(&sim, &db, "", &format!("discover = false\n{section}"));
    // Before: exit 1, "range lower bound must be less than or equal to range upper bound".
    assert_ok(&ws.run(&["migrate"], &[], None).await);
    assert_eq!(
        db.count("SELECT count(*) FROM business_calendars WHERE source = 'config'")
            .await,
        3
    );
    // Saturday 2026-03-07 12:00 EST to Sunday 12:00 EDT in 24/7: 23 h (the holiday is in the
    // hour that does not exist); a ticket created then, answered after 23 h, has 23 h.
    let created = utc("2026-03-07T12:00:00-05:00");
    let reply = utc("2026-03-08T12:00:00-04:00");
    sim.state.put_ticket(
        &id(80),
        plain_ticket(
            80,
            json!({"status": 2, "created_at": ms(created), "updated_at": ms(reply),
                   "agent_entry_time": ms(reply), "agent_first_response_time": ms(reply)}),
        ),
    );
    sync_ids(&ws, &[id(80)]).await;
    let rows = sla_rows(&db.pool, &id(80)).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].6, Some(23 * H));
    assert_eq!(rows[0].7, Some(true), "due after 1 h, answered after 23 h");

    // An analyst's target names the seeded Sydney calendar; the section drops it.
    sqlx::query(
        "INSERT INTO sla_targets (target_id, metric, target_minutes, calendar_id)
         VALUES ('sydney-reply', 'first_reply', 60, 'syd')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let without_syd = section.replace(
        "[sla.calendars.syd]\ntimezone = \"Australia/Sydney\"\nhours = { sun = [\"02:45-03:15\"] }\n",
        "",
    );
    assert_ne!(without_syd, section);
    let ws2 = Workspace::configured(&sim, &db, "", &format!("discover = false\n{without_syd}"));
    // Before: exit 1 ("a calendar removed from [sla] is still named by a target made by hand").
    let out = ws2.run(&["migrate"], &[], None).await;
    assert_ok(&out);
    assert!(
        stderr(&out).contains("sla.calendars.syd") && stderr(&out).contains("sydney-reply"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM business_calendars WHERE calendar_id = 'syd'")
            .await,
        1
    );
    // The rest of the section was seeded: the config target is back, the sync goes on.
    assert_eq!(
        db.count("SELECT count(*) FROM sla_targets WHERE source = 'config'")
            .await,
        1
    );
    sync_ids(&ws2, &[id(80)]).await;
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sla WHERE target_id = 'reply'")
            .await,
        1
    );
}

/// Issue 22, item 13: an analyst's open transaction on a calendar (an edit not yet committed)
/// holds neither the start of `sync` (seeding) nor its cycle's SLA recompute: the tickets are
/// stored, the postponement is logged, and the results catch up at a later run once the edit
/// is committed.
#[tokio::test]
async fn an_open_calendar_edit_holds_neither_sync_nor_its_sla_refresh() {
    let (db, sim, _) = setup().await;
    let ws = Workspace::configured(&sim, &db, "", &format!("discover = false\n{SLA_TOML}"));
    // Tuesday 2026-03-10, created 10:00 EDT, first reply 11:00 EDT (New York 09:00-17:00).
    let created = utc("2026-03-10T10:00:00-04:00");
    let reply = utc("2026-03-10T11:00:00-04:00");
    let ticket = |n: u64| {
        plain_ticket(
            n,
            json!({"status": 2, "created_at": ms(created), "updated_at": ms(reply),
                   "agent_entry_time": ms(reply), "agent_first_response_time": ms(reply)}),
        )
    };
    sim.state.put_ticket(&id(81), ticket(81));
    sync_ids(&ws, &[id(81)]).await;
    let reply_seconds = |n: u64| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT elapsed_seconds FROM ticket_sla WHERE ticket_id = $1 AND target_id = 'reply'",
            )
            .bind(id(n))
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(reply_seconds(81).await, Some(H));

    // An edit committed earlier (the results are stale) ...
    sqlx::query("UPDATE sla_targets SET description = 'edited' WHERE target_id = 'reply'")
        .execute(&db.pool)
        .await
        .unwrap();
    // ... and one left open: the analyst opens at 10:30 from now on and drops the
    // full-resolution target, which every ticket's clocks name.
    let mut analyst = db.pool.begin().await.unwrap();
    sqlx::raw_sql(
        "UPDATE business_hours SET opens_at = '10:30' WHERE calendar_id = 'ny';
         DELETE FROM sla_targets WHERE target_id = 'resolution';",
    )
    .execute(&mut *analyst)
    .await
    .unwrap();
    sim.state.put_ticket(&id(82), ticket(82));
    assert_ok(&ws.run(&["enqueue", &id(82)], &[], None).await);
    // Before: `sync` waited for the analyst's transaction (here: forever, the run timed out).
    let out = ws.run(&["sync"], &[], None).await;
    assert_ok(&out);
    let log = format!("{}{}", stdout(&out), stderr(&out));
    assert!(log.contains("[sla] not seeded now"), "{log}");
    assert!(log.contains("SLA results: postponed"), "{log}");
    assert_eq!(
        db.count("SELECT count(*) FROM tickets").await,
        2,
        "the ticket is stored meanwhile"
    );
    // Its own clocks could not be written (a row naming the target being dropped waits for
    // the analyst): left for later.
    assert_eq!(
        db.count("SELECT count(*) FROM sla_refresh_pending").await,
        1
    );

    analyst.commit().await.unwrap();
    assert_ok(&ws.run(&["sync"], &[], None).await);
    // 10:30 to 11:00 for both now; the dropped target is gone.
    assert_eq!(reply_seconds(81).await, Some(1800));
    assert_eq!(reply_seconds(82).await, Some(1800));
    assert_eq!(
        db.count("SELECT count(*) FROM ticket_sla WHERE target_id = 'resolution'")
            .await,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM sla_refresh_pending").await,
        0
    );
}

/// Issue 22, item 3, decided and documented in docs/analytics.md: a first reply after the
/// first close does not achieve first_reply (the clock stopped at the close); a customer wait
/// unanswered when the ticket closes is stopped at the close, and runs again from the
/// customer's message when the ticket is reopened (as full_resolution), so the answer after
/// the reopen achieves it, the closed time counted.
#[tokio::test]
async fn a_reply_after_the_first_close_and_a_wait_through_a_reopen() {
    let (db, sim, _) = setup().await;
    let ws = Workspace::configured(&sim, &db, "", &format!("discover = false\n{SLA_TOML}"));
    // Tuesday 2026-03-10 (EDT): created 10:00, the customer writes 10:05, closed 10:30
    // unanswered; reopened, Bob answers at 11:00.
    let at = |h: u32, m: u32| Utc.with_ymd_and_hms(2026, 3, 10, h + 4, m, 0).unwrap();
    sim.state.put_ticket(
        &id(83),
        plain_ticket(
            83,
            json!({"status": 51, "created_at": ms(at(10, 0)), "updated_at": ms(at(10, 30)),
                   "closed_at": ms(at(10, 30))}),
        ),
    );
    sim.state
        .put_messages(&id(83), vec![message(1, at(10, 5), "ou_gina")]);
    sync_ids(&ws, &[id(83)]).await;
    let rows = |pool: PgPool| async move {
        sqlx::query_as::<_, (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<i64>, Option<bool>)>(
            "SELECT target_id, achieved_at, stopped_at, elapsed_seconds, is_breached FROM ticket_sla
             WHERE ticket_id = $1 AND target_id IN ('reply', 'next-reply') ORDER BY target_id",
        )
        .bind(id(83))
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    // While closed: the wait (due 10:35) stopped at 10:30, 25 min, not breached; first reply
    // (120 business min, due 12:00) stopped at 10:30 after 30 min.
    assert_eq!(
        rows(db.pool.clone()).await,
        vec![
            (
                "next-reply".into(),
                None,
                Some(at(10, 30)),
                Some(1500),
                Some(false)
            ),
            (
                "reply".into(),
                None,
                Some(at(10, 30)),
                Some(1800),
                Some(false)
            ),
        ]
    );
    sim.state.update_ticket(&id(83), |t| {
        t["status"] = json!(2);
        t["updated_at"] = json!(ms(at(11, 0)));
        t["agent_entry_time"] = json!(ms(at(11, 0)));
        t["agent_first_response_time"] = json!(ms(at(11, 0)));
    });
    sim.state.put_messages(
        &id(83),
        vec![
            message(1, at(10, 5), "ou_gina"),
            message(2, at(11, 0), "ou_bob"),
        ],
    );
    sync_ids(&ws, &[id(83)]).await;
    // Reopened and answered at 11:00: the wait ran again and is achieved at 11:00 (55 min,
    // due 10:35: breached); first reply stays stopped at the first close (before: achieved at
    // 11:00 with 60 min).
    assert_eq!(
        rows(db.pool.clone()).await,
        vec![
            (
                "next-reply".into(),
                Some(at(11, 0)),
                None,
                Some(3300),
                Some(true)
            ),
            (
                "reply".into(),
                None,
                Some(at(10, 30)),
                Some(1800),
                Some(false)
            ),
        ]
    );
}
