//! `run.json`: the run report as pretty JSON, keys in model order, a trailing newline.
//! It is the one format read back; every other format is rendered from it.

use super::{Exporter, RunReport};

/// Writes `run.json`.
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn file_name(&self) -> &'static str {
        "run.json"
    }

    fn render(&self, run: &RunReport) -> anyhow::Result<Vec<u8>> {
        let mut bytes = serde_json::to_vec_pretty(run)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
