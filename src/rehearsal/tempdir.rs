//! A scratch folder of this process's own, removed with everything in it when dropped:
//! where a rehearsal keeps its copy of the store and `plan` unpacks a git ref.

use std::path::{Path, PathBuf};

use chrono::Utc;

pub struct TempDir(PathBuf);

impl TempDir {
    /// `$TMPDIR/tidings-{what}-{pid}-{time}`, created.
    pub fn new(what: &str) -> std::io::Result<Self> {
        let stamp = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let path =
            std::env::temp_dir().join(format!("tidings-{what}-{}-{stamp:x}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
