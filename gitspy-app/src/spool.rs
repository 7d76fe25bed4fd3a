//! PLACEHOLDER until the spool branch lands (replaced wholesale at merge).
use std::path::Path;
pub struct SpoolRecord {
    pub delivery: String,
    pub payload: Vec<u8>,
}
pub struct OpenReport {
    pub records: usize,
    pub torn_records_dropped: u64,
    pub torn_bytes_dropped: u64,
}
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
pub struct Spool {
    recs: Vec<SpoolRecord>,
}
impl Spool {
    pub fn open(_dir: &Path) -> Result<(Spool, OpenReport), SpoolError> {
        Ok((
            Spool { recs: Vec::new() },
            OpenReport {
                records: 0,
                torn_records_dropped: 0,
                torn_bytes_dropped: 0,
            },
        ))
    }
    pub fn append(&mut self, rec: &SpoolRecord) -> Result<(), SpoolError> {
        self.recs.push(SpoolRecord {
            delivery: rec.delivery.clone(),
            payload: rec.payload.clone(),
        });
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.recs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }
    pub fn contains(&self, d: &str) -> bool {
        self.recs.iter().any(|r| r.delivery == d)
    }
    pub fn peek(&self, n: usize) -> Result<Vec<SpoolRecord>, SpoolError> {
        Ok(self
            .recs
            .iter()
            .take(n)
            .map(|r| SpoolRecord {
                delivery: r.delivery.clone(),
                payload: r.payload.clone(),
            })
            .collect())
    }
    pub fn pop_front(&mut self, n: usize) -> Result<(), SpoolError> {
        self.recs.drain(..n.min(self.recs.len()));
        Ok(())
    }
}
