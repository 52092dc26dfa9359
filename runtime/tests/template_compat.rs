//! Differential test: our templates against Jinja2 as the reference uses it.
//!
//! `tests/fixtures/templates/cases.json` holds several hundred templates rendered by Python
//! Jinja2 3.1 in the reference's two environments (`record.py` next to it regenerates the
//! file; this test needs no Python). Each template must render to the same text here, or fail
//! where Jinja2 raises, with the same exception class.
//!
//! The few cases we knowingly render differently are listed in [`KNOWN`] with the reason
//! (each is documented in `docs/compatibility.md`); a listed case that starts matching fails
//! the test too, so the list cannot go stale.

use flatmachines::unstable::template::{Templates, Vars};
use serde_json::Value as Json;

/// Which environment a recorded result belongs to.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Env {
    Machine,
    Prompt,
}

/// Cases rendered differently on purpose: (template, environment or `None` for both, why).
const KNOWN: &[(&str, Option<Env>, &str)] = &[
    // Python objects without a JSON form print their repr in Jinja2, often with a memory
    // address; here they print as the value they hold (or nothing).
    (
        "{{ context.s.upper }}",
        None,
        "a method object prints its address; ours is undefined",
    ),
    (
        "{{ context.lst | reverse }}",
        None,
        "list_reverseiterator object; ours is the list",
    ),
    (
        "{{ context.d | items }}",
        None,
        "a generator object; ours is the list of pairs",
    ),
    (
        "{% set ns = namespace(a=1) %}{{ ns.a }}{{ ns }}",
        None,
        "`<Namespace {…}>`; ours is the map",
    ),
    (
        "{% macro m() %}x{% endmacro %}{{ m }}",
        None,
        "`<Macro 'm'>`; ours describes the macro",
    ),
    (
        "{{ self }}",
        None,
        "`<TemplateReference None>`; ours is empty",
    ),
    // Templates here cannot modify lists and dicts (FM0311 warns at compile time).
    (
        "{{ context.d.setdefault('q', 1) }}",
        None,
        "mutating method: TypeError here",
    ),
    (
        "{{ context.d.pop('a') }}",
        None,
        "mutating method: TypeError here",
    ),
    (
        "{{ context.lst.append(4) }}",
        None,
        "mutating method: TypeError here",
    ),
    (
        "{% set _ = context.lst.append(4) %}{{ context.lst }}",
        None,
        "mutating method: TypeError here",
    ),
    // Macros do not collect extra arguments into `varargs`/`kwargs` (FM0311).
    (
        "{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, a=3) }}",
        None,
        "minijinja macros have no varargs",
    ),
    // Small gaps.
    (
        "{{ context.n.real }}",
        None,
        "number attributes (`real`, `imag`) are not provided",
    ),
    (
        "{{ context.users | groupby('admin') }}",
        None,
        "groupby with a missing attribute groups under none",
    ),
    (
        "{% for g in context.users | groupby('admin') %}{{ g.grouper }}:{{ g.list | length }};{% endfor %}",
        None,
        "same",
    ),
    // Jinja2 folds constant expressions at compile time and writes a folded infinity or NaN
    // into its generated Python code as `inf`/`nan`, a name that does not exist: NameError.
    // With the same numbers coming from data (cases further down) the errors agree.
    (
        "{{ ('inf' | float) | int }}",
        None,
        "OverflowError here, as Jinja2 with data",
    ),
    (
        "{{ '%d' % ('nan' | float) }}",
        None,
        "ValueError here, as Jinja2 with data",
    ),
];

fn load() -> Json {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/templates/cases.json"
    );
    let text = std::fs::read_to_string(path).expect("read cases.json");
    serde_json::from_str(&text).expect("cases.json is JSON")
}

fn outcome(t: &Templates, template: &str, vars: &Vars<'_>) -> Json {
    match t.render_str(template, vars) {
        Ok(text) => serde_json::json!({ "ok": text }),
        Err(e) => serde_json::json!({ "err": e.kind() }),
    }
}

fn known(template: &str, env: Env) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|(t, e, _)| *t == template && e.is_none_or(|e| e == env))
        .map(|(_, _, why)| *why)
}

#[test]
fn templates_render_like_jinja2() {
    let data = load();
    let context = &data["context"];
    let vars = Vars::new().with("context", context).with("input", context);
    let envs = [
        (Env::Machine, "machine", Templates::new()),
        (Env::Prompt, "prompt", Templates::for_prompts()),
    ];
    let cases = data["cases"].as_array().expect("cases");
    let (mut total, mut matching) = (0, 0);
    let mut failures = Vec::new();
    for case in cases {
        let template = case["template"].as_str().expect("template");
        for (env, key, t) in &envs {
            total += 1;
            let want = &case[*key];
            let got = outcome(t, template, &vars);
            let same = got == *want;
            matching += usize::from(same);
            match (same, known(template, *env)) {
                (true, Some(_)) => failures.push(format!(
                    "[{key}] {template:?} is listed in KNOWN but now matches: remove it"
                )),
                (false, None) => failures.push(format!(
                    "[{key}] {template:?}\n      want {want}\n      got  {got}"
                )),
                _ => {}
            }
        }
    }
    eprintln!("{matching} of {total} renders match Jinja2");
    assert!(
        failures.is_empty(),
        "{} differences from Jinja2:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Both environments define exactly the tests Jinja2 does (recorded in `cases.json`; the
/// compiler's FM0312 checks `select('name')` against the same list): each recorded test is
/// found, and the extra tests minijinja ships are not.
#[test]
fn tests_are_jinja2s() {
    let data = load();
    let ctx = serde_json::json!({});
    let vars = Vars::new().with("context", &ctx);
    let names: Vec<&str> = data["tests"]
        .as_array()
        .expect("tests recorded")
        .iter()
        .map(|n| n.as_str().expect("name"))
        .collect();
    assert!(names.contains(&"divisibleby") && names.len() > 30);
    for t in [Templates::new(), Templates::for_prompts()] {
        let kind = |name: &str| {
            // `select` looks the test up by name at run time, so every name can be tried.
            let src = format!("{{{{ [1] | select({name:?}, 1) | list }}}}");
            t.render_str(&src, &vars).err().map(|e| e.kind())
        };
        for name in &names {
            assert_ne!(kind(name), Some("TemplateRuntimeError"), "{name}");
        }
        for name in ["int", "safe", "startingwith", "endingwith", "nosuch"] {
            assert_eq!(kind(name), Some("TemplateRuntimeError"), "{name}");
        }
    }
}

/// A runaway loop stops at the fuel limit with an error naming it, instead of holding the
/// thread for hours (Jinja2 has no limit).
#[test]
fn runaway_loops_stop_at_the_fuel_limit() {
    let ctx = serde_json::json!({});
    let vars = Vars::new().with("context", &ctx);
    let t = Templates::new();
    let started = std::time::Instant::now();
    let err = t
        .render_str(
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
            &vars,
        )
        .expect_err("10^10 iterations must not complete");
    // About 20 s in a debug build (unoptimised minijinja), far less in release.
    eprintln!("fuel exhausted after {:?}", started.elapsed());
    assert_eq!(err.kind(), "RuntimeError");
    let limit = flatmachines::unstable::template::FUEL_LIMIT;
    assert!(
        err.to_string().contains(&format!(
            "template fuel limit of {limit} instructions exceeded"
        )),
        "{err}"
    );
    // (The prompt environment is built by the same function with the same limit; burning
    // 50 million instructions once is enough for a debug-build test.)
    // Ordinary loops are far below the limit: 100,000 items with some work each.
    let out = t
        .render_str(
            "{% set ns = namespace(n=0) %}{% for i in range(100000) %}{% if i is even %}{% set ns.n = ns.n + i %}{% endif %}{% endfor %}{{ ns.n }}",
            &vars,
        )
        .expect("a 100,000-item loop renders");
    assert_eq!(out, "2499950000");
}

/// What the expressions of one render print is bounded too.
#[test]
fn output_is_bounded() {
    let ctx = serde_json::json!({});
    let vars = Vars::new().with("context", &ctx);
    let err = Templates::new()
        .render_str(
            "{% for i in range(200) %}{{ 'x' * 1000000 }}{% endfor %}",
            &vars,
        )
        .expect_err("200 MB of output");
    assert_eq!(err.kind(), "MemoryError");
    let limit = flatmachines::unstable::template::MAX_OUTPUT;
    assert!(
        err.to_string()
            .contains(&format!("output limit of {limit} bytes")),
        "{err}"
    );
    // Just under the limit is fine.
    let out = Templates::new()
        .render_str(
            "{% for i in range(90) %}{{ 'x' * 1000000 }}{% endfor %}",
            &vars,
        )
        .expect("90 MB of output");
    assert_eq!(out.len(), 90_000_000);
}
