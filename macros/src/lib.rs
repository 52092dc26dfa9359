//! Proc-macro shim of flatmachines: reads machine YAML at compile time through
//! `flatmachines-compiler` and expands to the generated module. Use it through the
//! `flatmachines` crate, which re-exports both macros.

use flatmachines_compiler::Checked;
use flatmachines_compiler::check::features::{RuntimeFeatures, check_features};
use flatmachines_compiler::codegen::{self, Options, SourceText};
use flatmachines_compiler::load::{Input, LoadOptions};
use proc_macro::TokenStream;
use proc_macro2::Span;
use quote::quote;
use std::path::{Path, PathBuf};

/// Compiles a machine YAML file into a module named after `data.name` (snake_case).
///
/// ```ignore
/// flatmachines::include_machine!("machines/review.yml");   // → pub mod review { pub enum State … }
/// ```
///
/// The path is relative to the file that invokes the macro (falling back to the crate root).
/// Every file the machine references is embedded in the binary (it runs without them) and
/// tracked, so editing any of them rebuilds. A defective machine is a compile error carrying
/// the YAML diagnostics (`--> machines/review.yml:14:13`).
#[proc_macro]
pub fn include_machine(input: TokenStream) -> TokenStream {
    let lit = match syn::parse::<syn::LitStr>(input) {
        Ok(l) => l,
        Err(e) => return e.to_compile_error().into(),
    };
    let requested = PathBuf::from(lit.value());
    let candidates = candidate_paths(&requested);
    let Some(path) = candidates.iter().find(|p| p.is_file()).cloned() else {
        let msg = format!(
            "machine file `{}` not found next to the file invoking the macro, nor in the crate root",
            requested.display(),
        );
        return syn::Error::new(lit.span(), msg).to_compile_error().into();
    };
    // Loaded by its absolute path: the compiled machine replays this load at run time, from
    // wherever the binary runs.
    let path = absolute(&path);
    let (checked, loaded) = codegen::check_recorded(Input::File(&path), &load_options());
    let options = Options {
        source: SourceText::File(path),
        loaded,
        remap: Vec::new(),
    };
    expand(&checked, &options, lit.span())
}

/// Compiles machine YAML written inline into a module named after `data.name` (snake_case).
///
/// Either as a string literal (recommended: any YAML works in a raw string) or as bare tokens
/// (YAML that is also valid Rust tokens: no `'single quotes'`, no unbalanced brackets):
///
/// ```ignore
/// flatmachines::flatmachine!(r#"
/// spec: flatmachine
/// data:
///   name: ping
///   states:
///     start: {type: initial, transitions: [{to: done}]}
///     done: {type: final, output: {ok: true}}
/// "#);
/// ```
///
/// Agent and machine paths are relative to the invoking file.
#[proc_macro]
pub fn flatmachine(input: TokenStream) -> TokenStream {
    let input2: proc_macro2::TokenStream = input.clone().into();
    let call_file = caller_file();
    let (text, origin, span) = match syn::parse2::<syn::LitStr>(input2.clone()) {
        Ok(lit) => {
            let span = lit.span();
            let start = span.unwrap().start();
            let prefix = span
                .unwrap()
                .source_text()
                .and_then(|t| t.find('"').map(|i| i + 1))
                .unwrap_or(1);
            (
                lit.value(),
                (start.line() as u32, (start.column() + prefix) as u32),
                span,
            )
        }
        Err(_) => match tokens_text(input, call_file.as_deref()) {
            Some((text, line)) => (text, (line, 1), Span::call_site()),
            None => {
                return syn::Error::new(
                    Span::call_site(),
                    "cannot read the inline YAML back from the source file; write it as a string literal: `flatmachine!(r#\"...\"#)`",
                )
                .to_compile_error()
                .into();
            }
        },
    };
    let file = call_file.unwrap_or_else(|| PathBuf::from("inline.yml"));
    // References resolve against the absolute directory, as they will at run time.
    let dir = absolute(
        file.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new(".")),
    );
    let file = dir.join(file.file_name().unwrap_or("inline.yml".as_ref()));
    let (checked, loaded) = codegen::check_recorded(
        Input::Inline {
            text: text.clone(),
            path: &file,
            origin,
        },
        &load_options(),
    );
    let options = Options {
        source: SourceText::InlineAt { text, dir },
        loaded,
        remap: Vec::new(),
    };
    expand(&checked, &options, span)
}

/// The runtime features this macro crate was built with: `flatmachines` forwards its own.
const FEATURES: RuntimeFeatures = RuntimeFeatures {
    cel: cfg!(feature = "cel"),
    sqlite: cfg!(feature = "sqlite"),
    jsonschema: cfg!(feature = "jsonschema"),
    regex: cfg!(feature = "regex"),
};

fn expand(checked: &Checked, options: &Options, span: Span) -> TokenStream {
    let module = codegen::generate(&checked.project, options);
    let mut diagnostics = checked.diagnostics.clone();
    diagnostics.extend(check_features(&checked.project, FEATURES));
    diagnostics.sort();
    let errors = diagnostics.iter().filter(|d| d.is_error()).map(|d| {
        let rendered = d.render(&checked.project.sources);
        // rustc prints "error: " itself: `error[FM0102]: msg` becomes `[FM0102] msg`.
        let rest = rendered.strip_prefix("error").unwrap_or(&rendered);
        let message = match rest.split_once("]: ") {
            Some((code, tail)) if code.starts_with('[') => format!("{code}] {tail}"),
            _ => rest.to_string(),
        };
        syn::Error::new(span, message.trim_end()).to_compile_error()
    });
    quote!(#(#errors)* #module).into()
}

fn load_options() -> LoadOptions {
    LoadOptions {
        display_base: std::env::current_dir().ok(),
    }
}

fn caller_file() -> Option<PathBuf> {
    proc_macro::Span::call_site().local_file()
}

fn candidate_paths(requested: &Path) -> Vec<PathBuf> {
    if requested.is_absolute() {
        return vec![requested.to_path_buf()];
    }
    let mut out = Vec::new();
    if let Some(dir) = caller_file().as_deref().and_then(Path::parent) {
        out.push(flatmachines_compiler::load::normalize(&dir.join(requested)));
    }
    if let Some(root) = std::env::var_os("CARGO_MANIFEST_DIR") {
        out.push(flatmachines_compiler::load::normalize(
            &PathBuf::from(root).join(requested),
        ));
    }
    out
}

fn absolute(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The source text covered by the macro's tokens, with the first line padded so every line
/// keeps its columns (YAML is indentation-sensitive). Returns the text and its first line.
fn tokens_text(input: TokenStream, file: Option<&Path>) -> Option<(String, u32)> {
    let mut tokens = input.into_iter();
    let first = tokens.next()?.span();
    let last = tokens.last().map(|t| t.span()).unwrap_or(first);
    let source = std::fs::read_to_string(file?).ok()?;
    let (start, end) = (first.start(), last.end());
    let lines: Vec<&str> = source.lines().collect();
    let (l0, c0, l1, c1) = (start.line(), start.column(), end.line(), end.column());
    if l0 == 0 || l1 < l0 || l1 > lines.len() {
        return None;
    }
    let mut text = String::new();
    for (i, line) in lines[l0 - 1..l1].iter().enumerate() {
        let n = l0 + i;
        let chars: Vec<char> = line.chars().collect();
        let from = if n == l0 { c0.saturating_sub(1) } else { 0 };
        let to = if n == l1 {
            c1.saturating_sub(1).min(chars.len())
        } else {
            chars.len()
        };
        if n == l0 {
            text.push_str(&" ".repeat(from));
        }
        text.extend(&chars[from.min(to)..to]);
        text.push('\n');
    }
    Some((text, l0 as u32))
}
