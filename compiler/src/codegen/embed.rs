//! The files a compiled machine carries, so that it runs without its YAML next to it.
//!
//! The generated `COMPILED` static lists every file the compiler read, by the path the loader
//! asked for (so that the runtime's replay of the load, from memory, asks for the same paths)
//! with its bytes through `include_bytes!` (so editing the file rebuilds the crate).

use super::{Options, SourceText};
use crate::load::Project;
use proc_macro2::{Literal, TokenStream};
use quote::quote;
use std::path::{Path, PathBuf};

/// An absolute path for `include_bytes!`, which resolves relative paths against the file that
/// invokes it rather than the directory the compiler read from.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    std::fs::canonicalize(path)
        .or_else(|_| std::env::current_dir().map(|d| d.join(path)))
        .unwrap_or_else(|_| path.to_path_buf())
}

fn lit(path: &Path) -> Literal {
    Literal::string(&path.to_string_lossy())
}

/// The `COMPILED` static.
pub(super) fn compiled_static(project: &Project, options: &Options) -> TokenStream {
    let root = project.root();
    let entry_path = root.and_then(|m| m.path.as_ref());
    let entry = match (&options.source, root) {
        (SourceText::File(p), _) => {
            let path = lit(entry_path.unwrap_or(p));
            quote!(::flatmachines::__private::Entry::File(#path))
        }
        (SourceText::Inline(_) | SourceText::InlineAt { .. }, Some(m)) => {
            let dir = lit(&m.dir);
            let (line, column) = project
                .sources
                .files()
                .find_map(|(_, f)| f.origin)
                .unwrap_or((1, 1));
            quote!(::flatmachines::__private::Entry::Inline {
                text: SOURCE,
                dir: #dir,
                line: #line,
                column: #column,
            })
        }
        (SourceText::Inline(_) | SourceText::InlineAt { .. }, None) => {
            quote!(::flatmachines::__private::Entry::Inline {
                text: SOURCE,
                dir: DIR,
                line: 1,
                column: 1,
            })
        }
    };
    let reads = if options.loaded.reads.is_empty() {
        project.files_read()
    } else {
        options.loaded.reads.clone()
    };
    let files = reads.iter().map(|path| {
        let key = lit(path);
        // The machine's own text is `SOURCE` already; include it once.
        let bytes = if matches!(options.source, SourceText::File(_)) && Some(path) == entry_path {
            quote!(SOURCE.as_bytes())
        } else {
            let abs = lit(&absolute(path));
            quote!(include_bytes!(#abs))
        };
        quote!(::flatmachines::__private::EmbeddedFile { path: #key, bytes: #bytes })
    });
    let aliases = options.loaded.aliases.iter().map(|(path, canonical)| {
        let (p, c) = (lit(path), lit(canonical));
        quote!((#p, #c))
    });
    quote! {
        /// Everything [`machine`] is built from: the files the compiler read (embedded, so the
        /// binary needs none of them) and the compiled conditions.
        static COMPILED: ::flatmachines::__private::CompiledMachine =
            ::flatmachines::__private::CompiledMachine {
                name: NAME,
                entry: #entry,
                files: &[#(#files),*],
                aliases: &[#(#aliases),*],
                conditions: conditions::ALL,
            };
    }
}
