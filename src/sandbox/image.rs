//! The gateway's image, built from this program's own binary: no registry is needed, and the
//! gateway always runs the same build as the service that starts it.
//!
//! The image is `FROM scratch` with the binary at `/amp-orchestrator`, the shared libraries it
//! loads at their own paths (what the dynamic loader resolves for it, and every library mapped
//! into this process, a superset when the binary is this process's own), the host's CA
//! certificates when present, and just enough of `/etc` for name resolution and the `nobody` user.
//! It is tagged `amp-orchestrator-gateway:<16 hex of a hash over all of that>` and built only when
//! the engine lacks that tag. This module owns building it; [`super::gateway`] runs it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::SystemTime;

use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::gateway::GATEWAY_ROLE;
use crate::docker::{DockerError, Engine, LABEL_ROLE};

/// The repository the built images are tagged in.
pub const GATEWAY_IMAGE_REPO: &str = "amp-orchestrator-gateway";
/// Where the binary is in the image.
pub const IMAGE_BINARY: &str = "/amp-orchestrator";
const CA_CERTIFICATES: &str = "/etc/ssl/certs/ca-certificates.crt";
const DOCKERFILE: &str = "FROM scratch\n\
    COPY rootfs/ /\n\
    USER 65534:65534\n\
    CMD [\"/amp-orchestrator\", \"gateway\"]\n";
/// Changes whenever what this module puts in the image changes in a way the hash does not see.
const LAYOUT: &str = "amp-orchestrator gateway image, layout 1";
const CHUNK: usize = 1 << 20;

/// The gateway image to run: `image_override` (`GATEWAY_IMAGE`, which must exist on the engine)
/// or the one built from `binary` (`/proc/self/exe` in production), built now if missing.
pub async fn gateway_image(
    engine: &Engine,
    binary: &Path,
    image_override: Option<&str>,
) -> Result<String, DockerError> {
    if let Some(image) = image_override {
        if !engine.image_exists(image).await? {
            return Err(DockerError::MissingGatewayImage(image.to_string()));
        }
        return Ok(image.to_string());
    }
    // One build at a time in this process; concurrent builds elsewhere produce the same tag.
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _building = BUILDING.lock().await;
    let binary = binary.to_path_buf();
    let (entries, hash) = tokio::task::spawn_blocking(move || root_fs(&binary))
        .await
        .map_err(|e| DockerError::GatewayImage(e.to_string()))?
        .map_err(DockerError::GatewayImage)?;
    let tag = format!("{GATEWAY_IMAGE_REPO}:{hash}");
    if engine.image_exists(&tag).await? {
        return Ok(tag);
    }
    tracing::info!(image = %tag, "building the gateway image");
    build(engine, &tag, entries).await?;
    Ok(tag)
}

/// Send the build context (the Dockerfile and `rootfs/`) as it is written and build it with the
/// classic builder.
async fn build(
    engine: &Engine,
    tag: &str,
    entries: BTreeMap<String, Entry>,
) -> Result<(), DockerError> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
    let writer = tokio::task::spawn_blocking(move || write_context(&entries, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        labels: Some(HashMap::from([(
            LABEL_ROLE.to_string(),
            GATEWAY_ROLE.to_string(),
        )])),
        version: BuilderVersion::BuilderV1,
        ..Default::default()
    };
    let mut progress =
        engine
            .client()
            .build_image(options, None, Some(bollard::body_try_stream(body)));
    let mut said: VecDeque<String> = VecDeque::new();
    let mut failure = None;
    while let Some(item) = progress.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = info.stream {
                    for line in text.lines().filter(|l| !l.trim().is_empty()) {
                        if said.len() == 10 {
                            said.pop_front();
                        }
                        said.push_back(line.trim_end().to_string());
                    }
                }
                if let Some(detail) = info.error_detail {
                    failure = Some(detail.message.unwrap_or_default());
                }
            }
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
    }
    drop(progress);
    let written = writer
        .await
        .map_err(|e| DockerError::GatewayImage(e.to_string()))?;
    if let Err(e) = written {
        return Err(DockerError::GatewayImage(format!(
            "writing its build context failed: {e}"
        )));
    }
    if let Some(failure) = failure {
        let said = Vec::from(said).join("\n");
        return Err(DockerError::GatewayImage(format!("{failure}\n{said}")));
    }
    if !engine.image_exists(tag).await? {
        return Err(DockerError::GatewayImage(format!(
            "the engine reported no error, yet has no image {tag}"
        )));
    }
    Ok(())
}

/// What a file in the image holds.
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
    Symlink(String),
}

/// A file of the image, at an absolute path.
struct Entry {
    mode: u32,
    source: Source,
}

/// The image's files by path, and the hash that names the image.
fn root_fs(binary: &Path) -> Result<(BTreeMap<String, Entry>, String), String> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    let binary_hash = binary_hash(binary)?;
    entries.insert(
        IMAGE_BINARY.into(),
        Entry {
            mode: 0o755,
            source: Source::File(binary.to_path_buf()),
        },
    );
    hashes.insert(IMAGE_BINARY.into(), binary_hash);

    if let Some(interpreter) = elf_interpreter(binary)? {
        let mut libraries = vec![PathBuf::from(&interpreter)];
        libraries.extend(resolved_libraries(&interpreter, binary)?);
        libraries.extend(mapped_libraries());
        for library in libraries {
            let real = std::fs::canonicalize(&library)
                .map_err(|e| format!("{}: {e}", library.display()))?;
            let (path, real_path) = (path_str(&library)?, path_str(&real)?);
            if !entries.contains_key(&real_path) {
                let meta =
                    std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
                hashes.insert(real_path.clone(), file_hash(&real)?);
                entries.insert(
                    real_path.clone(),
                    Entry {
                        mode: meta.permissions().mode() & 0o7777,
                        source: Source::File(real.clone()),
                    },
                );
            }
            if path != real_path && !entries.contains_key(&path) {
                hashes.insert(path.clone(), format!("-> {real_path}"));
                entries.insert(
                    path,
                    Entry {
                        mode: 0o777,
                        source: Source::Symlink(real_path),
                    },
                );
            }
        }
    }

    if let Ok(certificates) = std::fs::read(CA_CERTIFICATES) {
        entries.insert(
            CA_CERTIFICATES.into(),
            Entry {
                mode: 0o644,
                source: Source::Bytes(certificates),
            },
        );
    }
    for (path, text) in [
        ("/etc/nsswitch.conf", "hosts: files dns\n"),
        (
            "/etc/passwd",
            "root:x:0:0:root:/:/nonexistent\nnobody:x:65534:65534:nobody:/nonexistent:/nonexistent\n",
        ),
        ("/etc/group", "root:x:0:\nnobody:x:65534:\n"),
    ] {
        entries.insert(
            path.into(),
            Entry {
                mode: 0o644,
                source: Source::Bytes(text.as_bytes().to_vec()),
            },
        );
    }

    let mut hasher = Sha256::new();
    hasher.update(LAYOUT.as_bytes());
    hasher.update(DOCKERFILE.as_bytes());
    for (path, entry) in &entries {
        let content = match &entry.source {
            Source::Bytes(bytes) => hex::encode(Sha256::digest(bytes)),
            _ => hashes.get(path).cloned().unwrap_or_default(),
        };
        hasher.update(format!("{path}\0{:o}\0{content}\n", entry.mode).as_bytes());
    }
    let hash = hex::encode(&hasher.finalize()[..8]);
    Ok((entries, hash))
}

fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

/// The binary's content hash, computed once per process (the binary is large in a debug build):
/// by path, size and modification time.
fn binary_hash(binary: &Path) -> Result<String, String> {
    type Key = (PathBuf, u64, Option<SystemTime>);
    static HASHES: LazyLock<Mutex<HashMap<Key, String>>> = LazyLock::new(Mutex::default);
    let meta = std::fs::metadata(binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    let key = (binary.to_path_buf(), meta.len(), meta.modified().ok());
    if let Some(hash) = HASHES.lock().expect("not poisoned").get(&key) {
        return Ok(hash.clone());
    }
    let hash = file_hash(binary)?;
    HASHES
        .lock()
        .expect("not poisoned")
        .insert(key, hash.clone());
    Ok(hash)
}

fn file_hash(path: &Path) -> Result<String, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; CHUNK];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The dynamic loader a binary asks for (its ELF `PT_INTERP`); `None` for a static binary.
fn elf_interpreter(binary: &Path) -> Result<Option<String>, String> {
    let fail = |e: io::Error| format!("{}: {e}", binary.display());
    let file = File::open(binary).map_err(fail)?;
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).map_err(fail)?;
    if &header[..4] != b"\x7fELF" {
        return Err(format!("{} is not an ELF binary", binary.display()));
    }
    if header[4] != 2 || header[5] != 1 {
        return Err(format!(
            "{} is not a 64-bit little-endian ELF binary",
            binary.display()
        ));
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u64_at =
        |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("eight bytes"));
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 0x20),
        u64::from(u16_at(&header, 0x36)),
        u16_at(&header, 0x38),
    );
    const PT_INTERP: u32 = 3;
    for i in 0..u64::from(phnum) {
        let mut ph = [0u8; 56];
        file.read_exact_at(&mut ph, phoff + i * phentsize)
            .map_err(fail)?;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != PT_INTERP {
            continue;
        }
        let (offset, size) = (u64_at(&ph, 8), u64_at(&ph, 32));
        let mut path = vec![0u8; size.min(4096) as usize];
        file.read_exact_at(&mut path, offset).map_err(fail)?;
        let path = String::from_utf8_lossy(&path)
            .trim_end_matches('\0')
            .to_string();
        return Ok(Some(path));
    }
    Ok(None)
}

/// The libraries the loader resolves for the binary (`<loader> --list <binary>`, what `ldd`
/// does), at the paths it finds them.
fn resolved_libraries(interpreter: &str, binary: &Path) -> Result<Vec<PathBuf>, String> {
    // In the loader's process `/proc/self` is the loader: name this process's own.
    let for_loader = match binary.strip_prefix("/proc/self") {
        Ok(rest) => Path::new(&format!("/proc/{}", std::process::id())).join(rest),
        Err(_) => binary.to_path_buf(),
    };
    let output = std::process::Command::new(interpreter)
        .arg("--list")
        .arg(&for_loader)
        .output();
    let output = match output {
        Ok(output) if output.status.success() => output,
        // The mapped libraries are the fallback (a superset for this process's own binary).
        Ok(output) => {
            tracing::warn!(
                loader = %interpreter,
                stderr = %String::from_utf8_lossy(&output.stderr),
                "listing the gateway binary's libraries failed"
            );
            return Ok(Vec::new());
        }
        Err(e) => {
            tracing::warn!(loader = %interpreter, error = %e, "listing the gateway binary's libraries failed");
            return Ok(Vec::new());
        }
    };
    let mut libraries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let line = line.trim();
        let target = match line.split_once("=>") {
            Some((name, target)) => {
                let target = target.trim();
                if target.starts_with("not found") {
                    return Err(format!(
                        "{} needs {}, which the loader does not find",
                        binary.display(),
                        name.trim()
                    ));
                }
                target
            }
            None => line,
        };
        if let Some(path) = target
            .split_whitespace()
            .next()
            .filter(|p| p.starts_with('/'))
        {
            libraries.push(PathBuf::from(path));
        }
    }
    Ok(libraries)
}

/// Every shared library mapped into this process.
fn mapped_libraries() -> Vec<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut libraries: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.starts_with('/') && path.contains(".so"))
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .collect();
    libraries.sort();
    libraries.dedup();
    libraries
}

/// Writes the build context into `tx` in chunks.
struct ChunkWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// The build context as a tar stream: `Dockerfile` and `rootfs/<path>` for every entry. A
/// failure also ends the stream with the error, so the engine does not take a short context.
fn write_context(
    entries: &BTreeMap<String, Entry>,
    tx: mpsc::Sender<io::Result<Bytes>>,
) -> io::Result<()> {
    let writer = ChunkWriter {
        tx: tx.clone(),
        buffer: Vec::with_capacity(CHUNK),
    };
    let result = (|| {
        let mut tar = tar::Builder::new(writer);
        let mut header = regular(0o644, DOCKERFILE.len() as u64);
        tar.append_data(&mut header, "Dockerfile", DOCKERFILE.as_bytes())?;
        for (path, entry) in entries {
            let in_context = format!("rootfs{path}");
            match &entry.source {
                Source::File(file) => {
                    let file = File::open(file)?;
                    let mut header = regular(entry.mode, file.metadata()?.len());
                    tar.append_data(&mut header, &in_context, file)?;
                }
                Source::Bytes(bytes) => {
                    let mut header = regular(entry.mode, bytes.len() as u64);
                    tar.append_data(&mut header, &in_context, bytes.as_slice())?;
                }
                Source::Symlink(target) => {
                    let mut header = tar::Header::new_gnu();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(entry.mode);
                    header.set_size(0);
                    header.set_mtime(0);
                    tar.append_link(&mut header, &in_context, target)?;
                }
            }
        }
        tar.into_inner()?.flush()
    })();
    if let Err(e) = &result {
        let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
    }
    result
}

fn regular(mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_a_loader_and_libraries() {
        // As production names its own binary.
        let exe = Path::new("/proc/self/exe");
        let loader = elf_interpreter(exe).unwrap().expect("a dynamic binary");
        assert!(loader.starts_with('/'), "{loader}");
        let libraries = resolved_libraries(&loader, exe).unwrap();
        assert!(
            libraries
                .iter()
                .any(|l| l.to_string_lossy().contains("libc.so")),
            "{libraries:?}"
        );
        assert!(
            libraries.iter().any(|l| l == Path::new(&loader)),
            "{libraries:?}"
        );
        assert!(!mapped_libraries().is_empty());
        let (entries, _) = root_fs(exe).unwrap();
        for path in [
            IMAGE_BINARY,
            loader.as_str(),
            "/etc/passwd",
            "/etc/nsswitch.conf",
        ] {
            assert!(entries.contains_key(path), "{path}");
        }
    }
}
