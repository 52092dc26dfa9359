//! The spanned model of `spec: flatagent` documents and of model profiles (`config.md` §10).

use super::read::{Fields, key, wrong_type};
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::source::{FileId, Span, Spanned};
use crate::yaml::{Node, Value};

/// A flatagent document.
#[derive(Clone, Debug)]
pub struct AgentDoc {
    /// The file the document is in (an inline agent's machine file).
    pub file: FileId,
    /// The whole document.
    pub root: Node,
    /// `spec`.
    pub spec: Option<Spanned<String>>,
    /// `spec_version`.
    pub spec_version: Option<Spanned<String>>,
    /// `data.name`.
    pub name: Option<Spanned<String>>,
    /// `data.model`.
    pub model: Option<ModelRef>,
    /// `data.system` prompt template.
    pub system: Option<Node>,
    /// `data.user` prompt template.
    pub user: Option<Node>,
    /// `data.instruction_suffix` template.
    pub instruction_suffix: Option<Node>,
    /// `data.output` schema.
    pub output: Option<OutputSchema>,
    /// `data.tools`.
    pub tools: Option<Node>,
    /// `data.mcp`.
    pub mcp: Option<Node>,
    /// `metadata`.
    pub metadata: Option<Node>,
}

/// `data.model` of an agent.
#[derive(Clone, Debug)]
pub enum ModelRef {
    /// `model: fast`: a profile name.
    Profile(Spanned<String>),
    /// `model: {…}`, possibly with `profile:` and overrides.
    Config {
        /// `profile`, if given.
        profile: Option<Spanned<String>>,
        /// `name`, if given.
        name: Option<Spanned<String>>,
        /// The whole map.
        node: Node,
    },
}

/// `data.output` of an agent: field name → definition.
#[derive(Clone, Debug)]
pub struct OutputSchema {
    /// Where the schema is.
    pub span: Span,
    /// The fields, in order.
    pub fields: Vec<(Spanned<String>, Node)>,
}

impl OutputSchema {
    /// Whether the schema names field `name`.
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(k, _)| k.value == name)
    }
}

const ENVELOPE: &[&str] = &["spec", "spec_version", "data", "metadata"];
const DATA: &[&str] = &[
    "name",
    "model",
    "system",
    "user",
    "instruction_suffix",
    "output",
    "tools",
    "mcp",
];
const OUTPUT_FIELD: &[&str] = &[
    "type",
    "description",
    "enum",
    "required",
    "items",
    "properties",
];
const OUTPUT_TYPES: &[&str] = &["str", "int", "float", "bool", "json", "list", "object"];

/// Reads a flatagent document.
pub fn parse_agent(root: &Node, file: FileId, diags: &mut Diagnostics) -> AgentDoc {
    let mut doc = AgentDoc {
        file,
        root: root.clone(),
        spec: None,
        spec_version: None,
        name: None,
        model: None,
        system: None,
        user: None,
        instruction_suffix: None,
        output: None,
        tools: None,
        mcp: None,
        metadata: None,
    };
    let Some(f) = Fields::of(root, "an agent document", ENVELOPE, diags) else {
        return doc;
    };
    doc.spec = f.string("spec", "the agent document", diags);
    doc.spec_version = f.string("spec_version", "the agent document", diags);
    doc.metadata = f.node("metadata").cloned();
    let Some(data) = f.node("data") else {
        diags.push(
            Diagnostic::new(
                Code::MissingData,
                root.span,
                "the agent has no `data` section",
            )
            .help("put `model`, `system` and `user` under a top-level `data:` key"),
        );
        return doc;
    };
    let Some(d) = Fields::of(data, "agent `data`", DATA, diags) else {
        return doc;
    };
    doc.name = d.string("name", "agent `data`", diags);
    doc.model = d.node("model").and_then(|m| match &m.value {
        Value::Str(s) => Some(ModelRef::Profile(Spanned::new(s.clone(), m.span))),
        // Unknown model keys are forwarded to the LLM call, so they are not checked here.
        Value::Map(_) => Some(ModelRef::Config {
            profile: m
                .get("profile")
                .and_then(|p| p.as_str().map(|s| Spanned::new(s.to_string(), p.span))),
            name: m
                .get("name")
                .and_then(|p| p.as_str().map(|s| Spanned::new(s.to_string(), p.span))),
            node: m.clone(),
        }),
        _ => {
            diags.push(wrong_type(m, "`model`", "a profile name or a model map"));
            None
        }
    });
    doc.system = d.node("system").cloned();
    doc.user = d.node("user").cloned();
    doc.instruction_suffix = d.node("instruction_suffix").cloned();
    doc.tools = d.node("tools").cloned();
    doc.mcp = d.node("mcp").cloned();
    doc.output = d.node("output").and_then(|o| parse_output(o, diags));
    doc
}

fn parse_output(o: &Node, diags: &mut Diagnostics) -> Option<OutputSchema> {
    let Some(entries) = o.as_map() else {
        diags.push(wrong_type(
            o,
            "the agent's `output` schema",
            "a map of field name to definition",
        ));
        return None;
    };
    let fields = entries
        .iter()
        .map(|(k, v)| {
            let name = key(k);
            if v.as_map().is_some() {
                let what = format!("output field `{}`", name.value);
                if let Some(f) = Fields::of(v, &what, OUTPUT_FIELD, diags)
                    && let Some(t) = f.string("type", &what, diags)
                    && !OUTPUT_TYPES.contains(&t.value.as_str())
                {
                    diags.push(
                        Diagnostic::new(
                            Code::UnknownField,
                            t.span,
                            format!("unknown output type `{}` in {what}", t.value),
                        )
                        .help(
                            crate::suggest::help(&t.value, OUTPUT_TYPES.iter().copied())
                                .unwrap_or_else(|| {
                                    format!("output types are: {}", OUTPUT_TYPES.join(", "))
                                }),
                        ),
                    );
                }
            }
            (name, v.clone())
        })
        .collect();
    Some(OutputSchema {
        span: o.span,
        fields,
    })
}

/// A model profiles document (`profiles.yml`, `spec: flatprofiles`; the envelope is optional).
#[derive(Clone, Debug)]
pub struct ProfilesDoc {
    /// The file.
    pub file: FileId,
    /// Profile names, in order.
    pub profiles: Vec<Spanned<String>>,
    /// `default`.
    pub default: Option<Spanned<String>>,
    /// `override`.
    pub override_profile: Option<Spanned<String>>,
}

impl ProfilesDoc {
    /// Whether profile `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.profiles.iter().any(|p| p.value == name)
    }
}

/// Reads a profiles document.
pub fn parse_profiles(root: &Node, file: FileId, diags: &mut Diagnostics) -> ProfilesDoc {
    let mut doc = ProfilesDoc {
        file,
        profiles: Vec::new(),
        default: None,
        override_profile: None,
    };
    let data = match root.get("spec") {
        Some(spec) => {
            if !matches!(spec.as_str(), Some("flatprofiles" | "flatprofile")) {
                diags.push(
                    Diagnostic::new(
                        Code::WrongSpec,
                        spec.span,
                        format!(
                            "a profiles file must have `spec: flatprofiles`, found `{}`",
                            spec.key_str().unwrap_or_default()
                        ),
                    )
                    .help("write `spec: flatprofiles`"),
                );
            }
            match root.get("data") {
                Some(d) => d,
                None => return doc,
            }
        }
        None => root,
    };
    let Some(f) = Fields::of(
        data,
        "the profiles `data`",
        &["model_profiles", "default", "override"],
        diags,
    ) else {
        return doc;
    };
    if let Some(p) = f.node("model_profiles") {
        match p.as_map() {
            Some(entries) => doc.profiles = entries.iter().map(|(k, _)| key(k)).collect(),
            None => diags.push(wrong_type(
                p,
                "`model_profiles`",
                "a map of profile name to model",
            )),
        }
    }
    doc.default = f.string("default", "the profiles `data`", diags);
    doc.override_profile = f.string("override", "the profiles `data`", diags);
    for name in doc.default.iter().chain(doc.override_profile.iter()) {
        if !doc.has(&name.value) {
            diags.push(
                Diagnostic::new(
                    Code::UnknownProfile,
                    name.span,
                    format!(
                        "profile `{}` is not defined in `model_profiles`",
                        name.value
                    ),
                )
                .help_opt(crate::suggest::help(
                    &name.value,
                    doc.profiles.iter().map(|p| p.value.as_str()),
                )),
            );
        }
    }
    doc
}
