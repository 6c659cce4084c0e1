//! The assignments file: caseloads for districts that do not stream `roster.assignments`.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use crate::core::AdvocateContact;

/// Student → advocate, and advocates' contact details, as the file gives them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileCaseloads {
    pub advocate_of: HashMap<String, String>,
    pub contacts: HashMap<String, AdvocateContact>,
}

/// One line of the JSON Lines form (the CSV form has the same names as columns, with the
/// contact's fields flattened).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    student_id: String,
    advocate_id: String,
    #[serde(default)]
    advocate: Option<AdvocateContact>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    student_id: String,
    advocate_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    webhook_url: Option<String>,
    #[serde(default)]
    timezone: Option<String>,
}

/// Why the assignments file cannot be used (start-up stops, naming `notify.assignments_file`).
#[derive(Debug, thiserror::Error)]
pub enum CaseloadError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

fn at(line: usize) -> impl Fn(&dyn std::fmt::Display) -> CaseloadError {
    move |e| CaseloadError::Line { line, reason: e.to_string() }
}

impl FileCaseloads {
    /// Reads a `.csv` file (with a header) or JSON Lines (any other extension). Errors name the
    /// line; a student listed twice keeps the last line, as an advocate's contact does.
    pub fn load(path: &Path) -> Result<FileCaseloads, CaseloadError> {
        let text = std::fs::read_to_string(path)?;
        let mut file = FileCaseloads::default();
        let csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if csv {
            let mut reader =
                csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
            for (i, row) in reader.deserialize::<Row>().enumerate() {
                let row = row.map_err(|e| at(i + 2)(&e))?;
                let contact = AdvocateContact {
                    name: row.name.filter(|s| !s.is_empty()),
                    email: row.email.filter(|s| !s.is_empty()),
                    webhook_url: row.webhook_url.filter(|s| !s.is_empty()),
                    timezone: row.timezone.filter(|s| !s.is_empty()),
                };
                file.add(i + 2, row.student_id, row.advocate_id, Some(contact))?;
            }
        } else {
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let l: Line = serde_json::from_str(line).map_err(|e| at(i + 1)(&e))?;
                file.add(i + 1, l.student_id, l.advocate_id, l.advocate)?;
            }
        }
        Ok(file)
    }

    fn add(
        &mut self,
        line: usize,
        student_id: String,
        advocate_id: String,
        contact: Option<AdvocateContact>,
    ) -> Result<(), CaseloadError> {
        if student_id.is_empty() || advocate_id.is_empty() {
            return Err(at(line)(&"student_id and advocate_id must not be empty"));
        }
        if let Some(c) = contact.filter(|c| *c != AdvocateContact::default()) {
            self.contacts.insert(advocate_id.clone(), c);
        }
        self.advocate_of.insert(student_id, advocate_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_json_lines_give_the_same_caseloads() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(
            &csv,
            "student_id,advocate_id,email,webhook_url,timezone\n\
             stu-1, adv-1, a1@example.org,,America/Chicago\n\
             stu-2,adv-2,,http://127.0.0.1:1/h,\n",
        )
        .unwrap();
        let jsonl = dir.path().join("a.jsonl");
        std::fs::write(
            &jsonl,
            "{\"student_id\":\"stu-1\",\"advocate_id\":\"adv-1\",\"advocate\":{\"email\":\"a1@example.org\",\"timezone\":\"America/Chicago\"}}\n\n\
             {\"student_id\":\"stu-2\",\"advocate_id\":\"adv-2\",\"advocate\":{\"webhook_url\":\"http://127.0.0.1:1/h\"}}\n",
        )
        .unwrap();
        let a = FileCaseloads::load(&csv).unwrap();
        assert_eq!(a, FileCaseloads::load(&jsonl).unwrap());
        assert_eq!(a.advocate_of["stu-1"], "adv-1");
        assert_eq!(a.contacts["adv-1"].timezone.as_deref(), Some("America/Chicago"));
        assert_eq!(a.contacts["adv-2"].email, None);
    }

    #[test]
    fn a_bad_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("a.csv");
        std::fs::write(&csv, "student_id,advocate_id\nstu-1,adv-1\n,adv-2\n").unwrap();
        assert!(FileCaseloads::load(&csv).unwrap_err().to_string().starts_with("line 3:"));
        let jsonl = dir.path().join("a.jsonl");
        std::fs::write(&jsonl, "{\"student_id\":\"stu-1\"}\n").unwrap();
        let err = FileCaseloads::load(&jsonl).unwrap_err().to_string();
        assert!(err.starts_with("line 1:") && err.contains("advocate_id"), "{err}");
    }
}
