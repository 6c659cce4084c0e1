//! The pure core: decode → fold → rules.
//!
//! Invariant: nothing in this module does I/O, reads a clock, or draws a random number. It takes
//! values and returns values, so `replay`, `run` and `demo` give the same flags for the same input.

/// Declares a closed set of contract strings once: the enum, its wire names, the list that error
/// messages quote, and serde as those names.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&s).ok_or_else(|| {
                    ::serde::de::Error::unknown_variant(&s, $name::NAMES)
                })
            }
        }
    };
}

pub mod calendar;
pub mod decode;
pub mod event;
pub mod flag;
pub mod rules;
pub mod state;
pub mod students;

pub use calendar::{CalendarOutcome, CalendarRecord, Calendars, DayClock};
pub use decode::{DecodeError, decode};
pub use event::{AdvocateContact, AttendanceStatus, Event, EventBody, EventKind};
pub use flag::{Change, Evidence, Flag, FlagChange};
pub use rules::{Rules, RulesError, SchoolYear};
pub use state::{
    AssignmentRecord, AttendanceRecord, Cause, Changes, Days, EnrollmentRecord, Figures,
    GradeRecord, Head, Outcome, ReferralRecord, StudentState, Version, day_cause_id,
};
pub use students::Students;
