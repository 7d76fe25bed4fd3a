//! The record codec: encoding a record with its header and checksum, and decoding (and
//! validating) one from bytes. Pure: no files.

use super::{
    RecordDefect, SpoolError, SpoolRecord, FLAG_BATCH_START, MAX_DELIVERY_LEN, MAX_PAYLOAD_LEN,
    RECORD_HEADER_LEN, RECORD_MAGIC,
};

pub(super) fn validate(rec: &SpoolRecord) -> Result<(), SpoolError> {
    let id_len = rec.delivery.len();
    if id_len == 0 || id_len > MAX_DELIVERY_LEN {
        return Err(SpoolError::InvalidDelivery {
            delivery: rec.delivery.chars().take(64).collect(),
            reason: format!("its length {id_len} is outside 1..={MAX_DELIVERY_LEN} bytes"),
        });
    }
    if rec.payload.len() > MAX_PAYLOAD_LEN {
        return Err(SpoolError::PayloadTooLarge {
            len: rec.payload.len(),
        });
    }
    Ok(())
}

pub(super) fn encode_record(rec: &SpoolRecord, batch_start: bool, out: &mut Vec<u8>) {
    let id = rec.delivery.as_bytes();
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&RECORD_MAGIC);
    // Lengths were validated against MAX_DELIVERY_LEN / MAX_PAYLOAD_LEN, which fit.
    header[4..6].copy_from_slice(&(id.len() as u16).to_le_bytes());
    let flags = if batch_start { FLAG_BATCH_START } else { 0 };
    header[6..8].copy_from_slice(&flags.to_le_bytes());
    header[8..12].copy_from_slice(&(rec.payload.len() as u32).to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..12]);
    hasher.update(id);
    hasher.update(&rec.payload);
    header[12..16].copy_from_slice(&hasher.finalize().to_le_bytes());
    out.reserve(RECORD_HEADER_LEN + id.len() + rec.payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(id);
    out.extend_from_slice(&rec.payload);
}

/// Lengths from a record header that passed the structural checks.
pub(super) struct RecordShape {
    pub(super) id_len: usize,
    pub(super) payload_len: usize,
    pub(super) stored_crc: u32,
    pub(super) batch_start: bool,
}

impl RecordShape {
    pub(super) fn total_len(&self) -> u64 {
        (RECORD_HEADER_LEN + self.id_len + self.payload_len) as u64
    }
}

pub(super) fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

pub(super) fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

pub(super) fn decode_header(header: &[u8; RECORD_HEADER_LEN]) -> Result<RecordShape, RecordDefect> {
    if header[0..4] != RECORD_MAGIC {
        return Err(RecordDefect::BadMagic {
            found: [header[0], header[1], header[2], header[3]],
        });
    }
    let id_len = le_u16(&header[4..6]) as usize;
    if id_len == 0 || id_len > MAX_DELIVERY_LEN {
        return Err(RecordDefect::BadIdLength { len: id_len });
    }
    let flags = le_u16(&header[6..8]);
    if flags & !FLAG_BATCH_START != 0 {
        return Err(RecordDefect::ReservedFlags { flags });
    }
    let payload_len = le_u32(&header[8..12]) as usize;
    if payload_len > MAX_PAYLOAD_LEN {
        return Err(RecordDefect::PayloadTooLong { len: payload_len });
    }
    Ok(RecordShape {
        id_len,
        payload_len,
        stored_crc: le_u32(&header[12..16]),
        batch_start: flags & FLAG_BATCH_START != 0,
    })
}

/// Checks the body (id + payload) against the header and splits it.
pub(super) fn decode_body(
    header: &[u8; RECORD_HEADER_LEN],
    shape: &RecordShape,
    body: &[u8],
) -> Result<SpoolRecord, RecordDefect> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[4..12]);
    hasher.update(body);
    let computed = hasher.finalize();
    if computed != shape.stored_crc {
        return Err(RecordDefect::Checksum {
            stored: shape.stored_crc,
            computed,
        });
    }
    let (id, payload) = body.split_at(shape.id_len);
    let delivery = std::str::from_utf8(id).map_err(|_| RecordDefect::IdNotUtf8)?;
    Ok(SpoolRecord {
        delivery: delivery.to_owned(),
        payload: payload.to_vec(),
    })
}

/// Decodes one whole record from exactly its bytes.
pub(super) fn decode_record(bytes: &[u8]) -> Result<SpoolRecord, RecordDefect> {
    let available = bytes.len() as u64;
    let Some(header) = bytes.first_chunk::<RECORD_HEADER_LEN>() else {
        return Err(RecordDefect::TruncatedHeader { available });
    };
    let shape = decode_header(header)?;
    if shape.total_len() != available {
        return Err(RecordDefect::BeyondEof {
            needed: shape.total_len(),
            available,
        });
    }
    decode_body(header, &shape, &bytes[RECORD_HEADER_LEN..])
}
