//! A finished task's containers, volumes and network go, however it finished.

use tracing::warn;

use crate::config::Config;
use crate::docker::Engine;

/// Remove every container, volume and network labelled with the task (its agent container, its
/// workspace, its task network, and any git helper a stopped push left behind).
pub(super) async fn remove_task_containers(config: &Config, store_label: &str, public_id: &str) {
    let engine = match Engine::connect(config.docker_host.as_deref()).await {
        Ok(engine) => engine,
        Err(e) => {
            warn!(error = %e, "the Docker engine cannot be reached to clean up");
            return;
        }
    };
    match engine.owned(Some(store_label)).await {
        Ok(owned) => {
            for (task, container) in owned {
                if task == public_id {
                    engine.remove(&container).await;
                }
            }
        }
        Err(e) => warn!(error = %e, "listing the task's containers failed"),
    }
}
