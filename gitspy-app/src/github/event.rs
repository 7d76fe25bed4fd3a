//! What the ingress needs from a request body before it is queued: the JSON payload (from a JSON body
//! or the `payload=` field of a form body) and its `action` / `repository.full_name`.

use thiserror::Error;

/// Why a body cannot be accepted (answered 400).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BodyError {
    #[error("form body has no `payload` field")]
    MissingPayloadField,
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload must be a JSON object")]
    NotAnObject,
}

/// The parts of a payload the queue records next to the raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadMeta {
    pub action: Option<String>,
    pub repository: Option<String>,
}

/// Extracts the JSON payload from a request body. Form bodies (`application/x-www-form-urlencoded`)
/// carry it in the `payload` field; everything else is taken as JSON.
pub fn payload_bytes(content_type: Option<&str>, body: &[u8]) -> Result<Vec<u8>, BodyError> {
    let is_form = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false);
    if is_form {
        form_urlencoded::parse(body)
            .find(|(k, _)| k == "payload")
            .map(|(_, v)| v.into_owned().into_bytes())
            .ok_or(BodyError::MissingPayloadField)
    } else {
        Ok(body.to_vec())
    }
}

/// The two fields, read without building a JSON tree (the ingress's hot path); any payload this
/// does not read exactly (not UTF-8, not an object, a field of another type, a repeated key) goes
/// to the tree-building [`parse_meta_tree`], which has the last word.
#[derive(serde::Deserialize)]
struct FastMeta<'a> {
    #[serde(borrow, default)]
    action: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    repository: Option<FastRepository<'a>>,
}

#[derive(serde::Deserialize)]
struct FastRepository<'a> {
    #[serde(borrow, default)]
    full_name: Option<std::borrow::Cow<'a, str>>,
}

/// Parses the payload and reads its metadata; the payload must be a JSON object.
pub fn parse_meta(payload: &[u8]) -> Result<PayloadMeta, BodyError> {
    let object = payload
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if object {
        if let Ok(text) = std::str::from_utf8(payload) {
            if let Ok(m) = serde_json::from_str::<FastMeta<'_>>(text) {
                return Ok(PayloadMeta {
                    action: m.action.map(std::borrow::Cow::into_owned),
                    repository: m
                        .repository
                        .and_then(|r| r.full_name)
                        .map(std::borrow::Cow::into_owned),
                });
            }
        }
    }
    parse_meta_tree(payload)
}

/// [`parse_meta`] through a `serde_json::Value`: the reference behaviour.
fn parse_meta_tree(payload: &[u8]) -> Result<PayloadMeta, BodyError> {
    let value: serde_json::Value =
        serde_json::from_slice(payload).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    let obj = value.as_object().ok_or(BodyError::NotAnObject)?;
    Ok(PayloadMeta {
        action: obj
            .get("action")
            .and_then(|a| a.as_str())
            .map(str::to_owned),
        repository: obj
            .get("repository")
            .and_then(|r| r.get("full_name"))
            .and_then(|n| n.as_str())
            .map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_payload_field() {
        let body = b"payload=%7B%22action%22%3A%22opened%22%7D";
        let p = payload_bytes(Some("application/x-www-form-urlencoded"), body).unwrap();
        assert_eq!(p, br#"{"action":"opened"}"#);
        assert_eq!(
            payload_bytes(Some("application/x-www-form-urlencoded"), b"x=1"),
            Err(BodyError::MissingPayloadField)
        );
    }

    #[test]
    fn meta_from_payload() {
        let m = parse_meta(br#"{"action":"opened","repository":{"full_name":"o/r"}}"#).unwrap();
        assert_eq!(m.action.as_deref(), Some("opened"));
        assert_eq!(m.repository.as_deref(), Some("o/r"));
        assert!(matches!(parse_meta(b"{"), Err(BodyError::InvalidJson(_))));
        assert_eq!(parse_meta(b"[1]"), Err(BodyError::NotAnObject));
    }

    /// The fast path agrees with the tree on every shape, odd ones included.
    #[test]
    fn fast_meta_matches_the_tree() {
        let cases: &[&[u8]] = &[
            br#"{"action":"opened","repository":{"full_name":"o/r","id":1},"x":[1,{"a":null}]}"#,
            br#" {"action":5,"repository":"flat"}"#,
            br#"{"action":null,"repository":{"full_name":7}}"#,
            br#"{"action":"a","action":"b"}"#,
            br#"{"action":"caf\u00e9 \"q\""}"#,
            br#"{}"#,
            br#"{"action":"x"} trailing"#,
            br#"["action"]"#,
            b"{\"action\":\"\xff\"}",
        ];
        for c in cases {
            assert_eq!(
                parse_meta(c),
                parse_meta_tree(c),
                "{}",
                String::from_utf8_lossy(c)
            );
        }
    }
}
