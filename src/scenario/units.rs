//! Durations (`30s`, `2m`, `1m30s`, `500ms`) and rates (`50/s`, `300/m`) as they are written in
//! scenario files and on the command line: the one grammar both crates and both command lines
//! share, defined in [`gitspy_contract::units`] (with its tests). A bare number is refused for
//! both (`rate: 20` and `duration: 30` are errors naming the unit to add).

pub use gitspy_contract::units::{Dur, Rate, UnitError};
