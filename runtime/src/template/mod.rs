//! Value templates and prompt templates, rendered exactly like the reference (Jinja2 inside
//! flatmachines 2.6.0).
//!
//! ```
//! use flatmachines::unstable::template::{Templates, Vars};
//! use serde_json::json;
//!
//! let templates = Templates::new();
//! let context = json!({"n": 5, "tags": ["a", "b"]});
//! let vars = Vars::new().with("context", &context).with("input", &context);
//!
//! // A bare path keeps the native value…
//! assert_eq!(templates.render_value(&json!("context.n"), &vars).unwrap(), json!(5));
//! // …a Jinja template always yields a string, lists and maps printed as JSON.
//! assert_eq!(templates.render_value(&json!("{{ context.n + 1 }}"), &vars).unwrap(), json!("6"));
//! assert_eq!(
//!     templates.render_value(&json!("{{ context.tags }}"), &vars).unwrap(),
//!     json!(r#"["a", "b"]"#)
//! );
//! // Agent prompts use plain Jinja: Python repr.
//! let prompts = Templates::for_prompts();
//! assert_eq!(prompts.render_str("{{ context.tags }}", &vars).unwrap(), "['a', 'b']");
//! ```
//!
//! The rules are those of `templates-and-expressions.md` Part A: [`Templates::render_value`]
//! (A.1), [`Templates::render_map`] (A.2), bare-path walks (A.3) and the Jinja environment
//! (A.5).
//!
//! Performance: templates are compiled once per [`Templates`] (cached by source text);
//! bare paths never reach the template engine. A value rendered again and again (a state's
//! `input` at every step) is best [`Prepared`] once: its paths are split, its variable usage is
//! scanned, and the `{{ path }}` / `{{ path | int + 1 }}` shapes are evaluated straight on the
//! JSON when the outcome is certain (the executor prepares every state this way). minijinja only accepts `'static` values, so
//! a render copies what the template can read from the borrowed [`Vars`] into template
//! values: only the variables named in the template text, and when a variable only appears
//! as `name.key…`, only those top-level keys (`{{ context.topic }}` copies one string however
//! large the context is). A template that prints, iterates or subscripts a whole variable
//! copies it whole.
//!
//! Divergences from the reference (listed in `docs/compatibility.md`):
//!
//! * `a.b` on a map is key lookup. Jinja2 tries Python attributes first, so in the reference
//!   `{{ output.items }}` prints `<built-in method items …>` and keys named like dict methods
//!   are unreachable with dot syntax; here they return the value.
//! * `{{ context.machine }}` prints JSON like any map (the reference's read-only view prints
//!   Python repr).
//! * In a comparison chain (`a < b < c`) every operand is evaluated, even after a false
//!   comparison.
//! * Python iterators print as what they hold: `{{ lst | reverse }}`, `{{ d | items }}` give
//!   `[…]` where Jinja2 prints `<list_reverseiterator …>` or a generator (the compiler warns,
//!   `FM0313`).
//! * Lists and dicts cannot be modified: `lst.append(x)`, `d.update(…)` and the other
//!   in-place methods fail (the compiler warns, `FM0311`); macros have no `varargs`/`kwargs`.
//! * Error messages of syntax errors and of type errors raised by operators are minijinja's
//!   wording; the exception class ([`TemplateError::kind`]) matches.
//! * Renders are bounded: [`FUEL_LIMIT`] instructions and [`MAX_OUTPUT`] printed bytes.
//!
//! `a % b`, `a ~ b` and the ordering comparisons are rewritten when a template is loaded into
//! calls that compute them like Python (printf-style formatting, Python `str()` of floats,
//! `TypeError` for unrelated types); see `rewrite.rs`.
//! `tests/fixtures/templates/cases.json` records how Jinja2 renders several hundred templates
//! and `runtime/tests/template_compat.rs` holds us to it.

mod env;
mod error;
mod prepared;
mod pycmp;
mod pyfmt;
mod pyjson;
mod pyrepr;
mod rewrite;
mod value;

#[cfg(test)]
mod tests;

use minijinja::Environment;
use serde_json::Value as Json;

pub use crate::py::json::dumps;
pub use crate::py::{py_repr, py_str};
pub use env::{FUEL_LIMIT, MAX_OUTPUT};
pub use error::TemplateError;
pub use prepared::Prepared;

/// The template machinery of one machine (or one agent): a Jinja environment configured like
/// the reference's, and a cache of compiled templates keyed by their source text, so a
/// template is parsed once however often it is rendered.
///
/// `Templates` is `Send + Sync`; rendering takes `&self` and may run on many threads at once.
/// The cache grows with the number of distinct template texts, which for machine and agent
/// documents is bounded by the documents themselves.
pub struct Templates {
    env: Environment<'static>,
}

/// How a template uses one variable, so a render copies only what the template can reach.
#[derive(Clone, Debug, PartialEq)]
enum Use {
    /// The variable's name appears other than as `name.key` (printed, filtered, iterated,
    /// subscripted, assigned…): convert it whole.
    Whole,
    /// Every appearance is `name.key…`: a map holding just these keys behaves the same.
    Keys(Vec<Box<str>>),
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new()
    }
}

impl Templates {
    /// The machine environment for value templates: `{{ }}` results that are lists or maps
    /// print as JSON, and the `fromjson` filter is available.
    pub fn new() -> Self {
        Templates {
            env: env::build(true),
        }
    }

    /// The agent-prompt environment: plain Jinja, so lists and maps print as Python repr
    /// (`['a', 'b']`, `{'k': 1}`), and there is no `fromjson`.
    pub fn for_prompts() -> Self {
        Templates {
            env: env::build(false),
        }
    }

    /// Renders one template value (A.1).
    ///
    /// * Not a string → returned unchanged (maps and lists are not looked into).
    /// * A string without `{{` / `{%` that is a bare path once trimmed
    ///   (`context.a.b`, `output`, `input.x`) → the value found by walking the path, `null`
    ///   when any step is missing or not a map.
    /// * Any other string without `{{` / `{%` → returned unchanged, whitespace included.
    /// * Otherwise the untrimmed string is rendered as Jinja: the result is always a string.
    pub fn render_value(&self, v: &Json, vars: &Vars<'_>) -> Result<Json, TemplateError> {
        let Json::String(s) = v else {
            return Ok(v.clone());
        };
        if !is_template(s) {
            // Python's `str.strip()` also strips U+001C..U+001F, which Rust's `trim` keeps.
            let trimmed = s.trim_matches(env::is_py_space);
            return Ok(match flatmachines_ir::bare_path(trimmed) {
                Some(path) => walk(path, vars).cloned().unwrap_or(Json::Null),
                None => v.clone(),
            });
        }
        self.render_str(s, vars).map(Json::String)
    }

    /// Renders a mapping (A.2): keys kept in order and never rendered; strings go through
    /// [`render_value`](Self::render_value), maps recursively, and in lists only the string
    /// elements are rendered (maps and lists inside lists are copied as they are, like the
    /// reference). Given a list instead of a map, applies the list rule; given anything else,
    /// [`render_value`](Self::render_value).
    pub fn render_map(&self, m: &Json, vars: &Vars<'_>) -> Result<Json, TemplateError> {
        match m {
            Json::Object(map) => {
                let mut out = serde_json::Map::with_capacity(map.len());
                for (k, v) in map {
                    let rendered = match v {
                        Json::Object(_) | Json::Array(_) => self.render_map(v, vars)?,
                        _ => self.render_value(v, vars)?,
                    };
                    out.insert(k.clone(), rendered);
                }
                Ok(Json::Object(out))
            }
            Json::Array(items) => items
                .iter()
                .map(|item| match item {
                    Json::String(_) => self.render_value(item, vars),
                    other => Ok(other.clone()),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
            _ => self.render_value(m, vars),
        }
    }

    /// Parses `template` into the cache without rendering it, so a syntax error surfaces
    /// before the first render (e.g. when a machine is loaded). Text without `{` needs no
    /// parsing and always succeeds.
    pub fn compile(&self, template: &str) -> Result<(), TemplateError> {
        if !template.contains('{') {
            return Ok(());
        }
        env::with_loading(|| self.env.get_template(template))
            .map(drop)
            .map_err(|e| error::translate(&e, &|_| None))
    }

    /// Renders `template` as Jinja, whatever it contains, and returns the text (used for
    /// agent prompts). One trailing newline is dropped and `\r\n` / `\r` become `\n`, as
    /// Jinja2 does.
    pub fn render_str(&self, template: &str, vars: &Vars<'_>) -> Result<String, TemplateError> {
        if !template.contains('{') {
            // No tags, expressions or comments: Jinja2 only normalises newlines and drops one
            // trailing newline.
            let text = env::normalize_newlines(template);
            let text = text.strip_suffix('\n').unwrap_or(&text);
            return Ok(text.to_owned());
        }
        self.render_source(template, vars, &|name| usage(template, name))
    }

    /// Renders `template` (which contains `{`) with the engine; `uses` tells how it uses a
    /// variable ([`usage`], possibly computed in advance).
    fn render_source(
        &self,
        template: &str,
        vars: &Vars<'_>,
        uses: &dyn Fn(&str) -> Option<Use>,
    ) -> Result<String, TemplateError> {
        let tmpl = env::with_loading(|| self.env.get_template(template))
            .map_err(|e| error::translate(&e, &|_| None))?;
        let ctx = build_context(uses, vars);
        env::with_output_budget(|| tmpl.render(&ctx)).map_err(|e| {
            error::translate(&e, &|expr| {
                self.env
                    .compile_expression(expr)
                    .ok()?
                    .eval(&ctx)
                    .ok()
                    .filter(|v| !v.is_undefined())
            })
        })
    }
}

/// Whether A.1 renders `s` with Jinja (it contains `{{` or `{%`; `{#` alone does not count).
fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Dict methods: `context.items()` reads like a key, but needs the whole map.
const DICT_METHODS: &[&str] = &[
    "items",
    "keys",
    "values",
    "get",
    "copy",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "clear",
    "fromkeys",
];

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// How `source` uses the variable `name`, found by scanning the text rather than the syntax
/// tree: every appearance of the word counts (also in plain text and string literals, which
/// only makes the copy larger), so no construct can reach a variable the scan missed, and
/// `{% set name = … %}` simply makes the use [`Use::Whole`]. `None`: never mentioned.
fn usage(source: &str, name: &str) -> Option<Use> {
    let bytes = source.as_bytes();
    let mut keys: Vec<Box<str>> = Vec::new();
    let mut seen = false;
    for (pos, _) in source.match_indices(name) {
        let end = pos + name.len();
        if (pos > 0 && is_ident_char(bytes[pos - 1]))
            || bytes.get(end).is_some_and(|b| is_ident_char(*b))
        {
            continue;
        }
        seen = true;
        let rest = source[end..].trim_start();
        let key = rest.strip_prefix('.').map(|r| {
            let r = r.trim_start();
            let len = r.bytes().take_while(|b| is_ident_char(*b)).count();
            &r[..len]
        });
        match key {
            Some(k)
                if k.as_bytes()
                    .first()
                    .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                    && !k.starts_with('_')
                    && !DICT_METHODS.contains(&k) =>
            {
                if !keys.iter().any(|x| &**x == k) {
                    keys.push(k.into());
                }
            }
            _ => return Some(Use::Whole),
        }
    }
    seen.then_some(Use::Keys(keys))
}

/// Converts the variables a template reads (`uses`) into the root map of a render.
fn build_context(uses: &dyn Fn(&str) -> Option<Use>, vars: &Vars<'_>) -> minijinja::Value {
    // `input` is usually the context itself: convert a shared value once.
    let mut whole: Vec<(*const Json, minijinja::Value)> = Vec::new();
    let mut convert_whole = |json: &Json| {
        let ptr = json as *const Json;
        if let Some((_, v)) = whole.iter().find(|(p, _)| *p == ptr) {
            return v.clone();
        }
        let v = value::to_value(json);
        whole.push((ptr, v.clone()));
        v
    };
    let mut entries = Vec::with_capacity(vars.len());
    for (name, json) in vars.iter() {
        let converted = match (uses(name), json) {
            (None, _) => continue,
            (Some(Use::Keys(keys)), Json::Object(map)) => value::to_partial_value(map, &keys),
            (Some(_), json) => convert_whole(json),
        };
        entries.push((minijinja::Value::from(name), converted));
    }
    minijinja::Value::from_object(value::PyDict::new(entries))
}

/// The bare-path walk (A.3): from the variables, follow each dot segment through maps; a
/// missing key or a non-map on the way gives `None` (null).
fn walk<'a>(path: &str, vars: &Vars<'a>) -> Option<&'a Json> {
    let mut segments = path.split('.');
    let mut cur = vars.get(segments.next()?)?;
    for segment in segments {
        cur = cur.as_object()?.get(segment)?;
    }
    Some(cur)
}

/// [`walk`] over a path already split into segments.
fn walk_segments<'a>(segments: &[Box<str>], vars: &Vars<'a>) -> Option<&'a Json> {
    let (first, rest) = segments.split_first()?;
    let mut cur = vars.get(first)?;
    for segment in rest {
        cur = cur.as_object()?.get(&**segment)?;
    }
    Some(cur)
}

/// The variables of one render, borrowed: `context`, `input`, `output`, a foreach item name…
///
/// Building one costs nothing (up to four variables are stored inline); setting a name twice
/// keeps the last value.
///
/// ```
/// # use flatmachines::unstable::template::Vars;
/// # use serde_json::json;
/// let context = json!({"a": 1});
/// let vars = Vars::new().with("context", &context).with("input", &context);
/// assert_eq!(vars.get("input"), Some(&context));
/// assert_eq!(vars.get("output"), None);
/// ```
#[derive(Clone, Default)]
pub struct Vars<'a> {
    inline: [Option<(&'a str, &'a Json)>; 4],
    more: Vec<(&'a str, &'a Json)>,
}

impl<'a> Vars<'a> {
    /// No variables.
    pub fn new() -> Self {
        Vars::default()
    }

    /// Adds (or replaces) the variable `name`.
    #[must_use]
    pub fn with(mut self, name: &'a str, value: &'a Json) -> Self {
        self.set(name, value);
        self
    }

    /// Adds (or replaces) the variable `name`.
    pub fn set(&mut self, name: &'a str, value: &'a Json) {
        for (n, v) in self.inline.iter_mut().flatten().chain(self.more.iter_mut()) {
            if *n == name {
                *v = value;
                return;
            }
        }
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some((name, value)),
            None => self.more.push((name, value)),
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&'a Json> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The variables in the order they were first set.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a Json)> + '_ {
        self.inline
            .iter()
            .flatten()
            .copied()
            .chain(self.more.iter().copied())
    }

    /// How many variables are set.
    pub fn len(&self) -> usize {
        self.inline.iter().flatten().count() + self.more.len()
    }

    /// Whether no variable is set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for Vars<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> FromIterator<(&'a str, &'a Json)> for Vars<'a> {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a Json)>>(iter: I) -> Self {
        let mut vars = Vars::new();
        for (name, value) in iter {
            vars.set(name, value);
        }
        vars
    }
}
