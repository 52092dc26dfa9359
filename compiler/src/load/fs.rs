//! Where the loader's files come from: the disk, a recording of what was read, or memory.
//!
//! The macros and the build.rs helper load through a [`RecordingFs`], so the generated code can
//! name every file read for rebuild tracking. A [`MemoryFs`] answers from memory (tests, tools
//! that hold machines as text). Replay is exact because the loader is deterministic: given the
//! same entry path and the same answers to every question it asks ([`RecordingFs`] keeps them),
//! it reads the same files in the same order and builds the same [`Project`](super::Project),
//! machine indices included. (Compiled machines no longer replay a load at run time: they carry
//! their lowered IR.)

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The largest machine, agent or profiles file the loader reads: 16 MiB. Real documents are
/// kilobytes; the cap keeps a file named by mistake (a log, `/proc/kcore`) from being read
/// into memory whole.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads the regular file at `path`, refusing anything else and anything over `limit` bytes.
///
/// A FIFO would block the reader until something writes to it (for ever, in a CI job) and a
/// device such as `/dev/zero` never ends, so neither is opened: their type is checked first.
/// A file that grows past `limit` while being read (or reports a size of 0, as `/proc` files
/// do) is cut off at `limit + 1` bytes and refused. The errors are
/// [`io::ErrorKind::InvalidInput`] (not a regular file) and [`io::ErrorKind::FileTooLarge`],
/// whose messages name the file type and the limit.
pub fn read_regular_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let meta = std::fs::metadata(path)?;
    check_type(&meta)?;
    if meta.len() > limit {
        return Err(too_large(limit));
    }
    let file = std::fs::File::open(path)?;
    // The path may have been replaced between the two calls: check what was opened.
    check_type(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(limit));
    }
    Ok(bytes)
}

fn check_type(meta: &std::fs::Metadata) -> io::Result<()> {
    let ty = meta.file_type();
    if ty.is_file() {
        return Ok(());
    }
    if ty.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a directory",
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is not a regular file but {}", type_name(ty)),
    ))
}

#[cfg(unix)]
fn type_name(ty: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ty.is_fifo() {
        "a FIFO"
    } else if ty.is_char_device() {
        "a character device"
    } else if ty.is_block_device() {
        "a block device"
    } else if ty.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn type_name(_: std::fs::FileType) -> &'static str {
    "a special file"
}

/// The error for a file over `limit` bytes; the message names the limit.
pub(crate) fn too_large(limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("it is larger than {}, the limit", byte_size(limit)),
    )
}

/// `16 MiB`, `512 KiB`, `100 bytes`.
fn byte_size(n: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// The file-system questions the loader asks.
pub trait FileSystem {
    /// The bytes of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;

    /// The canonical form of `path` (the loader's key for "the same file"); an error makes the
    /// loader fall back to [`normalize`](super::normalize).
    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf>;

    /// Whether `path` is a file (asked for the optional `profiles.yml` next to each document).
    fn is_file(&self, path: &Path) -> bool;

    /// File names in `dir`, for "did you mean" help when a referenced file is missing.
    fn file_names(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// The Rust file that inline YAML is written in, for excerpts in diagnostics. Not a
    /// dependency of the machine, so [`RecordingFs`] does not record it.
    fn enclosing_text(&self, path: &Path) -> Option<String>;
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl FileSystem for RealFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        read_regular_file(path, MAX_FILE_BYTES)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        std::fs::canonicalize(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }

    fn file_names(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(std::fs::read_dir(dir)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect())
    }

    fn enclosing_text(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
}

/// What a load read from a [`FileSystem`], enough for [`MemoryFs`] to replay it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript {
    /// Every file read successfully, as the loader named it, in the order first read.
    pub reads: Vec<PathBuf>,
    /// The paths whose canonical form differs from their [`normalize`](super::normalize)d
    /// form (symbolic links), with that canonical form. Usually empty.
    pub aliases: Vec<(PathBuf, PathBuf)>,
}

/// A [`FileSystem`] that answers from another one and keeps a [`Transcript`].
#[derive(Debug, Default)]
pub struct RecordingFs<F> {
    inner: F,
    reads: RefCell<Vec<PathBuf>>,
    canonical: RefCell<BTreeMap<PathBuf, PathBuf>>,
}

impl<F: FileSystem> RecordingFs<F> {
    /// Records what is read from `inner`.
    pub fn new(inner: F) -> Self {
        RecordingFs {
            inner,
            reads: RefCell::new(Vec::new()),
            canonical: RefCell::new(BTreeMap::new()),
        }
    }

    /// What was read so far.
    pub fn transcript(&self) -> Transcript {
        Transcript {
            reads: self.reads.borrow().clone(),
            aliases: self
                .canonical
                .borrow()
                .iter()
                .filter(|(path, canonical)| super::normalize(path) != **canonical)
                .map(|(p, c)| (p.clone(), c.clone()))
                .collect(),
        }
    }
}

impl<F: FileSystem> FileSystem for RecordingFs<F> {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let bytes = self.inner.read(path)?;
        let mut reads = self.reads.borrow_mut();
        if !reads.iter().any(|p| p == path) {
            reads.push(path.to_path_buf());
        }
        Ok(bytes)
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        let canonical = self.inner.canonicalize(path)?;
        self.canonical
            .borrow_mut()
            .insert(path.to_path_buf(), canonical.clone());
        Ok(canonical)
    }

    fn is_file(&self, path: &Path) -> bool {
        // A file that is there is then read (and recorded); one that is not is not in the
        // transcript, which is the answer a replay gives.
        self.inner.is_file(path)
    }

    fn file_names(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.file_names(dir)
    }

    fn enclosing_text(&self, path: &Path) -> Option<String> {
        self.inner.enclosing_text(path)
    }
}

/// Files held in memory: the replay of a [`Transcript`]. Never touches the disk.
#[derive(Clone, Debug, Default)]
pub struct MemoryFs {
    files: HashMap<PathBuf, Cow<'static, [u8]>>,
    aliases: HashMap<PathBuf, PathBuf>,
}

impl MemoryFs {
    /// An empty file system.
    pub fn new() -> Self {
        MemoryFs::default()
    }

    /// Adds (or replaces) the file at `path`.
    pub fn file(mut self, path: impl Into<PathBuf>, bytes: impl Into<Cow<'static, [u8]>>) -> Self {
        self.files.insert(path.into(), bytes.into());
        self
    }

    /// Makes `path` canonicalize to `canonical` (a [`Transcript::aliases`] entry).
    pub fn alias(mut self, path: impl Into<PathBuf>, canonical: impl Into<PathBuf>) -> Self {
        self.aliases.insert(path.into(), canonical.into());
        self
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("`{}` was not embedded", path.display()),
    )
}

impl FileSystem for MemoryFs {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(path)
            .map(|b| b.to_vec())
            .ok_or_else(|| not_found(path))
    }

    fn canonicalize(&self, path: &Path) -> io::Result<PathBuf> {
        // Paths without an alias canonicalized to their normalized form when recorded, which
        // is also what the loader falls back to on an error.
        self.aliases
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))
    }

    fn is_file(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    fn file_names(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
            .collect())
    }

    fn enclosing_text(&self, _path: &Path) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recording_keeps_reads_once_and_only_real_aliases() {
        let dir = std::env::temp_dir().join(format!("fm-recording-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.yml");
        std::fs::write(&file, "x: 1").unwrap();
        let canonical_dir = std::fs::canonicalize(&dir).unwrap();
        let rec = RecordingFs::new(RealFs);
        let file = canonical_dir.join("a.yml");
        assert_eq!(rec.read(&file).unwrap(), b"x: 1");
        assert_eq!(rec.read(&file).unwrap(), b"x: 1");
        assert!(rec.read(&canonical_dir.join("missing.yml")).is_err());
        // A canonical path is its own key: not an alias.
        rec.canonicalize(&file).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(&file, canonical_dir.join("link.yml")).unwrap();
        #[cfg(unix)]
        rec.canonicalize(&canonical_dir.join("link.yml")).unwrap();
        let t = rec.transcript();
        assert_eq!(t.reads, std::slice::from_ref(&file));
        #[cfg(unix)]
        assert_eq!(t.aliases, [(canonical_dir.join("link.yml"), file.clone())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = std::env::temp_dir().join(format!("fm-regular-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.yml");
        std::fs::write(&file, "x: 1\n").unwrap();
        assert_eq!(read_regular_file(&file, 5).unwrap(), b"x: 1\n");
        let err = read_regular_file(&file, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(err.to_string(), "it is larger than 4 bytes, the limit");
        assert_eq!(byte_size(MAX_FILE_BYTES), "16 MiB");
        let err = read_regular_file(&dir, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::IsADirectory);
        #[cfg(unix)]
        {
            // A device that never ends, and one whose reads never end: neither is opened.
            let err = read_regular_file(Path::new("/dev/zero"), 100).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("character device"), "{err}");
            // A FIFO blocks `open` until a writer comes: the test would hang, not fail, if
            // it were opened, so it runs on a thread with a generous deadline.
            let fifo = dir.join("fifo.yml");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let _ = tx.send(read_regular_file(&fifo, 100).map_err(|e| e.to_string()));
                });
                let res = rx
                    .recv_timeout(std::time::Duration::from_secs(60))
                    .expect("reading a FIFO blocked");
                assert_eq!(res.unwrap_err(), "it is not a regular file but a FIFO");
            }
        }
        #[cfg(target_os = "linux")]
        {
            // `/proc` files report a size of 0 and are read up to the limit.
            let err = read_regular_file(Path::new("/proc/self/maps"), 10).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn memory_answers_only_from_its_files() {
        let fs = MemoryFs::new()
            .file("/m/a.yml", b"a".as_slice())
            .alias("/m/link.yml", "/m/a.yml");
        assert_eq!(fs.read(Path::new("/m/a.yml")).unwrap(), b"a");
        assert_eq!(
            fs.read(Path::new("/m/b.yml")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(fs.is_file(Path::new("/m/a.yml")));
        assert!(!fs.is_file(Path::new("/m/profiles.yml")));
        assert_eq!(
            fs.canonicalize(Path::new("/m/link.yml")).unwrap(),
            PathBuf::from("/m/a.yml")
        );
        assert!(fs.canonicalize(Path::new("/m/a.yml")).is_err());
        assert_eq!(fs.file_names(Path::new("/m")).unwrap(), ["a.yml"]);
        assert_eq!(fs.enclosing_text(Path::new("/m/a.yml")), None);
    }
}
