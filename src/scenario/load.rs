//! Reading scenario files: the only place that knows which YAML crate parses them.
//!
//! [`parse`] turns text into a [`Scenario`] or one [`Problem`] with the position the parser
//! reported; [`At`]'s `Deserialize` keeps positions of values for the checks that come after
//! parsing. Swapping the YAML crate means rewriting this file only.

use std::path::Path;

use serde::{Deserialize, Deserializer};
use serde_saphyr::MessageFormatter;

use super::model::{At, Pos, Scenario};
use super::Problem;

/// Separates a message from its hint inside a serde error text, so that errors raised by our own
/// `Deserialize` impls (durations, rates, worker choices) can carry their fix through the
/// parser. Not a character anyone types in a scenario.
const HINT_SEPARATOR: &str = "\u{2063}hint\u{2063}";

/// An error text for a `Deserialize` impl that also carries a hint for the user.
pub(crate) fn with_hint(message: &str, hint: &str) -> String {
    format!("{message}{HINT_SEPARATOR}{hint}")
}

/// Read and parse one scenario file. I/O errors are reported at `0:0` (no position).
pub fn load_file(path: &Path) -> Result<Scenario, Problem> {
    let text = std::fs::read_to_string(path).map_err(|e| Problem {
        pos: Pos::default(),
        message: format!("cannot read the file: {e}"),
        hint: "check the path and that the file is readable UTF-8 text".to_owned(),
    })?;
    parse(&text)
}

/// Parse a scenario from YAML text. The first syntax or shape error ends parsing (the parser
/// cannot go on sensibly after it); the checks on values come after, in `validate`.
pub fn parse(text: &str) -> Result<Scenario, Problem> {
    serde_saphyr::from_str::<Scenario>(text).map_err(|err| {
        let pos = err
            .location()
            .map(|l| Pos {
                line: u32::try_from(l.line()).unwrap_or(u32::MAX),
                column: u32::try_from(l.column()).unwrap_or(u32::MAX),
            })
            .unwrap_or_default();
        let raw = serde_saphyr::DefaultMessageFormatter.format_message(err.without_snippet());
        problem_from_parser(pos, &raw, text)
    })
}

/// Our spelling of a parser message: lowercase, no trailing period, with a hint, and the
/// offending text quoted when the parser only named a type.
fn problem_from_parser(pos: Pos, raw: &str, text: &str) -> Problem {
    if let Some((message, hint)) = raw.split_once(HINT_SEPARATOR) {
        return Problem {
            pos,
            message: message.to_owned(),
            hint: hint.to_owned(),
        };
    }
    let line = text
        .lines()
        .nth(pos.line.saturating_sub(1) as usize)
        .unwrap_or("");
    let found = token_at(line, pos.column);
    let raw = tidy(raw);
    let (message, hint): (String, String) = if raw.contains("tabs disallowed")
        || line[..line.len() - line.trim_start().len()].contains('\t')
    {
        (
            "a tab in the indentation".to_owned(),
            "indent with spaces: YAML does not allow tabs for indentation".to_owned(),
        )
    } else if raw.starts_with("unknown field") {
        (
            raw,
            "remove the key or fix its spelling; the keys allowed here are listed above".to_owned(),
        )
    } else if raw.starts_with("unknown variant") {
        (raw, "use one of the names listed above".to_owned())
    } else if let Some(field) = raw
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        (
            format!("missing key `{field}`"),
            format!("add `{field}:`; `gitspy-chaos list` shows the shipped scenarios as examples"),
        )
    } else if let Some(key) = raw
        .strip_prefix("duplicate mapping key: ")
        .and_then(|r| r.split(',').next())
    {
        (
            format!("key `{key}` appears twice in the same mapping"),
            "keep one of them".to_owned(),
        )
    } else if matches!(
        raw.as_str(),
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64"
    ) {
        (
            format!("expected a whole number of 0 or more, found `{found}`"),
            "write a number like `20`, without quotes or units".to_owned(),
        )
    } else if matches!(raw.as_str(), "invalid i32" | "invalid i64") {
        (
            format!("expected a whole number, found `{found}`"),
            "write a number like `20`, without quotes or units".to_owned(),
        )
    } else if matches!(raw.as_str(), "invalid f32" | "invalid f64") {
        (
            format!("expected a number, found `{found}`"),
            "write a number like `0.5`".to_owned(),
        )
    } else if raw == "invalid boolean" {
        (
            format!("expected `true` or `false`, found `{found}`"),
            "write `true` or `false`".to_owned(),
        )
    } else if raw == "expected sequence start" {
        (
            format!("expected a list, found `{found}`"),
            "write one `- item` per line, or `[a, b]`".to_owned(),
        )
    } else if raw == "expected mapping start" {
        (
            format!("expected `key: value` pairs, found `{found}`"),
            "write a mapping, e.g. `{for: 30s}` or one `key: value` per line".to_owned(),
        )
    } else if raw.starts_with("unexpected end of input") && text.trim().is_empty() {
        (
            "the file is empty".to_owned(),
            "a scenario needs `name`, `target`, `steps` and `checks`".to_owned(),
        )
    } else if raw.starts_with("invalid type") || raw.starts_with("invalid value") {
        (raw, "write a value of the kind named above".to_owned())
    } else {
        (
            raw,
            "check the YAML syntax here: indentation, a missing `:`, an unclosed bracket or quote"
                .to_owned(),
        )
    };
    Problem { pos, message, hint }
}

/// The scalar starting at `column` (1-based, in characters) of `line`, for quoting in messages.
fn token_at(line: &str, column: u32) -> String {
    let rest: String = line
        .chars()
        .skip(column.saturating_sub(1) as usize)
        .collect();
    let end = rest.find([',', '}', ']', '#']).unwrap_or(rest.len());
    rest[..end].trim().to_owned()
}

/// Lowercase first letter, no trailing period, no position suffix (we print our own).
fn tidy(raw: &str) -> String {
    let mut s = raw.trim().trim_end_matches('.').to_owned();
    if let Some(i) = s.find(" at line ") {
        s.truncate(i);
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(first) if !s.starts_with("YAML") => first.to_lowercase().chain(chars).collect(),
        _ => s,
    }
}

/// `At<T>` reads the value with the parser's span support to remember where it was written.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(d)?;
        let loc = spanned.referenced;
        Ok(At {
            value: spanned.value,
            pos: Pos {
                line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
                column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
            },
        })
    }
}
