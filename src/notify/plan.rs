//! Which alerts a batch's events cause, for which advocate, by which channel. Pure: no store, no
//! clock (the batch's `now` is given), like the core.
//!
//! In three steps, so that nothing reads the store while a batch is folded:
//! 1. [`Planner::facts`], as each event is folded: what the alerts of this event can depend on,
//!    taken from the student's state at that moment (most events of a backfill take nothing);
//! 2. [`View`]: the stored advocates and absence marks those facts name, loaded once per batch
//!    (`notify::tables`);
//! 3. [`Planner::plan`]: the facts in order over the view → [`Intents`], which the pipeline writes
//!    in the batch's commit, so a notification is durable exactly when the state change that
//!    caused it is.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use time::Date;

use super::address::Addresser;
use super::caseload::FileCaseloads;
use super::config::{DeliveryMode, NotifyConfig};
use super::{AdvocateRecord, Alert, AlertKind, DigestItem, FailedNotification, Notification};
use crate::core::{
    AdvocateContact, Change, Event, EventBody, Flag, FlagChange, StudentState, Version,
};

/// The notification planner: configuration and the assignments file.
#[derive(Debug)]
pub struct Planner {
    config: Arc<NotifyConfig>,
    /// The assignments file's caseloads (a `roster.assignments` record wins over them).
    advocate_of: HashMap<String, String>,
    addresser: Addresser,
    default_tz: TimeZone,
}

/// What the alerts of one applied event can depend on, taken as it was folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// An assignment event's contact details for its advocate.
    contact: Option<(String, AdvocateContact, Version)>,
    alert: Option<AlertFacts>,
}

/// The alert side of [`Facts`]: the student's advocate then, and what may be news.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AlertFacts {
    student_id: String,
    advocate_id: String,
    kind: EventKind,
    date: Date,
    recorded_at_s: i64,
    /// Whether the student's record was an absence on UTC's yesterday, today and tomorrow
    /// (every timezone's today is one of them); all false when the event cannot alert an absence.
    absent_near: [bool; 3],
    /// The flag changes that are news (not a move to a new school year's clears), when the event
    /// is recent enough to alert about.
    flags: Vec<(Change, Flag, String, Date)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Attendance,
    Assignment,
    Other,
}

/// The stored records a batch's facts name, loaded once before planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct View {
    /// Advocates' stored contact details (`None`: none streamed).
    pub advocates: HashMap<String, Option<AdvocateRecord>>,
    /// Students' last same-day absence alert (`None`: never).
    pub absence_marks: HashMap<String, Option<Date>>,
}

impl View {
    /// The advocate ids and student ids whose records the facts need.
    pub fn wanted(facts: &[Facts]) -> (Vec<&str>, Vec<&str>) {
        let mut advocates = Vec::new();
        let mut students = Vec::new();
        for f in facts {
            if let Some((id, _, _)) = &f.contact {
                advocates.push(id.as_str());
            }
            if let Some(a) = &f.alert {
                advocates.push(a.advocate_id.as_str());
                if a.absent_near.iter().any(|x| *x) {
                    students.push(a.student_id.as_str());
                }
            }
        }
        for ids in [&mut advocates, &mut students] {
            ids.sort_unstable();
            ids.dedup();
        }
        (advocates, students)
    }
}

/// What a batch's events queue for advocates: written in the batch's commit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Intents {
    /// Advocates whose contact details changed.
    pub advocates: Vec<(String, AdvocateRecord)>,
    /// `(student_id, date)`: a same-day absence alert was queued for this student and date.
    pub absence_alerted: Vec<(String, Date)>,
    pub notifications: Vec<Notification>,
    /// `(due, item)`: alerts waiting for a digest due at unix milliseconds `due`.
    pub digest_items: Vec<(i64, DigestItem)>,
    pub failed: Vec<FailedNotification>,
    /// Webhook URLs given again by an advocate's newer record: no longer disabled.
    pub enabled_endpoints: Vec<String>,
}

/// A batch's time: the instant that decides what "today" is, and UTC's date then (every
/// timezone's today is within a day of it), taken once per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub at: Timestamp,
    utc_today: Date,
}

impl Now {
    pub fn new(at: Timestamp) -> Now {
        Now { at, utc_today: from_jiff(TimeZone::UTC.to_datetime(at).date()) }
    }
}

/// A `jiff` civil date as the `time` date of the core.
pub(crate) fn from_jiff(d: jiff::civil::Date) -> Date {
    let month = time::Month::try_from(d.month() as u8).unwrap_or(time::Month::January);
    Date::from_calendar_date(i32::from(d.year()), month, d.day() as u8).unwrap_or(Date::MIN)
}

impl Planner {
    /// `config` must have passed [`NotifyConfig::check`].
    pub fn new(config: Arc<NotifyConfig>, file: FileCaseloads) -> Planner {
        let default_tz = TimeZone::get(&config.default_timezone).unwrap_or(TimeZone::UTC);
        let addresser = Addresser::new(config.clone(), file.contacts);
        Planner { config, advocate_of: file.advocate_of, addresser, default_tz }
    }

    /// How alerts reach advocates (delivery shares it).
    pub fn addresser(&self) -> &Addresser {
        &self.addresser
    }

    /// Step 1: the facts of one applied (not duplicate) event; `state` is the student's state
    /// after it, `changes` the flag changes it caused. `None`: it cannot cause anything.
    pub fn facts(
        &self,
        event: &Event,
        state: &StudentState,
        changes: &[FlagChange],
        now: &Now,
    ) -> Option<Facts> {
        let contact = match &event.body {
            EventBody::AdvocateAssigned { advocate_id: Some(id), advocate: Some(contact) } => {
                Some((id.to_string(), contact.clone(), Version::of(event)))
            }
            _ => None,
        };
        let alert = self.alert_facts(event, state, changes, now);
        (contact.is_some() || alert.is_some()).then_some(Facts { contact, alert })
    }

    /// Step 1 for flag changes no event of the student caused: a school day passed, or a
    /// calendar changed (`date`: the day; `recorded_at_s`: when the record that made it so was
    /// recorded). Only flag alerts: no absence was recorded.
    pub fn facts_of_day(
        &self,
        student_id: &str,
        state: &StudentState,
        changes: &[FlagChange],
        date: Date,
        recorded_at_s: i64,
        now: &Now,
    ) -> Option<Facts> {
        let advocate_id = match state.assignment() {
            Some(a) => a.advocate_id.as_deref(),
            None => self.advocate_of.get(student_id).map(String::as_str),
        }?;
        if changes.is_empty() || !self.is_recent(date, recorded_at_s, now.utc_today, now.at, 1) {
            return None;
        }
        let flags = (changes.iter())
            .filter(|c| c.evidence.is_some() || c.change == Change::Raised)
            .map(|c| (c.change, c.flag, c.flag_id(), c.as_of))
            .collect();
        let alert = AlertFacts {
            student_id: student_id.to_owned(),
            advocate_id: advocate_id.to_owned(),
            kind: EventKind::Other,
            date,
            recorded_at_s,
            absent_near: [false; 3],
            flags,
        };
        Some(Facts { contact: None, alert: Some(alert) })
    }

    fn alert_facts(
        &self,
        event: &Event,
        state: &StudentState,
        changes: &[FlagChange],
        now: &Now,
    ) -> Option<AlertFacts> {
        let advocate_id = match state.assignment() {
            // An assignment from the topic wins over the file's; `advocate_id: null` ends it.
            Some(a) => a.advocate_id.as_deref(),
            None => self.advocate_of.get(&*event.student_id).map(String::as_str),
        }?;
        // Events about other dates than UTC's today ± 1 and flag changes of old events cannot
        // alert, so they cost nothing more: a backfill, or a partition rebuilt from its
        // beginning, streams millions of them.
        let utc_today = now.utc_today;
        let kind = match event.body {
            EventBody::AttendanceRecorded { .. } => EventKind::Attendance,
            EventBody::AdvocateAssigned { .. } => EventKind::Assignment,
            _ => EventKind::Other,
        };
        let may_absence = match kind {
            EventKind::Attendance => (event.date - utc_today).whole_days().abs() <= 1,
            EventKind::Assignment => true,
            EventKind::Other => false,
        };
        let recorded_at_s = event.recorded_at.secs;
        let may_flag =
            !changes.is_empty() && self.is_recent(event.date, recorded_at_s, utc_today, now.at, 1);
        if !may_absence && !may_flag {
            return None;
        }
        let mut absent_near = [false; 3];
        if may_absence {
            for (i, near) in absent_near.iter_mut().enumerate() {
                let day = utc_today + time::Duration::days(i as i64 - 1);
                *near = state.attendance_on(day).is_some_and(|s| s.is_absence());
            }
        }
        // A move to a new school year clears every flag with no evidence: bookkeeping, not news
        // about the student.
        let news = changes.iter().filter(|c| c.evidence.is_some() || c.change == Change::Raised);
        let flags = match may_flag {
            true => news.map(|c| (c.change, c.flag, c.flag_id(), c.as_of)).collect(),
            false => Vec::new(),
        };
        Some(AlertFacts {
            student_id: event.student_id.to_string(),
            advocate_id: advocate_id.to_owned(),
            kind,
            date: event.date,
            recorded_at_s,
            absent_near,
            flags,
        })
    }

    /// Step 3: the batch's facts, in the order of their events, over the stored `view`.
    pub fn plan(&self, view: &View, facts: &[Facts], now: &Now) -> Intents {
        let mut batch = BatchView { view, advocates: HashMap::new(), marks: HashMap::new() };
        let mut out = Intents::default();
        for f in facts {
            if let Some((id, contact, version)) = &f.contact {
                batch.update_contact(&mut out, id, contact, version);
            }
            if let Some(a) = &f.alert {
                self.plan_alerts(&mut batch, &mut out, a, now);
            }
        }
        out.advocates = batch.advocates.into_iter().collect();
        out.advocates.sort_by(|a, b| a.0.cmp(&b.0));
        out.absence_alerted = batch.marks.into_iter().collect();
        out.absence_alerted.sort();
        out
    }

    fn plan_alerts(&self, batch: &mut BatchView<'_>, out: &mut Intents, a: &AlertFacts, now: &Now) {
        let stored = batch.contact(&a.advocate_id);
        let contact = stored.or_else(|| self.addresser.file_contact(&a.advocate_id).cloned());
        let tz = contact
            .as_ref()
            .and_then(|c| c.timezone.as_deref())
            .and_then(|name| TimeZone::get(name).ok())
            .unwrap_or_else(|| self.default_tz.clone());
        let today = from_jiff(tz.to_datetime(now.at).date());

        let mut alerts = Vec::new();
        // Today's absence alerts when its record is folded, or when the assignment that puts the
        // student on a caseload is (the two topics are consumed in no particular order).
        let about_today = match a.kind {
            EventKind::Attendance => a.date == today,
            EventKind::Assignment => true,
            EventKind::Other => false,
        };
        let near = usize::try_from((today - now.utc_today).whole_days() + 1).ok();
        let absent_today = near.and_then(|i| a.absent_near.get(i)).copied().unwrap_or(false);
        if about_today && absent_today && batch.mark(&a.student_id) != Some(today) {
            batch.marks.insert(a.student_id.clone(), today);
            alerts.push(Alert {
                kind: AlertKind::Absence,
                student_id: a.student_id.clone(),
                date: today,
                flag: None,
            });
        }
        if !a.flags.is_empty() && self.is_recent(a.date, a.recorded_at_s, today, now.at, 0) {
            alerts.extend(a.flags.iter().map(|(change, flag, flag_id, as_of)| Alert {
                kind: AlertKind::of_change(*change),
                student_id: a.student_id.clone(),
                date: *as_of,
                flag: Some((*flag, flag_id.clone())),
            }));
        }
        for alert in alerts {
            self.route(out, &a.advocate_id, contact.as_ref(), &tz, alert, now.at);
        }
    }

    /// Whether an event dated `date`, recorded at `recorded_at_s`, is recent enough to alert about
    /// a flag change it caused (with `slack_days` more of window).
    fn is_recent(
        &self,
        date: Date,
        recorded_at_s: i64,
        today: Date,
        now: Timestamp,
        slack_days: i64,
    ) -> bool {
        let window = i64::from(self.config.flag_alert_window_days) + slack_days;
        let by_date = (today - date).whole_days() <= window;
        by_date || now.as_second() - recorded_at_s <= window * 86_400
    }

    /// Queues `alert` for `advocate_id`: now on each channel, or into the next daily digest.
    fn route(
        &self,
        out: &mut Intents,
        advocate_id: &str,
        contact: Option<&AdvocateContact>,
        tz: &TimeZone,
        alert: Alert,
        now: Timestamp,
    ) {
        let now_ms = now.as_millisecond();
        let (mode, at) = self.config.delivery_of(advocate_id);
        if mode == DeliveryMode::DailyDigest {
            let mut day = tz.to_datetime(now).date();
            // The first digest time after now: today's, or tomorrow's once today's has passed.
            let due = loop {
                let due = tz.to_timestamp(day.to_datetime(at));
                match due {
                    Ok(due) if due > now => break due,
                    _ => day = day.tomorrow().unwrap_or(day),
                }
            };
            let item = DigestItem {
                advocate_id: advocate_id.to_owned(),
                digest_of: from_jiff(day),
                alert,
                queued_at_ms: now_ms,
            };
            out.digest_items.push((due.as_millisecond(), item));
            return;
        }
        let about = alert_about(&alert);
        let (notifications, failed) =
            self.addresser.addressed(&about, advocate_id, contact, None, vec![alert], now_ms);
        out.notifications.extend(notifications);
        out.failed.extend(failed);
    }
}

/// The stored view with what the batch decided so far (write batches cannot read their own
/// writes).
struct BatchView<'v> {
    view: &'v View,
    advocates: HashMap<String, AdvocateRecord>,
    marks: HashMap<String, Date>,
}

impl BatchView<'_> {
    fn update_contact(
        &mut self,
        out: &mut Intents,
        advocate_id: &str,
        contact: &AdvocateContact,
        version: &Version,
    ) {
        let current = match self.advocates.get(advocate_id) {
            Some(r) => Some(&r.version),
            None => {
                self.view.advocates.get(advocate_id).and_then(|r| r.as_ref().map(|r| &r.version))
            }
        };
        if current.is_some_and(|v| v >= version) {
            return;
        }
        if let Some(url) = &contact.webhook_url {
            out.enabled_endpoints.push(url.clone());
        }
        let record = AdvocateRecord { contact: contact.clone(), version: version.clone() };
        self.advocates.insert(advocate_id.to_owned(), record);
    }

    /// The advocate's streamed contact details: this batch's, then the store's.
    fn contact(&self, advocate_id: &str) -> Option<AdvocateContact> {
        match self.advocates.get(advocate_id) {
            Some(r) => Some(r.contact.clone()),
            None => self.view.advocates.get(advocate_id)?.as_ref().map(|r| r.contact.clone()),
        }
    }

    fn mark(&self, student_id: &str) -> Option<Date> {
        match self.marks.get(student_id) {
            Some(d) => Some(*d),
            None => self.view.absence_marks.get(student_id).copied().flatten(),
        }
    }
}

/// What an alert is about, for its notification id: a student's absence on a date, or one change
/// of one flag.
fn alert_about(alert: &Alert) -> String {
    match &alert.flag {
        Some((_, flag_id)) => format!("{}/{flag_id}", alert.kind.as_str()),
        None => format!("{}/{}/{}", alert.kind.as_str(), alert.student_id, alert.date),
    }
}

/// The digest's id basis: one per advocate and local date.
pub fn digest_about(date: Date) -> String {
    format!("digest/{date}")
}

#[cfg(test)]
mod tests {
    //! The planner without a store: events folded by the core, facts taken, a view given.
    use super::*;
    use crate::core::{Outcome, Rules, decode};
    use crate::notify::Destination;

    const NOW: &str = "2026-09-14T14:30:00Z"; // 09:30 in Chicago
    const URL: &str = "https://advocates.example.org/hooks/adv-1";

    fn planner() -> Planner {
        let mut config = NotifyConfig::default();
        config.webhook.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into();
        config.default_timezone = "America/Chicago".into();
        Planner::new(Arc::new(config), FileCaseloads::default())
    }

    /// Folds `events` for one student and takes the facts of each, as the pipeline does.
    fn facts_of(planner: &Planner, events: &[String]) -> Vec<Facts> {
        let now = Now::new(NOW.parse().unwrap());
        let mut state = StudentState::default();
        let mut facts = Vec::new();
        for e in events {
            let event = decode(e.as_bytes()).unwrap();
            let Outcome::Applied(changes) = state.apply(&event, &Rules::default()) else {
                continue;
            };
            facts.extend(planner.facts(&event, &state, &changes, &now));
        }
        facts
    }

    fn assignment() -> String {
        format!(
            r#"{{"type":"assignment","event_id":"as-1","student_id":"stu-1","school_id":"sch-1","date":"2026-09-01","recorded_at":"2026-09-01T08:00:00Z","advocate_id":"adv-1","advocate":{{"webhook_url":"{URL}"}}}}"#
        )
    }

    fn absence(id: &str, date: &str) -> String {
        format!(
            r#"{{"type":"attendance","event_id":"{id}","student_id":"stu-1","school_id":"sch-1","date":"{date}","recorded_at":"{date}T13:00:00Z","status":"absent_unexcused"}}"#
        )
    }

    #[test]
    fn an_absence_today_is_planned_once_per_student_and_day_from_the_view() {
        let planner = planner();
        let now = Now::new(NOW.parse().unwrap());
        let facts = facts_of(&planner, &[assignment(), absence("a-1", "2026-09-14")]);
        let (advocates, students) = View::wanted(&facts);
        assert_eq!((advocates, students), (vec!["adv-1"], vec!["stu-1"]));

        let intents = planner.plan(&View::default(), &facts, &now);
        let absences: Vec<_> = (intents.notifications.iter())
            .filter(|n| n.alerts.iter().any(|a| a.kind == AlertKind::Absence))
            .collect();
        assert_eq!(absences.len(), 1, "{intents:?}");
        assert_eq!(absences[0].to, Destination::Webhook(URL.into()));
        let today = Date::from_calendar_date(2026, time::Month::September, 14).unwrap();
        assert_eq!(intents.absence_alerted, [("stu-1".to_owned(), today)]);
        assert_eq!(intents.advocates.len(), 1, "the streamed contact is kept");

        // Already alerted today (a mark in the store): nothing again.
        let mut view = View::default();
        view.absence_marks.insert("stu-1".into(), Some(today));
        let again = planner.plan(&view, &facts, &now);
        assert!(
            again
                .notifications
                .iter()
                .all(|n| n.alerts.iter().all(|a| a.kind != AlertKind::Absence))
        );
        assert!(again.absence_alerted.is_empty());

        // A newer stored contact wins over this batch's older record: no advocate update.
        let mut view = View::default();
        let newer = AdvocateRecord {
            contact: AdvocateContact::default(),
            version: Version::of(
                &decode(assignment().replace("2026-09-01T08", "2026-09-02T08").as_bytes()).unwrap(),
            ),
        };
        view.advocates.insert("adv-1".into(), Some(newer));
        let stale = planner.plan(&view, &facts, &now);
        assert!(stale.advocates.is_empty());
        assert!(stale.notifications.is_empty(), "the stored contact has no channel");
        assert_eq!(stale.failed.len(), 1, "kept as a failed record, not silence");
    }

    #[test]
    fn backfilled_history_takes_no_facts_and_plans_nothing() {
        let planner = planner();
        let old: Vec<String> =
            (1..=12).map(|d| absence(&format!("a-{d}"), &format!("2026-06-{d:02}"))).collect();
        let mut events = vec![assignment()];
        events.extend(old);
        let facts = facts_of(&planner, &events);
        // Only the assignment's contact details: no alert can come of old absences.
        assert_eq!(facts.len(), 1);
        assert!(
            facts[0].alert.is_none() || facts[0].alert.as_ref().is_some_and(|a| a.flags.is_empty())
        );
        let intents = planner.plan(&View::default(), &facts, &Now::new(NOW.parse().unwrap()));
        assert!(intents.notifications.is_empty() && intents.digest_items.is_empty());
    }
}
