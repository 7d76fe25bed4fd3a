//! A Prometheus server's HTTP API, as the `promql` and `alert` checks use it: readiness
//! (`/-/ready`), instant queries (`/api/v1/query`) and range queries (`/api/v1/query_range`).
//!
//! The answer parsing ([`parse_answer`]) is pure and tested on Prometheus' documented JSON; the
//! client only does the HTTP. Every failure is a `String` a reader can act on (the URL, the
//! status, Prometheus' own `error`), never a panic.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

/// One series of an answer: its labels and its samples, `(unix ms, value)` in time order. An
/// instant query gives one sample per series; a scalar answer is one series without labels.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSeries {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(u64, f64)>,
}

impl PromSeries {
    /// `{a="1", b="2"}`, or `{}` without labels.
    pub fn label_text(&self) -> String {
        let inner: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        format!("{{{}}}", inner.join(", "))
    }
}

/// A client of one Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    http: reqwest::Client,
}

impl Prometheus {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:9090`).
    pub fn new(base: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Prometheus {
            base: base.trim_end_matches('/').to_string(),
            http,
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET /-/ready` answers 200.
    pub async fn ready(&self) -> Result<(), String> {
        let url = format!("{}/-/ready", self.base);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("Prometheus at {} is unreachable: {e}", self.base))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "Prometheus at {} is not ready: GET /-/ready answered {}",
                self.base,
                r.status()
            ))
        }
    }

    /// An instant query evaluated at `at_ms` (unix ms).
    pub async fn query(&self, expr: &str, at_ms: u64) -> Result<Vec<PromSeries>, String> {
        self.get(
            "/api/v1/query",
            &[("query", expr.to_string()), ("time", secs(at_ms))],
        )
        .await
    }

    /// A range query from `from_ms` to `to_ms` (unix ms) every `step_ms`.
    pub async fn query_range(
        &self,
        expr: &str,
        from_ms: u64,
        to_ms: u64,
        step_ms: u64,
    ) -> Result<Vec<PromSeries>, String> {
        self.get(
            "/api/v1/query_range",
            &[
                ("query", expr.to_string()),
                ("start", secs(from_ms)),
                ("end", secs(to_ms.max(from_ms))),
                ("step", secs(step_ms.max(1))),
            ],
        )
        .await
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Vec<PromSeries>, String> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| format!("Prometheus URL `{}{path}`: {e}", self.base))?;
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("Prometheus at {} is unreachable: {e}", self.base))?;
        let status = r.status();
        let body = r
            .text()
            .await
            .map_err(|e| format!("Prometheus at {}: reading the answer: {e}", self.base))?;
        let v: Value = serde_json::from_str(&body).map_err(|_| {
            format!(
                "Prometheus at {} answered {status} with no JSON: {}",
                self.base,
                body.chars().take(200).collect::<String>()
            )
        })?;
        parse_answer(&v)
    }
}

fn secs(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The series of an `/api/v1/query` or `/api/v1/query_range` answer (`vector`, `matrix` or
/// `scalar`; a `string` answer is an error), or Prometheus' own error.
pub fn parse_answer(v: &Value) -> Result<Vec<PromSeries>, String> {
    if v["status"] != "success" {
        let kind = v["errorType"].as_str().unwrap_or("error");
        let msg = v["error"].as_str().unwrap_or("no message");
        return Err(format!("Prometheus refused the query ({kind}): {msg}"));
    }
    let data = &v["data"];
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("vector") => result
            .as_array()
            .ok_or("a vector answer without a result list")?
            .iter()
            .map(|s| {
                Ok(PromSeries {
                    labels: labels(&s["metric"]),
                    samples: vec![sample(&s["value"])?],
                })
            })
            .collect(),
        Some("matrix") => result
            .as_array()
            .ok_or("a matrix answer without a result list")?
            .iter()
            .map(|s| {
                let values = s["values"]
                    .as_array()
                    .ok_or("a matrix series without values")?;
                Ok(PromSeries {
                    labels: labels(&s["metric"]),
                    samples: values.iter().map(sample).collect::<Result<_, String>>()?,
                })
            })
            .collect(),
        Some("scalar") => Ok(vec![PromSeries {
            labels: BTreeMap::new(),
            samples: vec![sample(result)?],
        }]),
        other => Err(format!(
            "Prometheus answered a {} result; a check needs a number (vector, matrix or scalar)",
            other.unwrap_or("missing")
        )),
    }
}

fn labels(m: &Value) -> BTreeMap<String, String> {
    m.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `[<unix seconds>, "<value>"]`; Prometheus writes `NaN`, `+Inf` and `-Inf` as such.
fn sample(v: &Value) -> Result<(u64, f64), String> {
    let at = v[0]
        .as_f64()
        .ok_or_else(|| format!("a sample without a time: {v}"))?;
    let text = v[1]
        .as_str()
        .ok_or_else(|| format!("a sample without a value: {v}"))?;
    let value = match text {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t
            .parse::<f64>()
            .map_err(|_| format!("a sample value that is no number: `{t}`"))?,
    };
    Ok(((at * 1000.0).round().max(0.0) as u64, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_vector_answer_gives_one_sample_per_series() {
        let v = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"instance":"a:1","job":"w"},"value":[1700000000.5,"3"]},
            {"metric":{},"value":[1700000000.5,"NaN"]}]}});
        let s = parse_answer(&v).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].samples, vec![(1_700_000_000_500, 3.0)]);
        assert_eq!(s[0].label_text(), r#"{instance="a:1", job="w"}"#);
        assert!(s[1].samples[0].1.is_nan());
        assert_eq!(s[1].label_text(), "{}");
    }

    #[test]
    fn a_matrix_answer_keeps_every_sample_and_a_scalar_is_one_series() {
        let v = json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"alertname":"X"},"values":[[10,"1"],[11,"+Inf"]]}]}});
        let s = parse_answer(&v).unwrap();
        assert_eq!(s[0].samples[0], (10_000, 1.0));
        assert_eq!(s[0].samples[1].1, f64::INFINITY);
        let v = json!({"status":"success","data":{"resultType":"scalar","result":[12,"0.25"]}});
        assert_eq!(parse_answer(&v).unwrap()[0].samples, vec![(12_000, 0.25)]);
    }

    #[test]
    fn errors_carry_prometheus_own_message() {
        let v = json!({"status":"error","errorType":"bad_data","error":"parse error at char 4"});
        let e = parse_answer(&v).unwrap_err();
        assert!(
            e.contains("bad_data") && e.contains("parse error at char 4"),
            "{e}"
        );
        let v = json!({"status":"success","data":{"resultType":"string","result":[1,"x"]}});
        assert!(parse_answer(&v).unwrap_err().contains("string"));
        let v = json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1,"abc"]}]}});
        assert!(parse_answer(&v).unwrap_err().contains("abc"));
    }
}
