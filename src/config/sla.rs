//! The optional `[sla]` section: business calendars and SLA targets seeded into the database
//! tables of the same meaning (`business_calendars`, `business_hours`, `business_holidays`,
//! `sla_targets`). Checked here, once, so a bad value names its key before anything is written.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The `[sla]` section as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSla {
    pub(super) default_calendar: Option<String>,
    #[serde(default)]
    pub(super) calendars: BTreeMap<String, RawCalendar>,
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
    /// `[sla.helpdesk_calendars]`: helpdesk (id or name) = calendar.
    #[serde(default)]
    pub(super) helpdesk_calendars: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCalendar {
    timezone: Option<String>,
    description: Option<String>,
    #[serde(default)]
    hours: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    holidays: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    id: Option<String>,
    metric: Option<String>,
    minutes: Option<i64>,
    business_hours: Option<bool>,
    calendar: Option<String>,
    priority: Option<i64>,
    channel: Option<i64>,
    ticket_type: Option<i64>,
    tag: Option<String>,
    custom_field: Option<String>,
    custom_field_value: Option<String>,
    helpdesk: Option<String>,
    description: Option<String>,
}

/// Calendars and targets to seed; empty when the file has no `[sla]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SlaSettings {
    /// The calendar marked `is_default` (business_seconds without a calendar, ticket_facts).
    pub default_calendar: Option<String>,
    /// `[sla.calendars.<id>]`, by id.
    pub calendars: Vec<CalendarSettings>,
    /// `[[sla.targets]]`, in file order.
    pub targets: Vec<TargetSettings>,
    /// `[sla.helpdesk_calendars]`: a helpdesk's own calendar (helpdesk id or name → calendar
    /// id), used for its tickets instead of the default one (`helpdesk_calendars`). Left out
    /// of the section's hash when empty, so a file without it seeds as before.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub helpdesk_calendars: BTreeMap<String, String>,
}

/// One business calendar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalendarSettings {
    /// `business_calendars.calendar_id`: the key under `[sla.calendars]`.
    pub id: String,
    /// IANA zone; checked against the database's zone list when seeding.
    pub timezone: String,
    pub description: Option<String>,
    pub hours: Vec<OpeningInterval>,
    pub holidays: Vec<Holiday>,
}

/// One weekly opening interval, local time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeningInterval {
    /// ISO weekday: 1 Monday ... 7 Sunday.
    pub weekday: i16,
    /// "HH:MM".
    pub opens_at: String,
    /// "HH:MM"; "24:00" is the end of the day; at or before `opens_at` means the next day.
    pub closes_at: String,
}

/// A closed local date, whole or in part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holiday {
    pub date: NaiveDate,
    /// "HH:MM", "00:00" for the whole day.
    pub closed_from: String,
    /// "HH:MM", "24:00" for the whole day.
    pub closed_until: String,
}

/// One SLA target (`sla_targets`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSettings {
    pub id: String,
    /// first_reply, next_reply, first_resolution or full_resolution.
    pub metric: String,
    pub minutes: i32,
    /// Count business time of the calendar (true) or all time.
    pub business_hours: bool,
    /// None: the default calendar.
    pub calendar: Option<String>,
    /// Lower wins among the targets of a metric matching a ticket.
    pub priority: i32,
    pub channel: Option<i16>,
    pub ticket_type: Option<i16>,
    pub tag: Option<String>,
    /// (field key_name / display name / id, value)
    pub custom_field: Option<(String, String)>,
    /// Only tickets of this helpdesk (its id, or its name in `helpdesks`); a target with a
    /// helpdesk wins over one without. Left out of the section's hash when None.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helpdesk: Option<String>,
    pub description: Option<String>,
}

impl SlaSettings {
    /// Nothing to seed.
    pub fn is_empty(&self) -> bool {
        self.calendars.is_empty()
            && self.targets.is_empty()
            && self.default_calendar.is_none()
            && self.helpdesk_calendars.is_empty()
    }
}

pub const METRICS: &[&str] = &[
    "first_reply",
    "next_reply",
    "first_resolution",
    "full_resolution",
];

const WEEKDAYS: &[(&str, &[i16])] = &[
    ("mon", &[1]),
    ("tue", &[2]),
    ("wed", &[3]),
    ("thu", &[4]),
    ("fri", &[5]),
    ("sat", &[6]),
    ("sun", &[7]),
    ("weekdays", &[1, 2, 3, 4, 5]),
    ("daily", &[1, 2, 3, 4, 5, 6, 7]),
];

pub(super) fn validate_sla(raw: RawSla) -> Result<SlaSettings, ConfigError> {
    let calendars = raw
        .calendars
        .into_iter()
        .map(|(id, c)| validate_calendar(id, c))
        .collect::<Result<Vec<_>, _>>()?;
    check_default_calendar(raw.default_calendar.as_deref(), &calendars)?;
    let helpdesk_calendars = helpdesk_calendars(raw.helpdesk_calendars)?;
    let mut targets: Vec<TargetSettings> = Vec::new();
    for (n, t) in raw.targets.into_iter().enumerate() {
        let target = validate_target(n, t, &targets)?;
        targets.push(target);
    }
    Ok(SlaSettings {
        default_calendar: raw.default_calendar,
        calendars,
        targets,
        helpdesk_calendars,
    })
}

/// `[sla.helpdesk_calendars]`: neither side empty. (Whether the calendar exists is checked
/// when seeding: it may be one made by hand.)
fn helpdesk_calendars(
    raw: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    for (helpdesk, calendar) in &raw {
        if helpdesk.trim().is_empty() {
            return Err(ConfigError::new(
                "sla.helpdesk_calendars: a helpdesk id or name is empty",
            ));
        }
        if calendar.trim().is_empty() {
            return Err(ConfigError::new(format!(
                "sla.helpdesk_calendars.{helpdesk}: the calendar is empty"
            )));
        }
    }
    Ok(raw)
}

/// One `[sla.calendars.<id>]`.
fn validate_calendar(id: String, c: RawCalendar) -> Result<CalendarSettings, ConfigError> {
    let key = format!("sla.calendars.{id}");
    if id.trim().is_empty() {
        return Err(ConfigError::new("sla.calendars: a calendar name is empty"));
    }
    let timezone = c.timezone.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        ConfigError::new(format!(
            "{key}.timezone: missing (an IANA name such as \"Asia/Shanghai\")"
        ))
    })?;
    let hours = opening_hours(&key, c.hours)?;
    let holidays = holidays(&key, c.holidays)?;
    Ok(CalendarSettings {
        id,
        timezone,
        description: c.description,
        hours,
        holidays,
    })
}

/// A calendar's `hours`: each day name's intervals, one per weekday it names, sorted by weekday
/// and opening time.
fn opening_hours(
    key: &str,
    days: BTreeMap<String, Vec<String>>,
) -> Result<Vec<OpeningInterval>, ConfigError> {
    let mut hours: Vec<OpeningInterval> = Vec::new();
    for (day, intervals) in days {
        let weekdays = weekdays_of(key, &day)?;
        for text in intervals {
            let (opens_at, closes_at) = opening_interval(key, &day, &text)?;
            for &weekday in weekdays {
                if hours
                    .iter()
                    .any(|h| h.weekday == weekday && h.opens_at == opens_at)
                {
                    return Err(ConfigError::new(format!(
                        "{key}.hours.{day}: two intervals open at {opens_at} on the same day"
                    )));
                }
                hours.push(OpeningInterval {
                    weekday,
                    opens_at: opens_at.clone(),
                    closes_at: closes_at.clone(),
                });
            }
        }
    }
    hours.sort_by(|a, b| (a.weekday, &a.opens_at).cmp(&(b.weekday, &b.opens_at)));
    Ok(hours)
}

/// The ISO weekdays a day name under `hours` stands for.
fn weekdays_of(key: &str, day: &str) -> Result<&'static [i16], ConfigError> {
    WEEKDAYS
        .iter()
        .find(|(name, _)| *name == day)
        .map(|(_, days)| *days)
        .ok_or_else(|| {
            ConfigError::new(format!(
                "{key}.hours.{day}: unknown day (mon, tue, wed, thu, fri, sat, sun, weekdays, daily)"
            ))
        })
}

/// One opening interval ("09:00-18:00"): opening and closing time.
fn opening_interval(key: &str, day: &str, text: &str) -> Result<(String, String), ConfigError> {
    let (opens_at, closes_at) = parse_interval(text).ok_or_else(|| {
        ConfigError::new(format!(
            "{key}.hours.{day}: {text:?} is not an interval like \"09:00-18:00\" \
             (24:00 ends the day; \"22:00-06:00\" crosses midnight)"
        ))
    })?;
    if opens_at == "24:00" || opens_at == closes_at {
        return Err(ConfigError::new(format!(
            "{key}.hours.{day}: {text:?} opens at 24:00 or is empty"
        )));
    }
    Ok((opens_at, closes_at))
}

/// A calendar's `holidays`.
fn holidays(key: &str, texts: Vec<String>) -> Result<Vec<Holiday>, ConfigError> {
    texts
        .iter()
        .map(|text| {
            parse_holiday(text).ok_or_else(|| {
                ConfigError::new(format!(
                    "{key}.holidays: {text:?} is not a date like \"2026-10-01\" or a partial \
                     day like \"2026-12-24 12:00-24:00\" (the closed part)"
                ))
            })
        })
        .collect()
}

/// `default_calendar` names a calendar of the section.
fn check_default_calendar(
    default: Option<&str>,
    calendars: &[CalendarSettings],
) -> Result<(), ConfigError> {
    if let Some(default) = default
        && !calendars.iter().any(|c| c.id == default)
    {
        return Err(ConfigError::new(format!(
            "sla.default_calendar: {default:?} is not a calendar under [sla.calendars]"
        )));
    }
    Ok(())
}

/// `[[sla.targets]]` number `n`; `earlier` are the targets before it (ids are unique).
fn validate_target(
    n: usize,
    t: RawTarget,
    earlier: &[TargetSettings],
) -> Result<TargetSettings, ConfigError> {
    let key = format!("sla.targets[{n}]");
    let id = target_id(&key, t.id, earlier)?;
    let metric = target_metric(&key, t.metric)?;
    let minutes = target_minutes(&key, t.minutes)?;
    let custom_field = target_custom_field(&key, t.custom_field, t.custom_field_value)?;
    let priority = target_priority(&key, t.priority)?;
    Ok(TargetSettings {
        id,
        metric,
        minutes,
        business_hours: t.business_hours.unwrap_or(true),
        calendar: t.calendar.filter(|c| !c.trim().is_empty()),
        priority,
        channel: small_code(&key, "channel", t.channel)?,
        ticket_type: small_code(&key, "ticket_type", t.ticket_type)?,
        tag: t.tag,
        custom_field,
        helpdesk: target_helpdesk(&key, t.helpdesk)?,
        description: t.description,
    })
}

fn target_id(
    key: &str,
    id: Option<String>,
    earlier: &[TargetSettings],
) -> Result<String, ConfigError> {
    let id = id
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| ConfigError::new(format!("{key}.id: missing")))?;
    if earlier.iter().any(|x| x.id == id) {
        return Err(ConfigError::new(format!(
            "{key}.id: {id:?} is used by another target"
        )));
    }
    Ok(id)
}

fn target_metric(key: &str, metric: Option<String>) -> Result<String, ConfigError> {
    let metric = metric.unwrap_or_default();
    if !METRICS.contains(&metric.as_str()) {
        return Err(ConfigError::new(format!(
            "{key}.metric: {metric:?} must be one of {}",
            METRICS.join(", ")
        )));
    }
    Ok(metric)
}

fn target_minutes(key: &str, minutes: Option<i64>) -> Result<i32, ConfigError> {
    match minutes {
        Some(m) if (1..=i32::MAX as i64).contains(&m) => Ok(m as i32),
        Some(m) => Err(ConfigError::new(format!(
            "{key}.minutes: {m} must be above 0"
        ))),
        None => Err(ConfigError::new(format!("{key}.minutes: missing"))),
    }
}

fn target_custom_field(
    key: &str,
    field: Option<String>,
    value: Option<String>,
) -> Result<Option<(String, String)>, ConfigError> {
    match (field, value) {
        (None, None) => Ok(None),
        (Some(f), Some(v)) => Ok(Some((f, v))),
        _ => Err(ConfigError::new(format!(
            "{key}.custom_field: custom_field and custom_field_value go together"
        ))),
    }
}

/// A helpdesk id or name; not empty when given.
fn target_helpdesk(key: &str, helpdesk: Option<String>) -> Result<Option<String>, ConfigError> {
    match helpdesk {
        Some(h) if h.trim().is_empty() => Err(ConfigError::new(format!(
            "{key}.helpdesk: empty (a helpdesk id, or its name)"
        ))),
        other => Ok(other),
    }
}

/// Lower wins; 100 when not given.
fn target_priority(key: &str, priority: Option<i64>) -> Result<i32, ConfigError> {
    match priority {
        None => Ok(100),
        Some(p) => i32::try_from(p)
            .map_err(|_| ConfigError::new(format!("{key}.priority: {p} is out of range"))),
    }
}

/// A channel or ticket type code (`name`), which the tables keep as smallint.
fn small_code(key: &str, name: &str, v: Option<i64>) -> Result<Option<i16>, ConfigError> {
    v.map(|v| {
        i16::try_from(v)
            .map_err(|_| ConfigError::new(format!("{key}.{name}: {v} is not a channel/type code")))
    })
    .transpose()
}

/// "HH:MM" with 24:00 allowed, normalized to two digits each.
fn parse_clock(text: &str) -> Option<String> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 || h == 24 && m == 0).then(|| format!("{h:02}:{m:02}"))
}

fn parse_interval(text: &str) -> Option<(String, String)> {
    let (a, b) = text.split_once('-')?;
    Some((parse_clock(a)?, parse_clock(b)?))
}

fn parse_holiday(text: &str) -> Option<Holiday> {
    let text = text.trim();
    let (date, part) = match text.split_once(' ') {
        Some((d, p)) => (d, Some(p)),
        None => (text, None),
    };
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let (closed_from, closed_until) = match part {
        None => ("00:00".to_owned(), "24:00".to_owned()),
        Some(p) => parse_interval(p).filter(|(a, b)| a < b)?,
    };
    Some(Holiday {
        date,
        closed_from,
        closed_until,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<SlaSettings, ConfigError> {
        let raw: RawSla = figment::Figment::new()
            .merge(figment::providers::Serialized::defaults(RawSla::default()))
            .merge(<figment::providers::Toml as figment::providers::Format>::string(toml))
            .extract()
            .map_err(|e| ConfigError::new(e.to_string()))?;
        validate_sla(raw)
    }

    #[test]
    fn calendars_and_targets_parse_into_rows() {
        let s = parse(
            r#"
            default_calendar = "office"
            [calendars.office]
            timezone = "Asia/Shanghai"
            hours = { weekdays = ["09:00-12:00", "13:00-18:00"], sat = ["22:00-6:00"] }
            holidays = ["2026-10-01", "2026-12-24 12:00-24:00"]
            [[targets]]
            id = "reply"
            metric = "first_reply"
            minutes = 240
            tag = "vip"
            [[targets]]
            id = "it-reply"
            metric = "first_reply"
            minutes = 60
            helpdesk = "7000000000000000002"
            [helpdesk_calendars]
            "7000000000000000002" = "office"
            "#,
        )
        .unwrap();
        let c = &s.calendars[0];
        assert_eq!(c.hours.len(), 11);
        assert_eq!(
            c.hours[10],
            OpeningInterval {
                weekday: 6,
                opens_at: "22:00".into(),
                closes_at: "06:00".into()
            }
        );
        assert_eq!(c.holidays[1].closed_from, "12:00");
        assert_eq!(c.holidays[1].closed_until, "24:00");
        assert_eq!(c.holidays[0].closed_until, "24:00");
        let t = &s.targets[0];
        assert_eq!((t.minutes, t.business_hours, t.priority), (240, true, 100));
        assert_eq!(t.tag.as_deref(), Some("vip"));
        assert_eq!(t.helpdesk, None);
        assert_eq!(
            s.targets[1].helpdesk.as_deref(),
            Some("7000000000000000002")
        );
        assert_eq!(
            s.helpdesk_calendars
                .get("7000000000000000002")
                .map(String::as_str),
            Some("office")
        );
    }

    /// A section without helpdesk conditions hashes as before they existed: upgrading does
    /// not seed it again.
    #[test]
    fn helpdesk_conditions_are_left_out_of_the_serialized_section_when_unused() {
        let s = parse(
            r#"
            [[targets]]
            id = "reply"
            metric = "first_reply"
            minutes = 240
            "#,
        )
        .unwrap();
        let text = serde_json::to_string(&s).unwrap();
        assert!(!text.contains("helpdesk"), "{text}");
    }

    /// The commented-out `[sla]` example of config.toml.example parses as it reads.
    #[test]
    fn the_example_section_is_valid() {
        let example = include_str!("../../config.toml.example");
        let section: String = example
            .split_once("# [sla]\n")
            .expect("an [sla] example")
            .1
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let s = parse(&section.replace("[sla.", "[").replace("[[sla.", "[[")).unwrap();
        assert_eq!(s.default_calendar.as_deref(), Some("support"));
        assert_eq!(s.calendars[0].hours.len(), 11);
        assert_eq!(s.calendars[0].holidays.len(), 3);
        assert_eq!(s.targets.len(), 3);
        assert_eq!(
            (s.targets[0].priority, s.targets[0].business_hours),
            (10, false)
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (
                "[calendars.a]\nhours = { mon = [\"09:00-18:00\"] }",
                "sla.calendars.a.timezone",
            ),
            (
                "[calendars.a]\ntimezone = \"UTC\"\nhours = { monday = [\"09:00-18:00\"] }",
                "sla.calendars.a.hours.monday",
            ),
            (
                "[calendars.a]\ntimezone = \"UTC\"\nhours = { mon = [\"9-18\"] }",
                "sla.calendars.a.hours.mon",
            ),
            (
                "[calendars.a]\ntimezone = \"UTC\"\nhours = { mon = [\"25:00-26:00\"] }",
                "sla.calendars.a.hours.mon",
            ),
            (
                "[calendars.a]\ntimezone = \"UTC\"\nholidays = [\"2026-02-30\"]",
                "sla.calendars.a.holidays",
            ),
            ("default_calendar = \"x\"", "sla.default_calendar"),
            (
                "[[targets]]\nid = \"t\"\nmetric = \"reply\"\nminutes = 5",
                "sla.targets[0].metric",
            ),
            (
                "[[targets]]\nid = \"t\"\nmetric = \"first_reply\"\nminutes = 0",
                "sla.targets[0].minutes",
            ),
            (
                "[[targets]]\nid = \"t\"\nmetric = \"first_reply\"\nminutes = 5\ncustom_field = \"x\"",
                "sla.targets[0].custom_field",
            ),
            (
                "[[targets]]\nid = \"t\"\nmetric = \"first_reply\"\nminutes = 5\nhelpdesk = \"\"",
                "sla.targets[0].helpdesk",
            ),
            (
                "[helpdesk_calendars]\n\"7001\" = \"\"",
                "sla.helpdesk_calendars.7001",
            ),
        ];
        for (toml, key) in cases {
            let e = parse(toml).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
