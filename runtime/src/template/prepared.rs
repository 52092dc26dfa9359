//! Template values classified once, when a machine is loaded, instead of at every render.
//!
//! A state's `input`, `output_to_context` and `output` are rendered at every step with the same
//! text. [`Templates::render_value`] and [`Templates::render_map`] decide at each call whether a
//! string is a bare path, plain text or Jinja, parse the path, look the template up by its text
//! and scan it for the variables it reads. [`Prepared`] does all of that once; rendering it
//! gives exactly what the unprepared functions give for the same value.
//!
//! Templates of the form `{{ path }}`, `{{ path | int }}` and either followed by `+ N` / `- N`
//! (the counters of loop machines) are evaluated directly on the JSON when the values met are
//! ones whose Jinja result is certain (strings, integers, booleans, null, no overflow); anything
//! else — a missing key, a float, a list — renders through the Jinja engine, so the result,
//! errors included, is always the engine's. `tests.rs` compares both on generated templates.

use super::env::{int_filter_of_str, is_py_space};
use super::{TemplateError, Templates, Use, Vars, is_template, usage, walk_segments};
use serde_json::Value as Json;

/// A template value (A.1) or mapping (A.2) prepared once to be rendered many times with
/// [`Templates::render_prepared`], which gives exactly what [`Templates::render_value`] (for
/// [`Prepared::value`]) or [`Templates::render_map`] (for [`Prepared::map`]) give on the same
/// variables, without classifying or scanning the text again.
///
/// ```
/// use flatmachines::unstable::template::{Prepared, Templates, Vars};
/// use serde_json::json;
///
/// let templates = Templates::new();
/// let input = Prepared::map(&json!({"n": "{{ context.n | int + 1 }}", "who": "context.name"}));
/// let context = json!({"n": "41", "name": "Ada"});
/// let vars = Vars::new().with("context", &context);
/// assert_eq!(
///     templates.render_prepared(&input, &vars).unwrap(),
///     json!({"n": "42", "who": "Ada"})
/// );
/// ```
#[derive(Debug)]
pub struct Prepared(Kind);

#[derive(Debug)]
enum Kind {
    /// Rendering returns a copy: not a string, or a string that is neither a path nor Jinja.
    Literal(Json),
    /// A bare path (A.3), split into segments.
    Path(Box<[Box<str>]>),
    /// A Jinja template.
    Jinja(Box<JinjaPlan>),
    /// A mapping rendered value by value, keys kept in order (A.2).
    Map(Vec<(String, Prepared)>),
    /// A list under A.2: string elements rendered, the others copied.
    List(Vec<Prepared>),
}

/// What a Jinja template needs at render time, computed once.
#[derive(Debug)]
pub(crate) struct JinjaPlan {
    source: Box<str>,
    /// How the template uses the usual variables (`usage` of the parent module), so a render
    /// does not scan the text again. Other names are scanned at render time.
    uses: [(&'static str, Option<Use>); 3],
    fast: Option<FastExpr>,
}

/// `{{ path [| int] [(+|-) N] }}`.
#[derive(Debug, PartialEq)]
struct FastExpr {
    path: Box<[Box<str>]>,
    int_filter: bool,
    add: Option<i64>,
}

impl Prepared {
    /// Prepares a template value with the rules of [`Templates::render_value`]. A Jinja syntax
    /// error is reported when rendering, as without preparing (in a machine it is a state
    /// failure that `on_error` may handle); [`Templates::compile`] reports it at once.
    pub fn value(v: &Json) -> Prepared {
        let Json::String(s) = v else {
            return Prepared(Kind::Literal(v.clone()));
        };
        if !is_template(s) {
            let trimmed = s.trim_matches(is_py_space);
            return match flatmachines_ir::bare_path(trimmed) {
                Some(path) => Prepared(Kind::Path(split(path))),
                None => Prepared(Kind::Literal(v.clone())),
            };
        }
        Prepared(Kind::Jinja(Box::new(JinjaPlan {
            uses: ["context", "input", "output"].map(|name| (name, usage(s, name))),
            fast: FastExpr::parse(s),
            source: s.as_str().into(),
        })))
    }

    /// Prepares a mapping with the rules of [`Templates::render_map`].
    pub fn map(m: &Json) -> Prepared {
        match m {
            Json::Object(map) => Prepared(Kind::Map(
                map.iter()
                    .map(|(k, v)| {
                        let p = match v {
                            Json::Object(_) | Json::Array(_) => Prepared::map(v),
                            _ => Prepared::value(v),
                        };
                        (k.clone(), p)
                    })
                    .collect(),
            )),
            Json::Array(items) => Prepared(Kind::List(
                items
                    .iter()
                    .map(|item| match item {
                        Json::String(_) => Prepared::value(item),
                        other => Prepared(Kind::Literal(other.clone())),
                    })
                    .collect(),
            )),
            _ => Prepared::value(m),
        }
    }
}

impl Templates {
    /// Renders a prepared value: the same result as the unprepared function it was prepared
    /// for, on the same variables.
    pub fn render_prepared(&self, p: &Prepared, vars: &Vars<'_>) -> Result<Json, TemplateError> {
        match &p.0 {
            Kind::Literal(v) => Ok(v.clone()),
            Kind::Path(segments) => {
                Ok(walk_segments(segments, vars).cloned().unwrap_or(Json::Null))
            }
            Kind::Jinja(plan) => {
                if let Some(text) = plan.fast.as_ref().and_then(|f| f.eval(vars)) {
                    return Ok(Json::String(text));
                }
                self.render_source(&plan.source, vars, &|name| match plan
                    .uses
                    .iter()
                    .find(|(n, _)| *n == name)
                {
                    Some((_, u)) => u.clone(),
                    None => usage(&plan.source, name),
                })
                .map(Json::String)
            }
            Kind::Map(entries) => {
                let mut out = serde_json::Map::with_capacity(entries.len());
                for (k, v) in entries {
                    out.insert(k.clone(), self.render_prepared(v, vars)?);
                }
                Ok(Json::Object(out))
            }
            Kind::List(items) => items
                .iter()
                .map(|item| self.render_prepared(item, vars))
                .collect::<Result<Vec<_>, _>>()
                .map(Json::Array),
        }
    }
}

fn split(path: &str) -> Box<[Box<str>]> {
    path.split('.').map(Box::from).collect()
}

fn is_ident(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl FastExpr {
    /// Recognises the supported shapes; anything else (other text around the braces,
    /// whitespace control, other filters or operators) is left to the engine.
    fn parse(source: &str) -> Option<FastExpr> {
        let inner = source.strip_prefix("{{")?.strip_suffix("}}")?;
        // `{{-`/`-}}` and nested delimiters are the engine's business.
        if inner.starts_with(['-', '+'])
            || inner.ends_with(['-', '+'])
            || inner.contains(['{', '}'])
        {
            return None;
        }
        let (operand, add) = match inner.find(['+', '-']) {
            Some(pos) => {
                let digits = inner[pos + 1..].trim_matches(' ');
                if digits.is_empty()
                    || digits.len() > 18
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                    || (digits.len() > 1 && digits.starts_with('0'))
                {
                    return None;
                }
                let n: i64 = digits.parse().ok()?;
                let n = if inner.as_bytes()[pos] == b'-' { -n } else { n };
                (&inner[..pos], Some(n))
            }
            None => (inner, None),
        };
        let (path, int_filter) = match operand.split_once('|') {
            Some((path, filter)) => {
                if filter.trim_matches(' ') != "int" {
                    return None;
                }
                (path, true)
            }
            None => (operand, false),
        };
        let path = path.trim_matches(' ');
        let segments: Vec<&str> = path.split('.').collect();
        // Keywords and special names are left to the engine (`{{ none }}`, `{{ loop }}`…).
        const KEYWORDS: &[&str] = &[
            "true", "false", "none", "True", "False", "None", "not", "and", "or", "in", "is", "if",
            "else", "loop", "self", "range",
        ];
        if segments
            .iter()
            .any(|s| !is_ident(s) || KEYWORDS.contains(s))
        {
            return None;
        }
        Some(FastExpr {
            path: segments.into_iter().map(Box::from).collect(),
            int_filter,
            add,
        })
    }

    /// The rendered text, or `None` when the engine must decide.
    fn eval(&self, vars: &Vars<'_>) -> Option<String> {
        let mut segments = self.path.iter();
        let mut cur = vars.get(segments.next()?)?;
        for segment in segments {
            cur = cur.as_object()?.get(&**segment)?;
        }
        if self.int_filter {
            let n = match cur {
                Json::String(s) => int_filter_of_str(s)?,
                Json::Number(n) => n.as_i64()?,
                Json::Bool(b) => i64::from(*b),
                _ => return None,
            };
            return Some(n.checked_add(self.add.unwrap_or(0))?.to_string());
        }
        match (cur, self.add) {
            (Json::Number(n), Some(k)) => Some(n.as_i64()?.checked_add(k)?.to_string()),
            (_, Some(_)) => None,
            (Json::String(s), None) => Some(s.clone()),
            (Json::Number(n), None) if n.is_i64() || n.is_u64() => Some(n.to_string()),
            (Json::Bool(true), None) => Some("True".into()),
            (Json::Bool(false), None) => Some("False".into()),
            (Json::Null, None) => Some("None".into()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod shape_tests {
    use super::FastExpr;

    #[test]
    fn recognised_shapes() {
        let p = |s: &str| FastExpr::parse(s);
        let fast = p("{{ context.n | int + 1 }}").unwrap();
        assert_eq!(&*fast.path, &["context".into(), "n".into()] as &[Box<str>]);
        assert!(fast.int_filter);
        assert_eq!(fast.add, Some(1));
        assert_eq!(p("{{context.n-2}}").unwrap().add, Some(-2));
        assert!(!p("{{ output.text }}").unwrap().int_filter);
        for engine_only in [
            "{{ context.n | int + 1 }} ",
            " {{ context.n }}",
            "{{- context.n }}",
            "{{ context.n -}}",
            "{{ context.n | float }}",
            "{{ context.n | int(5) }}",
            "{{ context.n + 1.5 }}",
            "{{ context.n + 01 }}",
            "{{ context.n + x }}",
            "{{ context['n'] }}",
            "{{ context.0 }}",
            "{{ none }}",
            "{{ context.n * 2 }}",
            "{{ context.n + 1 + 1 }}",
            "{{ context.n }}{{ context.m }}",
            "{{ a | int | int }}",
        ] {
            assert_eq!(p(engine_only), None, "{engine_only}");
        }
    }
}

/// Prepared rendering against the engine: every shape the fast path accepts, near misses it
/// must leave alone, on values of every kind.
#[cfg(test)]
mod differential_tests {
    use super::{FastExpr, Prepared};
    use crate::template::{Templates, Vars};
    use serde_json::{Value as Json, json};

    fn values() -> Vec<Json> {
        let mut v: Vec<Json> = [
            "5",
            " 7 ",
            "-3",
            "+4",
            "1_000",
            "1__0",
            "_1",
            "007",
            "2.5",
            "-2.5",
            "1e3",
            "abc",
            "",
            " ",
            "inf",
            "nan",
            "0x10",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775808",
            "99999999999999999999",
            "\u{663}",
            "5\n",
            "True",
        ]
        .iter()
        .map(|s| json!(s))
        .collect();
        v.extend([
            json!(0),
            json!(-1),
            json!(41),
            json!(i64::MAX),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1.5),
            json!(2.0),
            json!(-0.0),
            json!(true),
            json!(false),
            json!(null),
            json!([1, "a"]),
            json!({"b": "x", "n": 3}),
            json!({}),
        ]);
        v
    }

    fn templates() -> Vec<String> {
        let paths = [
            "context.n",
            "context.a.b",
            "context.a.n",
            "context.missing",
            "context.n.x",
            "input.n",
            "output.n",
            "other.n",
            "context.items",
        ];
        let mut out = Vec::new();
        for p in paths {
            for shape in [
                "{{ P }}",
                "{{P}}",
                "{{ P | int }}",
                "{{ P|int }}",
                "{{ P + 1 }}",
                "{{ P - 1 }}",
                "{{ P + 0 }}",
                "{{ P | int + 1 }}",
                "{{ P|int-42 }}",
                "{{ P | int + 9223372036854775807 }}",
                "{{ P | int - 9223372036854775807 }}",
                "{{ P + 9223372036854775807 }}",
                // Near misses: the engine renders these.
                "{{ P | int + 1.5 }}",
                "{{ P | float }}",
                "{{ P | int(7) }}",
                "{{ P ~ 1 }}",
                "{{ P }} ",
                "{{- P -}}",
            ] {
                out.push(shape.replace('P', p));
            }
        }
        out
    }

    #[test]
    fn prepared_templates_render_like_the_engine() {
        let engine = Templates::new();
        let mut fast_taken = 0;
        let mut failures = Vec::new();
        let templates = templates();
        for value in values() {
            let context = json!({
                "n": value.clone(),
                "a": {"b": value.clone(), "n": value.clone()},
                "items": value.clone(),
            });
            let output = json!({"n": value.clone()});
            let vars = Vars::new()
                .with("context", &context)
                .with("input", &context)
                .with("output", &output);
            for t in &templates {
                let source = Json::String(t.clone());
                let want = engine
                    .render_value(&source, &vars)
                    .map_err(|e| (e.kind(), e.to_string()));
                let prepared = Prepared::value(&source);
                let got = engine
                    .render_prepared(&prepared, &vars)
                    .map_err(|e| (e.kind(), e.to_string()));
                if let Some(fast) = FastExpr::parse(t)
                    && fast.eval(&vars).is_some()
                {
                    fast_taken += 1;
                }
                if got != want {
                    failures.push(format!(
                        "{t} with {value}: engine {want:?}, prepared {got:?}"
                    ));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // The comparison means something only if the fast path really ran.
        assert!(fast_taken > 400, "fast path taken {fast_taken} times");
    }

    #[test]
    fn prepared_maps_and_lists_render_like_render_map() {
        let engine = Templates::new();
        let context = json!({"n": "4", "name": "x", "list": [1, 2]});
        let vars = Vars::new()
            .with("context", &context)
            .with("input", &context);
        for spec in [
            json!({"n": "{{ context.n | int + 1 }}", "raw": 3, "path": "context.name",
                   "text": "plain words", "nested": {"deep": "context.list", "t": "{{ context.list }}"},
                   "list": ["context.n", {"m": "context.n"}, ["context.n"], 5, "{{ context.name }}"]}),
            json!(["context.n", "{{ context.n }}", 1]),
            json!("context.list"),
            json!("  context.name  "),
            json!("{{ context.missing.x }}"),
            json!(7),
        ] {
            let want = engine.render_map(&spec, &vars).map_err(|e| e.to_string());
            let got = engine
                .render_prepared(&Prepared::map(&spec), &vars)
                .map_err(|e| e.to_string());
            assert_eq!(got, want, "{spec}");
            let want = engine.render_value(&spec, &vars).map_err(|e| e.to_string());
            let got = engine
                .render_prepared(&Prepared::value(&spec), &vars)
                .map_err(|e| e.to_string());
            assert_eq!(got, want, "{spec}");
        }
    }
}
