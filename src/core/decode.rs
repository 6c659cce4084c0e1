//! Bytes → [`Event`], or a [`DecodeError`] that names the field and the problem.
//!
//! One pass of serde into [`RawEvent`], whose fields accept any JSON value and remember its kind,
//! then checks per event type. Loose fields matter: the contract ignores unknown and irrelevant
//! fields, so a `status: 5` on a discipline event is fine, while the same on an attendance event is
//! bad input; only the type decides which fields are checked. The decoder never panics.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use time::{Date, Month};

use super::event::{
    AdvocateContact, AttendanceStatus, DisciplineAction, Event, EventBody, EventKind, Mark,
    RecordedAt, Subject,
};

/// Why an input message is not a valid v1 event. Bad input: dead-letter it and go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{problem}", field.as_deref().map(|f| format!("{f}: ")).unwrap_or_default())]
pub struct DecodeError {
    /// `type.field` (e.g. `attendance.status`), or `None` when the message as a whole is wrong.
    pub field: Option<String>,
    pub problem: String,
}

impl DecodeError {
    /// Every label [`DecodeError::reason_label`] gives.
    pub const REASON_LABELS: [&'static str; 3] = ["not_json", "bad_type", "bad_field"];

    /// A bounded label for metrics: `not_json` (the message as a whole), `bad_type` (a missing
    /// or unknown `type`), `bad_field` (any other field).
    pub fn reason_label(&self) -> &'static str {
        let [not_json, bad_type, bad_field] = Self::REASON_LABELS;
        match self.field.as_deref() {
            None => not_json,
            Some("type") => bad_type,
            Some(_) => bad_field,
        }
    }

    fn whole(problem: impl Into<String>) -> Self {
        DecodeError { field: None, problem: problem.into() }
    }
}

/// Decodes one JSON message (event contract v1).
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, DecodeError> {
    // One UTF-8 check of the whole message is cheaper than serde_json's check of every string.
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DecodeError::whole(format!("invalid JSON: not UTF-8 text ({e})")))?;
    let json_error = |e: serde_json::Error| {
        let kind = if e.is_data() { "not an event" } else { "invalid JSON" };
        DecodeError::whole(format!("{kind}: {e}"))
    };
    let mut de = serde_json::Deserializer::from_str(text);
    // Validating inside the visitor keeps the large raw struct from being moved around.
    let event = de::Deserializer::deserialize_map(&mut de, EventVisitor(PhantomData))
        .map_err(json_error)?;
    de.end().map_err(json_error)?;
    event
}

/// Takes only a JSON object (a derived struct would also take an array of its fields in order)
/// and validates it where it was parsed.
struct EventVisitor<'a>(PhantomData<Event<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for EventVisitor<'a> {
    type Value = Result<Event<'a>, DecodeError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let raw = RawEvent::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(raw.validate())
    }
}

/// A JSON value as the decoder saw it; objects keep only the advocate fields.
#[derive(Debug, Default)]
enum Field<'a> {
    #[default]
    Missing,
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    Array,
    Object(Box<RawAdvocate<'a>>),
}

impl Field<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Field::Missing => "nothing",
            Field::Null => "null",
            Field::Bool(_) => "a boolean",
            Field::Num(_) => "a number",
            Field::Str(_) => "a string",
            Field::Array => "an array",
            Field::Object(_) => "an object",
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Field<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FieldVisitor(PhantomData))
    }
}

struct FieldVisitor<'a>(PhantomData<Field<'a>>);

impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
    type Value = Field<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Field::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Field::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Field::Num(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let adv = RawAdvocate::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(Field::Object(Box::new(adv)))
    }
}

/// Every field any event type defines; which ones are checked depends on `type`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawEvent<'a> {
    #[serde(rename = "type", borrow)]
    ty: Field<'a>,
    #[serde(borrow)]
    event_id: Field<'a>,
    #[serde(borrow)]
    student_id: Field<'a>,
    #[serde(borrow)]
    school_id: Field<'a>,
    #[serde(borrow)]
    date: Field<'a>,
    #[serde(borrow)]
    recorded_at: Field<'a>,
    #[serde(borrow)]
    status: Field<'a>,
    #[serde(borrow)]
    referral_id: Field<'a>,
    #[serde(borrow)]
    behavior: Field<'a>,
    #[serde(borrow)]
    action: Field<'a>,
    #[serde(borrow)]
    action_days: Field<'a>,
    #[serde(borrow)]
    retracted: Field<'a>,
    #[serde(borrow)]
    section_id: Field<'a>,
    #[serde(borrow)]
    course_code: Field<'a>,
    #[serde(borrow)]
    subject: Field<'a>,
    #[serde(borrow)]
    grading_period: Field<'a>,
    #[serde(borrow)]
    letter_grade: Field<'a>,
    #[serde(borrow)]
    numeric_grade: Field<'a>,
    #[serde(borrow)]
    advocate_id: Field<'a>,
    #[serde(borrow)]
    advocate: Field<'a>,
    #[serde(borrow)]
    exit_date: Field<'a>,
    #[serde(borrow)]
    instructional: Field<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawAdvocate<'a> {
    #[serde(borrow)]
    name: Field<'a>,
    #[serde(borrow)]
    email: Field<'a>,
    #[serde(borrow)]
    webhook_url: Field<'a>,
    #[serde(borrow)]
    timezone: Field<'a>,
}

/// Checks fields of one event type; `prefix` is the type (or `assignment.advocate`).
struct Checker<'p> {
    prefix: &'p str,
}

impl Checker<'_> {
    fn err(&self, name: &str, problem: impl Into<String>) -> DecodeError {
        DecodeError { field: Some(format!("{}.{name}", self.prefix)), problem: problem.into() }
    }

    fn wrong(&self, name: &str, expected: &str, got: &Field<'_>) -> DecodeError {
        match got {
            Field::Missing => self.err(name, "missing required field"),
            other => self.err(name, format!("expected {expected}, got {}", other.kind())),
        }
    }

    /// A required, non-empty string.
    fn id<'a>(&self, name: &str, f: Field<'a>) -> Result<Cow<'a, str>, DecodeError> {
        match f {
            Field::Str(s) if !s.is_empty() => Ok(s),
            Field::Str(_) => Err(self.err(name, "must not be empty")),
            other => Err(self.wrong(name, "a non-empty string", &other)),
        }
    }

    /// An optional string: absent and `null` are the same.
    fn opt_str(&self, name: &str, f: Field<'_>) -> Result<Option<String>, DecodeError> {
        match f {
            Field::Missing | Field::Null => Ok(None),
            Field::Str(s) => Ok(Some(s.into_owned())),
            other => Err(self.wrong(name, "a string", &other)),
        }
    }

    fn one_of<T: Copy>(
        &self,
        name: &str,
        f: &Field<'_>,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, DecodeError> {
        let expected = || format!("one of {}", names.join(", "));
        match f {
            Field::Str(s) => parse(s).ok_or_else(|| {
                self.err(name, format!("expected {}, got {}", expected(), quoted(s)))
            }),
            other => Err(self.wrong(name, &expected(), other)),
        }
    }

    /// An optional flag: absent and `null` are `false`.
    fn opt_bool(&self, name: &str, f: &Field<'_>) -> Result<bool, DecodeError> {
        match f {
            Field::Missing | Field::Null => Ok(false),
            Field::Bool(b) => Ok(*b),
            other => Err(self.wrong(name, "true or false", other)),
        }
    }

    /// An optional number within `[min, max]`: absent and `null` are `None`.
    fn opt_num(
        &self,
        name: &str,
        f: &Field<'_>,
        min: f64,
        max: f64,
    ) -> Result<Option<f64>, DecodeError> {
        match f {
            Field::Missing | Field::Null => Ok(None),
            Field::Num(n) if (min..=max).contains(n) => Ok(Some(*n)),
            // The value itself is not repeated: it may be a grade, and reasons end up in logs.
            Field::Num(_) => Err(self.err(name, format!("expected a number from {min} to {max}"))),
            other => Err(self.wrong(name, "a number", other)),
        }
    }

    fn date(&self, name: &str, f: &Field<'_>) -> Result<Date, DecodeError> {
        match f {
            Field::Str(s) => parse_date(s).ok_or_else(|| {
                self.err(name, format!("expected a calendar date YYYY-MM-DD, got {}", quoted(s)))
            }),
            other => Err(self.wrong(name, "a date string YYYY-MM-DD", other)),
        }
    }

    /// `recorded_at` as an instant, and the calendar date it was written on.
    fn recorded_at(&self, f: &Field<'_>) -> Result<(RecordedAt, Date), DecodeError> {
        match f {
            Field::Str(s) => {
                parse_timestamp(s).zip(s.get(..10).and_then(parse_date)).ok_or_else(|| {
                    self.err(
                        "recorded_at",
                        format!(
                            "expected an RFC 3339 timestamp like 2026-09-01T08:40:00-04:00, got {}",
                            quoted(s)
                        ),
                    )
                })
            }
            other => Err(self.wrong("recorded_at", "an RFC 3339 timestamp string", other)),
        }
    }
}

impl<'a> RawEvent<'a> {
    fn validate(self) -> Result<Event<'a>, DecodeError> {
        let kind = match &self.ty {
            Field::Str(s) => EventKind::parse(s).ok_or_else(|| DecodeError {
                field: Some("type".into()),
                problem: format!(
                    "expected one of {}, got {}",
                    EventKind::NAMES.join(", "),
                    quoted(s)
                ),
            })?,
            Field::Missing => {
                return Err(DecodeError {
                    field: Some("type".into()),
                    problem: "missing required field".into(),
                });
            }
            other => {
                return Err(DecodeError {
                    field: Some("type".into()),
                    problem: format!("expected a string, got {}", other.kind()),
                });
            }
        };
        let c = Checker { prefix: kind.as_str() };
        let event_id = c.id("event_id", self.event_id)?;
        // A calendar day is the school's, not a student's: it has no student_id.
        let student_id = match kind {
            EventKind::Calendar => Cow::Borrowed(""),
            _ => c.id("student_id", self.student_id)?,
        };
        let school_id = c.id("school_id", self.school_id)?;
        let date = c.date("date", &self.date)?;
        let (recorded_at, recorded_on) = c.recorded_at(&self.recorded_at)?;
        let body = match kind {
            EventKind::Attendance => EventBody::AttendanceRecorded {
                status: c.one_of(
                    "status",
                    &self.status,
                    AttendanceStatus::NAMES,
                    AttendanceStatus::parse,
                )?,
            },
            EventKind::Discipline => {
                let referral_id = c.id("referral_id", self.referral_id)?;
                // Checked for the contract, then dropped: behavior text never enters state.
                match &self.behavior {
                    Field::Str(_) => {}
                    other => return Err(c.wrong("behavior", "a string", other)),
                }
                EventBody::ReferralRecorded {
                    referral_id,
                    action: c.one_of(
                        "action",
                        &self.action,
                        DisciplineAction::NAMES,
                        DisciplineAction::parse,
                    )?,
                    action_days: c.opt_num("action_days", &self.action_days, 0.0, f64::MAX)?,
                    retracted: c.opt_bool("retracted", &self.retracted)?,
                }
            }
            EventKind::Grade => {
                let section_id = c.id("section_id", self.section_id)?;
                let course_code = c.id("course_code", self.course_code)?;
                let subject = c.one_of("subject", &self.subject, Subject::NAMES, Subject::parse)?;
                let grading_period = c.id("grading_period", self.grading_period)?;
                let letter = match &self.letter_grade {
                    Field::Missing | Field::Null => None,
                    Field::Str(s) => Some(parse_letter(s).ok_or_else(|| {
                        // Not quoted: a grade does not go into logs, even a malformed one.
                        c.err("letter_grade", "expected A to F with an optional + or -")
                    })?),
                    other => return Err(c.wrong("letter_grade", "a string", other)),
                };
                let numeric = c.opt_num("numeric_grade", &self.numeric_grade, 0.0, 100.0)?;
                if letter.is_none() && numeric.is_none() {
                    return Err(
                        c.err("letter_grade", "missing: give letter_grade, numeric_grade or both")
                    );
                }
                EventBody::GradePosted {
                    section_id,
                    course_code,
                    subject,
                    grading_period,
                    mark: Mark { letter, numeric },
                    retracted: c.opt_bool("retracted", &self.retracted)?,
                }
            }
            EventKind::Assignment => {
                let advocate_id = match self.advocate_id {
                    Field::Null => None,
                    other => Some(c.id("advocate_id", other)?),
                };
                let advocate = match self.advocate {
                    Field::Missing | Field::Null => None,
                    Field::Object(raw) => {
                        let a = Checker { prefix: "assignment.advocate" };
                        Some(AdvocateContact {
                            name: a.opt_str("name", raw.name)?,
                            email: a.opt_str("email", raw.email)?,
                            webhook_url: a.opt_str("webhook_url", raw.webhook_url)?,
                            timezone: a.opt_str("timezone", raw.timezone)?,
                        })
                    }
                    other => return Err(c.wrong("advocate", "an object", &other)),
                };
                EventBody::AdvocateAssigned { advocate_id, advocate }
            }
            EventKind::Enrollment => {
                let exit_date = match &self.exit_date {
                    Field::Missing | Field::Null => None,
                    other => Some(c.date("exit_date", other)?),
                };
                // An exit before the first day enrolls no day (JSON Schema cannot compare the two
                // fields; the decoder accepts what the schema accepts).
                EventBody::Enrolled {
                    exit_date,
                    retracted: c.opt_bool("retracted", &self.retracted)?,
                }
            }
            EventKind::Calendar => EventBody::CalendarDay {
                instructional: match &self.instructional {
                    Field::Bool(b) => *b,
                    other => return Err(c.wrong("instructional", "true or false", other)),
                },
                retracted: c.opt_bool("retracted", &self.retracted)?,
            },
        };
        Ok(Event { event_id, student_id, school_id, date, recorded_at, recorded_on, body })
    }
}

/// Quotes input text for an error message, cut short so a huge field cannot flood a log.
fn quoted(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}…", &s[..cut]),
    }
}

/// Strict `YYYY-MM-DD` with a real calendar day.
pub fn parse_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter()
            .try_fold(0u32, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0')))
    };
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

/// RFC 3339 `date-time` (section 5.6): `T`/`t`, `Z`/`z` or `±HH:MM`, any number of fraction
/// digits, and second 60 only where the UTC time is 23:59 (a leap second).
pub fn parse_timestamp(s: &str) -> Option<RecordedAt> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let date = parse_date(s.get(..10)?)?;
    let two = |i: usize| -> Option<i64> {
        let (h, l) = (b[i], b[i + 1]);
        (h.is_ascii_digit() && l.is_ascii_digit()).then(|| i64::from((h - b'0') * 10 + (l - b'0')))
    };
    let (hour, minute, second) = (two(11)?, two(14)?, two(17)?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for (k, c) in b[i..i + digits].iter().enumerate().take(9) {
            nanos += u32::from(c - b'0') * 10u32.pow(8 - k as u32);
        }
        i += digits;
    }
    let offset_minutes = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (two(i + 1)?, two(i + 4)?);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'+' { oh * 60 + om } else { -(oh * 60 + om) }
        }
        _ => return None,
    };
    let day_secs = hour * 3600 + minute * 60 + second.min(59);
    let utc_secs = i64::from(date.to_julian_day() - UNIX_EPOCH_JULIAN_DAY) * 86_400 + day_secs
        - offset_minutes * 60;
    if second == 60 {
        // A leap second exists only at the end of a UTC day; it sorts within 23:59:59.
        if utc_secs.rem_euclid(86_400) != 86_399 {
            return None;
        }
        nanos = 999_999_999;
    }
    Some(RecordedAt { secs: utc_secs, nanos })
}

const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

fn parse_letter(s: &str) -> Option<[u8; 2]> {
    match s.as_bytes() {
        [l @ b'A'..=b'F'] => Some([*l, b' ']),
        [l @ b'A'..=b'F', m @ (b'+' | b'-')] => Some([*l, *m]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attendance(status: &str) -> String {
        format!(
            r#"{{"type":"attendance","event_id":"e1","student_id":"s1","school_id":"h1","date":"2026-09-01","recorded_at":"2026-09-01T08:40:00-04:00","status":{status}}}"#
        )
    }

    #[test]
    fn a_valid_attendance_event_decodes() {
        let json = attendance("\"absent_unexcused\"");
        let e = decode(json.as_bytes()).unwrap();
        assert_eq!(e.student_id, "s1");
        assert_eq!(
            e.body,
            EventBody::AttendanceRecorded { status: AttendanceStatus::AbsentUnexcused }
        );
        assert_eq!(e.recorded_at, RecordedAt { secs: 1_788_266_400, nanos: 0 });
    }

    #[test]
    fn a_misspelled_status_names_the_field_and_the_choices() {
        let err = decode(attendance("\"absnt\"").as_bytes()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "attendance.status: expected one of present, tardy, absent_excused, absent_unexcused, retracted, got \"absnt\""
        );
    }

    #[test]
    fn an_ill_typed_field_says_what_it_got() {
        let err = decode(attendance("5").as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("attendance.status"));
        assert!(err.problem.contains("got a number"), "{err}");
    }

    #[test]
    fn fields_of_other_types_are_ignored_whatever_their_type() {
        let json =
            attendance("\"present\"").replace("\"status\"", "\"action\":[1,{\"a\":2}],\"status\"");
        assert!(decode(json.as_bytes()).is_ok());
    }

    #[test]
    fn impossible_dates_and_timestamps_are_rejected() {
        let json = attendance("\"present\"").replace("2026-09-01\"", "2026-02-30\"");
        assert_eq!(decode(json.as_bytes()).unwrap_err().field.as_deref(), Some("attendance.date"));
        let json = attendance("\"present\"").replace("T08:40:00-04:00", " 08:40");
        assert_eq!(
            decode(json.as_bytes()).unwrap_err().field.as_deref(),
            Some("attendance.recorded_at")
        );
    }

    #[test]
    fn non_objects_and_broken_json_are_whole_message_errors() {
        for bad in ["[1,2]", "\"x\"", "{\"type\":", "", "\u{0}"] {
            let err = decode(bad.as_bytes()).unwrap_err();
            assert_eq!(err.field, None, "{bad:?}: {err}");
        }
    }

    #[test]
    fn assignment_with_null_advocate_ends_the_assignment() {
        let json = r#"{"type":"assignment","event_id":"a1","student_id":"s1","school_id":"h1","date":"2026-09-01","recorded_at":"2026-09-01T08:00:00Z","advocate_id":null}"#;
        let e = decode(json.as_bytes()).unwrap();
        assert_eq!(e.body, EventBody::AdvocateAssigned { advocate_id: None, advocate: None });
        let missing = json.replace(",\"advocate_id\":null", "");
        assert_eq!(
            decode(missing.as_bytes()).unwrap_err().to_string(),
            "assignment.advocate_id: missing required field"
        );
    }

    #[test]
    fn a_grade_needs_a_letter_or_a_number() {
        let base = r#"{"type":"grade","event_id":"g1","student_id":"s1","school_id":"h1","date":"2026-11-01","recorded_at":"2026-11-01T08:00:00Z","section_id":"x","course_code":"ALG1","subject":"math","grading_period":"2026-Q1""#;
        assert!(decode(format!("{base}}}").as_bytes()).is_err());
        let json = format!("{base},\"letter_grade\":\"D+\"}}");
        let e = decode(json.as_bytes()).unwrap();
        let EventBody::GradePosted { mark, .. } = e.body else { panic!("not a grade") };
        assert_eq!(mark.letter, Some(*b"D+"));
        assert!(decode(format!("{base},\"numeric_grade\":101}}").as_bytes()).is_err());
        assert!(decode(format!("{base},\"letter_grade\":\"G\"}}").as_bytes()).is_err());
    }

    #[test]
    fn timestamps_are_instants() {
        let t = |s: &str| parse_timestamp(s);
        assert_eq!(t("1970-01-01T00:00:00Z"), Some(RecordedAt { secs: 0, nanos: 0 }));
        assert_eq!(t("2026-09-01T09:00:00+01:00"), t("2026-09-01t08:00:00z"));
        assert_eq!(t("2026-09-01T08:00:00.5Z").map(|r| r.nanos), Some(500_000_000));
        assert_eq!(t("2026-09-01T08:00:00.1234567891Z").map(|r| r.nanos), Some(123_456_789));
        assert_eq!(t("0001-01-01T00:00:00Z").map(|r| r.secs), Some(-62_135_596_800));
        // A leap second only where the UTC time is 23:59.
        let leap = t("2026-12-31T23:59:60Z").unwrap();
        assert!(t("2026-12-31T23:59:59.9Z").unwrap() < leap);
        assert!(leap < t("2027-01-01T00:00:00Z").unwrap());
        assert_eq!(t("2026-12-31T18:59:60-05:00"), Some(leap));
        for bad in [
            "2026-09-01T12:59:60Z",
            "2026-09-01T08:00:00",
            "2026-09-01 08:00:00Z",
            "2026-09-01T08:00Z",
            "2026-09-01T08:00:00.Z",
            "2026-09-01T08:00:00+0100",
            "2026-09-01T24:00:00Z",
            "2026-09-01T08:00:00+24:00",
            "2026-02-30T08:00:00Z",
        ] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_repeated_contract_field_is_ambiguous_and_rejected() {
        let json = attendance("\"present\"")
            .replace("\"status\"", "\"status\":\"absent_unexcused\",\"status\"");
        let err = decode(json.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("duplicate field `status`"), "{err}");
    }

    #[test]
    fn a_bad_grade_is_not_repeated_in_the_reason() {
        let base = r#"{"type":"grade","event_id":"g1","student_id":"s1","school_id":"h1","date":"2026-11-01","recorded_at":"2026-11-01T08:00:00Z","section_id":"x","course_code":"ALG1","subject":"math","grading_period":"2026-Q1""#;
        for (extra, secret) in
            [(r#","letter_grade":"Fzz""#, "Fzz"), (r#","numeric_grade":104.25"#, "104.25")]
        {
            let err = decode(format!("{base}{extra}}}").as_bytes()).unwrap_err();
            assert!(!err.to_string().contains(secret), "{err}");
        }
    }

    #[test]
    fn long_bad_values_are_cut_short_in_messages() {
        let long = format!("\"{}\"", "x".repeat(10_000));
        let err = decode(attendance(&long).as_bytes()).unwrap_err();
        assert!(err.to_string().len() < 200, "{err}");
    }
}
