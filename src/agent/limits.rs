//! How much of the agent's output the service takes in and keeps. The agent is treated as
//! hostile: whatever it prints, the service's memory, the database and the status page stay
//! bounded, and an agent that prints without end is stopped.

use super::lines::LINE_MAX;

/// The bounds on one task's agent output. The defaults are the production values; tests may
/// lower them (see [`crate::context::Tunables`]).
#[derive(Debug, Clone)]
pub struct OutputLimits {
    /// The most of one line that is kept; the rest of the line is dropped and counted.
    pub line_max: usize,
    /// The end of stderr kept for a failed turn's reason.
    pub stderr_tail: usize,
    /// Everything a turn may print (stdout and stderr, kept or not). Beyond it the agent is
    /// stopped and the task fails saying so.
    pub turn_bytes: u64,
    /// Lines of agent output a task keeps in its log; beyond it the oldest go (see
    /// [`crate::worker`]'s agent log), replaced by one marker saying how many went.
    pub task_lines: usize,
    /// Bytes of agent output (as stored) a task keeps in its log, likewise.
    pub task_bytes: u64,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            line_max: LINE_MAX,
            stderr_tail: 64 * 1024,
            turn_bytes: 256 * 1024 * 1024,
            task_lines: 20_000,
            task_bytes: 16 * 1024 * 1024,
        }
    }
}
