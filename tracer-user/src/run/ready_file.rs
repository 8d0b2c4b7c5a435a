//! `--ready-file`: the file that says the programs are attached.

use std::{fs::File, path::PathBuf};

use anyhow::{Context, Result};

/// `--ready-file`: it exists exactly while every program is attached.
/// Whoever waits on it (a test, a benchmark, a readiness probe) may act the
/// moment it appears, so a stale one is removed before loading, and this
/// run's is removed when it stops, however it stops.
pub(super) struct ReadyFile {
    path: Option<PathBuf>,
}

impl ReadyFile {
    pub(super) fn clear(path: Option<PathBuf>) -> Result<Self> {
        if let Some(p) = &path {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => anyhow::bail!("cannot remove the stale ready file {}: {e}", p.display()),
            }
        }
        Ok(Self { path })
    }

    pub(super) fn create(&self) -> Result<()> {
        if let Some(p) = &self.path {
            File::create(p).with_context(|| format!("cannot create ready file {}", p.display()))?;
        }
        Ok(())
    }

    pub(super) fn remove(&self) {
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for ReadyFile {
    fn drop(&mut self) {
        self.remove();
    }
}
