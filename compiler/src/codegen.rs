//! Rust code for a checked machine: a module named after the machine, holding its lowered
//! definition as Rust data (`ir_data`), its `State` enum, its transition conditions compiled to
//! Rust and the transition functions the executor calls (`conditions`), typed `Input`/`Output`
//! (`types`), and rebuild tracking of the files it was compiled from (`embed`).
//!
//! Generated code names the runtime only through `::flatmachines::__private`, so users need no
//! other dependency and the runtime can change what sits behind those paths.

mod conditions;
mod embed;
mod ir_data;
mod types;

use crate::load::{self, Input, LoadOptions, Project, RealFs, RecordingFs, Transcript};
use crate::{Checked, naming};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use std::path::PathBuf;

/// Where the machine's YAML text comes from in the generated code.
#[derive(Clone, Debug)]
pub enum SourceText {
    /// `include_str!` of this absolute path (also tracks the file for rebuilds).
    File(PathBuf),
    /// The text itself (inline YAML); references resolve against the working directory.
    Inline(String),
    /// The text itself, with the directory its references resolve against.
    InlineAt {
        /// The YAML.
        text: String,
        /// Absolute directory of the file the YAML is written in.
        dir: PathBuf,
    },
}

/// What the generator needs besides the project.
#[derive(Clone, Debug)]
pub struct Options {
    /// The machine's own YAML.
    pub source: SourceText,
    /// What the loader read ([`check_recorded`] records it). Every file in it is named in an
    /// `include_bytes!`, so that editing any of them rebuilds the caller. When empty, the
    /// project's [`files_read`](Project::files_read) are tracked instead.
    pub loaded: Transcript,
    /// Path prefixes rewritten in the generated code, as rustc's `--remap-path-prefix` does:
    /// `(from, to)` replaces a leading `from` of every path the code names. Tests use it to
    /// make expansions independent of the checkout's location.
    pub remap: Vec<(PathBuf, String)>,
}

impl Options {
    /// `path` as the generated code names it (after [`Options::remap`]).
    pub fn display_path(&self, path: &std::path::Path) -> String {
        for (from, to) in &self.remap {
            if let Ok(rest) = path.strip_prefix(from) {
                let rest = rest.to_string_lossy();
                return if rest.is_empty() {
                    to.clone()
                } else {
                    format!("{}/{rest}", to.trim_end_matches('/'))
                };
            }
        }
        path.to_string_lossy().into_owned()
    }
}

/// Loads and checks a machine like [`check_input`](crate::check_input), recording what is read
/// for [`Options::loaded`].
pub fn check_recorded(input: Input<'_>, options: &LoadOptions) -> (Checked, Transcript) {
    let fs = RecordingFs::new(RealFs);
    let project = load::load_with(input, options, &fs);
    let diagnostics = crate::check::check_project(&project);
    let checked = Checked {
        project,
        diagnostics,
    };
    (checked, fs.transcript())
}

/// The module name the machine gets.
pub fn module_name(project: &Project) -> String {
    naming::module_name(
        project
            .root()
            .and_then(|m| m.doc.data.name.as_ref())
            .map(|n| n.value.as_str()),
    )
}

/// The IR of `project`, with the paths it names remapped as `options` says.
pub fn lower(project: &Project, options: &Options) -> crate::ir::Bundle {
    let mut bundle = crate::lower::lower(project);
    if !options.remap.is_empty() {
        let remap = |p: &mut crate::ir::Str| {
            *p = std::borrow::Cow::Owned(options.display_path(std::path::Path::new(&**p)));
        };
        for m in bundle.machines.to_mut() {
            remap(&mut m.dir);
            if let Some(p) = &mut m.path {
                remap(p);
            }
            for a in m.agents.to_mut() {
                remap(&mut a.dir);
            }
            for c in m.machines.to_mut() {
                if let Some(p) = &mut c.path {
                    remap(p);
                }
            }
        }
    }
    bundle
}

/// Generates `pub mod <name> { … }` for the entry machine. Works on a machine with errors too
/// (the caller adds the errors), so that user code naming the module or its states does not
/// produce a cascade of secondary errors.
pub fn generate(project: &Project, options: &Options) -> TokenStream {
    let module = format_ident!("{}", module_name(project));
    let bundle = lower(project, options);
    let empty = crate::ir::MachineIr::empty();
    let root = bundle.root().unwrap_or(&empty);
    let yaml_name = root.name.to_string();

    let state_names: Vec<&str> = root.states.iter().map(|s| &*s.name).collect();
    let (variants, _) = naming::variant_names(state_names.iter().copied());
    let idents: Vec<_> = variants.iter().map(|v| format_ident!("{}", v)).collect();
    let initial_index = root.initial as usize;
    let docs: Vec<String> = root
        .states
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let kind = match (i == initial_index, s.is_final) {
                (_, true) => " (final)",
                (true, false) => " (initial)",
                _ => "",
            };
            format!(" The state `{}`{kind}.", s.name)
        })
        .collect();
    let name_lits: Vec<Literal> = state_names.iter().map(|n| Literal::string(n)).collect();
    let final_idents: Vec<_> = root
        .states
        .iter()
        .zip(&idents)
        .filter(|(s, _)| s.is_final)
        .map(|(_, i)| i.clone())
        .collect();

    let source = match &options.source {
        SourceText::File(p) => {
            let lit = Literal::string(&options.display_path(p));
            quote!(include_str!(#lit))
        }
        SourceText::Inline(text) | SourceText::InlineAt { text, .. } => {
            let lit = Literal::string(text);
            quote!(#lit)
        }
    };
    let dir = match &options.source {
        SourceText::File(p) => p.parent().map(|d| d.to_path_buf()).unwrap_or_default(),
        SourceText::InlineAt { dir, .. } => dir.clone(),
        SourceText::Inline(_) => PathBuf::from("."),
    };
    let dir_lit = Literal::string(&options.display_path(&dir));
    let conditions = conditions::Conditions::collect(&bundle);
    let conditions_mod = conditions.module();
    let transitions_mod = conditions::transitions_module(&bundle, &conditions);
    let typed_fns = conditions::typed_transition_fns(!idents.is_empty());
    let tracked = embed::tracked_files(project, options);
    let ir_data = ir_data::bundle(&bundle);
    let typed = types::typed(project, &yaml_name);
    let module_doc = format!(" Generated by flatmachines from the machine `{yaml_name}`.");
    let state_doc = format!(" The states of the machine `{yaml_name}`, in YAML order.");
    let name_lit = Literal::string(&yaml_name);

    let (enum_def, initial, is_final_body, name_body, from_name_body, index_body) =
        if idents.is_empty() {
            // A machine with no states still gets a usable (empty) module.
            (
                quote! {
                    #[doc = #state_doc]
                    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
                    pub enum State {}
                },
                quote!(),
                quote!(match self {}),
                quote!(match self {}),
                quote!({
                    let _ = name;
                    ::core::option::Option::None
                }),
                quote!(match self {}),
            )
        } else {
            let initial_ident = &idents[initial_index.min(idents.len() - 1)];
            let is_final_body = if final_idents.is_empty() {
                quote!(false)
            } else {
                quote!(matches!(self, #(State::#final_idents)|*))
            };
            (
                quote! {
                    #[doc = #state_doc]
                    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
                    pub enum State {
                        #(#[doc = #docs] #idents,)*
                    }
                },
                quote! {
                    /// The state a fresh run starts in.
                    pub const INITIAL: State = State::#initial_ident;
                },
                is_final_body,
                quote!(match self { #(State::#idents => #name_lits,)* }),
                quote!(match name {
                    #(#name_lits => ::core::option::Option::Some(State::#idents),)*
                    _ => ::core::option::Option::None,
                }),
                quote!(self as usize),
            )
        };

    quote! {
        #[doc = #module_doc]
        #[allow(dead_code, clippy::all)]
        pub mod #module {
            /// The machine's name (`data.name`).
            pub const NAME: &str = #name_lit;

            /// The machine's YAML, as it was compiled.
            pub const SOURCE: &str = #source;

            /// The directory the machine's agent and machine references resolve against.
            pub const DIR: &str = #dir_lit;

            #tracked

            /// The machine and its child machines, lowered at compile time (the IR the
            /// executor runs), as Rust data.
            pub static IR: ::flatmachines::__private::ir::Bundle = #ir_data;

            /// What [`machine`] is built from: [`IR`] and the generated transition functions.
            static COMPILED: ::flatmachines::__private::CompiledMachine =
                ::flatmachines::__private::CompiledMachine {
                    bundle: &IR,
                    next: transitions::ALL,
                };

            /// The machine, ready to run with a [`::flatmachines::Runtime`]. Built on the first
            /// call from [`IR`] (no file is read, nothing is parsed or checked), moving between
            /// states through the generated [`transitions`]; later calls return the same
            /// machine.
            ///
            /// # Errors
            /// Only for a definition the runtime cannot run, which the compile-time checks rule
            /// out.
            pub fn machine() -> ::core::result::Result<::flatmachines::Machine, ::flatmachines::Error> {
                static MACHINE: ::flatmachines::__private::OnceLock<::flatmachines::Machine> =
                    ::flatmachines::__private::OnceLock::new();
                ::flatmachines::__private::machine(&MACHINE, &COMPILED)
            }

            /// Runs the machine from its initial state with `input` and returns its output.
            ///
            /// # Errors
            /// What the run fails with (see [`::flatmachines::Error`]).
            pub async fn execute(
                rt: &::flatmachines::Runtime,
                input: ::flatmachines::__private::serde_json::Value,
            ) -> ::core::result::Result<::flatmachines::__private::serde_json::Value, ::flatmachines::Error> {
                let machine = machine()?;
                rt.run(&machine, input).await
            }

            #typed

            #enum_def

            impl State {
                #initial

                /// Every state, in YAML order.
                pub const ALL: &'static [State] = &[#(State::#idents),*];

                /// The state's name in the YAML.
                pub const fn name(self) -> &'static str {
                    #name_body
                }

                /// Whether the state has `type: final`.
                pub const fn is_final(self) -> bool {
                    #is_final_body
                }

                /// The state's position in the YAML (its index in [`State::ALL`] and in the
                /// IR).
                pub const fn index(self) -> usize {
                    #index_body
                }

                /// The state with YAML name `name`.
                pub fn from_name(name: &str) -> ::core::option::Option<State> {
                    #from_name_body
                }
            }

            impl ::core::fmt::Display for State {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.pad(self.name())
                }
            }

            impl ::core::str::FromStr for State {
                type Err = ::flatmachines::__private::UnknownState;

                fn from_str(s: &str) -> ::core::result::Result<Self, Self::Err> {
                    State::from_name(s).ok_or_else(|| ::flatmachines::__private::UnknownState::new(NAME, s))
                }
            }

            impl ::flatmachines::__private::serde::Serialize for State {
                fn serialize<S>(&self, serializer: S) -> ::core::result::Result<S::Ok, S::Error>
                where
                    S: ::flatmachines::__private::serde::Serializer,
                {
                    serializer.serialize_str(self.name())
                }
            }

            impl<'de> ::flatmachines::__private::serde::Deserialize<'de> for State {
                fn deserialize<D>(deserializer: D) -> ::core::result::Result<Self, D::Error>
                where
                    D: ::flatmachines::__private::serde::Deserializer<'de>,
                {
                    let name = <::flatmachines::__private::String as ::flatmachines::__private::serde::Deserialize>::deserialize(deserializer)?;
                    State::from_name(&name).ok_or_else(|| {
                        <D::Error as ::flatmachines::__private::serde::de::Error>::custom(
                            ::flatmachines::__private::UnknownState::new(NAME, &name),
                        )
                    })
                }
            }

            #typed_fns

            #transitions_mod

            #conditions_mod
        }
    }
}

/// Formats generated tokens as a file with prettyplease.
pub fn pretty(tokens: &TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}
