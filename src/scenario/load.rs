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
use gitspy_contract::units::HINT_SEPARATOR;

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
fn problem_from_parser(mut pos: Pos, raw: &str, text: &str) -> Problem {
    // The parser reports a missing key at the last key it read; the reader looks for the
    // mapping, so point at its first key instead.
    if raw.starts_with("missing field") {
        pos = first_key_of_block_mapping(text, pos);
    }
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
        (format!("missing key `{field}`"), missing_field_hint(field))
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

/// For a key at `pos` that starts its line in a block mapping, the first key of that mapping;
/// anything else (a flow mapping `{…}`) is returned unchanged.
fn first_key_of_block_mapping(text: &str, pos: Pos) -> Pos {
    /// Column (0-based) of a line's first key, and whether a `- ` sequence item opens there.
    /// `None` for blank and comment lines. Indentation is ASCII, so bytes are characters.
    fn key_column(line: &str) -> Option<(usize, bool)> {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let rest = &line[indent..];
        if rest.is_empty() || rest.starts_with('#') {
            return None;
        }
        match rest.strip_prefix('-') {
            Some(after) if after.starts_with(' ') => {
                Some((line.len() - after.trim_start_matches(' ').len(), true))
            }
            _ => Some((indent, false)),
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let (Some(line_index), Some(column)) = (
        (pos.line as usize).checked_sub(1),
        (pos.column as usize).checked_sub(1),
    ) else {
        return pos;
    };
    match lines.get(line_index).and_then(|l| key_column(l)) {
        Some((c, false)) if c == column => {}
        _ => return pos,
    }
    let mut first = line_index;
    for i in (0..line_index).rev() {
        match key_column(lines[i]) {
            None => continue,
            Some((c, _)) if c > column => continue,
            Some((c, dash)) if c == column => {
                first = i;
                if dash {
                    break;
                }
            }
            Some(_) => break,
        }
    }
    Pos {
        line: u32::try_from(first + 1).unwrap_or(pos.line),
        column: pos.column,
    }
}

/// How to add a required key, with an example where one helps.
fn missing_field_hint(field: &str) -> String {
    let example = match field {
        "name" => "`name: redis-down`",
        "target" => "`target: { redis: { backend: auto }, workers: 1 }`",
        "steps" => "`steps:` with one `- send: { count: 20 }` per line",
        "checks" => "`checks:` with one `- deliveries: { lost: 0, duplicated: 0 }` per line",
        "count" => "`count: 20`",
        "within" => "`within: 60s`",
        "max" => "`max: 0`",
        "every" => "`every: 30s`",
        "copies" => "`copies: 2`",
        "server_url" => "`server_url: http://127.0.0.1:3000`",
        "executable" => "`executable: gitspy`",
        "env_marker" => "`env_marker: GITSPY_CHAOS_TARGET=1`",
        _ => return format!("add `{field}:` here; the files in scenarios/ are complete examples"),
    };
    format!("add {example}")
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

/// A scenario as YAML text that [`parse`] reads back to the same scenario: absent options are
/// left out (not written as `null`), so the text reads like a hand-written file. Used by
/// `explore` to write the scenarios it generates and shrinks.
pub fn to_yaml(scenario: &Scenario) -> anyhow::Result<String> {
    fn drop_nulls(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|_, x| !x.is_null());
                map.values_mut().for_each(drop_nulls);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(scenario)?;
    drop_nulls(&mut value);
    Ok(serde_saphyr::to_string(&value)?)
}
