//! `[edfi]`: where the translator reads and keeps its memory, and which Ed-Fi descriptor means
//! what in ontrack's contract. The descriptor tables start from Ed-Fi's own descriptor values;
//! a district's entries are added over them (an entry for the same descriptor replaces Ed-Fi's).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::core::event::{AttendanceStatus, DisciplineAction, Subject};

/// A mapping value that skips the documents carrying the descriptor (counted, never an error).
pub const IGNORE: &str = "ignore";

/// `[edfi]` of the config file (`ONTRACK__EDFI__…` in the environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdfiConfig {
    /// The DMS change topic (compacted, key `documentUuid`).
    pub topic: String,
    /// Where the translator keeps what each document was, its input offsets and its outbox.
    pub data_dir: PathBuf,
    /// `/metrics`, `/healthz` and `/readyz` of `ontrack edfi` (empty: no server).
    pub admin_addr: String,
    /// `AttendanceEventCategoryDescriptor` → `present`, `tardy`, `absent_excused`,
    /// `absent_unexcused` or `ignore`.
    pub attendance: BTreeMap<String, String>,
    /// `DisciplineDescriptor` → `none`, `detention`, `in_school_suspension`,
    /// `out_of_school_suspension`, `expulsion` or `ignore`.
    pub discipline: BTreeMap<String, String>,
    /// `CalendarEventDescriptor` → whether the day is a school day (`true`/`false`).
    pub calendar_events: BTreeMap<String, bool>,
    /// `AcademicSubjectDescriptor` → `ela`, `math`, `science`, `social_studies` or `other`.
    pub subjects: BTreeMap<String, String>,
    /// The `GradeTypeDescriptor`s whose grades count, in rising precedence (a later type's grade
    /// for the same grading period is the section's current mark); grades of other types are
    /// skipped and counted.
    pub grade_types: Vec<String>,
    /// The `CohortTypeDescriptor`s whose cohorts are caseloads: a student in such a cohort is
    /// assigned to its staff member (an `assignment` event), e.g.
    /// `["uri://ed-fi.org/CohortTypeDescriptor#Counselor List"]`. Empty (the default): cohorts
    /// are not read, and caseloads come from the district's own assignments.
    pub cohort_types: Vec<String>,
}

impl Default for EdfiConfig {
    fn default() -> Self {
        EdfiConfig {
            topic: "edfi.dms.document".into(),
            data_dir: PathBuf::from("./data-edfi"),
            admin_addr: "127.0.0.1:9899".into(),
            attendance: BTreeMap::new(),
            discipline: BTreeMap::new(),
            calendar_events: BTreeMap::new(),
            subjects: BTreeMap::new(),
            grade_types: vec![
                format!("{ED_FI}GradeTypeDescriptor#Grading Period"),
                format!("{ED_FI}GradeTypeDescriptor#Final"),
            ],
            cohort_types: Vec::new(),
        }
    }
}

const ED_FI: &str = "uri://ed-fi.org/";

/// Ed-Fi's `AttendanceEventCategoryDescriptor` values (data standard 5).
const ATTENDANCE: &[(&str, &str)] = &[
    ("In Attendance", "present"),
    ("Present", "present"),
    ("Tardy", "tardy"),
    // Present for part of the day: like a tardy, a day the student came.
    ("Early departure", "tardy"),
    ("Partial", "tardy"),
    ("Excused Absence", "absent_excused"),
    ("Unexcused Absence", "absent_unexcused"),
];

/// Ed-Fi's `DisciplineDescriptor` values.
const DISCIPLINE: &[(&str, &str)] = &[
    ("In School Suspension", "in_school_suspension"),
    ("Out of School Suspension", "out_of_school_suspension"),
    ("Expulsion", "expulsion"),
    ("Expulsion with Services", "expulsion"),
    ("Expulsion under Guns Free School Act", "expulsion"),
    ("Expulsion under Guns Free School Act with Services", "expulsion"),
    ("Removal from Classroom", "none"),
    ("Community Service", "none"),
    ("No action for incident", "none"),
    ("Other", "none"),
];

/// Ed-Fi's `CalendarEventDescriptor` values: which make a school day.
const CALENDAR_EVENTS: &[(&str, bool)] = &[
    ("Instructional day", true),
    ("Make-up day", true),
    ("Student late arrival/early dismissal", true),
    ("Emergency day", false),
    ("Holiday", false),
    ("Non-instructional day", false),
    ("Other", false),
    ("Strike", false),
    ("Teacher only day", false),
    ("Weather day", false),
];

/// Ed-Fi's `AcademicSubjectDescriptor` values.
const SUBJECTS: &[(&str, &str)] = &[
    ("English Language Arts", "ela"),
    ("English", "ela"),
    ("Reading", "ela"),
    ("Critical Reading", "ela"),
    ("Writing", "ela"),
    ("Mathematics", "math"),
    ("Science", "science"),
    ("Life and Physical Sciences", "science"),
    ("Social Studies", "social_studies"),
    ("Social Sciences and History", "social_studies"),
    ("Career and Technical Education", "other"),
    ("Composite", "other"),
    ("Cross Subject", "other"),
    ("Fine and Performing Arts", "other"),
    ("Foreign Language and Literature", "other"),
    ("Military Science", "other"),
    ("Other", "other"),
    ("Physical, Health, and Safety Education", "other"),
    ("Religious Education and Theology", "other"),
];

/// What a descriptor maps to: a value, or "skip the document".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapped<T> {
    To(T),
    Ignore,
}

/// The descriptor tables, checked, keyed by the descriptor in lower case (Ed-Fi descriptors
/// compare case-insensitively).
#[derive(Debug, Clone)]
pub struct Mapping {
    attendance: HashMap<String, Mapped<AttendanceStatus>>,
    discipline: HashMap<String, Mapped<DisciplineAction>>,
    calendar: HashMap<String, bool>,
    subjects: HashMap<String, Subject>,
    grade_types: Vec<String>,
    cohort_types: Vec<String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping::new(&EdfiConfig::default()).expect("Ed-Fi's own descriptor tables are valid")
    }
}

impl Mapping {
    /// Ed-Fi's tables with `config`'s entries over them; an impossible value is named by its key.
    pub fn new(config: &EdfiConfig) -> Result<Mapping, (String, String)> {
        fn table<T: Copy>(
            section: &str,
            resource: &str,
            defaults: &[(&str, &str)],
            overrides: &BTreeMap<String, String>,
            parse: fn(&str) -> Option<T>,
            names: &[&str],
        ) -> Result<HashMap<String, Mapped<T>>, (String, String)> {
            let mut out = HashMap::new();
            let defaults = defaults
                .iter()
                .map(|(code, to)| (format!("{ED_FI}{resource}#{code}"), (*to).to_owned()));
            for (descriptor, to) in defaults.chain(overrides.clone()) {
                let mapped = if to == IGNORE {
                    Mapped::Ignore
                } else {
                    Mapped::To(parse(&to).ok_or_else(|| {
                        (
                            format!("edfi.{section}.\"{descriptor}\""),
                            format!("must be one of {}, or {IGNORE}; got {to:?}", names.join(", ")),
                        )
                    })?)
                };
                out.insert(key(&descriptor, resource.trim_end_matches("Descriptor")), mapped);
            }
            Ok(out)
        }
        let attendance = table(
            "attendance",
            "AttendanceEventCategoryDescriptor",
            ATTENDANCE,
            &config.attendance,
            |s| AttendanceStatus::parse(s).filter(|s| *s != AttendanceStatus::Retracted),
            &AttendanceStatus::NAMES[..4],
        )?;
        let discipline = table(
            "discipline",
            "DisciplineDescriptor",
            DISCIPLINE,
            &config.discipline,
            DisciplineAction::parse,
            DisciplineAction::NAMES,
        )?;
        let subjects = table(
            "subjects",
            "AcademicSubjectDescriptor",
            SUBJECTS,
            &config.subjects,
            Subject::parse,
            Subject::NAMES,
        )?
        .into_iter()
        // "ignore" makes no sense for a course: its grades count as `other`.
        .map(|(k, v)| (k, if let Mapped::To(s) = v { s } else { Subject::Other }))
        .collect();
        let mut calendar: HashMap<String, bool> = CALENDAR_EVENTS
            .iter()
            .map(|(code, school_day)| {
                (format!("{ED_FI}CalendarEventDescriptor#{code}").to_lowercase(), *school_day)
            })
            .collect();
        for (descriptor, school_day) in &config.calendar_events {
            calendar.insert(key(descriptor, "CalendarEvent"), *school_day);
        }
        if config.grade_types.is_empty() {
            return Err((
                "edfi.grade_types".into(),
                format!(
                    "must name at least one GradeTypeDescriptor, e.g. \"{ED_FI}GradeTypeDescriptor#Grading Period\""
                ),
            ));
        }
        let grade_types = config.grade_types.iter().map(|t| key(t, "GradeType")).collect();
        let cohort_types = config.cohort_types.iter().map(|t| key(t, "CohortType")).collect();
        Ok(Mapping { attendance, discipline, calendar, subjects, grade_types, cohort_types })
    }

    pub fn attendance(&self, descriptor: &str) -> Option<Mapped<AttendanceStatus>> {
        self.attendance.get(&key(descriptor, "AttendanceEventCategory")).copied()
    }

    pub fn discipline(&self, descriptor: &str) -> Option<Mapped<DisciplineAction>> {
        self.discipline.get(&key(descriptor, "Discipline")).copied()
    }

    /// Whether a calendar event makes a school day.
    pub fn school_day(&self, descriptor: &str) -> Option<bool> {
        self.calendar.get(&key(descriptor, "CalendarEvent")).copied()
    }

    pub fn subject(&self, descriptor: &str) -> Option<Subject> {
        self.subjects.get(&key(descriptor, "AcademicSubject")).copied()
    }

    /// Whether cohorts are read at all.
    pub fn reads_cohorts(&self) -> bool {
        !self.cohort_types.is_empty()
    }

    /// Whether cohorts of this type are caseloads.
    pub fn caseload(&self, descriptor: &str) -> bool {
        self.cohort_types.contains(&key(descriptor, "CohortType"))
    }

    /// The precedence of a grade type (higher wins within a grading period); `None`: not used.
    pub fn grade_type(&self, descriptor: &str) -> Option<usize> {
        let descriptor = key(descriptor, "GradeType");
        self.grade_types.iter().position(|t| *t == descriptor)
    }
}

/// A descriptor as the tables key it: in lower case, and a bare code value (an export that
/// dropped the namespace, `Excused Absence`) taken as Ed-Fi's own (`uri://ed-fi.org/…#…`).
fn key(descriptor: &str, kind: &str) -> String {
    let descriptor = descriptor.trim();
    if descriptor.contains('#') {
        descriptor.to_lowercase()
    } else {
        format!("{ED_FI}{kind}Descriptor#{descriptor}").to_lowercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed_fi_descriptors_map_by_default_and_district_entries_add_to_them() {
        let m = Mapping::default();
        let excused = "uri://ed-fi.org/AttendanceEventCategoryDescriptor#Excused Absence";
        assert_eq!(m.attendance(excused), Some(Mapped::To(AttendanceStatus::AbsentExcused)));
        assert_eq!(
            m.attendance(&excused.to_uppercase()),
            Some(Mapped::To(AttendanceStatus::AbsentExcused)),
            "descriptors compare case-insensitively"
        );
        assert_eq!(m.attendance("uri://district.org/AttendanceEventCategoryDescriptor#AB"), None);
        assert_eq!(
            m.attendance("Excused Absence"),
            Some(Mapped::To(AttendanceStatus::AbsentExcused)),
            "a bare code value is Ed-Fi's"
        );
        let bare = EdfiConfig {
            discipline: [("Detention".into(), "detention".into())].into(),
            grade_types: vec!["Final".into()],
            ..EdfiConfig::default()
        };
        let m = Mapping::new(&bare).unwrap();
        assert_eq!(
            m.discipline("uri://ed-fi.org/DisciplineDescriptor#Detention"),
            Some(Mapped::To(DisciplineAction::Detention)),
            "a bare code value in the config is Ed-Fi's too"
        );
        assert_eq!(m.grade_type("uri://ed-fi.org/GradeTypeDescriptor#Final"), Some(0));

        let config = EdfiConfig {
            attendance: [
                (
                    "uri://district.org/AttendanceEventCategoryDescriptor#AB".into(),
                    "absent_unexcused".into(),
                ),
                (excused.into(), IGNORE.into()),
            ]
            .into(),
            ..EdfiConfig::default()
        };
        let m = Mapping::new(&config).unwrap();
        assert_eq!(
            m.attendance("uri://district.org/AttendanceEventCategoryDescriptor#AB"),
            Some(Mapped::To(AttendanceStatus::AbsentUnexcused))
        );
        assert_eq!(m.attendance(excused), Some(Mapped::Ignore));
        assert_eq!(
            m.attendance("uri://ed-fi.org/AttendanceEventCategoryDescriptor#Tardy"),
            Some(Mapped::To(AttendanceStatus::Tardy)),
            "Ed-Fi's entries stay"
        );
    }

    #[test]
    fn an_impossible_mapping_names_its_key_and_the_choices() {
        let config = EdfiConfig {
            discipline: [("uri://x/DisciplineDescriptor#Detention".into(), "detained".into())]
                .into(),
            ..EdfiConfig::default()
        };
        let (key, why) = Mapping::new(&config).unwrap_err();
        assert_eq!(key, "edfi.discipline.\"uri://x/DisciplineDescriptor#Detention\"");
        assert!(why.contains("detention") && why.contains("\"detained\""), "{why}");
        let config = EdfiConfig {
            attendance: [("uri://x/A#B".into(), "retracted".into())].into(),
            ..EdfiConfig::default()
        };
        assert!(Mapping::new(&config).is_err(), "retracted is not a category's status");
    }
}
