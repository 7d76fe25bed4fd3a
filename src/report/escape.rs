//! Escaping for every text that reaches a report, most of it from the system under test
//! (titles in log lines, delivery ids it invented, error messages). One place, so no format
//! forgets a case.

/// Replaces control characters that XML 1.0 forbids even as references (and that HTML treats
/// as parse errors) by U+FFFD; tab, newline and carriage return are kept.
fn clean(c: char) -> char {
    if (c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
        || c == '\u{7f}'
        || c == '\u{fffe}'
        || c == '\u{ffff}'
    {
        '\u{fffd}'
    } else {
        c
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars().map(clean) {
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

/// Escapes text for XML content and quoted attribute values (JUnit). Newlines and tabs in
/// attributes are written as references so a parser gives them back unchanged.
pub fn xml_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars().map(clean) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for XML element content.
pub fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars().map(clean) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// Makes text safe for a terminal: control characters (ESC and friends, which could move
/// the cursor or recolour the screen) become U+FFFD; newlines and tabs are kept.
pub fn terminal(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && !matches!(c, '\n' | '\t') {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

/// Escapes text for one line of GitHub-flavoured Markdown, inside or outside a table cell:
/// HTML is neutralised with entities (GitHub renders `&lt;` as `<`), Markdown punctuation
/// is backslash-escaped, and line breaks become spaces so a cell stays one cell.
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars().map(clean) {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            html("<script>alert(\"x\")</script> & 'y'"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(html("a\u{0}b\nc"), "a\u{fffd}b\nc");
    }

    #[test]
    fn xml_attr_keeps_newlines_as_references() {
        assert_eq!(xml_attr("a\nb<\"c\">"), "a&#10;b&lt;&quot;c&quot;&gt;");
    }

    #[test]
    fn md_escapes_html_pipes_and_emphasis() {
        assert_eq!(
            md("<img src=x> | *bold* `code`\nnext"),
            "&lt;img src=x&gt; \\| \\*bold\\* \\`code\\` next"
        );
    }
}
