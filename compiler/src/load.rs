//! Loading a machine and everything it references: agents, child machines, profiles.
//!
//! References resolve relative to the file that names them. Each file is read and parsed once,
//! however many machines name it, and a cycle between machines is reported instead of followed.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::model::agent::{AgentDoc, ProfilesDoc, parse_agent, parse_profiles};
use crate::model::machine::{AgentRef, MachineDoc, MachineRef, parse_machine};
use crate::source::{FileId, Pos, SourceFile, SourceMap, Span, Spanned};
use crate::yaml::{self, Node};
use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

mod fs;
pub use fs::{
    FileSystem, MAX_FILE_BYTES, MemoryFs, RealFs, RecordingFs, Transcript, read_regular_file,
};

/// Top-level keys of machine, agent and profiles documents (and of a file holding a typed
/// agent ref): a file a machine names is read as a document only when it has one.
const ENVELOPE_KEYS: &[&str] = &[
    "spec",
    "spec_version",
    "data",
    "metadata",
    "type",
    "model_profiles",
    "default",
    "override",
];

/// Index of a machine in [`Project::machines`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineId(pub usize);

/// Index of an agent in [`Project::agents`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(pub usize);

/// A machine with its references resolved.
#[derive(Clone, Debug)]
pub struct LoadedMachine {
    /// The document.
    pub doc: MachineDoc,
    /// The directory its references resolve against.
    pub dir: PathBuf,
    /// The file it came from, unless it is inline.
    pub path: Option<PathBuf>,
    /// For each entry of `data.agents`, the flatagent document it resolves to, when the
    /// compiler can see one (paths, inline documents, typed `flatagent` refs).
    pub agents: Vec<Option<AgentId>>,
    /// For each entry of `data.machines`, the machine it resolves to.
    pub machines: Vec<Option<MachineId>>,
    /// The model profiles in the machine's directory, if any.
    pub profiles: Option<usize>,
}

/// A flatagent document with the directory its own references resolve against.
#[derive(Clone, Debug)]
pub struct LoadedAgent {
    /// The document.
    pub doc: AgentDoc,
    /// The directory of the agent file (the machine's for inline agents).
    pub dir: PathBuf,
    /// The model profiles in the agent's own directory, if any.
    pub profiles: Option<usize>,
}

/// Everything loaded for one entry machine.
#[derive(Debug, Default)]
pub struct Project {
    /// Every file read.
    pub sources: SourceMap,
    /// Machines; the entry machine is first.
    pub machines: Vec<LoadedMachine>,
    /// Agent documents.
    pub agents: Vec<LoadedAgent>,
    /// Profile documents.
    pub profiles: Vec<ProfilesDoc>,
    /// Problems found while loading (checks add theirs later).
    pub diags: Diagnostics,
}

impl Project {
    /// The entry machine, if its file could be read and parsed.
    pub fn root(&self) -> Option<&LoadedMachine> {
        self.machines.first()
    }

    /// Every file read from disk, for rebuild tracking.
    pub fn files_read(&self) -> Vec<PathBuf> {
        self.sources
            .files()
            .filter(|(_, f)| f.origin.is_none())
            .map(|(_, f)| f.path.clone())
            .collect()
    }
}

/// Where the entry machine comes from.
pub enum Input<'a> {
    /// A file on disk.
    File(&'a Path),
    /// YAML text written inside a Rust file (the `flatmachine!` macro).
    Inline {
        /// The YAML.
        text: String,
        /// The Rust file it is written in.
        path: &'a Path,
        /// Line and column of the YAML's first character in that file.
        origin: (u32, u32),
    },
}

/// Options for loading.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Paths in diagnostics are shown relative to this directory when they are inside it.
    pub display_base: Option<PathBuf>,
}

/// Loads a machine and everything it references.
pub fn load(input: Input<'_>, options: &LoadOptions) -> Project {
    load_with(input, options, &RealFs)
}

/// [`load`], asking `fs` for every file (to record what is read, or to replay it from memory).
pub fn load_with(input: Input<'_>, options: &LoadOptions, fs: &dyn FileSystem) -> Project {
    let mut loader = Loader {
        fs,
        project: Project::default(),
        options: options.clone(),
        machine_by_file: HashMap::new(),
        agent_by_file: HashMap::new(),
        parsed: HashMap::new(),
        profiles_by_dir: HashMap::new(),
        in_progress: Vec::new(),
    };
    match input {
        Input::File(path) => {
            let path = normalize(path);
            if let Some((file, node)) = loader.read(&path, None, "machine file", true) {
                loader.machine_from_node(&node, file, parent_dir(&path), Some(path));
            }
        }
        Input::Inline { text, path, origin } => {
            let path = normalize(path);
            let display = loader.display(&path);
            let mut src = SourceFile::new(path.clone(), display, text);
            src.origin = Some(origin);
            src.enclosing = loader.fs.enclosing_text(&path);
            let file = loader.project.sources.add(src);
            let node = yaml::parse(
                loader.project.sources.get(file),
                file,
                &mut loader.project.diags,
            );
            if let Some(node) = node {
                loader.machine_from_node(&node, file, parent_dir(&path), None);
            }
        }
    }
    loader.project
}

struct Loader<'f> {
    fs: &'f dyn FileSystem,
    project: Project,
    options: LoadOptions,
    machine_by_file: HashMap<PathBuf, MachineId>,
    agent_by_file: HashMap<PathBuf, Option<AgentId>>,
    parsed: HashMap<PathBuf, Option<(FileId, Node)>>,
    profiles_by_dir: HashMap<PathBuf, Option<usize>>,
    /// Machine files being loaded, outermost first, to detect cycles.
    in_progress: Vec<PathBuf>,
}

impl Loader<'_> {
    fn display(&self, path: &Path) -> String {
        let shown = self
            .options
            .display_base
            .as_deref()
            .and_then(|base| path.strip_prefix(base).ok())
            .unwrap_or(path);
        shown.to_string_lossy().replace('\\', "/")
    }

    /// Reads and parses a file once. A missing file is reported at `from` when given. Only the
    /// `entry` file, the one the user named, is quoted whatever it holds; a file a machine names
    /// must look like a document (see [`Loader::parse_bytes`]).
    fn read(
        &mut self,
        path: &Path,
        from: Option<&Spanned<String>>,
        what: &str,
        entry: bool,
    ) -> Option<(FileId, Node)> {
        let key = self.canonical(path);
        if let Some(done) = self.parsed.get(&key) {
            return done.clone();
        }
        let result = match self.fs.read(path) {
            // The real file system stops reading at the limit; others are held to it here.
            Ok(bytes) if bytes.len() as u64 > fs::MAX_FILE_BYTES => {
                self.unreadable(path, from, what, &fs::too_large(fs::MAX_FILE_BYTES));
                None
            }
            Ok(bytes) => self.parse_bytes(path, from, what, entry, bytes),
            Err(e) => {
                self.unreadable(path, from, what, &e);
                None
            }
        };
        self.parsed.insert(key, result.clone());
        result
    }

    /// Reports a file that cannot be read (at `from` when given).
    fn unreadable(
        &mut self,
        path: &Path,
        from: Option<&Spanned<String>>,
        what: &str,
        e: &std::io::Error,
    ) {
        let code = if e.kind() == ErrorKind::FileTooLarge {
            Code::LimitExceeded
        } else {
            Code::FileNotFound
        };
        let named = match from {
            Some(r) => r.value.clone(),
            None => self.display(path),
        };
        let mut d = Diagnostic::new(
            code,
            from.map(|r| r.span),
            format!("{what} `{named}` cannot be read: {}", io_reason(e)),
        );
        d = d.note(None, format!("looked for `{}`", self.display(path)));
        if let Some(h) =
            sibling_suggestion(self.fs, path).filter(|_| e.kind() == ErrorKind::NotFound)
        {
            d = d.help(h);
        } else if code == Code::LimitExceeded {
            d = d.help("machine, agent and profiles files are YAML documents of a few kilobytes; is this the right file?");
        } else if from.is_some() {
            d = d.help("paths are relative to the file that names them");
        }
        self.project.diags.push(d);
    }

    /// Parses the bytes of a file. A file that is not UTF-8 text without control characters is
    /// reported with the position of the first bad byte and never quoted. Unless it is the
    /// `entry` file, neither is one that is no document: its top level is not a map with a key
    /// of the envelope (`spec`, `data`, …). `/etc/shadow` parses as a map of one odd key, a key
    /// file as one long string; a machine naming them must not get them printed into a CI log,
    /// not even as the key of an "unknown field" warning, so they are not read any further.
    fn parse_bytes(
        &mut self,
        path: &Path,
        from: Option<&Spanned<String>>,
        what: &str,
        entry: bool,
        bytes: Vec<u8>,
    ) -> Option<(FileId, Node)> {
        let display = self.display(path);
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                let bytes = e.as_bytes();
                let found = format!("the byte 0x{:02X}, which is not UTF-8,", bytes[at]);
                self.not_text(path, display, from, what, bytes, at, &found);
                return None;
            }
        };
        if let Some((at, c)) = yaml::unprintable(&text) {
            let found = format!("the control character U+{:04X}", c as u32);
            self.not_text(path, display, from, what, text.as_bytes(), at, &found);
            return None;
        }
        let file =
            self.project
                .sources
                .add(SourceFile::new(path.to_path_buf(), display.clone(), text));
        let parsed = yaml::parse_document(
            self.project.sources.get(file),
            file,
            &mut self.project.diags,
        );
        let document = match &parsed.root {
            Some(root) if root.is_null() => true,
            Some(root) => root.as_map().is_some_and(|m| {
                m.iter()
                    .any(|(k, _)| ENVELOPE_KEYS.iter().any(|e| k.key_is(e)))
            }),
            None => parsed
                .first_key
                .as_deref()
                .is_some_and(|k| ENVELOPE_KEYS.contains(&k)),
        };
        if entry || document {
            return parsed.root.map(|n| (file, n));
        }
        self.project.sources.withhold(file);
        if parsed.root.is_some() {
            let named = from.map_or(display, |r| r.value.clone());
            let mut d = Diagnostic::new(
                Code::WrongSpec,
                from.map(|r| r.span),
                format!("{what} `{named}` is not a flatmachines document: its top level is not a map with `spec` or `data`"),
            )
            .note(None, "its contents are not shown: a file that is no document may hold secrets")
            .help("name a YAML file with `spec: flatagent`, `spec: flatmachine` or `spec: flatprofiles` at its top level");
            if from.is_none() {
                d = d.note(None, format!("read `{}`", self.display(path)));
            }
            self.project.diags.push(d);
        }
        None
    }

    /// Reports a file that is not YAML text: `found` at byte `at` of `bytes`.
    #[allow(clippy::too_many_arguments)]
    fn not_text(
        &mut self,
        path: &Path,
        display: String,
        from: Option<&Spanned<String>>,
        what: &str,
        bytes: &[u8],
        at: usize,
        found: &str,
    ) {
        let line_start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let pos = Pos {
            line: bytes[..at].iter().filter(|&&b| b == b'\n').count() as u32 + 1,
            col: String::from_utf8_lossy(&bytes[line_start..at])
                .chars()
                .count() as u32
                + 1,
            offset: at as u32,
        };
        let named = from.map_or_else(|| display.clone(), |r| r.value.clone());
        let file = self
            .project
            .sources
            .add(SourceFile::withheld(path.to_path_buf(), display));
        let mut d = Diagnostic::new(
            Code::NotYamlText,
            Span {
                file,
                start: pos,
                end: pos,
            },
            format!(
                "{what} `{named}` is not YAML text: it holds {found} at line {}, column {}",
                pos.line, pos.col
            ),
        )
        .help("machine, agent and profiles files are UTF-8 YAML; the contents of this one are not shown");
        if let Some(r) = from {
            d = d.note(r.span, "the file is named here");
        }
        self.project.diags.push(d);
    }

    fn machine_from_node(
        &mut self,
        node: &Node,
        file: FileId,
        dir: PathBuf,
        path: Option<PathBuf>,
    ) -> MachineId {
        let doc = parse_machine(node, file, &mut self.project.diags);
        let id = MachineId(self.project.machines.len());
        let profiles = self.profiles_in(&dir);
        self.project.machines.push(LoadedMachine {
            doc,
            dir: dir.clone(),
            path: path.clone(),
            agents: Vec::new(),
            machines: Vec::new(),
            profiles,
        });
        if let Some(p) = &path {
            let key = self.canonical(p);
            self.machine_by_file.insert(key.clone(), id);
            self.in_progress.push(key);
        }
        let entries = self.project.machines[id.0].doc.data.agents.clone();
        let agents = entries
            .iter()
            .map(|e| self.resolve_agent(&e.reference, &dir, file))
            .collect();
        self.project.machines[id.0].agents = agents;
        let entries = self.project.machines[id.0].doc.data.machines.clone();
        let machines = entries
            .iter()
            .map(|e| match &e.reference {
                MachineRef::Path(p) => self.machine_file(p, &dir),
                MachineRef::Inline(n) => Some(self.machine_from_node(n, file, dir.clone(), None)),
                MachineRef::Invalid(_) => None,
            })
            .collect();
        self.project.machines[id.0].machines = machines;
        if path.is_some() {
            self.in_progress.pop();
        }
        id
    }

    fn machine_file(&mut self, reference: &Spanned<String>, dir: &Path) -> Option<MachineId> {
        let path = normalize(&dir.join(&reference.value));
        let key = self.canonical(&path);
        if let Some(pos) = self.in_progress.iter().position(|p| *p == key) {
            let chain: Vec<String> = self.in_progress[pos..]
                .iter()
                .chain(std::iter::once(&key))
                .map(|p| {
                    p.file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default()
                })
                .collect();
            self.project.diags.push(
                Diagnostic::new(
                    Code::MachineCycle,
                    reference.span,
                    format!(
                        "machine `{}` calls back into a machine that is calling it",
                        reference.value
                    ),
                )
                .note(None, format!("cycle: {}", chain.join(" -> ")))
                .help("a machine cannot (even indirectly) invoke itself; break the cycle"),
            );
            return None;
        }
        if let Some(id) = self.machine_by_file.get(&key) {
            return Some(*id);
        }
        let (file, node) = self.read(&path, Some(reference), "machine file", false)?;
        Some(self.machine_from_node(&node, file, parent_dir(&path), Some(path)))
    }

    fn resolve_agent(&mut self, reference: &AgentRef, dir: &Path, file: FileId) -> Option<AgentId> {
        match reference {
            AgentRef::Path(p) => self.agent_file(p, dir, "agent file"),
            AgentRef::Inline(node) => Some(self.agent_from_node(node, file, dir.to_path_buf())),
            AgentRef::Invalid(_) => None,
            AgentRef::Typed {
                ty,
                reference,
                config,
                ..
            } => {
                if ty.value != "flatagent" {
                    // Other adapters interpret `ref` themselves (`./factory.py#build`).
                    return None;
                }
                match (reference, config) {
                    (Some(r), _) => self.agent_file(r, dir, "agent file"),
                    (None, Some(cfg)) if cfg.get("spec").is_some() => {
                        Some(self.agent_from_node(cfg, file, dir.to_path_buf()))
                    }
                    _ => None,
                }
            }
        }
    }

    fn agent_file(
        &mut self,
        reference: &Spanned<String>,
        dir: &Path,
        what: &str,
    ) -> Option<AgentId> {
        let path = normalize(&dir.join(&reference.value));
        let key = self.canonical(&path);
        if let Some(done) = self.agent_by_file.get(&key) {
            return *done;
        }
        let (file, node) = self.read(&path, Some(reference), what, false)?;
        let id = match node.get("spec").and_then(Node::as_str) {
            // A file holding a typed ref becomes that ref; the adapter it names is not ours to check.
            _ if node.get("type").is_some() => None,
            Some("flatagent") | None => Some(self.agent_from_node(&node, file, parent_dir(&path))),
            Some(other) => {
                let spec = node.get("spec").map(|s| s.span);
                self.project.diags.push(
                    Diagnostic::new(
                        Code::WrongSpec,
                        spec,
                        format!("agent file must have `spec: flatagent`, found `spec: {other}`"),
                    )
                    .note(reference.span, "the agent is referenced here")
                    .help("point `agents:` at a flatagent document"),
                );
                None
            }
        };
        self.agent_by_file.insert(key, id);
        id
    }

    fn agent_from_node(&mut self, node: &Node, file: FileId, dir: PathBuf) -> AgentId {
        let doc = parse_agent(node, file, &mut self.project.diags);
        let profiles = self.profiles_in(&dir);
        self.project.agents.push(LoadedAgent { doc, dir, profiles });
        AgentId(self.project.agents.len() - 1)
    }

    fn profiles_in(&mut self, dir: &Path) -> Option<usize> {
        let key = self.canonical(dir);
        if let Some(p) = self.profiles_by_dir.get(&key) {
            return *p;
        }
        let path = dir.join("profiles.yml");
        let result = if self.fs.is_file(&path) {
            self.read(&path, None, "profiles file", false)
                .map(|(file, node)| {
                    let doc = parse_profiles(&node, file, &mut self.project.diags);
                    self.project.profiles.push(doc);
                    self.project.profiles.len() - 1
                })
        } else {
            None
        };
        self.profiles_by_dir.insert(key, result);
        result
    }

    /// A key identifying a file whatever path reached it.
    fn canonical(&self, path: &Path) -> PathBuf {
        self.fs
            .canonicalize(path)
            .unwrap_or_else(|_| normalize(path))
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::IsADirectory => "it is a directory".into(),
        _ => e.to_string(),
    }
}

/// Suggests a file next to a missing one whose name is close.
fn sibling_suggestion(fs: &dyn FileSystem, path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let entries = fs.file_names(dir).ok()?;
    crate::suggest::help(name, entries.iter().map(String::as_str))
}

/// The directory of a file, `.` for a bare file name.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes `.` and folds `..` without touching the file system, so displayed paths stay short.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// A span for the whole of a file, when a diagnostic has nothing more precise.
pub fn file_span(project: &Project, file: FileId) -> Span {
    let f = project.sources.get(file);
    let start = f.pos_of_offset(0);
    Span {
        file,
        start,
        end: start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: &str = "spec: flatmachine\ndata:\n  agents:\n    a: ./agent.yml\n  states:\n    start: {type: initial, agent: a, transitions: [{to: done}]}\n    done: {type: final}\n";

    /// Loads and checks `/m/machine.yml` from memory; the rendered diagnostics.
    fn check(fs: MemoryFs) -> (Vec<Code>, String) {
        let project = load_with(
            Input::File(Path::new("/m/machine.yml")),
            &LoadOptions::default(),
            &fs,
        );
        let diags = crate::check::check_project(&project);
        let codes = diags.iter().map(|d| d.code).collect();
        (codes, crate::diag::render_all(&diags, &project.sources))
    }

    #[test]
    fn invalid_utf8_is_reported_at_the_bad_byte() {
        let mut text = b"spec: flatmachine\ndata:\n  context:\n    x: \"ab".to_vec();
        text.extend_from_slice(b"\xff\xfecd\"\n");
        let (codes, out) = check(MemoryFs::new().file("/m/machine.yml", text));
        assert_eq!(codes, [Code::NotYamlText]);
        assert!(out.contains("--> /m/machine.yml:4:11\n"), "{out}");
        assert!(out.contains("the byte 0xFF"), "{out}");
        assert!(!out.contains("context"), "{out}");
    }

    #[test]
    fn a_referenced_file_that_is_not_text_is_never_quoted() {
        let environ = b"HOME=/root\0API_KEY=hunter2\0".to_vec();
        let (codes, out) = check(
            MemoryFs::new()
                .file("/m/machine.yml", MACHINE.as_bytes())
                .file("/m/agent.yml", environ),
        );
        assert!(codes.contains(&Code::NotYamlText), "{out}");
        assert!(!out.contains("hunter2") && !out.contains("HOME"), "{out}");
        assert!(out.contains("--> /m/agent.yml:1:11\n"), "{out}");
        assert!(out.contains("U+0000"), "{out}");
        // The reference in the machine is shown: that is the user's own text.
        assert!(out.contains("a: ./agent.yml"), "{out}");
    }

    #[test]
    fn a_referenced_file_that_is_no_document_is_never_quoted() {
        for text in [
            "root:$6$hunter2-hash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n",
            "-----BEGIN PRIVATE KEY-----\nMIIhunter2\n-----END PRIVATE KEY-----\n",
            "token hunter2: [unclosed\n",
        ] {
            let (codes, out) = check(
                MemoryFs::new()
                    .file("/m/machine.yml", MACHINE.as_bytes())
                    .file("/m/agent.yml", text.as_bytes()),
            );
            assert!(!codes.is_empty());
            assert!(!out.contains("hunter2"), "{out}");
            assert!(
                out.contains("`./agent.yml` is not a flatmachines document")
                    || out.contains("invalid YAML") && out.contains("--> /m/agent.yml:"),
                "{out}"
            );
        }
        // A document with a mistake is quoted as usual.
        let (_, out) = check(
            MemoryFs::new()
                .file("/m/machine.yml", MACHINE.as_bytes())
                .file(
                    "/m/agent.yml",
                    b"spec: flatagent\ndata:\n  a: b: c\n".as_slice(),
                ),
        );
        assert!(out.contains("\n3 |   a: b: c\n"), "{out}");
    }

    #[test]
    fn files_over_the_size_limit_are_not_parsed() {
        let big = format!("x: \"{}\"\n", "a".repeat(MAX_FILE_BYTES as usize));
        let (codes, out) = check(
            MemoryFs::new()
                .file("/m/machine.yml", MACHINE.as_bytes())
                .file("/m/agent.yml", big.into_bytes()),
        );
        assert!(codes.contains(&Code::LimitExceeded), "{out}");
        assert!(out.contains("larger than 16 MiB, the limit"), "{out}");
    }

    #[test]
    fn normalize_folds_dots() {
        assert_eq!(
            normalize(Path::new("a/./b/../c.yml")),
            PathBuf::from("a/c.yml")
        );
        assert_eq!(normalize(Path::new("../x/./y")), PathBuf::from("../x/y"));
        assert_eq!(normalize(Path::new("./")), PathBuf::from("."));
    }
}
