//! Temporary directories for tests.

use std::path::{Path, PathBuf};

/// A new, uniquely named directory under the system's temporary directory, removed with
/// everything in it when dropped (also when the test panics). The helpers panic on I/O errors,
/// which fail the test.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// An empty directory named `fm-test-<random>`.
    pub fn new() -> TempDir {
        TempDir::with_prefix("fm-test-")
    }

    /// An empty directory named `<prefix><random>`.
    pub fn with_prefix(prefix: &str) -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .unwrap_or_else(|e| panic!("create a temporary directory: {e}"));
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// `path` inside the directory.
    pub fn join(&self, path: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(path)
    }

    /// Writes `contents` to `path` inside the directory, creating missing parent directories,
    /// and returns the file's full path.
    pub fn write(&self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }
}

impl Default for TempDir {
    /// [`TempDir::new`].
    fn default() -> TempDir {
        TempDir::new()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_unique_writes_nested_files_and_is_removed_on_drop() {
        let a = TempDir::with_prefix("fm-kit-");
        let b = TempDir::new();
        assert_ne!(a.path(), b.path());
        assert!(
            a.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("fm-kit-")
        );
        let file = a.write("sub/dir/x.yml", "k: v");
        assert_eq!(file, a.join("sub/dir/x.yml"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "k: v");
        let kept = a.path().to_path_buf();
        drop(a);
        assert!(!kept.exists());
        assert!(b.path().is_dir());
    }
}
