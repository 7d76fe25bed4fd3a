//! GitHub-facing logic with no I/O: signatures, payload metadata, the board fold. No axum, no redis,
//! no sqlite in here.

pub mod board;
pub mod event;
pub mod fold;
pub mod signature;
