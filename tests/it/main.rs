//! Integration tests of the `gitspy-chaos` command line, all in one test binary (as ripgrep
//! does): shared helpers in `util.rs`, one module per command or concern.

mod attach_run;
mod engine;
mod util;
mod validate;
