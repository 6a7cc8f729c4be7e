//! The tasks running in this process, each with the token that stops it.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;

use crate::domain::TaskId;

#[derive(Default)]
pub struct LocalRuns {
    tasks: Mutex<HashMap<TaskId, CancellationToken>>,
}

impl LocalRuns {
    /// Ask a task running here to stop; `false` when it does not run here.
    pub fn stop(&self, task_id: TaskId) -> bool {
        match self.lock().get(&task_id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// How many tasks run here now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, task_id: TaskId) -> bool {
        self.lock().contains_key(&task_id)
    }

    /// A task starts running here; the token is cancelled when it is asked to stop.
    pub fn insert(&self, task_id: TaskId) -> CancellationToken {
        let token = CancellationToken::new();
        self.lock().insert(task_id, token.clone());
        token
    }

    pub fn remove(&self, task_id: TaskId) {
        self.lock().remove(&task_id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, CancellationToken>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}
