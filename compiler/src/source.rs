//! Source files and positions inside them.
//!
//! Every value read from a machine document keeps a [`Span`], so a diagnostic can point at
//! `file:line:col` long after the YAML was turned into the model.

use std::path::{Path, PathBuf};

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A position in a source file: 1-based line and column (in characters), 0-based byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: u32,
    /// Column in characters, starting at 1.
    pub col: u32,
    /// Byte offset from the start of the file.
    pub offset: u32,
}

/// A region of one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    /// The file the region is in.
    pub file: FileId,
    /// First position of the region.
    pub start: Pos,
    /// Position just past the region.
    pub end: Pos,
}

impl Span {
    /// The byte range of the span in its file.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start.offset as usize..self.end.offset as usize
    }
}

/// A value together with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where the value was written.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Pairs a value with its span.
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

impl Spanned<String> {
    /// The value as a string slice.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

/// One file read by the front end.
#[derive(Debug)]
pub struct SourceFile {
    /// The path as the file was found (absolute or relative to the working directory).
    pub path: PathBuf,
    /// The path shown in diagnostics.
    pub display: String,
    /// Full text of the file.
    pub text: String,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    /// When the file was not read from disk (inline YAML in a Rust file), the position of its
    /// first character in the enclosing file, so diagnostics point into the enclosing file.
    pub origin: Option<(u32, u32)>,
    /// The text of the enclosing file for inline YAML, so excerpts show the real source lines.
    pub enclosing: Option<String>,
    /// Whether the file's text must not be quoted (see [`SourceFile::is_withheld`]).
    withheld: bool,
}

impl SourceFile {
    /// Creates a source file from its text.
    pub fn new(path: PathBuf, display: String, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path,
            display,
            text,
            line_starts,
            origin: None,
            enclosing: None,
            withheld: false,
        }
    }

    /// A file whose text is not kept (it is not YAML text): diagnostics name positions in it
    /// but never quote it.
    pub fn withheld(path: PathBuf, display: String) -> Self {
        let mut file = SourceFile::new(path, display, String::new());
        file.withheld = true;
        file
    }

    /// Whether the file's text must not be quoted in diagnostics: a file named by a machine
    /// that turned out not to be a document (`/proc/self/environ`, `/etc/shadow`, a key file)
    /// may hold secrets, and diagnostics end up in CI logs.
    pub fn is_withheld(&self) -> bool {
        self.withheld
    }

    /// The text of line `line` (1-based), without its line break.
    pub fn line_text(&self, line: u32) -> &str {
        let idx = line.saturating_sub(1) as usize;
        let Some(&start) = self.line_starts.get(idx) else {
            return "";
        };
        let end = self
            .line_starts
            .get(idx + 1)
            .map(|e| e.saturating_sub(1))
            .unwrap_or(self.text.len());
        self.text[start..end.max(start)].trim_end_matches('\r')
    }

    /// Number of lines in the file.
    pub fn line_count(&self) -> u32 {
        self.line_starts.len() as u32
    }

    /// The position of byte offset `offset`.
    pub fn pos_of_offset(&self, offset: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line];
        let col = self
            .text
            .get(line_start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        Pos {
            line: line as u32 + 1,
            col: col as u32 + 1,
            offset: offset as u32,
        }
    }

    /// The position of the character at `line` (1-based) and `col0` (0-based, in characters).
    pub fn pos_at(&self, line: usize, col0: usize) -> Pos {
        let idx = line.saturating_sub(1).min(self.line_starts.len() - 1);
        let start = self.line_starts[idx];
        let rest = &self.text[start..];
        let byte = rest
            .char_indices()
            .nth(col0)
            .map(|(b, _)| b)
            .unwrap_or(rest.len());
        Pos {
            line: idx as u32 + 1,
            col: col0 as u32 + 1,
            offset: (start + byte) as u32,
        }
    }

    /// The text of the line shown for `pos`: the enclosing file's line for inline YAML.
    pub fn display_line_text(&self, pos: Pos) -> String {
        match (&self.enclosing, self.origin) {
            (Some(text), Some(_)) => {
                let (line, _) = self.display_pos(pos);
                text.lines()
                    .nth(line.saturating_sub(1) as usize)
                    .unwrap_or("")
                    .to_string()
            }
            _ => self.line_text(pos.line).to_string(),
        }
    }

    /// The position shown to the user for `pos`: shifted into the enclosing file for inline YAML.
    pub fn display_pos(&self, pos: Pos) -> (u32, u32) {
        match self.origin {
            Some((line, col)) if pos.line == 1 => (line, col + pos.col - 1),
            Some((line, _)) => (line + pos.line - 1, pos.col),
            None => (pos.line, pos.col),
        }
    }
}

/// All files read while loading a machine, addressed by [`FileId`].
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty source map.
    pub fn new() -> Self {
        SourceMap::default()
    }

    /// Adds a file and returns its id.
    pub fn add(&mut self, file: SourceFile) -> FileId {
        self.files.push(file);
        FileId(self.files.len() as u32 - 1)
    }

    /// The file with id `id`.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    /// Stops diagnostics from quoting the text of file `id` (see [`SourceFile::is_withheld`]).
    pub fn withhold(&mut self, id: FileId) {
        self.files[id.0 as usize].withheld = true;
    }

    /// The id of an already added file with this path.
    pub fn find(&self, path: &Path) -> Option<FileId> {
        self.files
            .iter()
            .position(|f| f.path == path)
            .map(|i| FileId(i as u32))
    }

    /// Every file, in the order they were added.
    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_offsets() {
        let f = SourceFile::new("a".into(), "a".into(), "ab\ncdé\nf".into());
        assert_eq!(
            f.pos_of_offset(0),
            Pos {
                line: 1,
                col: 1,
                offset: 0
            }
        );
        assert_eq!(
            f.pos_of_offset(3),
            Pos {
                line: 2,
                col: 1,
                offset: 3
            }
        );
        // 'é' is two bytes: the column counts characters.
        assert_eq!(
            f.pos_of_offset(7),
            Pos {
                line: 2,
                col: 4,
                offset: 7
            }
        );
        assert_eq!(f.line_text(2), "cdé");
        assert_eq!(f.line_text(3), "f");
        assert_eq!(f.line_text(9), "");
    }

    #[test]
    fn inline_origin_shifts_positions() {
        let mut f = SourceFile::new("a".into(), "a".into(), "x\ny".into());
        f.origin = Some((10, 5));
        assert_eq!(
            f.display_pos(Pos {
                line: 1,
                col: 2,
                offset: 1
            }),
            (10, 6)
        );
        assert_eq!(
            f.display_pos(Pos {
                line: 2,
                col: 1,
                offset: 2
            }),
            (11, 1)
        );
    }
}
