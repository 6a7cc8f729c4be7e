//! Running the Amp coding agent: its output format and the bounds on it, and (in the worker)
//! its container.

pub mod limits;
pub mod lines;
pub mod stream;
