//! What a notification looks like: the webhook JSON body, the email subject and bodies.
//!
//! Only the student id, what happened (absence or flag name, with the flag's id), the date and a
//! link: nothing else about the student. Subjects name no student.

use std::fmt::Write as _;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;

use super::{Alert, AlertKind, Notification};

/// The webhook body (Standard Webhooks' `type` / `timestamp` / `data` envelope).
#[derive(Debug, Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When the notification was queued (the same on every retry).
    timestamp: String,
    data: Data<'a>,
}

#[derive(Debug, Serialize)]
struct Data<'a> {
    id: &'a str,
    advocate_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest_of: Option<String>,
    alerts: Vec<AlertView<'a>>,
}

#[derive(Debug, Serialize)]
struct AlertView<'a> {
    kind: &'static str,
    student_id: &'a str,
    date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flag_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<String>,
}

/// Renders notifications with the configured link template.
#[derive(Debug, Clone)]
pub struct Renderer {
    link_template: String,
}

impl Renderer {
    pub fn new(link_template: &str) -> Renderer {
        Renderer { link_template: link_template.to_owned() }
    }

    /// The alert's link: the template with `{student_id}`, `{date}` and `{flag}` URL-encoded.
    pub fn link(&self, alert: &Alert) -> Option<String> {
        if self.link_template.is_empty() {
            return None;
        }
        let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
        let flag = alert.flag.as_ref().map_or("", |(f, _)| f.as_str());
        Some(
            self.link_template
                .replace("{student_id}", &enc(&alert.student_id))
                .replace("{date}", &alert.date.to_string())
                .replace("{flag}", &enc(flag)),
        )
    }

    /// The webhook body; the same bytes on every attempt.
    pub fn json(&self, n: &Notification) -> Vec<u8> {
        let timestamp = jiff::Timestamp::from_millisecond(n.created_at_ms)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_string();
        let alerts = n
            .alerts
            .iter()
            .map(|a| AlertView {
                kind: a.kind.as_str(),
                student_id: &a.student_id,
                date: a.date.to_string(),
                flag: a.flag.as_ref().map(|(f, _)| f.as_str()),
                flag_id: a.flag.as_ref().map(|(_, id)| id.as_str()),
                link: self.link(a),
            })
            .collect();
        let body = Body {
            kind: if n.digest_of.is_some() { "ontrack.digest" } else { "ontrack.alert" },
            timestamp,
            data: Data {
                id: &n.id,
                advocate_id: &n.advocate_id,
                digest_of: n.digest_of.map(|d| d.to_string()),
                alerts,
            },
        };
        serde_json::to_vec(&body).expect("notification bodies always serialize")
    }

    /// The email subject: what kind of news, never which student.
    pub fn subject(&self, n: &Notification) -> String {
        if let Some(date) = n.digest_of {
            let count = n.alerts.len();
            let s = if count == 1 { "" } else { "s" };
            return format!("ontrack daily digest for {date}: {count} alert{s}");
        }
        match n.alerts.first() {
            Some(a) => match (&a.kind, &a.flag) {
                (AlertKind::Absence, _) => {
                    "ontrack: a student on your caseload is absent today".into()
                }
                (kind, Some((flag, _))) => {
                    let what = if *kind == AlertKind::FlagRaised { "raised" } else { "cleared" };
                    format!("ontrack: {flag} flag {what} for a student on your caseload")
                }
                (_, None) => "ontrack alert".into(),
            },
            None => "ontrack alert".into(),
        }
    }

    /// The plain-text email body.
    pub fn text(&self, n: &Notification) -> String {
        let mut out = String::new();
        for a in &n.alerts {
            let _ = writeln!(out, "{}", describe(a));
            if let Some(link) = self.link(a) {
                let _ = writeln!(out, "  {link}");
            }
        }
        let _ = write!(out, "\n-- \nontrack notification {}\n", n.id);
        out
    }

    /// The HTML email body (every value escaped).
    pub fn html(&self, n: &Notification) -> String {
        let mut out = String::from("<!DOCTYPE html>\n<html><body>\n<ul>\n");
        for a in &n.alerts {
            let text = escape(&describe(a));
            match self.link(a) {
                Some(link) => {
                    let _ = writeln!(out, "<li><a href=\"{}\">{text}</a></li>", escape(&link));
                }
                None => {
                    let _ = writeln!(out, "<li>{text}</li>");
                }
            }
        }
        let _ = write!(out, "</ul>\n<p>ontrack notification {}</p>\n</body></html>\n", n.id);
        out
    }
}

/// One line about one alert.
fn describe(a: &Alert) -> String {
    match (&a.kind, &a.flag) {
        (AlertKind::Absence, _) => format!("Absent today ({}): student {}", a.date, a.student_id),
        (kind, Some((flag, flag_id))) => {
            let what = if *kind == AlertKind::FlagRaised { "raised" } else { "cleared" };
            format!("Flag {flag} {what} ({}): student {} [{flag_id}]", a.date, a.student_id)
        }
        (_, None) => format!("{} ({}): student {}", a.kind.as_str(), a.date, a.student_id),
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Flag;
    use crate::notify::Destination;
    use time::macros::date;

    fn notification(alerts: Vec<Alert>) -> Notification {
        let to = Destination::Email("adv@example.org".into());
        Notification::new("x", "adv-1", to, None, alerts, 1_789_000_000_000)
    }

    #[test]
    fn links_encode_the_student_id_and_bodies_hold_only_the_minimum() {
        let r = Renderer::new("https://sis.example/s/{student_id}?d={date}&f={flag}");
        let alert = Alert {
            kind: AlertKind::FlagRaised,
            student_id: "stu 1/<b>".into(),
            date: date!(2026 - 09 - 14),
            flag: Some((Flag::Attendance, "2026/stu 1/<b>/attendance/1".into())),
        };
        assert_eq!(
            r.link(&alert).unwrap(),
            "https://sis.example/s/stu%201%2F%3Cb%3E?d=2026-09-14&f=attendance"
        );
        let n = notification(vec![alert]);
        let body: serde_json::Value = serde_json::from_slice(&r.json(&n)).unwrap();
        let a = &body["data"]["alerts"][0];
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["date", "flag", "flag_id", "kind", "link", "student_id"]);
        assert_eq!(body["type"], "ontrack.alert");
        assert!(!r.subject(&n).contains("stu 1"), "{}", r.subject(&n));
        assert!(r.html(&n).contains("stu 1/&lt;b&gt;"));
        assert!(!r.html(&n).contains("<b>"));
    }
}
