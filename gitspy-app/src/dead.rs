//! `gitspy dead list|requeue`: the operator's view of the dead-letter stream.
//!
//! Kept out of [`crate::queue`] because it is presentation and policy on top of the queue's
//! primitives: `list` prints [`Queue::dead_entries`] as a table or JSON; `requeue` puts the
//! original delivery back through the normal path — the same atomic enqueue script the ingress
//! uses, which accepts a `failed` id again and resets its attempts — and only then removes the
//! entry from the dead stream, so a crash in between leaves the delivery dead-lettered *and*
//! queued (processed once thanks to the worker's dedupe), never lost.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::{bail, Context as _};

use crate::config::{DeadArgs, DeadCommand, RequeueArgs};
use crate::metrics::Metrics;
use crate::queue::{DeadEntry, Enqueued, Queue, QueueConfig};

/// What happened to one dead-lettered delivery on requeue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeued {
    /// Back in the stream with this entry id, attempts reset.
    Queued(String),
    /// Already known in this state (e.g. GitHub redelivered it meanwhile): nothing was enqueued;
    /// the dead entry was removed since the delivery is alive again.
    AlreadyKnown(String),
}

/// Runs `gitspy dead …`.
pub async fn run(args: DeadArgs) -> anyhow::Result<()> {
    let queue = Queue::new(
        QueueConfig {
            redis_url: args.redis.redis_url.clone(),
            timeout: args.redis.redis_timeout,
            state_ttl: args.redis.state_ttl,
            dedupe: !args.redis.test_disable_dedupe,
        },
        Arc::new(Metrics::new()),
    )
    .with_context(|| format!("invalid Redis URL `{}`", args.redis.redis_url))?;
    match args.command {
        DeadCommand::List { json } => {
            let entries = queue.dead_entries().await.with_context(|| {
                format!("reading the dead letters from {}", args.redis.redis_url)
            })?;
            let text = if json {
                let mut s = serde_json::to_string_pretty(&entries)
                    .context("serialising the dead letters")?;
                s.push('\n');
                s
            } else {
                table(&entries)
            };
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("writing to stdout")
        }
        DeadCommand::Requeue(r) => requeue(&queue, &r).await,
    }
}

async fn requeue(queue: &Queue, args: &RequeueArgs) -> anyhow::Result<()> {
    let entries = queue
        .dead_entries()
        .await
        .context("reading the dead letters")?;
    let chosen: Vec<&DeadEntry> = match (&args.id, args.all) {
        (_, true) => entries.iter().collect(),
        (Some(id), false) => {
            let hits: Vec<&DeadEntry> = entries.iter().filter(|e| &e.delivery == id).collect();
            if hits.is_empty() {
                bail!("no dead-lettered delivery `{id}`\nhint: `gitspy dead list` shows them");
            }
            hits
        }
        (None, false) => bail!("name a delivery id or pass --all"),
    };
    let mut out = std::io::stdout().lock();
    let mut done = std::collections::BTreeSet::new();
    let mut unrecoverable = 0usize;
    for e in chosen {
        // The same delivery may have been dead-lettered twice; enqueue it once, drop every entry.
        if !done.contains(&e.delivery) {
            let Some(original) = &e.original else {
                unrecoverable += 1;
                tracing::error!(
                    delivery = %e.delivery,
                    dead_id = %e.dead_id,
                    "dead entry has no original body; cannot requeue it (left in place)"
                );
                continue;
            };
            let r = match queue
                .enqueue(original)
                .await
                .with_context(|| format!("requeueing {}", e.delivery))?
            {
                Enqueued::Queued(id) => Requeued::Queued(id),
                Enqueued::Duplicate(state) => Requeued::AlreadyKnown(state),
            };
            match &r {
                Requeued::Queued(id) => writeln!(out, "requeued {} as {id}", e.delivery),
                Requeued::AlreadyKnown(state) => writeln!(
                    out,
                    "{} is already {state}; not enqueued again, dead entry removed",
                    e.delivery
                ),
            }
            .context("writing to stdout")?;
            done.insert(e.delivery.clone());
        }
        queue
            .remove_dead(&e.dead_id)
            .await
            .with_context(|| format!("removing dead entry {} of {}", e.dead_id, e.delivery))?;
    }
    out.flush().context("writing to stdout")?;
    if unrecoverable > 0 {
        bail!("{unrecoverable} dead entries carry no original delivery and were left in place");
    }
    Ok(())
}

/// `dead_at` as RFC 3339 (UTC, milliseconds).
fn rfc3339_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The plain-text table of `dead list`: id, event, attempts, last error, time.
pub fn table(entries: &[DeadEntry]) -> String {
    let header = ["ID", "EVENT", "ATTEMPTS", "DEAD AT", "LAST ERROR"];
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.delivery.clone(),
                e.event.clone(),
                e.attempts.to_string(),
                rfc3339_ms(e.dead_at_ms),
                // One line per entry, whatever the error said.
                e.error.replace(['\n', '\r'], " "),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    let mut line = |cells: [&str; 5]| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push_str(l.trim_end());
        s.push('\n');
    };
    line(header);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    if entries.is_empty() {
        s.push_str("(no dead-lettered deliveries)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_one_aligned_line_per_entry() {
        let e = DeadEntry {
            dead_id: "1-0".into(),
            delivery: "abc".into(),
            event: "issues".into(),
            attempts: 3,
            error: "boom\nagain".into(),
            dead_at_ms: 1_714_564_800_250,
            original: None,
        };
        let t = table(&[e]);
        assert_eq!(
            t,
            "ID   EVENT   ATTEMPTS  DEAD AT                  LAST ERROR\n\
             abc  issues  3         2024-05-01T12:00:00.25Z  boom again\n"
        );
        assert!(table(&[]).contains("no dead-lettered deliveries"));
    }
}
