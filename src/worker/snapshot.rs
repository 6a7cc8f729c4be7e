//! Setup snapshots: after a repository's setup succeeds in a new container, the container is
//! saved as an image, with the files setup left in the workspace that git does not track
//! (`node_modules`, `target`, …) archived inside it. The next task whose key is the same starts
//! from that image, unpacks the archive into its fresh clone and skips setup.
//!
//! The key is everything setup depends on: the image's id, the setup commands, the working
//! directory, the variables, the names of the secrets, and the content (git blob id, read
//! from GitHub for the branch being cloned) of the `cache_key` files, by default the lockfiles
//! of [`DEFAULT_CACHE_KEY`] in the working directory. Snapshots are bounded per repository and
//! in total bytes, least recently used first out, and `/amp config --rebuild` removes a
//! repository's.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use tracing::warn;

use crate::docker::{Engine, TaskContainer};
use crate::domain::RepoRef;
use crate::entities::snapshot;
use crate::github::GitHub;
use crate::repo_config::{DEFAULT_CACHE_KEY, Effective};
use crate::store::snapshots;

/// The image name snapshots are saved under (tagged with their key).
pub const IMAGE: &str = "amp-orchestrator-snapshot";

/// Where a snapshot keeps the workspace files setup made, inside its image.
pub const ARCHIVE: &str = "/tmp/.amp-orchestrator-setup.tar";

/// The script that archives the workspace files git does not track (setup's) at [`ARCHIVE`].
pub fn archive_script() -> String {
    format!(
        "cd {ws} && git ls-files -z --others | tar --null -cf {ARCHIVE} -T -",
        ws = crate::docker::WORKSPACE
    )
}

/// The script that unpacks a snapshot's [`ARCHIVE`] into a fresh clone.
pub fn restore_script() -> String {
    format!(
        "if [ -f {ARCHIVE} ]; then tar -xf {ARCHIVE} -C {ws}; fi",
        ws = crate::docker::WORKSPACE
    )
}

/// The label of a snapshot image, holding its key.
const LABEL_KEY: &str = "io.amp-orchestrator.snapshot";

/// The files whose content keys a task's snapshot, relative to the repository's root.
pub fn cache_files(config: &Effective) -> Vec<String> {
    match &config.cache_key.value {
        Some(files) => files.clone(),
        None => DEFAULT_CACHE_KEY
            .iter()
            .map(|name| match &config.workdir.value {
                Some(dir) => format!("{dir}/{name}"),
                None => name.to_string(),
            })
            .collect(),
    }
}

/// The key of a task's snapshot: `image_id` and `config` as setup sees them, and the id of each
/// of `files` (`None`: absent).
pub fn key(image_id: &str, config: &Effective, files: &[(String, Option<String>)]) -> String {
    let mut hash = Sha256::new();
    let mut line = |kind: &str, value: &str| {
        // Lengths first, so no two inputs run together into the same bytes.
        hash.update(format!("{kind} {} {value}\n", value.len()).as_bytes());
    };
    line("image", image_id);
    line("workdir", config.workdir.value.as_deref().unwrap_or(""));
    for command in &config.setup.value {
        line("setup", command);
    }
    for (name, value) in &config.env.value {
        line("env", &format!("{name}={value}"));
    }
    for name in &config.secrets.value {
        line("secret", name);
    }
    for (path, id) in files {
        line("file", &format!("{path}={}", id.as_deref().unwrap_or("-")));
    }
    hex::encode(&hash.finalize()[..16])
}

/// The ids of `files` on `git_ref`, read from GitHub at once.
pub async fn file_ids(
    github: &GitHub,
    repo: &RepoRef,
    git_ref: &str,
    files: Vec<String>,
) -> Result<Vec<(String, Option<String>)>, crate::github::GitHubError> {
    let reads = files
        .iter()
        .map(|path| github.file_sha(repo, path, git_ref));
    let ids = futures::future::try_join_all(reads).await?;
    Ok(files.into_iter().zip(ids).collect())
}

/// The snapshot of `key` if its image is still on the engine (a row whose image is gone is
/// forgotten).
pub async fn find(
    db: &sea_orm::DatabaseConnection,
    engine: &Engine,
    key: &str,
) -> Option<snapshot::Model> {
    let row = match snapshots::by_key(db, key).await {
        Ok(row) => row?,
        Err(e) => {
            warn!(error = %e, "reading the setup snapshots failed");
            return None;
        }
    };
    match engine.image_exists(&row.image).await {
        Ok(true) => Some(row),
        Ok(false) => {
            let _ = snapshots::forget(db, key).await;
            None
        }
        Err(_) => None,
    }
}

/// What the store's bounds are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_repo: usize,
    pub total_bytes: i64,
}

/// Save `container` (its setup just succeeded, its workspace archived at [`ARCHIVE`]) as the
/// snapshot of `key`, then keep the store within `limits`. The snapshot's size.
pub async fn save(
    db: &sea_orm::DatabaseConnection,
    engine: &Engine,
    container: &TaskContainer,
    repo_id: i64,
    key: &str,
    limits: Limits,
) -> Result<i64, String> {
    let labels = HashMap::from([(LABEL_KEY.to_string(), key.to_string())]);
    let bytes = engine
        .commit(container, IMAGE, key, labels)
        .await
        .map_err(|e| e.to_string())?;
    let image = format!("{IMAGE}:{key}");
    snapshots::record(db, key, repo_id, &image, bytes)
        .await
        .map_err(|e| e.to_string())?;
    evict(db, engine, limits).await;
    Ok(bytes)
}

/// The snapshots to let go of, least recently used first, so that no repository keeps more than
/// `limits.per_repo` and all of them together no more than `limits.total_bytes`. `all` is
/// ordered least recently used first.
pub fn to_evict(all: &[snapshot::Model], limits: Limits) -> Vec<String> {
    let mut evicted = Vec::new();
    // Newest first: each is kept while its repository and the total have room.
    let mut per_repo: HashMap<i64, usize> = HashMap::new();
    let mut total = 0i64;
    for row in all.iter().rev() {
        let count = per_repo.entry(row.repo_id).or_default();
        if *count < limits.per_repo && total + row.bytes <= limits.total_bytes {
            *count += 1;
            total += row.bytes;
        } else {
            evicted.push(row.key.clone());
        }
    }
    evicted.reverse();
    evicted
}

/// Keep the store within `limits`.
async fn evict(db: &sea_orm::DatabaseConnection, engine: &Engine, limits: Limits) {
    let all = match snapshots::least_recently_used(db, None).await {
        Ok(all) => all,
        Err(e) => {
            warn!(error = %e, "reading the setup snapshots failed");
            return;
        }
    };
    for key in to_evict(&all, limits) {
        remove(db, engine, &all, &key).await;
    }
}

async fn remove(
    db: &sea_orm::DatabaseConnection,
    engine: &Engine,
    all: &[snapshot::Model],
    key: &str,
) {
    if let Some(row) = all.iter().find(|r| r.key == key) {
        engine.remove_image(&row.image).await;
    }
    if let Err(e) = snapshots::forget(db, key).await {
        warn!(error = %e, "forgetting a setup snapshot failed");
    }
}

/// Remove the snapshot of `key`; whether there was one.
pub async fn remove_key(
    db: &sea_orm::DatabaseConnection,
    engine: &Engine,
    key: &str,
) -> Result<bool, sea_orm::DbErr> {
    let Some(row) = snapshots::by_key(db, key).await? else {
        return Ok(false);
    };
    remove(db, engine, std::slice::from_ref(&row), key).await;
    Ok(true)
}

/// Remove every snapshot of a repository (`/amp config --rebuild`); how many there were.
pub async fn remove_for_repo(
    db: &sea_orm::DatabaseConnection,
    engine: &Engine,
    repo_id: i64,
) -> Result<usize, sea_orm::DbErr> {
    let rows = snapshots::least_recently_used(db, Some(repo_id)).await?;
    for row in &rows {
        remove(db, engine, &rows, &row.key).await;
    }
    Ok(rows.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, repo_id: i64, bytes: i64) -> snapshot::Model {
        snapshot::Model {
            key: key.into(),
            repo_id,
            image: format!("{IMAGE}:{key}"),
            bytes,
            created_at: 0,
            used_at: 0,
        }
    }

    #[test]
    fn the_least_recently_used_go_first_per_repository_and_in_total() {
        // Least recently used first.
        let all = [
            row("a1", 1, 10),
            row("b1", 2, 10),
            row("a2", 1, 10),
            row("a3", 1, 10),
        ];
        let roomy = Limits {
            per_repo: 5,
            total_bytes: 1000,
        };
        assert!(to_evict(&all, roomy).is_empty());
        let two_each = Limits {
            per_repo: 2,
            ..roomy
        };
        assert_eq!(to_evict(&all, two_each), ["a1"]);
        let small = Limits {
            per_repo: 5,
            total_bytes: 25,
        };
        assert_eq!(to_evict(&all, small), ["a1", "b1"]);
        // One larger than the whole store is not kept either.
        assert_eq!(to_evict(&[row("huge", 1, 26)], small), ["huge"]);
    }

    #[test]
    fn the_key_changes_with_what_setup_depends_on() {
        let bounds = crate::repo_config::Bounds::service_defaults();
        let config = |text: &str| {
            crate::repo_config::effective(
                Some(&crate::repo_config::parse(text, &bounds).unwrap()),
                &bounds,
            )
        };
        let base = config("setup = [\"npm ci\"]\n");
        let files = vec![("package-lock.json".to_string(), Some("abc".to_string()))];
        let k = key("sha256:1", &base, &files);
        assert_eq!(k, key("sha256:1", &base, &files), "stable");
        assert_eq!(k.len(), 32);
        assert_ne!(k, key("sha256:2", &base, &files));
        let other_lock = vec![("package-lock.json".to_string(), Some("abd".to_string()))];
        assert_ne!(k, key("sha256:1", &base, &other_lock));
        let absent = vec![("package-lock.json".to_string(), None)];
        assert_ne!(k, key("sha256:1", &base, &absent));
        assert_ne!(
            k,
            key(
                "sha256:1",
                &config("setup = [\"npm ci\", \"npm test\"]\n"),
                &files
            )
        );
        assert_ne!(
            k,
            key(
                "sha256:1",
                &config("setup = [\"npm ci\"]\n[env]\nNODE_ENV = \"test\"\n"),
                &files
            )
        );
        // The default files are the lockfiles in the working directory.
        let in_dir = config("setup = [\"npm ci\"]\n[paths]\nworkdir = \"web\"\n");
        assert!(cache_files(&in_dir).contains(&"web/package-lock.json".to_string()));
        let named = config("setup = [\"npm ci\"]\ncache_key = [\"tools/versions.txt\"]\n");
        assert_eq!(cache_files(&named), ["tools/versions.txt"]);
    }
}
