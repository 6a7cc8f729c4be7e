//! Running the Amp coding agent: its output format, and (in the worker) its container.

pub mod stream;
