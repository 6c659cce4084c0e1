//! The output contract: a [`FlagChange`] as the `ontrack.flags` JSON event.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::core::{Evidence, Flag, FlagChange};

/// `flag.raised` / `flag.cleared` exactly as DESIGN.md's output contract, fields in its order.
#[derive(Debug, Serialize)]
pub struct FlagEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub flag_id: String,
    pub student_id: &'a str,
    pub school_id: &'a str,
    pub flag: Flag,
    pub school_year: String,
    pub as_of: String,
    pub caused_by: &'a str,
    pub evidence: Option<&'a Evidence>,
    pub emitted_at: String,
}

impl<'a> FlagEvent<'a> {
    /// The wire event; `emitted_at` is the only field that is not a function of the input.
    pub fn new(change: &'a FlagChange, emitted_at: OffsetDateTime) -> Self {
        FlagEvent {
            kind: change.change.event_type(),
            flag_id: change.flag_id(),
            student_id: &change.student_id,
            school_id: &change.school_id,
            flag: change.flag,
            school_year: change.school_year.to_string(),
            as_of: change.as_of.to_string(),
            caused_by: &change.caused_by,
            evidence: change.evidence.as_ref(),
            emitted_at: emitted_at.format(&Rfc3339).unwrap_or_else(|_| emitted_at.to_string()),
        }
    }
}
