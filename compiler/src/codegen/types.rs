//! The typed `Input` and `Output` of a machine (rules in `docs/generated-code.md`).
//!
//! * `Input` has a field per `input.<name>` that the machine's `data.context` reads, which is the
//!   only place the run's input is visible. A field read only through bare paths
//!   (`code: input.code`) is a `Value`: there a missing key and null give the same null. A field
//!   a Jinja template reads (`{{ input.topic }}`) is an `Option<Value>`, because an undefined
//!   variable renders differently from `None`; so is every field when the context also keeps the
//!   whole `input` (`raw: input`), which would show the difference.
//! * `Output` has a field per key of the entry machine's final states' `output` maps. A key every
//!   final state outputs is required; others are `Option`. The type is what the YAML fixes: a
//!   Jinja template or a literal string renders a `String`, a literal boolean, integer or float
//!   stays one; a bare path, a map or a list is a `Value`; keys whose states disagree are `Value`.
//! * Both flatten other keys into `extra`.

use crate::check::templates::{Scope, Templates, bare_path};
use crate::diag::Diagnostics;
use crate::load::Project;
use crate::naming;
use crate::yaml::{Node, Value};
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

/// The type of a field as the YAML fixes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Value,
    String,
    Bool,
    I64,
    F64,
}

impl Ty {
    fn tokens(self) -> TokenStream {
        match self {
            Ty::Value => quote!(::flatmachines::__private::serde_json::Value),
            Ty::String => quote!(::flatmachines::__private::String),
            Ty::Bool => quote!(bool),
            Ty::I64 => quote!(i64),
            Ty::F64 => quote!(f64),
        }
    }

    /// What an `output` value renders to.
    fn of_output(node: &Node) -> Ty {
        match &node.value {
            Value::Str(s) if Templates::is_template(s) => Ty::String,
            // Python's `strip()`, which the runtime applies before the bare-path test, also
            // strips U+001C..U+001F.
            Value::Str(s)
                if bare_path(s.trim_matches(|c: char| {
                    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
                }))
                .is_some() =>
            {
                Ty::Value
            }
            Value::Str(_) => Ty::String,
            Value::Bool(_) => Ty::Bool,
            Value::Int(_) => Ty::I64,
            Value::Float(f) if f.is_finite() => Ty::F64,
            // Non-finite floats become null in JSON; maps and lists are rendered as a whole.
            Value::Float(_) | Value::Null | Value::Seq(_) | Value::Map(_) => Ty::Value,
        }
    }
}

/// A field of `Input` or `Output`.
struct Field {
    key: String,
    ty: Ty,
    optional: bool,
    doc: String,
}

/// An `Input` field being collected from the reads of `data.context`.
struct InputRead {
    key: String,
    in_template: bool,
}

/// The `input.<name>` keys `data.context` reads, in order of first read, whether a template
/// reads each, and whether the whole `input` is read.
fn input_reads(project: &Project) -> (Vec<InputRead>, bool) {
    let Some(context) = project.root().and_then(|m| m.doc.data.context.as_ref()) else {
        return (Vec::new(), false);
    };
    let scope = Scope {
        site: "data.context",
        vars: &["input"],
        empty: &[],
        prompt: false,
    };
    // The checks already reported problems here; only the paths matter.
    let mut scratch = Diagnostics::new();
    let reads = Templates::new().check_map(context, &scope, &project.sources, &mut scratch);
    let mut keys: Vec<InputRead> = Vec::new();
    let mut whole = false;
    for (path, node) in reads {
        let mut parts = path.split('.');
        if parts.next() != Some("input") {
            continue;
        }
        let in_template = matches!(&node.value, Value::Str(s) if Templates::is_template(s));
        let Some(key) = parts.next() else {
            whole = true;
            continue;
        };
        match keys.iter_mut().find(|k| k.key == key) {
            Some(k) => k.in_template |= in_template,
            None => keys.push(InputRead {
                key: key.to_string(),
                in_template,
            }),
        }
    }
    (keys, whole)
}

fn input_fields(project: &Project) -> Vec<Field> {
    let (reads, whole) = input_reads(project);
    reads
        .into_iter()
        .map(|r| {
            let optional = r.in_template || whole;
            let how = if r.in_template {
                "a template in `data.context` reads it"
            } else if whole {
                "`data.context` keeps the whole `input`"
            } else {
                "read by `data.context` as a bare path"
            };
            let doc = if optional {
                format!(" `input.{}` ({how}); `None` leaves the key out.", r.key)
            } else {
                format!(" `input.{}` ({how}; null is the same as missing).", r.key)
            };
            Field {
                key: r.key,
                ty: Ty::Value,
                optional,
                doc,
            }
        })
        .collect()
}

fn output_fields(project: &Project) -> Vec<Field> {
    let Some(root) = project.root() else {
        return Vec::new();
    };
    let finals: Vec<_> = root
        .doc
        .data
        .states
        .iter()
        .filter(|s| s.is_final())
        .collect();
    // (key, type, states writing it), in order of first appearance.
    let mut keys: Vec<(String, Ty, Vec<&str>)> = Vec::new();
    for s in &finals {
        let Some(entries) = s.output.as_ref().and_then(Node::as_map) else {
            continue;
        };
        for (k, v) in entries {
            let Some(key) = k.key_str() else { continue };
            let ty = Ty::of_output(v);
            match keys.iter_mut().find(|(existing, ..)| *existing == key) {
                Some((_, t, states)) => {
                    if *t != ty {
                        *t = Ty::Value;
                    }
                    if !states.contains(&s.name.value.as_str()) {
                        states.push(&s.name.value);
                    }
                }
                None => keys.push((key, ty, vec![&s.name.value])),
            }
        }
    }
    keys.into_iter()
        .map(|(key, ty, states)| {
            let optional = states.len() < finals.len();
            let list = states
                .iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let doc = if optional {
                format!(" `{key}`, output by final state(s) {list}; `None` when the run ended elsewhere.")
            } else {
                format!(" `{key}`, output by every final state.")
            };
            Field {
                key,
                ty,
                optional,
                doc,
            }
        })
        .collect()
}

/// The field declarations, with `extra` last.
fn fields_tokens(fields: &[Field], skip_none: TokenStream) -> TokenStream {
    let names = naming::field_names(fields.iter().map(|f| f.key.as_str()), &["extra"]);
    let decls = fields.iter().zip(&names).map(|(f, name)| {
        let ident = format_ident!("{}", name);
        let ty = f.ty.tokens();
        let doc = &f.doc;
        let rename = (*name != f.key).then(|| {
            let key = Literal::string(&f.key);
            quote!(#[serde(rename = #key)])
        });
        if f.optional {
            quote! {
                #[doc = #doc]
                #rename
                #skip_none
                pub #ident: ::core::option::Option<#ty>,
            }
        } else {
            quote! {
                #[doc = #doc]
                #rename
                pub #ident: #ty,
            }
        }
    });
    quote! {
        #(#decls)*
        /// Other keys, as they are.
        #[serde(flatten)]
        pub extra: ::flatmachines::__private::serde_json::Map<
            ::flatmachines::__private::String,
            ::flatmachines::__private::serde_json::Value,
        >,
    }
}

/// `Input`, `Output` and `execute_typed`.
pub(super) fn typed(project: &Project, machine: &str) -> TokenStream {
    let input = fields_tokens(
        &input_fields(project),
        quote!(#[serde(skip_serializing_if = "::core::option::Option::is_none")]),
    );
    let output = fields_tokens(
        &output_fields(project),
        quote!(#[serde(default, skip_serializing_if = "::core::option::Option::is_none")]),
    );
    let input_doc =
        format!(" The input of `{machine}`: the `input.*` keys its `data.context` reads.");
    let output_doc = format!(" The output of `{machine}`: the keys its final states output.");
    // A machine with a `wait_for` state can park: its typed entry points say so in their type.
    let parks = project
        .root()
        .is_some_and(|m| m.doc.data.states.iter().any(|s| s.wait_for.is_some()));
    let execute_typed = if parks {
        quote! {
            /// Runs the machine from its initial state with a typed input: the output when it
            /// finishes, or where it waits when a `wait_for` state parks it.
            ///
            /// # Errors
            /// As [`execute`], or [`::flatmachines::Error::Conversion`] when the output does
            /// not fit [`Output`].
            pub async fn execute_typed(
                rt: &::flatmachines::Runtime,
                input: Input,
            ) -> ::core::result::Result<::flatmachines::Outcome<Output>, ::flatmachines::Error> {
                ::flatmachines::__private::execute_outcome(rt, machine(), input, ::core::option::Option::None).await
            }

            /// Resumes a parked execution (after a signal on its channel, or to find it still
            /// waiting).
            ///
            /// # Errors
            /// As [`execute_typed`].
            pub async fn resume_typed(
                rt: &::flatmachines::Runtime,
                execution_id: &str,
            ) -> ::core::result::Result<::flatmachines::Outcome<Output>, ::flatmachines::Error> {
                ::flatmachines::__private::execute_outcome(
                    rt,
                    machine(),
                    Input::default(),
                    ::core::option::Option::Some(::std::string::ToString::to_string(execution_id)),
                )
                .await
            }
        }
    } else {
        quote! {
            /// Runs the machine from its initial state with a typed input.
            ///
            /// # Errors
            /// As [`execute`], or [`::flatmachines::Error::Conversion`] when the output does not
            /// fit [`Output`] (e.g. the run stopped before a final state, missing a required key).
            pub async fn execute_typed(
                rt: &::flatmachines::Runtime,
                input: Input,
            ) -> ::core::result::Result<Output, ::flatmachines::Error> {
                ::flatmachines::__private::execute_typed(rt, machine(), input).await
            }
        }
    };
    quote! {
        #[doc = #input_doc]
        #[doc = " Build it with `..Default::default()` for the fields you leave out."]
        #[derive(
            Clone, Debug, Default, PartialEq,
            ::flatmachines::__private::serde::Serialize,
            ::flatmachines::__private::serde::Deserialize,
        )]
        #[serde(crate = "::flatmachines::__private::serde", default)]
        pub struct Input {
            #input
        }

        #[doc = #output_doc]
        #[derive(
            Clone, Debug, PartialEq,
            ::flatmachines::__private::serde::Serialize,
            ::flatmachines::__private::serde::Deserialize,
        )]
        #[serde(crate = "::flatmachines::__private::serde")]
        pub struct Output {
            #output
        }

        #execute_typed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Input as LoadInput, LoadOptions, load};

    fn project(yaml: &str) -> Project {
        load(
            LoadInput::Inline {
                text: yaml.to_string(),
                path: std::path::Path::new("/nowhere/m.rs"),
                origin: (1, 1),
            },
            &LoadOptions::default(),
        )
    }

    const MACHINE: &str = r#"
spec: flatmachine
data:
  name: typed
  context:
    code: input.code
    topic: "{{ input.topic }}"
    both: input.mixed
    again: "{{ input.mixed | default('x') }}"
    nested: {deep: input.deep.er}
    list: ["input.listed", 3]
    other: context.x
  states:
    start: {type: initial, transitions: [{condition: "context.ok", to: done}, {to: failed}]}
    done:
      type: final
      output: {verdict: "{{ context.v }}", score: context.score, ok: true, n: 3, f: 1.5, lit: hi, type: x}
    failed:
      type: final
      output: {verdict: rejected, error: context.last_error, ok: "{{ context.ok }}"}
"#;

    fn summary(fields: &[Field]) -> Vec<(String, Ty, bool)> {
        fields
            .iter()
            .map(|f| (f.key.clone(), f.ty, f.optional))
            .collect()
    }

    #[test]
    fn input_fields_follow_how_the_context_reads_them() {
        let p = project(MACHINE);
        assert_eq!(
            summary(&input_fields(&p)),
            [
                ("code".into(), Ty::Value, false),
                ("topic".into(), Ty::Value, true),
                ("mixed".into(), Ty::Value, true),
                ("deep".into(), Ty::Value, false),
                ("listed".into(), Ty::Value, false),
            ]
        );
        let whole = project(&MACHINE.replace("other: context.x", "raw: input"));
        assert!(input_fields(&whole).iter().all(|f| f.optional));
    }

    #[test]
    fn output_fields_are_typed_by_the_yaml_and_required_when_every_final_state_has_them() {
        let p = project(MACHINE);
        assert_eq!(
            summary(&output_fields(&p)),
            [
                ("verdict".into(), Ty::String, false),
                ("score".into(), Ty::Value, true),
                ("ok".into(), Ty::Value, false),
                ("n".into(), Ty::I64, true),
                ("f".into(), Ty::F64, true),
                ("lit".into(), Ty::String, true),
                ("type".into(), Ty::String, true),
                ("error".into(), Ty::Value, true),
            ]
        );
    }

    #[test]
    fn no_context_and_no_final_output_give_only_extra() {
        let p = project(
            "spec: flatmachine\ndata:\n  name: bare\n  states:\n    start: {type: initial, transitions: [{to: done}]}\n    done: {type: final}\n",
        );
        assert!(input_fields(&p).is_empty());
        assert!(output_fields(&p).is_empty());
        let code = typed(&p, "bare").to_string();
        assert!(code.contains("pub extra"), "{code}");
    }

    #[test]
    fn renamed_fields_keep_their_yaml_key() {
        let p = project(MACHINE);
        let code = typed(&p, "typed").to_string();
        assert!(code.contains("rename = \"type\""), "{code}");
        assert!(code.contains("pub type_ :"), "{code}");
    }
}
