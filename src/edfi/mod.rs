//! The Ed-Fi translator's core: DMS change messages in, contract v1.1 events out.
//!
//! Pure like `core`: no I/O, no clock. What each document was (a tombstone carries no body), the
//! documents of each natural key, and the course catalogue live in a [`Memory`] that the caller
//! provides: the live translator's is a store committed with its input offsets, the offline
//! one's a map.
//!
//! A natural key of the contract (a student-day, a referral, a section's grading period, an
//! enrollment, a school's calendar day) gets an event when what its documents say together
//! changes: several attendance categories of one student-day combine into one status (an
//! absence over a tardy over present), a calendar day is a school day if any of its calendars'
//! events makes it one, and otherwise the latest modified document wins. A key whose documents
//! are all gone gets a retraction. Event ids name the document version that caused the event
//! and the key (`edfi:{documentUuid}:{contentVersion}:{key}`), so translating the same message
//! from the same memory again repeats the same event, which ontrack skips as a duplicate; each
//! key's `recorded_at` rises with every event (at least by a microsecond), so the last event
//! of a key is the one that wins downstream.

pub mod documents;
pub mod mapping;

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::core::event::{AttendanceStatus, EventKind, Subject};
pub use documents::{Part, Reading, Resource, SlotKey};
pub use mapping::{EdfiConfig, Mapping};

/// What the translator remembers of a document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DocRecord {
    Live {
        resource: Resource,
        version: Option<i64>,
        /// `lastModifiedAt`, unix microseconds.
        modified: i64,
        /// The key it contributes to (none: a document that contributes nothing).
        slot: Option<SlotKey>,
    },
    Deleted {
        resource: Resource,
        version: Option<i64>,
        modified: i64,
    },
}

/// The documents of one natural key and the last event written for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// (documentUuid, its part), by documentUuid: most keys have one document, and a map's
    /// node would hold room for eleven.
    pub members: Vec<(String, Member)>,
    pub emitted: Option<Emitted>,
    /// For a grade: the catalogue entries its subject was looked up in.
    pub depends_on: Vec<String>,
}

impl Slot {
    /// Puts (or with `None` removes) document `uuid`'s part.
    fn put(&mut self, uuid: &str, member: Option<Member>) {
        match (self.members.binary_search_by(|(u, _)| u.as_str().cmp(uuid)), member) {
            (Ok(i), Some(m)) => self.members[i].1 = m,
            (Ok(i), None) => drop(self.members.remove(i)),
            (Err(i), Some(m)) => self.members.insert(i, (uuid.to_owned(), m)),
            (Err(_), None) => {}
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub part: Part,
    pub modified: i64,
}

/// The last event written for a key: its fields (JSON text, without `event_id` and
/// `recorded_at`), whether it retracted, and its `recorded_at` (unix microseconds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emitted {
    pub fields: String,
    pub retracted: bool,
    pub recorded_at: i64,
}

/// Where the translator keeps what it remembers. Reads see the writes made before them.
pub trait Memory {
    type Error;
    fn doc(&mut self, uuid: &str) -> Result<Option<DocRecord>, Self::Error>;
    fn put_doc(&mut self, uuid: &str, doc: &DocRecord);
    fn slot(&mut self, key: &SlotKey) -> Result<Option<Slot>, Self::Error>;
    fn put_slot(&mut self, key: &SlotKey, slot: &Slot);
    /// The grade keys that looked their subject up in catalogue entry `dependency`.
    fn dependents(&mut self, dependency: &str) -> Result<Vec<SlotKey>, Self::Error>;
    fn set_dependent(&mut self, dependency: &str, key: &SlotKey, on: bool);
}

/// A [`Memory`] in maps (offline translation, tests).
#[derive(Debug, Default)]
pub struct Memories {
    docs: HashMap<String, DocRecord>,
    slots: HashMap<SlotKey, Slot>,
    dependents: BTreeSet<(String, SlotKey)>,
}

impl Memory for Memories {
    type Error = std::convert::Infallible;
    fn doc(&mut self, uuid: &str) -> Result<Option<DocRecord>, Self::Error> {
        Ok(self.docs.get(uuid).cloned())
    }
    fn put_doc(&mut self, uuid: &str, doc: &DocRecord) {
        self.docs.insert(uuid.to_owned(), doc.clone());
    }
    fn slot(&mut self, key: &SlotKey) -> Result<Option<Slot>, Self::Error> {
        Ok(self.slots.get(key).cloned())
    }
    fn put_slot(&mut self, key: &SlotKey, slot: &Slot) {
        self.slots.insert(key.clone(), slot.clone());
    }
    fn dependents(&mut self, dependency: &str) -> Result<Vec<SlotKey>, Self::Error> {
        // The least key: the first variant with empty texts.
        let least = SlotKey::Attendance { student: String::new(), date: String::new() };
        let from = (dependency.to_owned(), least);
        Ok(self
            .dependents
            .range(from..)
            .take_while(|(d, _)| d == dependency)
            .map(|(_, k)| k.clone())
            .collect())
    }
    fn set_dependent(&mut self, dependency: &str, key: &SlotKey, on: bool) {
        let entry = (dependency.to_owned(), key.clone());
        if on {
            self.dependents.insert(entry);
        } else {
            self.dependents.remove(&entry);
        }
    }
}

/// One contract event to produce: its type (which names the topic), its Kafka key and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub kind: EventKind,
    pub key: String,
    pub json: String,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Read; `events` may be empty (nothing ontrack sees changed).
    Translated,
    /// An equal or older version of a document already read: ignored.
    Stale,
    /// A resource ontrack does not use, a delete of a document never read, or a document that
    /// contributes nothing (with why).
    Skipped(&'static str),
    /// Bad input, for the dead-letter topic: why (field names and descriptors, never values).
    Rejected(String),
}

impl Outcome {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Translated => "translated",
            Outcome::Stale => "stale",
            Outcome::Skipped(_) => "skipped",
            Outcome::Rejected(_) => "dead_letter",
        }
    }

    pub const LABELS: [&'static str; 4] = ["translated", "stale", "skipped", "dead_letter"];
}

/// The result of translating one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translation {
    /// The resource, for the metric label (`None`: not one ontrack reads, or unknown).
    pub resource: Option<Resource>,
    pub outcome: Outcome,
    pub events: Vec<Output>,
}

/// A change message, read.
#[derive(Debug, Clone, PartialEq)]
enum Change {
    Upsert {
        uuid: String,
        resource: String,
        version: Option<i64>,
        modified: i64,
        document: Value,
    },
    Delete {
        uuid: String,
        /// The delete's own time, when the message says (the Debezium form).
        modified: Option<i64>,
    },
}

/// The translation core.
#[derive(Debug, Clone, Default)]
pub struct Translator {
    mapping: Mapping,
}

impl Translator {
    pub fn new(mapping: Mapping) -> Translator {
        Translator { mapping }
    }

    /// Translates one message (`value` `None`: a tombstone).
    pub fn translate<M: Memory>(
        &self,
        memory: &mut M,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<Translation, M::Error> {
        let change = match parse(key, value) {
            Ok(c) => c,
            Err(why) => {
                return Ok(Translation {
                    resource: None,
                    outcome: Outcome::Rejected(why),
                    events: Vec::new(),
                });
            }
        };
        let mut run = Run { mapping: &self.mapping, memory, events: Vec::new() };
        let (resource, outcome) = match change {
            Change::Upsert { uuid, resource, version, modified, document } => {
                run.upsert(&uuid, &resource, version, modified, &document)?
            }
            Change::Delete { uuid, modified } => run.delete(&uuid, modified)?,
        };
        Ok(Translation { resource, outcome, events: run.events })
    }
}

struct Run<'a, M> {
    mapping: &'a Mapping,
    memory: &'a mut M,
    events: Vec<Output>,
}

/// What caused an event: a document version, or its deletion.
struct Cause<'a> {
    uuid: &'a str,
    version: String,
    modified: i64,
}

impl<M: Memory> Run<'_, M> {
    fn upsert(
        &mut self,
        uuid: &str,
        resource_name: &str,
        version: Option<i64>,
        modified: i64,
        document: &Value,
    ) -> Result<(Option<Resource>, Outcome), M::Error> {
        let Some(resource) = Resource::of(resource_name) else {
            return Ok((None, Outcome::Skipped("resource not used")));
        };
        let previous = self.memory.doc(uuid)?;
        let (old_slot, old_version, old_modified) = match &previous {
            None => (None, None, None),
            Some(DocRecord::Live { slot, version, modified, .. }) => {
                (slot.clone(), *version, Some(*modified))
            }
            Some(DocRecord::Deleted { version, modified, .. }) => (None, *version, Some(*modified)),
        };
        let deleted = matches!(previous, Some(DocRecord::Deleted { .. }));
        // contentVersion orders a document's versions: an equal or lower one is ignored.
        // Without versions (the Debezium form) the log's order is the order, and only a row
        // modified before the one read (or before its deletion) is old.
        let stale = match (version, old_version, old_modified) {
            (Some(v), Some(old), _) => v <= old,
            (_, _, Some(old)) => modified < old || (deleted && modified <= old),
            _ => false,
        };
        if stale {
            return Ok((Some(resource), Outcome::Stale));
        }
        let day = date_of(modified);
        let reading = match documents::read(resource, document, &day, self.mapping) {
            Ok(r) => r,
            Err(why) => {
                return Ok((
                    Some(resource),
                    Outcome::Rejected(format!("{}: {why}", resource.name())),
                ));
            }
        };
        let (new, outcome) = match reading {
            Reading::Part(key, part) => (Some((key, part)), Outcome::Translated),
            // A version that no longer contributes withdraws what the last one did.
            Reading::Nothing(_) if old_slot.is_some() => (None, Outcome::Translated),
            Reading::Nothing(why) => (None, Outcome::Skipped(why)),
        };
        let cause = Cause { uuid, version: version_text(version, modified, document), modified };
        let new_slot = new.as_ref().map(|(k, _)| k.clone());
        if let Some(old) = old_slot.filter(|old| Some(old) != new_slot.as_ref()) {
            self.change(&old, uuid, None, &cause)?;
        }
        if let Some((key, part)) = new {
            self.change(&key, uuid, Some(Member { part, modified }), &cause)?;
        }
        self.memory.put_doc(uuid, &DocRecord::Live { resource, version, modified, slot: new_slot });
        Ok((Some(resource), outcome))
    }

    fn delete(
        &mut self,
        uuid: &str,
        at: Option<i64>,
    ) -> Result<(Option<Resource>, Outcome), M::Error> {
        match self.memory.doc(uuid)? {
            None => Ok((None, Outcome::Skipped("delete of a document never read"))),
            Some(DocRecord::Deleted { resource, .. }) => Ok((Some(resource), Outcome::Stale)),
            Some(DocRecord::Live { resource, version, modified, slot }) => {
                let modified = at.map_or(modified, |at| at.max(modified));
                let cause = Cause {
                    uuid,
                    version: match version {
                        Some(v) => format!("{v}-deleted"),
                        None => format!("m{modified}-deleted"),
                    },
                    modified,
                };
                if let Some(key) = slot {
                    self.change(&key, uuid, None, &cause)?;
                }
                self.memory.put_doc(uuid, &DocRecord::Deleted { resource, version, modified });
                Ok((Some(resource), Outcome::Translated))
            }
        }
    }

    /// Puts (or with `None` removes) document `uuid`'s part of `key`, then writes what changed.
    fn change(
        &mut self,
        key: &SlotKey,
        uuid: &str,
        member: Option<Member>,
        cause: &Cause<'_>,
    ) -> Result<(), M::Error> {
        let mut slot = self.memory.slot(key)?.unwrap_or_default();
        slot.put(uuid, member);
        if let Some(dependency) = key.catalogue_dependency() {
            self.memory.put_slot(key, &slot);
            // The grades whose subject this entry gave (or could give) are looked up again.
            for grade in self.memory.dependents(&dependency)? {
                let mut g = self.memory.slot(&grade)?.unwrap_or_default();
                self.settle(&grade, &mut g, cause)?;
                self.memory.put_slot(&grade, &g);
            }
            return Ok(());
        }
        self.settle(key, &mut slot, cause)?;
        self.memory.put_slot(key, &slot);
        Ok(())
    }

    /// Writes an event for `key` if what its documents say together differs from its last one.
    fn settle(
        &mut self,
        key: &SlotKey,
        slot: &mut Slot,
        cause: &Cause<'_>,
    ) -> Result<(), M::Error> {
        let fields = self.combine(key, slot)?;
        // `stored`: the fields as kept for the next comparison (a retraction keeps the last).
        let (fields, stored, retracted) = match (fields, &slot.emitted) {
            (None, None) => return Ok(()),
            (None, Some(e)) if e.retracted => return Ok(()),
            (None, Some(e)) => {
                let mut last: Map<String, Value> =
                    serde_json::from_str(&e.fields).unwrap_or_default();
                if matches!(key, SlotKey::Attendance { .. }) {
                    last.insert("status".into(), json!(AttendanceStatus::Retracted));
                } else {
                    last.insert("retracted".into(), json!(true));
                }
                (last, e.fields.clone(), true)
            }
            (Some(f), emitted) => {
                let text = serde_json::to_string(&f).unwrap_or_default();
                if emitted.as_ref().is_some_and(|e| !e.retracted && e.fields == text) {
                    return Ok(());
                }
                (f, text, false)
            }
        };
        let recorded_at = (slot.emitted.as_ref())
            .map_or(cause.modified, |e| cause.modified.max(e.recorded_at.saturating_add(1)));
        let (kind, kafka_key) = match key {
            SlotKey::Attendance { student, .. } => (EventKind::Attendance, student),
            SlotKey::Discipline { student, .. } => (EventKind::Discipline, student),
            SlotKey::Grade { student, .. } => (EventKind::Grade, student),
            SlotKey::Enrollment { student, .. } => (EventKind::Enrollment, student),
            SlotKey::Calendar { school, .. } => (EventKind::Calendar, school),
            SlotKey::Assignment { student } => (EventKind::Assignment, student),
            _ => return Ok(()),
        };
        let mut event = Map::new();
        event.insert("type".into(), json!(kind.as_str()));
        // The id names the cause, the key and what is said (a hash of the fields): an id seen
        // twice downstream is the same event, whatever the memory that made it.
        let said = if retracted { format!("{stored}-retracted") } else { stored.clone() };
        let hash = xxhash_rust::xxh3::xxh3_64(said.as_bytes());
        event.insert(
            "event_id".into(),
            json!(format!("edfi:{}:{}:{}:{hash:016x}", cause.uuid, cause.version, key.tag())),
        );
        event.extend(fields);
        event.insert("recorded_at".into(), json!(rfc3339(recorded_at)));
        self.events.push(Output {
            kind,
            key: kafka_key.clone(),
            json: Value::Object(event).to_string(),
        });
        slot.emitted = Some(Emitted { fields: stored, retracted, recorded_at });
        Ok(())
    }

    /// The contract fields (without `type`, `event_id`, `recorded_at`) that `slot`'s documents
    /// say together; `None` when none is left.
    fn combine(
        &mut self,
        key: &SlotKey,
        slot: &mut Slot,
    ) -> Result<Option<Map<String, Value>>, M::Error> {
        // The latest modified document (ties: the greater documentUuid).
        let latest = |slot: &Slot| {
            slot.members
                .iter()
                .max_by(|a, b| (a.1.modified, &a.0).cmp(&(b.1.modified, &b.0)))
                .map(|(_, m)| m.part.clone())
        };
        let fields = match key {
            SlotKey::Attendance { student, date } => {
                let rank = |s: AttendanceStatus| match s {
                    AttendanceStatus::AbsentUnexcused => 4,
                    AttendanceStatus::AbsentExcused => 3,
                    AttendanceStatus::Tardy => 2,
                    _ => 1,
                };
                let winner = slot
                    .members
                    .iter()
                    .filter_map(|(uuid, m)| match &m.part {
                        Part::Attendance { school, status } => {
                            Some(((rank(*status), m.modified, uuid), school, *status))
                        }
                        _ => None,
                    })
                    .max_by(|a, b| a.0.cmp(&b.0));
                winner.map(|(_, school, status)| {
                    json!({"student_id": student, "school_id": school, "date": date, "status": status})
                })
            }
            SlotKey::Calendar { school, date } => {
                let mut any = None;
                for (_, m) in &slot.members {
                    if let Part::Calendar { school_day } = m.part {
                        any = Some(any.unwrap_or(false) | school_day);
                    }
                }
                any.map(|day| json!({"school_id": school, "date": date, "instructional": day}))
            }
            SlotKey::Enrollment { student, school, entry } => match latest(slot) {
                Some(Part::Enrollment { exit }) => Some(json!({
                    "student_id": student, "school_id": school, "date": entry, "exit_date": exit
                })),
                _ => None,
            },
            SlotKey::Discipline { student, referral } => match latest(slot) {
                Some(Part::Discipline { school, date, behavior, action, days }) => {
                    let mut f = json!({
                        "student_id": student, "school_id": school, "date": date,
                        "referral_id": referral, "behavior": behavior, "action": action
                    });
                    if let (Some(days), Some(obj)) = (days, f.as_object_mut()) {
                        obj.insert("action_days".into(), json!(days));
                    }
                    Some(f)
                }
                _ => None,
            },
            SlotKey::Grade { student, section, period } => match latest(slot) {
                Some(Part::Grade {
                    school,
                    date,
                    year,
                    session,
                    local_course,
                    letter,
                    numeric,
                }) => {
                    let offering = SlotKey::Offering {
                        school: school.clone(),
                        year,
                        session,
                        local: local_course.clone(),
                    };
                    let course = match self.memory.slot(&offering)?.as_ref().and_then(latest) {
                        Some(Part::Offering { course }) => course,
                        _ => local_course,
                    };
                    let catalogue = SlotKey::Course { code: course.clone() };
                    let subject = self.subject(&catalogue, &school)?;
                    self.depend(key, slot, vec![offering.encode(), catalogue.encode()]);
                    let mut f = json!({
                        "student_id": student, "school_id": school, "date": date,
                        "section_id": section, "course_code": course, "subject": subject,
                        "grading_period": period
                    });
                    if let Some(obj) = f.as_object_mut() {
                        if let Some(l) = letter {
                            obj.insert("letter_grade".into(), json!(l));
                        }
                        if let Some(n) = numeric {
                            obj.insert("numeric_grade".into(), json!(n));
                        }
                    }
                    Some(f)
                }
                _ => {
                    self.depend(key, slot, Vec::new());
                    None
                }
            },
            SlotKey::Assignment { student } => self.assignment(key, student, slot)?,
            _ => None,
        };
        Ok(fields.and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        }))
    }

    /// A student's advocate: among the student's current memberships (not ended) of cohorts
    /// whose type is a caseload (`[edfi] cohort_types`), the latest begun; its current staff
    /// member (the latest begun, ties by id). With none (any more), `advocate_id` null ends an
    /// assignment written before. Contacts are not sent: they come from the assignments file or
    /// the district's own assignments (a contact in an event replaces the advocate's whole one).
    fn assignment(
        &mut self,
        key: &SlotKey,
        student: &str,
        slot: &mut Slot,
    ) -> Result<Option<Value>, M::Error> {
        let mut depends = Vec::new();
        // ((membership begin, staff begin, staff), (organization, date)) of the best so far.
        type Candidate = ((String, String, String), (String, String));
        let mut best: Option<Candidate> = None;
        for (_, m) in &slot.members {
            let Part::Membership { organization, cohort, begin, date, ended: false } = &m.part
            else {
                continue;
            };
            let (o, c) = (organization.clone(), cohort.clone());
            let cohort_key = SlotKey::Cohort { organization: o.clone(), cohort: c.clone() };
            let staff_key = SlotKey::CohortStaff { organization: o, cohort: c };
            depends.extend([cohort_key.encode(), staff_key.encode()]);
            let caseload = self.memory.slot(&cohort_key)?.is_some_and(|c| {
                c.members.iter().any(|(_, m)| match &m.part {
                    Part::Cohort { kind } => self.mapping.caseload(kind),
                    _ => false,
                })
            });
            if !caseload {
                continue;
            }
            let Some(staff_slot) = self.memory.slot(&staff_key)? else { continue };
            let staff = staff_slot
                .members
                .iter()
                .filter_map(|(_, m)| match &m.part {
                    Part::CohortStaff { staff, begin, ended: false } => Some((begin, staff)),
                    _ => None,
                })
                .max();
            if let Some((staff_begin, staff)) = staff {
                let rank = (begin.clone(), staff_begin.clone(), staff.clone());
                if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                    best = Some((rank, (organization.clone(), date.clone())));
                }
            }
        }
        let fields = match best {
            Some(((_, _, staff), (organization, date))) => Some(json!({
                "student_id": student, "school_id": organization, "date": date,
                "advocate_id": staff
            })),
            // No advocate: an assignment written before ends (same school and date).
            None => slot.emitted.as_ref().and_then(|e| {
                let mut last: Value = serde_json::from_str(&e.fields).ok()?;
                last.as_object_mut()?.insert("advocate_id".into(), Value::Null);
                Some(last)
            }),
        };
        self.depend(key, slot, depends);
        Ok(fields)
    }

    /// A course's subject: the entry of the grade's school if there is one, else the latest;
    /// `other` while the course is unknown.
    fn subject(&mut self, course: &SlotKey, school: &str) -> Result<Subject, M::Error> {
        let Some(slot) = self.memory.slot(course)? else { return Ok(Subject::Other) };
        let mut best: Option<((bool, i64, &String), Subject)> = None;
        for (uuid, m) in &slot.members {
            if let Part::Course { organization, subject } = &m.part {
                let rank = (organization == school, m.modified, uuid);
                if best.as_ref().is_none_or(|(r, _)| rank > *r) {
                    best = Some((rank, *subject));
                }
            }
        }
        Ok(best.map_or(Subject::Other, |(_, s)| s))
    }

    /// Indexes grade `key` under the catalogue entries it now depends on.
    fn depend(&mut self, key: &SlotKey, slot: &mut Slot, on: Vec<String>) {
        if slot.depends_on == on {
            return;
        }
        for d in &slot.depends_on {
            if !on.contains(d) {
                self.memory.set_dependent(d, key, false);
            }
        }
        for d in &on {
            if !slot.depends_on.contains(d) {
                self.memory.set_dependent(d, key, true);
            }
        }
        slot.depends_on = on;
    }
}

/// A document version's name in event ids: its `contentVersion`, else (the Debezium form) its
/// modification time and a hash of its content (two rows modified in the same second differ).
fn version_text(version: Option<i64>, modified: i64, document: &Value) -> String {
    match version {
        Some(v) => v.to_string(),
        None => {
            let hash = xxhash_rust::xxh3::xxh3_64(document.to_string().as_bytes());
            format!("m{modified}-{:08x}", hash >> 32)
        }
    }
}

/// Reads a DMS change message: the CDC contract v1 (`documentUuid`, `resourceName`,
/// `contentVersion`, `lastModifiedAt`, `document`; a null value deletes) or the Debezium row
/// (`documentuuid`, `resourcename`, `edfidoc`, `lastmodifiedat`, `__deleted`).
fn parse(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Change, String> {
    let value = value.filter(|v| !v.is_empty());
    let Some(value) = value else {
        // A key that names no documentUuid (Debezium's row id) matches no document read.
        let uuid = key
            .filter(|k| !k.is_empty())
            .map(|k| key_uuid(&String::from_utf8_lossy(k)))
            .ok_or("a tombstone (null value) without a key")?;
        return Ok(Change::Delete { uuid, modified: None });
    };
    let v: Value = serde_json::from_slice(value).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(o) = &v else { return Err("not a JSON object".into()) };
    let text = |name: &str| -> Result<String, String> {
        match o.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            Some(_) => Err(format!("{name}: not a non-empty string")),
            None => Err(format!("{name}: missing")),
        }
    };
    if o.contains_key("documentUuid")
        || o.contains_key("resourceName")
        || o.contains_key("document")
    {
        let uuid = text("documentUuid")?;
        let resource = text("resourceName")?;
        let version = match o.get("contentVersion") {
            None | Some(Value::Null) => None,
            // A number, or one written as text.
            Some(n) => Some(
                (n.as_i64().or_else(|| n.as_str()?.trim().parse().ok()))
                    .ok_or("contentVersion: not a whole number")?,
            ),
        };
        let modified = o
            .get("lastModifiedAt")
            .ok_or("lastModifiedAt: missing")
            .and_then(|t| micros(t).ok_or("lastModifiedAt: not an RFC 3339 time"))?;
        let document = embedded(o.get("document")).ok_or("document: missing or not an object")?;
        return Ok(Change::Upsert { uuid, resource, version, modified, document });
    }
    if o.contains_key("documentuuid") || o.contains_key("edfidoc") {
        let uuid = text("documentuuid")?;
        let document = embedded(o.get("edfidoc"));
        let modified = o
            .get("lastmodifiedat")
            .and_then(micros)
            .or_else(|| document.as_ref()?.get("_lastModifiedDate").and_then(micros));
        let deleted = match o.get("__deleted") {
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            Some(Value::Bool(b)) => *b,
            _ => false,
        };
        if deleted {
            return Ok(Change::Delete { uuid, modified });
        }
        let resource = text("resourcename")?;
        let modified = modified.ok_or("lastmodifiedat: missing or not a time")?;
        let version = (o.get("contentversion"))
            .and_then(|n| n.as_i64().or_else(|| n.as_str()?.trim().parse().ok()));
        let document = document.ok_or("edfidoc: missing or not an object")?;
        return Ok(Change::Upsert { uuid, resource, version, modified, document });
    }
    Err("neither a DMS CDC message (documentUuid, resourceName, document) nor a Debezium row \
         (documentuuid, resourcename, edfidoc)"
        .into())
}

/// The documentUuid of a key: the text, a JSON string, or a JSON object's `documentUuid`.
fn key_uuid(key: &str) -> String {
    let key = key.trim();
    match serde_json::from_str::<Value>(key) {
        Ok(Value::String(s)) => s,
        Ok(Value::Object(o)) => ["documentUuid", "documentuuid"]
            .iter()
            .find_map(|f| o.get(*f).and_then(Value::as_str))
            .map_or_else(|| key.to_owned(), str::to_owned),
        _ => key.to_owned(),
    }
}

/// A document: an object, or an object written as a JSON string.
fn embedded(v: Option<&Value>) -> Option<Value> {
    match v? {
        Value::Object(_) => v.cloned(),
        Value::String(s) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object),
        _ => None,
    }
}

/// A time as unix microseconds: RFC 3339 text (a time without an offset is UTC), or a number of
/// seconds, milliseconds or microseconds since the epoch (told apart by size).
fn micros(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = s.parse::<jiff::Timestamp>() {
                return Some(t.as_microsecond());
            }
            let dt = s.parse::<jiff::civil::DateTime>().ok()?;
            let t = jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()?;
            Some(t.as_microsecond())
        }
        Value::Number(n) => {
            let n = n.as_i64()?;
            let micros = match n.unsigned_abs() {
                0..100_000_000_000 => n.checked_mul(1_000_000)?,
                100_000_000_000..100_000_000_000_000 => n.checked_mul(1_000)?,
                _ => n,
            };
            // Beyond what a timestamp can be (nanoseconds, a year after 9999): not a time.
            jiff::Timestamp::from_microsecond(micros).is_ok().then_some(micros)
        }
        _ => None,
    }
}

fn timestamp(micros: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// `2021-09-08T13:40:00.000001Z`: microseconds only when there are some.
fn rfc3339(micros: i64) -> String {
    let t = timestamp(micros);
    if micros % 1_000_000 == 0 {
        t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    }
}

/// The UTC date of a time, `YYYY-MM-DD`.
fn date_of(micros: i64) -> String {
    timestamp(micros).strftime("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests;
