//! The minijinja environment, configured to behave like the reference's Jinja2 environments.
//!
//! minijinja 3 already follows Jinja2 closely (`True`/`None` printing, lenient undefined,
//! `//` and `/`, one trailing newline removed). What differs observably is replaced here:
//!
//! * printing (`finalize` of the machine environment; Python `str()` everywhere);
//! * filters whose output text, arguments or errors differ: `string`, `join`, `tojson`,
//!   `int`, `float`, `round`, `sum`, `length`/`count`, `default`/`d`, `title`, `indent`,
//!   `pprint`, `min`/`max`, the `select` family; the comparison tests (`lt`, `gt`, …) and the
//!   `range` global (a Python range object); `fromjson` (machine environment only, Python's
//!   `json.loads`); and the stock Jinja2 filters and
//!   globals minijinja lacks (`wordcount`, `truncate`, `center`, `striptags`,
//!   `filesizeformat`, `urlencode`, `forceescape`, `wordwrap`, `xmlattr`, `joiner`,
//!   `cycler`; not `lipsum`);
//! * Python methods on strings, dicts and lists (`s.upper()`, `d.items()`, `d.get(k, x)`),
//!   which Jinja2 gets from Python for free;
//! * template names: templates are cached under their source text, so the name-based
//!   autoescape guess and `{% include %}` lookups must not see them;
//! * size limits: `format`, `center`, `indent`, `batch`, `slice`… refuse absurd widths and
//!   counts with `MemoryError` instead of exhausting memory (minijinja guards `*` and
//!   `range` itself).

use std::cell::Cell;
use std::fmt::Write as _;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use minijinja::value::{Kwargs, Object, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

use super::error::PyErr;
use super::pyrepr::{self, JsonStyle};
use super::value::{PyDict, to_value};

thread_local! {
    /// Set while [`super::Templates`] itself asks for a template: the loader compiles the
    /// requested name as source text only then, so `{% include "x" %}` in a template fails
    /// like it does in the reference (whose environment has no loader) instead of rendering
    /// the literal text `x`.
    static LOADING: Cell<bool> = const { Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// How many templates this thread compiled (tests check the cache with it).
    pub(crate) static COMPILED: Cell<usize> = const { Cell::new(0) };
}

/// The most instructions one render may execute (minijinja's fuel). Real templates use a
/// few thousand; the limit only stops runaway loops (nested loops over 100,000 items), which
/// would otherwise hold a worker thread for hours. A render that reaches it fails with
/// "template fuel limit of … exceeded".
pub const FUEL_LIMIT: u64 = 50_000_000;

/// The most bytes the `{{ … }}` expressions of one render may print (plain template text
/// is bounded by the fuel). Larger output fails with `MemoryError`.
pub const MAX_OUTPUT: usize = 100_000_000;

thread_local! {
    /// Bytes the current render on this thread may still print.
    static OUTPUT_LEFT: Cell<usize> = const { Cell::new(MAX_OUTPUT) };
}

/// Runs one render with a fresh output budget of [`MAX_OUTPUT`] bytes.
pub(crate) fn with_output_budget<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(usize);
    impl Drop for Reset {
        fn drop(&mut self) {
            OUTPUT_LEFT.with(|l| l.set(self.0));
        }
    }
    let _reset = Reset(OUTPUT_LEFT.with(|l| l.replace(MAX_OUTPUT)));
    f()
}

/// Takes `len` bytes from the output budget of the current render.
fn charge_output(len: usize) -> Result<(), Error> {
    OUTPUT_LEFT.with(|left| match left.get().checked_sub(len) {
        Some(rest) => {
            left.set(rest);
            Ok(())
        }
        None => Err(py_error(
            "MemoryError",
            format!("template output limit of {MAX_OUTPUT} bytes exceeded"),
        )),
    })
}

/// Runs `f` with template loading enabled on this thread.
pub(crate) fn with_loading<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            LOADING.with(|l| l.set(self.0));
        }
    }
    let _reset = Reset(LOADING.with(|l| l.replace(true)));
    f()
}

/// Jinja2 splits template source on `\r\n`, `\r` and `\n` and joins the lines with `\n`
/// before lexing, so every newline in the template (data and string literals alike) becomes
/// `\n`.
pub(crate) fn normalize_newlines(src: &str) -> std::borrow::Cow<'_, str> {
    if src.contains('\r') {
        std::borrow::Cow::Owned(src.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(src)
    }
}

/// Builds an environment: `machine` selects the machine value-template flavour (JSON
/// finalize and `fromjson`), otherwise the plain agent-prompt flavour.
pub(crate) fn build(machine: bool) -> Environment<'static> {
    let mut env = Environment::new();
    // Lenient is Jinja2's default `Undefined`: printing and iterating an undefined value is
    // fine, looking something up on it is an error.
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    // Debug mode records where undefined values come from; error messages are built from
    // that (`'dict object' has no attribute 'x'`). It costs nothing until a value is
    // undefined, and keeps release and debug builds identical.
    env.set_debug(true);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_loader(|name| {
        if !LOADING.with(Cell::get) {
            return Ok(None);
        }
        #[cfg(test)]
        COMPILED.with(|c| c.set(c.get() + 1));
        let source = normalize_newlines(name);
        Ok(Some(super::rewrite::rewrite(&source).into_owned()))
    });
    // No up-to-date checks: a template's source is its name, it never changes.
    env.set_auto_reload(false);
    env.set_fuel(Some(FUEL_LIMIT));

    if machine {
        env.set_formatter(|out, _state, value| {
            if value.is_undefined() {
                return Ok(());
            }
            // The reference's finalize: `json.dumps(v) if isinstance(v, (list, dict)) else v`.
            // Tuples are not lists there, so they print as `(1, 2)`.
            let text = match value.kind() {
                // `json.dumps` is only applied to lists and dicts; a range prints its repr.
                ValueKind::Seq if value.downcast_object_ref::<PyRange>().is_some() => {
                    pyrepr::mj_str(value)
                }
                ValueKind::Seq if !value.is_tuple() => dumps_or_err(value)?,
                // Dict views print as Python does, `dict_items([...])`.
                ValueKind::Iterable if value.downcast_object_ref::<DictView>().is_some() => {
                    pyrepr::mj_str(value)
                }
                // Slices and other sized iterables are lists in Python.
                ValueKind::Iterable if value.len().is_some() => dumps_or_err(value)?,
                ValueKind::Map => dumps_or_err(value)?,
                _ => pyrepr::mj_str(value),
            };
            charge_output(text.len())?;
            out.write_str(&text)
                .map_err(|_| Error::from(ErrorKind::WriteFailure))
        });
        env.add_filter("fromjson", fromjson);
    } else {
        env.set_formatter(|out, _state, value| {
            let mut text = String::new();
            pyrepr::write_mj_str(&mut text, value);
            charge_output(text.len())?;
            out.write_str(&text)
                .map_err(|_| Error::from(ErrorKind::WriteFailure))
        });
    }

    env.add_filter("string", |v: &Value| Value::from(pyrepr::mj_str(v)));
    env.add_filter("join", join);
    env.add_filter("tojson", tojson);
    env.add_filter("int", int);
    env.add_filter("float", float);
    env.add_filter("title", title);
    env.add_filter("pprint", |v: &Value| pyrepr::pformat(v));
    env.add_filter("wordcount", |s: &str| {
        // Jinja2: `len(re.compile(r"\w+").findall(s))`.
        s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|w| !w.is_empty())
            .count()
    });
    env.add_filter("truncate", truncate);
    env.add_filter("dictsort", dictsort);
    env.add_filter("escape", |v: &Value| {
        if v.is_safe() {
            return v.clone();
        }
        Value::from_safe_string(html_escape(&pyrepr::mj_str(v)))
    });
    env.add_filter("e", |v: &Value| {
        if v.is_safe() {
            return v.clone();
        }
        Value::from_safe_string(html_escape(&pyrepr::mj_str(v)))
    });
    env.add_filter("attr", |v: &Value, name: &str| -> Result<Value, Error> {
        // Jinja2's `attr` is `getattr`: dict keys are not attributes.
        if v.kind() == ValueKind::Map && v.downcast_object_ref::<PyDict>().is_some() {
            return Ok(Value::UNDEFINED);
        }
        v.get_attr(name)
    });
    env.add_filter("random", |v: &Value| -> Result<Value, Error> {
        let items: Vec<Value> = v.try_iter()?.collect();
        if items.is_empty() {
            return Err(py_error(
                "IndexError",
                "Cannot choose from an empty sequence",
            ));
        }
        // No seed to reproduce: the reference uses `random.choice`.
        let pick = std::collections::hash_map::RandomState::new();
        let n = std::hash::BuildHasher::hash_one(&pick, items.len()) as usize % items.len();
        Ok(items[n].clone())
    });
    env.add_filter(
        "sort",
        |state: &State, v: Value, args: Rest<ValueOrKwargs>| -> Result<Value, Error> {
            let args = args.into_values();
            let a = FilterArgs::new("sort", &args, &["reverse", "case_sensitive", "attribute"])?;
            if a.get(2).is_none() {
                let items: Vec<Value> = v.try_iter()?.collect();
                check_comparable(&items)?;
            }
            let mut kw: Vec<(&str, Value)> = Vec::new();
            for (i, name) in ["reverse", "case_sensitive", "attribute"]
                .iter()
                .enumerate()
            {
                if let Some(val) = a.get(i) {
                    kw.push((name, val.clone()));
                }
            }
            minijinja::filters::sort(state, v, Kwargs::from_iter(kw))
        },
    );
    env.add_test("sequence", |v: &Value| {
        // Python: anything with `len()` and `__getitem__` (strings and dicts too).
        matches!(
            v.kind(),
            ValueKind::Seq | ValueKind::Map | ValueKind::String
        )
    });
    env.add_filter("center", |s: &str, width: Option<usize>| {
        Ok::<_, Error>(center(s, pad_width(width.unwrap_or(80))?))
    });
    env.add_filter("striptags", striptags);
    env.add_filter("filesizeformat", filesizeformat);
    env.add_filter("urlencode", urlencode);
    env.add_filter("forceescape", |s: &str| html_escape(s));
    env.add_filter("wordwrap", wordwrap);
    env.add_filter("xmlattr", xmlattr);
    env.add_filter("round", round);
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("indent", indent);
    env.add_filter(
        "batch",
        |state: &State, value: Value, count: usize, fill: Option<Value>| {
            // With a fill value every batch is padded to `count` items.
            if fill.is_some() && count > MAX_ITEMS {
                return Err(py_error("MemoryError", "batch size is too large"));
            }
            minijinja::filters::batch(state, value, count, fill)
        },
    );
    env.add_filter(
        "slice",
        |state: &State, value: Value, count: usize, fill: Option<Value>| {
            if count > MAX_ITEMS {
                return Err(py_error("MemoryError", "slice count is too large"));
            }
            minijinja::filters::slice(state, value, count, fill)
        },
    );
    env.add_filter("format", format);
    env.add_function(super::rewrite::MOD_FN, |a: &Value, b: &Value| {
        super::pyfmt::py_mod(a, b)
    });
    env.add_function(super::rewrite::CONCAT_FN, |a: &Value, b: &Value| {
        super::pyfmt::py_concat(a, b)
    });
    env.add_function(super::rewrite::CMP_FN, super::pycmp::chain);
    env.add_filter("max", |v: Value, args: Rest<ValueOrKwargs>| {
        min_max(v, args, "max")
    });
    env.add_filter("min", |v: Value, args: Rest<ValueOrKwargs>| {
        min_max(v, args, "min")
    });
    env.add_filter("select", select_family!(select));
    env.add_filter("reject", select_family!(reject));
    env.add_filter("selectattr", select_family!(selectattr, attr));
    env.add_filter("rejectattr", select_family!(rejectattr, attr));
    env.add_function("range", PyRange::new_value);
    // Jinja2's comparison tests are Python's operators, which refuse unrelated types.
    for (names, op) in [
        (&["lt", "lessthan", "<"][..], super::pycmp::Op::Lt),
        (&["le", "<="][..], super::pycmp::Op::Le),
        (&["gt", "greaterthan", ">"][..], super::pycmp::Op::Gt),
        (&["ge", ">="][..], super::pycmp::Op::Ge),
    ] {
        for name in names {
            env.add_test(*name, move |a: &Value, b: &Value| {
                super::pycmp::compare(a, op, b)
            });
        }
    }
    env.add_filter("length", length);
    env.add_filter("count", length);
    env.add_filter("sum", sum);
    env.add_function("joiner", |sep: Option<String>| {
        Value::from_object(Joiner {
            sep: sep.unwrap_or_else(|| ", ".into()),
            used: AtomicBool::new(false),
        })
    });
    env.add_function("cycler", |items: Rest<Value>| {
        Value::from_object(Cycler {
            items: items.0,
            pos: AtomicUsize::new(0),
        })
    });
    env.add_test("callable", |v: &Value| {
        matches!(v.kind(), ValueKind::Plain) && v.as_object().is_some()
    });
    // Jinja2 has no `debug()` global (minijinja's would print every variable).
    env.remove_global("debug");
    // Nor these minijinja-only filters and tests: a template using them fails in the
    // reference, so it fails here too (at compile time, like Jinja2's unknown names).
    for name in ["split", "lines", "bool", "chain", "zip"] {
        env.remove_filter(name);
    }
    for name in ["startingwith", "endingwith", "safe", "int"] {
        env.remove_test(name);
    }
    env.add_function("lipsum", lipsum);
    env.set_unknown_method_callback(call_method);
    env
}

/// Wraps minijinja's `select`-like filter `$name`: a test name that does not exist fails
/// as Jinja2's does, with `TemplateRuntimeError` when an item is tested (an empty sequence
/// never looks the test up), not as the compile-time `TemplateAssertionError` of
/// `x is nosuchtest`.
macro_rules! select_family {
    ($name:ident) => {
        |state: &mut State, value: Value, test: Option<String>, args: Rest<ValueOrKwargs>| {
            let name = test.clone();
            // Jinja2 looks the test up when it tests the first item.
            if value.len() == Some(0) {
                return Ok(Vec::new());
            }
            minijinja::filters::$name(state, value, test.map(Into::into), args)
                .map_err(|e| unknown_test_at_run_time(e, name.as_deref()))
        }
    };
    ($name:ident, attr) => {
        |state: &mut State,
         value: Value,
         attr: String,
         test: Option<String>,
         args: Rest<ValueOrKwargs>| {
            let name = test.clone();
            // Jinja2 looks the test up when it tests the first item.
            if value.len() == Some(0) {
                return Ok(Vec::new());
            }
            minijinja::filters::$name(state, value, attr.into(), test.map(Into::into), args)
                .map_err(|e| unknown_test_at_run_time(e, name.as_deref()))
        }
    };
}
use select_family;

/// Jinja2's error for a test `select` & co. cannot find.
fn unknown_test_at_run_time(err: Error, name: Option<&str>) -> Error {
    match (err.kind(), name) {
        (ErrorKind::UnknownTest, Some(name)) => py_error(
            "TemplateRuntimeError",
            format!("No test named {}.", pyrepr::mj_repr(&Value::from(name))),
        ),
        _ => err,
    }
}

/// `min`/`max(case_sensitive=False, attribute=None)`: Python's `min`/`max`, so items of
/// unrelated types raise `TypeError` (`[1, 'a'] | max`) instead of being ordered.
fn min_max(value: Value, args: Rest<ValueOrKwargs>, which: &str) -> Result<Value, Error> {
    use super::pycmp::{Op, compare};
    let args = args.into_values();
    let a = FilterArgs::new(which, &args, &["case_sensitive", "attribute"])?;
    let case_sensitive = a.get(0).is_some_and(Value::is_true);
    let attribute = a.string(1)?;
    // Jinja2 iterates an undefined value as empty, giving an undefined result.
    if value.is_undefined() {
        return Ok(Value::UNDEFINED);
    }
    let key = |item: &Value| -> Result<Value, Error> {
        let k = match &attribute {
            Some(path) => attribute_path(item, path)?,
            None => item.clone(),
        };
        // Jinja2's `ignore_case` lower-cases strings and leaves other values alone.
        match k.as_str() {
            Some(s) if !case_sensitive && k.kind() == ValueKind::String => {
                Ok(Value::from(s.to_lowercase()))
            }
            _ => Ok(k),
        }
    };
    // Python: an item replaces the best so far only if `key(item) > key(best)` (`<` for
    // `min`), so the first of equal items wins and unrelated types raise.
    let op = if which == "max" { Op::Gt } else { Op::Lt };
    let mut best: Option<(Value, Value)> = None;
    for item in value.try_iter()? {
        let k = key(&item)?;
        let better = match &best {
            None => true,
            Some((best_key, _)) => compare(&k, op, best_key)?,
        };
        if better {
            best = Some((k, item));
        }
    }
    Ok(best.map_or(Value::UNDEFINED, |(_, item)| item))
}

/// Python's `range` object: a sequence of integers that prints as `range(0, 3)` (Jinja2
/// prints the object, not its items) and is not JSON serialisable.
#[derive(Debug)]
pub(crate) struct PyRange {
    start: i64,
    stop: i64,
    step: i64,
    len: usize,
}

/// The most items a `range` may have (minijinja's own limit, kept: a template has no use for
/// more, and building larger ones is a way to exhaust memory).
const MAX_RANGE: usize = 100_000;

impl PyRange {
    /// `range(stop)`, `range(start, stop[, step])`.
    fn new_value(lower: i64, upper: Option<i64>, step: Option<i64>) -> Result<Value, Error> {
        let (start, stop) = match upper {
            Some(upper) => (lower, upper),
            None => (0, lower),
        };
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "cannot create range with step of 0",
            ));
        }
        let (start_w, stop_w, step_w) = (i128::from(start), i128::from(stop), i128::from(step));
        let len = if step > 0 && start < stop {
            (stop_w - start_w + step_w - 1) / step_w
        } else if step < 0 && start > stop {
            (start_w - stop_w - step_w - 1) / -step_w
        } else {
            0
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_RANGE {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "range has too many elements",
            ));
        }
        Ok(Value::from_object(PyRange {
            start,
            stop,
            step,
            len,
        }))
    }

    /// Python's `repr()`: `range(0, 3)`, or `range(1, 10, 3)` when the step is not 1.
    pub(crate) fn repr(&self) -> String {
        if self.step == 1 {
            format!("range({}, {})", self.start, self.stop)
        } else {
            format!("range({}, {}, {})", self.start, self.stop, self.step)
        }
    }
}

impl Object for PyRange {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let i = key.as_i64()?;
        let len = self.len as i64;
        let i = if i < 0 { i + len } else { i };
        // Within the range the value lies between start and stop, so it fits an i64.
        (0..len)
            .contains(&i)
            .then(|| Value::from(self.start + self.step * i))
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Seq(self.len)
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.len)
    }

    fn is_true(self: &Arc<Self>) -> bool {
        self.len > 0
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&PyRange::repr(self))
    }
}

fn dumps_or_err(value: &Value) -> Result<String, Error> {
    pyrepr::mj_dumps(value, JsonStyle::default()).map_err(|m| py_error("TypeError", m))
}

/// An error carrying the Python exception class the reference would raise.
pub(crate) fn py_error(class: &'static str, message: impl Into<String>) -> Error {
    let message = message.into();
    Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(PyErr { class, message })
}

/// An `UndefinedError` for `v`, pointing at the expression that produced it (minijinja only
/// attaches the origin to errors it creates itself, so ask it to look something up).
pub(crate) fn undefined_error(v: &Value) -> Error {
    match v.get_attr("__undefined__") {
        Err(err) => err,
        Ok(_) => Error::from(ErrorKind::UndefinedError),
    }
}

/// `fromjson`: Python `json.loads`.
fn fromjson(v: &Value) -> Result<Value, Error> {
    let Some(text) = v.as_str() else {
        if v.is_undefined() {
            return Err(py_error(
                "TypeError",
                "the JSON object must be str, bytes or bytearray, not Undefined",
            ));
        }
        return Err(py_error(
            "TypeError",
            format!(
                "the JSON object must be str, bytes or bytearray, not {}",
                pyrepr::py_type_name(v)
            ),
        ));
    };
    if let Some(value) = super::pyjson::loads(text) {
        return Ok(value);
    }
    // Python refuses the text: serde_json says where and why, worded as Python's.
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => Ok(to_value(&json)),
        Err(e) => Err(py_error("JSONDecodeError", json_error_message(text, &e))),
    }
}

/// Python's `json.JSONDecodeError` text for the common failures: `Expecting value: line 1
/// column 1 (char 0)`, `Extra data: …`, `Expecting ',' delimiter: …`.
fn json_error_message(text: &str, e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let what = if msg.starts_with("trailing characters") {
        "Extra data"
    } else if msg.starts_with("expected `,` or")
        || msg.starts_with("EOF while parsing a list")
        || msg.starts_with("EOF while parsing an object")
    {
        "Expecting ',' delimiter"
    } else if msg.starts_with("expected `:`") {
        "Expecting ':' delimiter"
    } else if msg.starts_with("key must be a string") {
        "Expecting property name enclosed in double quotes"
    } else if msg.starts_with("EOF while parsing a string") {
        "Unterminated string starting at"
    } else if msg.starts_with("control character") {
        "Invalid control character at"
    } else if msg.starts_with("invalid escape") {
        "Invalid \\escape"
    } else {
        "Expecting value"
    };
    // serde_json reports 1-based line and column of the offending character; Python counts
    // columns from 1 and characters from 0.
    let total = text.chars().count();
    if e.classify() == serde_json::error::Category::Eof {
        // Python points just past the end of the text.
        let line = text.matches('\n').count() + 1;
        let column = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        return format!("{what}: line {line} column {column} (char {total})");
    }
    let (line, column) = (e.line().max(1), e.column().max(1));
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line - 1)
        .map(|l| l.chars().count())
        .sum();
    let pos = (line_start + column - 1).min(total);
    format!("{what}: line {line} column {column} (char {pos})")
}

/// `join(d='', attribute=None)`: items joined with Python `str()`.
fn join(
    value: &Value,
    joiner: Option<&str>,
    attribute: Option<&str>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let joiner = match joiner {
        Some(j) => j.to_owned(),
        None => kwargs.get::<Option<String>>("d")?.unwrap_or_default(),
    };
    let attribute = match attribute {
        Some(a) => Some(a.to_owned()),
        None => kwargs.get::<Option<String>>("attribute")?,
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&joiner);
        }
        let item = match &attribute {
            Some(path) => attribute_path(&item, path)?,
            None => item,
        };
        pyrepr::write_mj_str(&mut out, &item);
    }
    Ok(out)
}

/// Jinja2's dotted attribute paths in filters (`map(attribute='a.b')`, `join(attribute=…)`),
/// where integer segments index lists.
fn attribute_path(item: &Value, path: &str) -> Result<Value, Error> {
    let mut cur = item.clone();
    for part in path.split('.') {
        cur = match part.parse::<i64>() {
            Ok(i) => cur.get_item(&Value::from(i))?,
            Err(_) => cur.get_attr(part)?,
        };
    }
    Ok(cur)
}

/// `tojson(indent=None)`: `json.dumps(v, sort_keys=True)` with `<>&'` escaped.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    kwargs.assert_all_used()?;
    let indent = match indent {
        Some(i) if i.is_none() => None,
        Some(i) => {
            let n =
                i64::try_from(i).map_err(|_| py_error("TypeError", "indent must be an integer"))?;
            // Every nesting level repeats the indent: keep it small enough to stay bounded.
            if n > 10_000 {
                return Err(py_error("MemoryError", "indent is too large"));
            }
            Some(n.max(0) as usize)
        }
        None => None,
    };
    let style = JsonStyle {
        sort_keys: true,
        html_safe: true,
        indent,
    };
    if value.is_undefined() {
        return Err(py_error(
            "TypeError",
            "Object of type Undefined is not JSON serializable",
        ));
    }
    let text = pyrepr::mj_dumps(value, style).map_err(|m| py_error("TypeError", m))?;
    Ok(Value::from_safe_string(text))
}

/// Python `str.strip()` whitespace.
pub(crate) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `int(s, base)` on a string: optional sign, digits with single underscores between
/// them, and for base 16/8/2 an optional matching prefix.
fn parse_py_int(s: &str, base: u32) -> Option<i128> {
    let s = s.trim_matches(is_py_space);
    let (neg, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = digits.to_ascii_lowercase();
    let digits = match base {
        16 => lower
            .strip_prefix("0x")
            .map(|d| d.trim_start_matches('_'))
            .unwrap_or(&lower),
        8 => lower
            .strip_prefix("0o")
            .map(|d| d.trim_start_matches('_'))
            .unwrap_or(&lower),
        2 => lower
            .strip_prefix("0b")
            .map(|d| d.trim_start_matches('_'))
            .unwrap_or(&lower),
        _ => &lower,
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    // `from_str_radix` would accept a second sign (`"--5"`); Python does not.
    if !clean.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let v = i128::from_str_radix(&clean, base).ok()?;
    Some(if neg { -v } else { v })
}

/// Python `float(s)` on a string.
pub(crate) fn parse_py_float(s: &str) -> Option<f64> {
    let s = s.trim_matches(is_py_space);
    let lower = s.to_ascii_lowercase();
    let body = lower.trim_start_matches(['+', '-']);
    if matches!(body, "inf" | "infinity" | "nan") {
        return lower.parse::<f64>().ok();
    }
    if body.is_empty() || !body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    // Underscores are allowed only between digits.
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'_' {
            let ok = i > 0
                && bytes[i - 1].is_ascii_digit()
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !ok {
                return None;
            }
        }
    }
    s.replace('_', "").parse::<f64>().ok()
}

fn int_from_f64(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    let t = f.trunc();
    if t.abs() < 1.7e38 {
        Some(Value::from(t as i128))
    } else {
        None
    }
}

/// `int(default=0, base=10)` as Jinja2 does it: `int(v)`, else `int(float(v))`, else the
/// default; an undefined value raises.
fn int(
    value: &Value,
    default: Option<Value>,
    base: Option<u32>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0)),
    };
    let base = match base {
        Some(b) => b,
        None => kwargs.get::<Option<u32>>("base")?.unwrap_or(10),
    };
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return Err(undefined_error(value));
    }
    let rv = match value.kind() {
        ValueKind::Bool => Some(Value::from(i64::from(value.is_true()))),
        ValueKind::Number if value.is_integer() => Some(value.clone()),
        ValueKind::Number => {
            let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
            // Jinja2 catches `ValueError` (NaN) and returns the default, but `int(inf)`
            // raises `OverflowError`, which it lets through. (Strings go through
            // `int(float(s))` under a handler that catches `OverflowError` too.)
            if f.is_infinite() {
                return Err(py_error(
                    "OverflowError",
                    "cannot convert float infinity to integer",
                ));
            }
            int_from_f64(f)
        }
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            if (2..=36).contains(&base) {
                parse_py_int(s, base)
                    .map(Value::from)
                    .or_else(|| parse_py_float(s).and_then(int_from_f64))
            } else {
                None
            }
        }
        _ => None,
    };
    Ok(rv.unwrap_or(default))
}

/// What `int` gives for a string with the default arguments, when that is an `i64`: the
/// parsed integer, or the default 0 when the string is not a number. `None` when the engine
/// must decide (a float string such as `"2.5"`, or an integer beyond `i64`).
pub(crate) fn int_filter_of_str(s: &str) -> Option<i64> {
    match parse_py_int(s, 10) {
        Some(n) => i64::try_from(n).ok(),
        None if parse_py_float(s).is_some() => None,
        None => Some(0),
    }
}

/// `float(default=0.0)`: Python `float(v)`, else the default; an undefined value raises.
fn float(value: &Value, default: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from(0.0)),
    };
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return Err(undefined_error(value));
    }
    let rv = match value.kind() {
        ValueKind::Bool => Some(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).ok(),
        ValueKind::String => parse_py_float(value.as_str().unwrap_or_default()),
        _ => None,
    };
    Ok(rv.map(Value::from).unwrap_or(default))
}

/// Jinja2's `title`: words start after `-`, whitespace, `(`, `{`, `[` or `<`; the first
/// character of a word is upper-cased and the rest lower-cased (so `don't` → `Don't`).
fn title(v: &Value) -> String {
    let s = pyrepr::mj_str(v);
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if matches!(c, '-' | '(' | '{' | '[' | '<') || c.is_whitespace() {
            out.push(c);
            start = true;
        } else if start {
            out.extend(c.to_uppercase());
            start = false;
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// `truncate(length=255, killwords=False, end='...', leeway=5)`.
fn truncate(s: &str, args: Rest<ValueOrKwargs>) -> Result<String, Error> {
    let args = args.into_values();
    let a = FilterArgs::new("truncate", &args, &["length", "killwords", "end", "leeway"])?;
    let length = a.int(0)?.unwrap_or(255);
    let killwords = a.get(1).is_some_and(|v| v.is_true());
    let end = a.string(2)?.unwrap_or_else(|| "...".into());
    let leeway = a.int(3)?.unwrap_or(5);
    let end_len = end.chars().count() as i64;
    if length < end_len {
        return Err(py_error(
            "AssertionError",
            format!("expected length >= {end_len}, got {length}"),
        ));
    }
    if leeway < 0 {
        return Err(py_error(
            "AssertionError",
            format!("expected leeway >= 0, got {leeway}"),
        ));
    }
    if s.chars().count() as i64 <= length.saturating_add(leeway) {
        return Ok(s.to_owned());
    }
    let head: String = s.chars().take((length - end_len) as usize).collect();
    if killwords {
        return Ok(head + &end);
    }
    let cut = head.rsplit_once(' ').map_or(head.as_str(), |(a, _)| a);
    Ok(format!("{cut}{end}"))
}

/// Positional and keyword arguments of a filter, matched to its Python parameter names.
struct FilterArgs {
    values: Vec<Option<Value>>,
}

impl FilterArgs {
    fn new(filter: &str, args: &[Value], names: &[&str]) -> Result<Self, Error> {
        let (positional, kwargs) = match args.last() {
            Some(last) if last.is_kwargs() => (&args[..args.len() - 1], Some(last)),
            _ => (args, None),
        };
        if positional.len() > names.len() {
            return Err(py_error(
                "TypeError",
                format!("{filter}() got too many positional arguments"),
            ));
        }
        let mut values: Vec<Option<Value>> = vec![None; names.len()];
        for (i, v) in positional.iter().enumerate() {
            values[i] = Some(v.clone());
        }
        if let Some(kw) = kwargs {
            for key in kw.try_iter()? {
                let key = key.as_str().unwrap_or_default();
                let Some(pos) = names.iter().position(|n| *n == key) else {
                    return Err(py_error(
                        "TypeError",
                        format!("{filter}() got an unexpected keyword argument '{key}'"),
                    ));
                };
                if values[pos].is_some() {
                    return Err(py_error(
                        "TypeError",
                        format!("{filter}() got multiple values for argument '{key}'"),
                    ));
                }
                values[pos] = Some(kw.get_attr(key)?);
            }
        }
        Ok(FilterArgs { values })
    }

    /// Argument `i`; `None` when not given or given as `none`.
    fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i)?.as_ref().filter(|v| !v.is_none())
    }

    fn int(&self, i: usize) -> Result<Option<i64>, Error> {
        self.get(i)
            .map(|v| match v.kind() {
                ValueKind::Bool => Ok(i64::from(v.is_true())),
                _ => v.as_i64().ok_or_else(|| {
                    py_error(
                        "TypeError",
                        format!(
                            "'{}' object cannot be interpreted as an integer",
                            pyrepr::py_type_name(v)
                        ),
                    )
                }),
            })
            .transpose()
    }

    fn string(&self, i: usize) -> Result<Option<String>, Error> {
        Ok(self.get(i).map(pyrepr::mj_str))
    }
}

/// `dictsort(case_sensitive=False, by='key', reverse=False)`: the `(key, value)` pairs of a
/// dict sorted by key or value; strings compare case-insensitively unless asked.
fn dictsort(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let a = FilterArgs::new("dictsort", &args, &["case_sensitive", "by", "reverse"])?;
    let case_sensitive = a.get(0).is_some_and(|v| v.is_true());
    let by = a.string(1)?.unwrap_or_else(|| "key".into());
    let reverse = a.get(2).is_some_and(|v| v.is_true());
    let pos = match by.as_str() {
        "key" => 0,
        "value" => 1,
        _ => {
            return Err(py_error(
                "FilterArgumentError",
                "You can only sort by either \"key\" or \"value\"",
            ));
        }
    };
    if value.kind() != ValueKind::Map {
        return Err(py_error(
            "AttributeError",
            format!(
                "'{}' object has no attribute 'items'",
                pyrepr::py_type_name(value)
            ),
        ));
    }
    let mut items = pyrepr::map_items(value);
    let sort_key = |v: &Value| -> Value {
        match v.as_str() {
            Some(s) if !case_sensitive => Value::from(s.to_lowercase()),
            _ => v.clone(),
        }
    };
    let keys: Vec<Value> = items
        .iter()
        .map(|(k, v)| sort_key(if pos == 0 { k } else { v }))
        .collect();
    check_comparable(&keys)?;
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|x, y| keys[*x].cmp(&keys[*y]));
    if reverse {
        order.reverse();
    }
    let mut slots: Vec<Option<(Value, Value)>> = items.drain(..).map(Some).collect();
    Ok(Value::from(
        order
            .into_iter()
            .filter_map(|i| slots[i].take())
            .map(|(k, v)| Value::from(minijinja::value::Tuple::from(vec![k, v])))
            .collect::<Vec<_>>(),
    ))
}

/// Python's `<` refuses to order unrelated types (`1 < 'a'`, dicts, `None`): sorting such
/// values raises `TypeError` there, where minijinja would order them by kind.
fn check_comparable(items: &[Value]) -> Result<(), Error> {
    fn class(v: &Value) -> Option<u8> {
        match v.kind() {
            ValueKind::Number | ValueKind::Bool => Some(0),
            ValueKind::String => Some(1),
            ValueKind::Seq if v.is_tuple() => Some(2),
            ValueKind::Seq => Some(3),
            _ => None,
        }
    }
    let Some(first) = items.first() else {
        return Ok(());
    };
    for item in items {
        let (a, b) = (class(first), class(item));
        if items.len() > 1 && (a.is_none() || a != b) {
            return Err(py_error(
                "TypeError",
                format!(
                    "'<' not supported between instances of '{}' and '{}'",
                    pyrepr::py_type_name(item),
                    pyrepr::py_type_name(first)
                ),
            ));
        }
    }
    Ok(())
}

/// Padding wider than this is refused (minijinja refuses `'x' * n` beyond the same size), so
/// a template cannot make the process allocate without bound.
const MAX_PAD: usize = 100_000_000;

/// A padding width argument: negative means none, huge is an error.
fn pad_width(width: impl TryInto<i64>) -> Result<usize, Error> {
    let width = width.try_into().unwrap_or(i64::MAX).max(0);
    usize::try_from(width)
        .ok()
        .filter(|w| *w <= MAX_PAD)
        .ok_or_else(|| py_error("MemoryError", "padded string is too large"))
}

/// Filters whose argument says how many items to create refuse more than this.
const MAX_ITEMS: usize = 10_000_000;

/// Python `str.center(width)`.
fn center(s: &str, width: usize) -> String {
    let len = s.chars().count();
    if width <= len {
        return s.to_owned();
    }
    let pad = width - len;
    // CPython puts the extra space on the left when both the padding and the width are odd.
    let left = pad / 2 + (pad & width & 1);
    let right = pad - left;
    format!("{}{s}{}", " ".repeat(left), " ".repeat(right))
}

/// `striptags`: drop comments and tags, collapse whitespace, unescape the basic entities.
fn striptags(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(pos) = rest.find('<') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        let end = if after.starts_with("<!--") {
            after.find("-->").map(|e| e + 3)
        } else {
            after.find('>').map(|e| e + 1)
        };
        match end {
            Some(e) => rest = &after[e..],
            None => {
                out.push_str(after);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    let collapsed = out.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// `filesizeformat(binary=False)`.
fn filesizeformat(v: &Value, binary: Option<bool>) -> String {
    let bytes = f64::try_from(v.clone()).unwrap_or(0.0);
    let binary = binary.unwrap_or(false);
    let base: f64 = if binary { 1024.0 } else { 1000.0 };
    let prefixes = if binary {
        ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    } else {
        ["kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    };
    if bytes == 1.0 {
        return "1 Byte".into();
    }
    if bytes < base {
        return format!("{} Bytes", bytes as i64);
    }
    let mut unit = base;
    for (i, prefix) in prefixes.iter().enumerate() {
        unit = base.powi(i as i32 + 2);
        if bytes < unit {
            return format!("{:.1} {prefix}", base * bytes / unit);
        }
    }
    format!(
        "{:.1} {}",
        base * bytes / unit,
        prefixes[prefixes.len() - 1]
    )
}

/// `urlencode`: quote a string (`/` kept), or encode a dict / pairs as a query string
/// (spaces as `+`).
fn urlencode(v: &Value) -> String {
    fn quote(s: &str, for_qs: bool) -> String {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"_.-~".contains(&b) || (!for_qs && b == b'/') {
                out.push(b as char);
            } else if for_qs && b == b' ' {
                out.push('+');
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        out
    }
    let pairs: Option<Vec<(Value, Value)>> = match v.kind() {
        ValueKind::Map => Some(pyrepr::map_items(v)),
        ValueKind::Seq | ValueKind::Iterable => v.try_iter().ok().map(|items| {
            items
                .map(|pair| {
                    let k = pair.get_item_by_index(0).unwrap_or_default();
                    let item = pair.get_item_by_index(1).unwrap_or_default();
                    (k, item)
                })
                .collect()
        }),
        _ => None,
    };
    match pairs {
        Some(pairs) => pairs
            .iter()
            .map(|(k, item)| {
                format!(
                    "{}={}",
                    quote(&pyrepr::mj_str(k), true),
                    quote(&pyrepr::mj_str(item), true)
                )
            })
            .collect::<Vec<_>>()
            .join("&"),
        None => quote(&pyrepr::mj_str(v), false),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `wordwrap(width=79, break_long_words=True, wrapstring='\n', break_on_hyphens=True)`:
/// each line wrapped by Python's `textwrap.wrap` (whitespace kept inside lines and dropped
/// at line ends, hyphenated words split after their hyphens).
fn wordwrap(s: &str, args: Rest<ValueOrKwargs>) -> Result<String, Error> {
    let args = args.into_values();
    let a = FilterArgs::new(
        "wordwrap",
        &args,
        &[
            "width",
            "break_long_words",
            "wrapstring",
            "break_on_hyphens",
        ],
    )?;
    let width = a.int(0)?.unwrap_or(79);
    if width <= 0 {
        return Err(py_error(
            "ValueError",
            format!("invalid width {width} (must be > 0)"),
        ));
    }
    let width = width as usize;
    let breaks = a.get(1).is_none_or(|v| v.is_true());
    let hyphens = a.get(3).is_none_or(|v| v.is_true());
    let wrap = a.string(2)?.unwrap_or_else(|| "\n".into());
    let lines: Vec<String> = py_splitlines(s)
        .into_iter()
        .map(|line| textwrap(line, width, breaks, hyphens).join(&wrap))
        .collect();
    Ok(lines.join(&wrap))
}

/// The chunks `textwrap` works on: runs of whitespace and words (split after the hyphens
/// of hyphenated words when `hyphens`).
fn wrap_chunks(line: &str, hyphens: bool) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_space = false;
    for c in line.chars() {
        let space = is_py_space(c);
        if !cur.is_empty() && space != cur_space {
            chunks.push(std::mem::take(&mut cur));
        }
        cur_space = space;
        cur.push(c);
    }
    if !cur.is_empty() {
        chunks.push(cur);
    }
    if !hyphens {
        return chunks;
    }
    let mut out = Vec::new();
    for chunk in chunks {
        let chars: Vec<char> = chunk.chars().collect();
        let mut start = 0;
        for i in 1..chars.len().saturating_sub(1) {
            if chars[i] == '-' && chars[i - 1].is_alphanumeric() && chars[i + 1].is_alphabetic() {
                out.push(chars[start..=i].iter().collect());
                start = i + 1;
            }
        }
        out.push(chars[start..].iter().collect());
    }
    out
}

/// Python `textwrap.wrap(line, width, break_long_words=…, break_on_hyphens=…,
/// expand_tabs=False, replace_whitespace=False)`.
fn textwrap(line: &str, width: usize, breaks: bool, hyphens: bool) -> Vec<String> {
    let blank = |c: &str| c.chars().all(is_py_space);
    let mut chunks = wrap_chunks(line, hyphens);
    chunks.reverse();
    let mut lines: Vec<String> = Vec::new();
    while !chunks.is_empty() {
        let mut cur: Vec<String> = Vec::new();
        let mut cur_len = 0;
        if chunks.last().is_some_and(|c| blank(c)) && !lines.is_empty() {
            chunks.pop();
        }
        while let Some(chunk) = chunks.last() {
            let l = chunk.chars().count();
            if cur_len + l <= width {
                cur_len += l;
                cur.extend(chunks.pop());
            } else {
                break;
            }
        }
        if let Some(chunk) = chunks.last_mut()
            && chunk.chars().count() > width
        {
            let space_left = width.saturating_sub(cur_len).max(1);
            if breaks {
                let head: String = chunk.chars().take(space_left).collect();
                *chunk = chunk.chars().skip(space_left).collect();
                cur.push(head);
            } else if cur.is_empty() {
                cur.extend(chunks.pop());
            }
        }
        if cur.last().is_some_and(|c| blank(c)) {
            cur.pop();
        }
        if !cur.is_empty() {
            lines.push(cur.concat());
        }
    }
    lines
}

/// Python methods the reference gets from the host objects: `str`, `dict`, `list` and
/// number methods commonly used in templates.
fn call_method(
    _state: &mut State,
    value: &Value,
    name: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if name == "format" && value.kind() == ValueKind::String {
        return str_method(value.as_str().unwrap_or_default(), name, args);
    }
    let args = positional_args(name, args)?;
    let args = &args[..];
    match value.kind() {
        ValueKind::String => str_method(value.as_str().unwrap_or_default(), name, args),
        ValueKind::Map => dict_method(value, name, args),
        ValueKind::Seq if !value.is_tuple() => list_method(value, name, args),
        ValueKind::Seq => tuple_method(value, name, args),
        ValueKind::Number | ValueKind::Bool => number_method(value, name, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// Keyword parameters of the methods that accept them, in positional order.
const METHOD_KEYWORDS: &[(&str, &[&str])] = &[
    ("split", &["sep", "maxsplit"]),
    ("rsplit", &["sep", "maxsplit"]),
    ("splitlines", &["keepends"]),
    ("expandtabs", &["tabsize"]),
    ("encode", &["encoding", "errors"]),
];

/// Turns keyword arguments into positional ones for the methods that take keywords (Python
/// `'a b'.split(maxsplit=1)`), and refuses them for the others as Python does.
fn positional_args(name: &str, args: &[Value]) -> Result<Vec<Value>, Error> {
    let Some(kwargs) = args.last().filter(|v| v.is_kwargs()) else {
        return Ok(args.to_vec());
    };
    let mut out = args[..args.len() - 1].to_vec();
    let params = METHOD_KEYWORDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap_or_default();
    let given: Vec<Value> = kwargs.try_iter()?.collect();
    if params.is_empty() && !given.is_empty() {
        return Err(py_error(
            "TypeError",
            format!("{name}() takes no keyword arguments"),
        ));
    }
    for key in &given {
        let key = key.as_str().unwrap_or_default();
        let Some(pos) = params.iter().position(|p| *p == key) else {
            return Err(py_error(
                "TypeError",
                format!("{name}() got an unexpected keyword argument '{key}'"),
            ));
        };
        if out.len() <= pos {
            out.resize(pos + 1, Value::from(()));
        }
        out[pos] = kwargs.get_attr(key)?;
    }
    Ok(out)
}

/// The characters of `s` between Python slice bounds `start` and `end` (negative counts from
/// the end), with the char offset of the slice.
fn char_slice(s: &str, start: Option<i64>, end: Option<i64>) -> (&str, usize) {
    let len = s.chars().count() as i64;
    let norm = |i: i64| if i < 0 { (i + len).max(0) } else { i.min(len) };
    let a = norm(start.unwrap_or(0)) as usize;
    let b = norm(end.unwrap_or(len)) as usize;
    if b <= a {
        return ("", a);
    }
    let byte = |n: usize| s.char_indices().nth(n).map_or(s.len(), |(i, _)| i);
    (&s[byte(a)..byte(b)], a)
}

/// A view of a dict (`d.items()`, `d.keys()`, `d.values()`): iterates like a list, prints as
/// Python does (`dict_items([('a', 1)])`), and is not JSON serialisable.
#[derive(Debug)]
pub(crate) struct DictView {
    /// `dict_items`, `dict_keys` or `dict_values`.
    pub kind: &'static str,
    /// The viewed items.
    pub items: Vec<Value>,
}

impl Object for DictView {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(self.items.clone())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.items.len())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        !self.items.is_empty()
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&pyrepr::mj_repr(&Value::from_dyn_object(self.clone())))
    }
}

fn arg_str(args: &[Value], i: usize) -> Result<Option<&str>, Error> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            py_error(
                "TypeError",
                format!("must be str, not {}", pyrepr::py_type_name(v)),
            )
        }),
    }
}

fn arg_int(args: &[Value], i: usize) -> Result<Option<i64>, Error> {
    match args.get(i) {
        None => Ok(None),
        Some(v) if v.is_none() => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            py_error(
                "TypeError",
                format!(
                    "'{}' object cannot be interpreted as an integer",
                    pyrepr::py_type_name(v)
                ),
            )
        }),
    }
}

fn strs(items: Vec<&str>) -> Value {
    Value::from(items.into_iter().map(Value::from).collect::<Vec<_>>())
}

/// Python `str.split(sep=None, maxsplit=-1)` (and `rsplit` when `right`).
fn py_split(
    s: &str,
    sep: Option<&str>,
    maxsplit: Option<i64>,
    right: bool,
) -> Result<Value, Error> {
    let max = maxsplit.filter(|m| *m >= 0).map(|m| m as usize);
    match sep {
        Some("") => Err(py_error("ValueError", "empty separator")),
        Some(sep) => Ok(match (max, right) {
            (None, _) => strs(s.split(sep).collect()),
            (Some(m), false) => strs(s.splitn(m.saturating_add(1), sep).collect()),
            (Some(m), true) => {
                let mut parts: Vec<&str> = s.rsplitn(m.saturating_add(1), sep).collect();
                parts.reverse();
                strs(parts)
            }
        }),
        None => {
            // Runs of whitespace separate; leading/trailing whitespace yields no empty items.
            let words: Vec<&str> = s.split(is_py_space).filter(|w| !w.is_empty()).collect();
            let Some(m) = max.filter(|m| *m < words.len()) else {
                return Ok(strs(words));
            };
            if right {
                let mut rest = s.trim_end_matches(is_py_space);
                let mut tail = Vec::new();
                for _ in 0..m {
                    let cut = rest.rfind(is_py_space).map_or(0, |p| p);
                    let word = rest[cut..].trim_start_matches(is_py_space);
                    tail.push(word);
                    rest = rest[..cut].trim_end_matches(is_py_space);
                }
                let mut out = vec![rest];
                out.extend(tail.into_iter().rev());
                Ok(strs(out))
            } else {
                let mut rest = s.trim_start_matches(is_py_space);
                let mut out = Vec::new();
                for _ in 0..m {
                    let cut = rest.find(is_py_space).unwrap_or(rest.len());
                    out.push(&rest[..cut]);
                    rest = rest[cut..].trim_start_matches(is_py_space);
                }
                out.push(rest);
                Ok(strs(out))
            }
        }
    }
}

fn strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
    let pred = |c: char| match chars {
        Some(set) => set.contains(c),
        None => is_py_space(c),
    };
    let s = if left { s.trim_start_matches(pred) } else { s };
    if right { s.trim_end_matches(pred) } else { s }
}

/// Python `str.title()`: a cased character after an uncased one is upper-cased, the others
/// lower-cased.
fn py_title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_cased = false;
    for c in s.chars() {
        let cased = is_cased(c);
        if cased && !prev_cased {
            push_titlecase(&mut out, c);
        } else {
            out.extend(c.to_lowercase());
        }
        prev_cased = cased;
    }
    out
}

/// Python's "cased" characters: upper-, lower- and title-case letters.
fn is_cased(c: char) -> bool {
    c.is_lowercase() || c.is_uppercase() || titlecase_digraph(c).is_some()
}

/// The title-case form of the Latin digraphs (`ǆ` → `ǅ`), which differs from upper case.
fn titlecase_digraph(c: char) -> Option<char> {
    match c {
        '\u{1c4}'..='\u{1c6}' => Some('\u{1c5}'),
        '\u{1c7}'..='\u{1c9}' => Some('\u{1c8}'),
        '\u{1ca}'..='\u{1cc}' => Some('\u{1cb}'),
        '\u{1f1}'..='\u{1f3}' => Some('\u{1f2}'),
        _ => None,
    }
}

/// Appends Python's title case of `c` (`ß` → `Ss`, `ǆ` → `ǅ`, otherwise upper case).
fn push_titlecase(out: &mut String, c: char) {
    match (titlecase_digraph(c), c) {
        (Some(t), _) => out.push(t),
        (None, '\u{df}') => out.push_str("Ss"),
        (None, '\u{fb01}') => out.push_str("Fi"),
        (None, '\u{fb02}') => out.push_str("Fl"),
        _ => out.extend(c.to_uppercase()),
    }
}

/// `str` methods that take no argument.
const NO_ARG_STR_METHODS: &[&str] = &[
    "upper",
    "lower",
    "casefold",
    "title",
    "capitalize",
    "swapcase",
    "isdigit",
    "isnumeric",
    "isdecimal",
    "isalpha",
    "isalnum",
    "isspace",
    "isupper",
    "islower",
    "istitle",
    "isidentifier",
    "isascii",
];

fn str_method(s: &str, name: &str, args: &[Value]) -> Result<Value, Error> {
    if !args.is_empty() && NO_ARG_STR_METHODS.contains(&name) {
        return Err(py_error(
            "TypeError",
            format!("str.{name}() takes no arguments ({} given)", args.len()),
        ));
    }
    let v = match name {
        "upper" => Value::from(s.to_uppercase()),
        "lower" => Value::from(s.to_lowercase()),
        "casefold" => Value::from(s.to_lowercase().replace('ß', "ss")),
        "strip" => Value::from(strip(s, arg_str(args, 0)?, true, true)),
        "lstrip" => Value::from(strip(s, arg_str(args, 0)?, true, false)),
        "rstrip" => Value::from(strip(s, arg_str(args, 0)?, false, true)),
        "split" => py_split(s, arg_str(args, 0)?, arg_int(args, 1)?, false)?,
        "rsplit" => py_split(s, arg_str(args, 0)?, arg_int(args, 1)?, true)?,
        "splitlines" => {
            if args.first().is_some_and(Value::is_true) {
                strs(py_splitlines_keep(s))
            } else {
                strs(py_splitlines(s))
            }
        }
        "partition" | "rpartition" => {
            let sep = arg_str(args, 0)?.unwrap_or_default();
            if sep.is_empty() {
                return Err(py_error("ValueError", "empty separator"));
            }
            let found = if name == "partition" {
                s.split_once(sep)
            } else {
                s.rsplit_once(sep)
            };
            let parts = match (found, name) {
                (Some((a, b)), _) => [a, sep, b],
                (None, "partition") => [s, "", ""],
                (None, _) => ["", "", s],
            };
            Value::from(minijinja::value::Tuple::from(
                parts.iter().map(|p| Value::from(*p)).collect::<Vec<_>>(),
            ))
        }
        "removeprefix" => {
            let p = arg_str(args, 0)?.unwrap_or_default();
            Value::from(s.strip_prefix(p).unwrap_or(s))
        }
        "removesuffix" => {
            let p = arg_str(args, 0)?.unwrap_or_default();
            Value::from(s.strip_suffix(p).unwrap_or(s))
        }
        "expandtabs" => {
            let size = arg_int(args, 0)?.unwrap_or(8).max(0) as usize;
            let mut out = String::new();
            let mut col = 0usize;
            for c in s.chars() {
                match c {
                    '\t' if size > 0 => {
                        let n = size - col % size;
                        if out.len() + n > MAX_PAD {
                            return Err(py_error("MemoryError", "padded string is too large"));
                        }
                        out.extend(std::iter::repeat_n(' ', n));
                        col += n;
                    }
                    '\t' => {}
                    '\n' | '\r' => {
                        out.push(c);
                        col = 0;
                    }
                    c => {
                        out.push(c);
                        col += 1;
                    }
                }
            }
            Value::from(out)
        }
        "encode" => Value::from_bytes(s.as_bytes().to_vec()),
        "istitle" => {
            // Cased characters: upper-case ones only after uncased, lower-case only after cased.
            let mut prev_cased = false;
            let mut any = false;
            let mut ok = true;
            for c in s.chars() {
                if c.is_uppercase() || titlecase_digraph(c) == Some(c) {
                    ok &= !prev_cased;
                    prev_cased = true;
                    any = true;
                } else if c.is_lowercase() {
                    ok &= prev_cased;
                    prev_cased = true;
                    any = true;
                } else {
                    prev_cased = false;
                }
            }
            Value::from(ok && any)
        }
        "isidentifier" => Value::from(
            s.chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_alphabetic())
                && s.chars().all(|c| c == '_' || c.is_alphanumeric()),
        ),
        "isascii" => Value::from(s.is_ascii()),
        "translate" => {
            let Some(table) = args.first() else {
                return Err(py_error(
                    "TypeError",
                    "translate() takes exactly one argument (0 given)",
                ));
            };
            let mut out = String::new();
            for c in s.chars() {
                let hit = table
                    .get_item(&Value::from(c as u32))
                    .ok()
                    .filter(|v| !v.is_undefined());
                match hit {
                    None => out.push(c),
                    Some(v) if v.is_none() => {}
                    Some(v) => match v.as_str() {
                        Some(t) => out.push_str(t),
                        None => match v
                            .as_i64()
                            .and_then(|n| u32::try_from(n).ok())
                            .and_then(char::from_u32)
                        {
                            Some(t) => out.push(t),
                            None => {
                                return Err(py_error(
                                    "TypeError",
                                    "character mapping must return integer, None or str",
                                ));
                            }
                        },
                    },
                }
            }
            Value::from(out)
        }
        "startswith" | "endswith" => {
            let Some(arg) = args.first() else {
                return Err(py_error(
                    "TypeError",
                    format!("{name}() takes at least 1 argument (0 given)"),
                ));
            };
            let prefixes: Vec<Value> = match arg.kind() {
                ValueKind::Seq => arg.try_iter()?.collect(),
                _ => vec![arg.clone()],
            };
            let (s, _) = char_slice(s, arg_int(args, 1)?, arg_int(args, 2)?);
            let mut hit = false;
            for p in &prefixes {
                let p = p.as_str().ok_or_else(|| {
                    py_error(
                        "TypeError",
                        format!("{name} first arg must be str or a tuple of str"),
                    )
                })?;
                hit |= if name == "startswith" {
                    s.starts_with(p)
                } else {
                    s.ends_with(p)
                };
            }
            Value::from(hit)
        }
        "replace" => {
            let (Some(old), Some(new)) = (arg_str(args, 0)?, arg_str(args, 1)?) else {
                return Err(py_error(
                    "TypeError",
                    "replace expected at least 2 arguments",
                ));
            };
            match arg_int(args, 2)? {
                Some(n) if n >= 0 => Value::from(s.replacen(old, new, n as usize)),
                _ => Value::from(s.replace(old, new)),
            }
        }
        "title" => Value::from(py_title(s)),
        "capitalize" => {
            let mut cs = s.chars();
            let mut out = String::with_capacity(s.len());
            if let Some(first) = cs.next() {
                // Python capitalises with the title case (`ǆ` → `ǅ`, `ß` → `Ss`).
                push_titlecase(&mut out, first);
                out.push_str(&cs.as_str().to_lowercase());
            }
            Value::from(out)
        }
        "swapcase" => Value::from(
            s.chars()
                .flat_map(|c| -> Box<dyn Iterator<Item = char>> {
                    if c.is_uppercase() {
                        Box::new(c.to_lowercase())
                    } else {
                        Box::new(c.to_uppercase())
                    }
                })
                .collect::<String>(),
        ),
        "find" | "rfind" | "index" | "rindex" | "count" => {
            let sub = arg_str(args, 0)?.unwrap_or_default();
            let (s, offset) = char_slice(s, arg_int(args, 1)?, arg_int(args, 2)?);
            if name == "count" {
                let n = if sub.is_empty() {
                    s.chars().count() + 1
                } else {
                    s.matches(sub).count()
                };
                return Ok(Value::from(n));
            }
            let pos = if name.starts_with('r') {
                s.rfind(sub)
            } else {
                s.find(sub)
            };
            match pos {
                Some(byte) => Value::from(offset + s[..byte].chars().count()),
                None if name.ends_with("index") => {
                    return Err(py_error("ValueError", "substring not found"));
                }
                None => Value::from(-1),
            }
        }
        "join" => {
            let Some(items) = args.first() else {
                return Err(py_error(
                    "TypeError",
                    "join() takes exactly one argument (0 given)",
                ));
            };
            let mut out = String::new();
            for (i, item) in items.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(s);
                }
                match item.as_str() {
                    Some(t) => out.push_str(t),
                    None => {
                        return Err(py_error(
                            "TypeError",
                            format!(
                                "sequence item {i}: expected str instance, {} found",
                                pyrepr::py_type_name(&item)
                            ),
                        ));
                    }
                }
            }
            Value::from(out)
        }
        "format" => Value::from(super::pyfmt::str_format(s, args)?),
        "isdigit" | "isnumeric" | "isdecimal" => {
            Value::from(!s.is_empty() && s.chars().all(|c| c.is_numeric()))
        }
        "isalpha" => Value::from(!s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isalnum" => Value::from(!s.is_empty() && s.chars().all(char::is_alphanumeric)),
        "isspace" => Value::from(!s.is_empty() && s.chars().all(is_py_space)),
        "isupper" => {
            Value::from(s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase))
        }
        "islower" => {
            Value::from(s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase))
        }
        "zfill" => {
            let width = pad_width(arg_int(args, 0)?.unwrap_or(0))?;
            let len = s.chars().count();
            if width <= len {
                Value::from(s)
            } else {
                let (sign, digits) = match s.chars().next() {
                    Some(c @ ('+' | '-')) => (c.to_string(), &s[1..]),
                    _ => (String::new(), s),
                };
                Value::from(format!("{sign}{}{digits}", "0".repeat(width - len)))
            }
        }
        "ljust" | "rjust" | "center" => {
            let width = pad_width(arg_int(args, 0)?.unwrap_or(0))?;
            let fill = arg_str(args, 1)?
                .and_then(|f| f.chars().next())
                .unwrap_or(' ');
            let len = s.chars().count();
            if width <= len {
                Value::from(s)
            } else if name == "center" {
                let c = center(s, width);
                Value::from(if fill == ' ' {
                    c
                } else {
                    c.replace(' ', &fill.to_string())
                })
            } else {
                let pad: String = std::iter::repeat_n(fill, width - len).collect();
                Value::from(if name == "ljust" {
                    format!("{s}{pad}")
                } else {
                    format!("{pad}{s}")
                })
            }
        }
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(v)
}

fn dict_method(value: &Value, name: &str, args: &[Value]) -> Result<Value, Error> {
    let items = pyrepr::map_items(value);
    let view = |kind: &'static str, items: Vec<Value>| Value::from_object(DictView { kind, items });
    let v = match name {
        "items" => view(
            "dict_items",
            items
                .into_iter()
                .map(|(k, v)| Value::from(minijinja::value::Tuple::from(vec![k, v])))
                .collect(),
        ),
        "keys" => view("dict_keys", items.into_iter().map(|(k, _)| k).collect()),
        "values" => view("dict_values", items.into_iter().map(|(_, v)| v).collect()),
        "get" | "pop" | "setdefault" => {
            if name != "get" {
                return Err(read_only(name));
            }
            let Some(key) = args.first() else {
                return Err(py_error(
                    "TypeError",
                    format!("{name} expected at least 1 argument, got 0"),
                ));
            };
            items
                .into_iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| args.get(1).cloned().unwrap_or(Value::from(())))
        }
        "copy" => Value::from_object(PyDict::new(items)),
        "update" | "clear" | "popitem" => return Err(read_only(name)),
        _ => return Err(Error::from(ErrorKind::UnknownMethod)),
    };
    Ok(v)
}

/// Methods that modify a list or dict in place. The template values here are shared and
/// immutable, so these fail loudly instead of silently leaving the value unchanged (the
/// compiler warns about them, `FM0311`).
fn read_only(name: &str) -> Error {
    py_error(
        "TypeError",
        format!(
            "`{name}()` would modify a value in place; templates cannot modify lists or dicts \
             here (use `namespace()` or a filter)"
        ),
    )
}

fn list_method(value: &Value, name: &str, args: &[Value]) -> Result<Value, Error> {
    let items: Vec<Value> = value.try_iter()?.collect();
    match name {
        "copy" => return Ok(Value::from(items)),
        "append" | "extend" | "insert" | "remove" | "pop" | "clear" | "sort" | "reverse" => {
            return Err(read_only(name));
        }
        _ => {}
    }
    let Some(needle) = args.first() else {
        return match name {
            "count" | "index" => Err(py_error(
                "TypeError",
                format!("{name}() takes at least 1 argument (0 given)"),
            )),
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        };
    };
    match name {
        "count" => Ok(Value::from(items.iter().filter(|v| *v == needle).count())),
        "index" => items
            .iter()
            .position(|v| v == needle)
            .map(Value::from)
            .ok_or_else(|| {
                py_error(
                    "ValueError",
                    format!("{} is not in list", pyrepr::mj_repr(needle)),
                )
            }),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn tuple_method(value: &Value, name: &str, args: &[Value]) -> Result<Value, Error> {
    match name {
        "count" | "index" => list_method(value, name, args),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// `int` and `float` methods: `bit_length`, `is_integer`, `conjugate`, `as_integer_ratio`
/// is left out.
fn number_method(value: &Value, name: &str, _args: &[Value]) -> Result<Value, Error> {
    let is_int = value.is_integer() || value.kind() == ValueKind::Bool;
    match (name, is_int) {
        ("bit_length", true) => {
            let n = i128::try_from(value.clone()).unwrap_or(i128::from(value.is_true()));
            Ok(Value::from(128 - n.unsigned_abs().leading_zeros()))
        }
        ("is_integer", false) => {
            let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
            Ok(Value::from(f.is_finite() && f.fract() == 0.0))
        }
        ("is_integer", true) => Ok(Value::from(true)),
        ("conjugate", _) => Ok(value.clone()),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

/// `length` / `count`: Python `len()`; an undefined value has length 0.
fn length(v: &Value) -> Result<usize, Error> {
    if v.is_undefined() {
        return Ok(0);
    }
    match v.kind() {
        ValueKind::String => Ok(v.as_str().unwrap_or_default().chars().count()),
        _ => v.len().ok_or_else(|| {
            py_error(
                "TypeError",
                format!("object of type '{}' has no len()", pyrepr::py_type_name(v)),
            )
        }),
    }
}

/// Python `a + b` for the values `sum` meets: numbers (booleans count as integers) and
/// lists.
fn py_add(a: &Value, b: &Value) -> Result<Value, Error> {
    let numeric = |v: &Value| matches!(v.kind(), ValueKind::Number | ValueKind::Bool);
    let int = |v: &Value| -> Option<i128> {
        match v.kind() {
            ValueKind::Bool => Some(i128::from(v.is_true())),
            ValueKind::Number if v.is_integer() => i128::try_from(v.clone()).ok(),
            _ => None,
        }
    };
    let float = |v: &Value| -> f64 {
        match v.kind() {
            ValueKind::Bool => f64::from(u8::from(v.is_true())),
            _ => f64::try_from(v.clone()).unwrap_or(f64::NAN),
        }
    };
    if a.is_undefined() {
        return Err(undefined_error(a));
    }
    if b.is_undefined() {
        return Err(undefined_error(b));
    }
    if numeric(a) && numeric(b) {
        if let (Some(x), Some(y)) = (int(a), int(b))
            && let Some(z) = x.checked_add(y)
        {
            return Ok(Value::from(z));
        }
        return Ok(Value::from(float(a) + float(b)));
    }
    if a.kind() == ValueKind::Seq && b.kind() == ValueKind::Seq && a.is_tuple() == b.is_tuple() {
        let items: Vec<Value> = a.try_iter()?.chain(b.try_iter()?).collect();
        return Ok(if a.is_tuple() {
            Value::from(minijinja::value::Tuple::from(items))
        } else {
            Value::from(items)
        });
    }
    Err(py_error(
        "TypeError",
        format!(
            "unsupported operand type(s) for +: '{}' and '{}'",
            pyrepr::py_type_name(a),
            pyrepr::py_type_name(b)
        ),
    ))
}

/// `sum(attribute=None, start=0)`: Python `sum()`.
fn sum(
    values: &Value,
    attribute: Option<&str>,
    start: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let attribute = match attribute {
        Some(a) => Some(a.to_owned()),
        None => kwargs.get::<Option<String>>("attribute")?,
    };
    let start = match start {
        Some(s) => s,
        None => kwargs
            .get::<Option<Value>>("start")?
            .unwrap_or(Value::from(0)),
    };
    kwargs.assert_all_used()?;
    if start.kind() == ValueKind::String {
        return Err(py_error(
            "TypeError",
            "sum() can't sum strings [use ''.join(seq) instead]",
        ));
    }
    let mut acc = start;
    for item in values.try_iter()? {
        let item = match &attribute {
            Some(path) => attribute_path(&item, path)?,
            None => item,
        };
        acc = py_add(&acc, &item)?;
    }
    Ok(acc)
}

/// `xmlattr(autospace=True)`: `key="value"` pairs, HTML-escaped, skipping `None` and
/// undefined values.
fn xmlattr(d: &Value, autospace: Option<bool>) -> Result<String, Error> {
    let mut parts = Vec::new();
    for (k, v) in pyrepr::map_items(d) {
        if v.is_none() || v.is_undefined() {
            continue;
        }
        let key = pyrepr::mj_str(&k);
        if key.is_empty() || key.chars().any(|c| c.is_whitespace() || "/>=".contains(c)) {
            return Err(py_error(
                "ValueError",
                format!(
                    "Invalid character in attribute name: {}",
                    pyrepr::mj_repr(&k)
                ),
            ));
        }
        parts.push(format!(
            "{}=\"{}\"",
            html_escape(&key),
            html_escape(&pyrepr::mj_str(&v))
        ));
    }
    let out = parts.join(" ");
    Ok(if autospace.unwrap_or(true) && !out.is_empty() {
        format!(" {out}")
    } else {
        out
    })
}

/// The `joiner(sep=', ')` global: returns `""` the first time it is called, `sep` after.
#[derive(Debug)]
struct Joiner {
    sep: String,
    used: AtomicBool,
}

impl Object for Joiner {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn call(self: &Arc<Self>, _state: &mut State<'_, '_>, _args: &[Value]) -> Result<Value, Error> {
        Ok(Value::from(if self.used.swap(true, Ordering::Relaxed) {
            self.sep.as_str()
        } else {
            ""
        }))
    }
}

/// The `cycler(*items)` global: `next()` walks the items round-robin, `current` is the item
/// `next()` returns next, `reset()` starts over.
#[derive(Debug)]
struct Cycler {
    items: Vec<Value>,
    pos: AtomicUsize,
}

impl Object for Cycler {
    fn repr(self: &Arc<Self>) -> minijinja::value::ObjectRepr {
        minijinja::value::ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "current" => self.items.get(self.pos.load(Ordering::Relaxed)).cloned(),
            "items" => Some(Value::from(self.items.clone())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        _args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "next" => {
                if self.items.is_empty() {
                    return Ok(Value::from(()));
                }
                let n = self.items.len();
                let pos = self
                    .pos
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| Some((p + 1) % n))
                    .unwrap_or(0);
                Ok(self.items[pos % n].clone())
            }
            "reset" => {
                self.pos.store(0, Ordering::Relaxed);
                Ok(Value::from(()))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// `round(precision=0, method='common')`: `common` is Python's `round()` (ties to even on
/// the exact binary value; integers stay integers), `floor` and `ceil` always give a float.
fn round(
    value: &Value,
    precision: Option<i32>,
    method: Option<&str>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let precision = match precision {
        Some(p) => p,
        None => kwargs.get::<Option<i32>>("precision")?.unwrap_or(0),
    };
    let method = match method {
        Some(m) => m.to_owned(),
        None => kwargs
            .get::<Option<String>>("method")?
            .unwrap_or_else(|| "common".into()),
    };
    kwargs.assert_all_used()?;
    if value.is_undefined() {
        return Err(py_error(
            "TypeError",
            "type Undefined doesn't define __round__ method",
        ));
    }
    if !matches!(value.kind(), ValueKind::Number | ValueKind::Bool) {
        return Err(py_error(
            "TypeError",
            format!(
                "type {} doesn't define __round__ method",
                pyrepr::py_type_name(value)
            ),
        ));
    }
    let scale = 10f64.powi(precision.clamp(-308, 308));
    let x = f64::try_from(value.clone()).unwrap_or(f64::from(u8::from(value.is_true())));
    match method.as_str() {
        "common" => {
            if value.is_integer() || value.kind() == ValueKind::Bool {
                if precision >= 0 {
                    return Ok(if value.kind() == ValueKind::Bool {
                        Value::from(i64::from(value.is_true()))
                    } else {
                        value.clone()
                    });
                }
                let rounded = (x / (1.0 / scale)).round_ties_even() * (1.0 / scale);
                return Ok(int_from_f64(rounded).unwrap_or(Value::from(rounded)));
            }
            if !x.is_finite() {
                return Ok(Value::from(x));
            }
            let rounded = if precision >= 0 {
                // Formatting rounds the exact binary value to the nearest decimal, ties to
                // even, which is what CPython's `round(x, n)` does.
                format!("{x:.prec$}", prec = precision.min(340) as usize)
                    .parse::<f64>()
                    .unwrap_or(x)
            } else {
                (x * scale).round_ties_even() / scale
            };
            Ok(Value::from(rounded))
        }
        "floor" => Ok(Value::from((x * scale).floor() / scale)),
        "ceil" => Ok(Value::from((x * scale).ceil() / scale)),
        _ => Err(py_error(
            "FilterArgumentError",
            "method must be common, ceil or floor",
        )),
    }
}

/// The words of Jinja2's `lipsum` text.
const LOREM: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetuer",
    "adipiscing",
    "elit",
    "sed",
    "diam",
    "nonummy",
    "nibh",
    "euismod",
    "tincidunt",
    "ut",
    "laoreet",
    "dolore",
    "magna",
    "aliquam",
    "erat",
    "volutpat",
    "wisi",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exerci",
    "tation",
    "ullamcorper",
    "suscipit",
    "lobortis",
    "nisl",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "autem",
    "vel",
    "eum",
    "iriure",
    "in",
    "hendrerit",
    "vulputate",
    "velit",
    "esse",
    "molestie",
    "illum",
    "eu",
    "feugiat",
    "nulla",
    "facilisis",
    "at",
    "vero",
    "eros",
    "et",
    "accumsan",
    "iusto",
    "odio",
    "dignissim",
    "qui",
    "blandit",
    "praesent",
    "luptatum",
    "zzril",
    "delenit",
    "augue",
    "te",
    "feugait",
    "facilisi",
];

/// The `lipsum(n=5, html=True, min=20, max=100)` global: `n` paragraphs of random lorem
/// ipsum words (random like Jinja2's, so no two renders need agree).
fn lipsum(args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let a = FilterArgs::new("generate_lorem_ipsum", &args, &["n", "html", "min", "max"])?;
    let n = a.int(0)?.unwrap_or(5).clamp(0, 10_000) as usize;
    let html = a.get(1).is_none_or(|v| v.is_true());
    let min = a.int(2)?.unwrap_or(20);
    let max = a.int(3)?.unwrap_or(100);
    // Jinja2 draws each paragraph's length with `randrange(min, max)`.
    if min >= max {
        return Err(py_error(
            "ValueError",
            format!("empty range in randrange({min}, {max})"),
        ));
    }
    let min = min.clamp(0, 100_000) as u64;
    let max = (max.clamp(1, 100_001) as u64).max(min + 1);
    let seed = std::collections::hash_map::RandomState::new();
    let mut state = std::hash::BuildHasher::hash_one(&seed, 0u8) | 1;
    let mut next = move || {
        // xorshift64: any spread will do.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut paragraphs = Vec::with_capacity(n);
    for _ in 0..n {
        let count = (min + next() % (max - min)).max(1);
        let mut words: Vec<String> = (0..count)
            .map(|_| LOREM[(next() % LOREM.len() as u64) as usize].to_owned())
            .collect();
        if let Some(first) = words.first_mut() {
            *first = py_capitalize(first);
        }
        let mut text = words.join(" ");
        text.push('.');
        paragraphs.push(if html { format!("<p>{text}</p>") } else { text });
    }
    let out = paragraphs.join(if html { "\n" } else { "\n\n" });
    Ok(if html {
        Value::from_safe_string(out)
    } else {
        Value::from(out)
    })
}

fn py_capitalize(s: &str) -> String {
    let mut cs = s.chars();
    match cs.next() {
        Some(first) => first
            .to_uppercase()
            .chain(cs.flat_map(char::to_lowercase))
            .collect(),
        None => String::new(),
    }
}

/// `default(default_value='', boolean=False)`: replaces an undefined value, and with a true
/// `boolean` any falsy value (so `none` is kept unless asked).
fn default(
    value: &Value,
    default_value: Option<Value>,
    boolean: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let default_value = match default_value {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default_value")?
            .unwrap_or_else(|| Value::from("")),
    };
    let boolean = match boolean {
        Some(b) => b.is_true(),
        None => kwargs
            .get::<Option<Value>>("boolean")?
            .is_some_and(|b| b.is_true()),
    };
    kwargs.assert_all_used()?;
    Ok(if value.is_undefined() || (boolean && !value.is_true()) {
        default_value
    } else {
        value.clone()
    })
}

/// Python `str.splitlines()`: splits on every line boundary Python knows, drops the
/// separators, and yields no final empty item for a trailing boundary.
fn py_splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let boundary = matches!(
            c,
            '\n' | '\r'
                | '\u{b}'
                | '\u{c}'
                | '\u{1c}'
                | '\u{1d}'
                | '\u{1e}'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if boundary {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|(_, n)| *n == '\n') {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// Python `str.splitlines(keepends=True)`: the lines with their line breaks.
pub(crate) fn splitlines_keepends(s: &str) -> Vec<&str> {
    py_splitlines_keep(s)
}

fn py_splitlines_keep(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for line in py_splitlines(s) {
        // `line` borrows from `s`; its break runs up to where the next line starts.
        let line_start = line.as_ptr() as usize - s.as_ptr() as usize;
        if line_start > start {
            out.push(&s[start..line_start]);
        }
        start = line_start;
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// `indent(width=4, first=False, blank=False)`; `width` may also be the indent string.
fn indent(
    s: &Value,
    width: Option<Value>,
    first: Option<bool>,
    blank: Option<bool>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let width = match width {
        Some(w) => Some(w),
        None => kwargs.get::<Option<Value>>("width")?,
    };
    let first = match first {
        Some(f) => f,
        None => kwargs.get::<Option<bool>>("first")?.unwrap_or(false),
    };
    let blank = match blank {
        Some(b) => b,
        None => kwargs.get::<Option<bool>>("blank")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let indention = match width {
        None => "    ".to_owned(),
        Some(w) => match w.as_str() {
            Some(text) => text.to_owned(),
            None => " ".repeat(pad_width(i64::try_from(w).unwrap_or(i64::MAX))?),
        },
    };
    // Jinja2 appends a newline before splitting, so a trailing newline survives.
    let text = format!("{}\n", pyrepr::mj_str(s));
    let lines = py_splitlines(&text);
    let mut rv = if blank {
        lines.join(&format!("\n{indention}"))
    } else {
        let mut rv = lines.first().copied().unwrap_or_default().to_owned();
        if lines.len() > 1 {
            rv.push('\n');
            let rest: Vec<String> = lines[1..]
                .iter()
                .map(|line| {
                    if line.is_empty() {
                        String::new()
                    } else {
                        format!("{indention}{line}")
                    }
                })
                .collect();
            rv.push_str(&rest.join("\n"));
        }
        rv
    };
    if first {
        rv.insert_str(0, &indention);
    }
    Ok(rv)
}

/// `format(*args, **kwargs)`: Jinja2's `str(value) % (kwargs or args)`.
fn format(format_str: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Option<&Value>) = match args.last() {
        Some(last) if last.is_kwargs() => (&args[..args.len() - 1], Some(last)),
        _ => (&args, None),
    };
    let rhs = match kwargs {
        Some(_) if !positional.is_empty() => {
            return Err(py_error(
                "FilterArgumentError",
                "can't handle positional and keyword arguments at the same time",
            ));
        }
        // Keyword arguments arrive as a kwargs value: make it the dict Jinja2 passes.
        Some(kw) => {
            let mut entries = Vec::new();
            for key in kw.try_iter()? {
                let v = kw.get_attr(key.as_str().unwrap_or_default())?;
                entries.push((key, v));
            }
            Value::from_object(PyDict::new(entries))
        }
        None => Value::from(minijinja::value::Tuple::from(positional.to_vec())),
    };
    super::pyfmt::printf(&pyrepr::mj_str(format_str), &rhs).map(Value::from)
}
