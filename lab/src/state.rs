//! The lab's state directory (`/run/netdiag/<lab>/`): the plan it was built from (written
//! before anything is created, so a crash can always be cleaned up), the inventory, each pod's
//! resolv.conf, the active faults and the server process's pid. Changes are serialized by an
//! exclusive lock on `lock`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::faults::ActiveFault;
use crate::plan::LabPlan;

/// Where every lab keeps its state (tmpfs: gone after a reboot, like the namespaces).
pub const STATE_ROOT: &str = "/run/netdiag";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged ({reason}); run `netdiag lab down --name {lab}` to clean up")]
    Corrupt { path: PathBuf, reason: String, lab: String },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io { action, path: path.into(), source }
}

/// Handle on one lab's state directory.
#[derive(Debug, Clone)]
pub struct LabState {
    pub name: String,
    pub dir: PathBuf,
}

/// Holds the state directory's lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    _lock: Flock<File>,
}

impl LabState {
    pub fn new(name: &str) -> Self {
        Self::in_root(Path::new(STATE_ROOT), name)
    }

    pub fn in_root(root: &Path, name: &str) -> Self {
        Self { name: name.to_owned(), dir: root.join(name) }
    }

    pub fn plan_path(&self) -> PathBuf {
        self.dir.join("plan.json")
    }
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }
    pub fn faults_path(&self) -> PathBuf {
        self.dir.join("faults.json")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.dir.join("serve.pid")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("serve.log")
    }

    pub fn exists(&self) -> bool {
        self.plan_path().exists()
    }

    pub fn create_dir(&self) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.dir).map_err(io("create", &self.dir))
    }

    /// Takes the lab's exclusive lock (blocking), creating the directory if needed.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        self.create_dir()?;
        let path = self.dir.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, source)| StateError::Lock { path, source })?;
        Ok(StateLock { _lock: lock })
    }

    pub fn write_plan(&self, plan: &LabPlan) -> Result<(), StateError> {
        write_json(&self.plan_path(), plan)
    }

    pub fn read_plan(&self) -> Result<LabPlan, StateError> {
        read_json(&self.plan_path(), &self.name)
    }

    pub fn read_faults(&self) -> Result<Vec<ActiveFault>, StateError> {
        let path = self.faults_path();
        if !path.exists() {
            return Ok(Vec::new());
        }
        read_json(&path, &self.name)
    }

    pub fn write_faults(&self, faults: &[ActiveFault]) -> Result<(), StateError> {
        write_json(&self.faults_path(), &faults)
    }

    pub fn write_file(&self, path: &Path, text: &str) -> Result<(), StateError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        }
        atomic_write(path, text.as_bytes())
    }

    /// The pid of the lab's server process, if it is alive.
    pub fn server_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.pid_path()).ok()?;
        let pid: i32 = text.trim().parse().ok()?;
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        alive.then_some(pid)
    }

    /// Removes the whole state directory.
    pub fn remove(&self) -> Result<(), StateError> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &self.dir)(e)),
            _ => Ok(()),
        }
    }
}

fn write_json<T: serde::Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StateError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| StateError::Io {
        action: "serialize",
        path: path.into(),
        source: std::io::Error::other(e),
    })?;
    atomic_write(path, &text)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, lab: &str) -> Result<T, StateError> {
    let text = std::fs::read(path).map_err(io("read", path))?;
    serde_json::from_slice(&text).map_err(|e| StateError::Corrupt {
        path: path.into(),
        reason: e.to_string(),
        lab: lab.to_owned(),
    })
}

/// Writes through a temporary file and a rename, so readers never see half a file.
fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
    f.write_all(bytes).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename into", path))
}
