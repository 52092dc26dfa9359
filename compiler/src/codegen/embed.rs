//! Rebuild tracking: the generated module names every file the compiler read in an
//! `include_bytes!` (bound to an unused constant), so editing any of them — the machine, its
//! agents, child machines or profiles — rebuilds the crate. The bytes are not otherwise used:
//! the machine itself travels as its IR.

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

/// One `const _: &[u8] = include_bytes!(…);` per file read, except the machine's own file,
/// which `SOURCE` already names through `include_str!`.
pub(super) fn tracked_files(project: &Project, options: &Options) -> TokenStream {
    let entry = match &options.source {
        SourceText::File(p) => Some(p.as_path()),
        _ => None,
    };
    let entry_path = project.root().and_then(|m| m.path.as_deref()).or(entry);
    let reads = if options.loaded.reads.is_empty() {
        project.files_read()
    } else {
        options.loaded.reads.clone()
    };
    let consts = reads
        .iter()
        .filter(|path| entry.is_none() || Some(path.as_path()) != entry_path)
        .map(|path| {
            let lit = Literal::string(&options.display_path(&absolute(path)));
            quote!(
                const _: &[u8] = include_bytes!(#lit);
            )
        });
    quote! {
        #(#consts)*
    }
}
