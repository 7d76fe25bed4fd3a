//! The GitHub event model: what webhook payloads mean for the board, as pure logic.
//!
//! Nothing in here talks HTTP, Redis or SQLite — the invariant that keeps the fold testable and
//! shared by the worker, the store and `gitspy replay`. `fold` turns payloads into card and
//! repository state; `board` renders that state as the canonical board JSON.

pub mod board;
pub mod fold;
