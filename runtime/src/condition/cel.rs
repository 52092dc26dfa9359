//! The CEL engine (`expression_engine: cel`), on the `cel` crate.

use super::{ConditionError, ErrorKind};
use cel::common::ast::{CallExpr, EntryExpr, Expr as CelExpr};
use cel::common::value::CowVal;
use cel::objects::{Key, Map};
use cel::{Context, Env, ExecutionError, FunctionContext, IdedExpr, Program, Value as CelValue};
use serde_json::Value;
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

/// Deepest CEL syntax tree accepted (a lone identifier has depth 1). Far beyond what a
/// hand-written condition needs; the parser alone accepts, for example, thousands of
/// chained `+` or `.field` selections, which would overflow any stack when evaluated.
pub const MAX_CEL_DEPTH: usize = 200;

/// Deepest syntax tree evaluated on the caller's thread. The `cel` interpreter recurses
/// once per level with large frames (about 40 KiB in debug builds, 2 KiB in release
/// builds); deeper programs are evaluated on a helper thread with [`EVAL_STACK`].
/// Typical conditions (`context.score >= 8 && size(context.items) > 0`) have depth 5.
const INLINE_DEPTH: usize = if cfg!(debug_assertions) { 10 } else { 48 };

/// Stack of the helper thread that evaluates programs deeper than [`INLINE_DEPTH`]:
/// enough for [`MAX_CEL_DEPTH`] levels in a debug build. Only the pages actually touched
/// are committed.
const EVAL_STACK: usize = 64 << 20;

/// Most items the comprehensions of one evaluation (`all`, `exists`, `exists_one`, `map`,
/// `filter`) may range over, all together: a comprehension costs the length of its list (or
/// map) each time it starts, so nested ones cost the product. `[..100k items..].all(x,
/// list.exists(y, y == x))` would otherwise run for hours; past the budget the evaluation fails
/// with a `ValueError` naming this limit. Real conditions stay far below it.
pub const MAX_CEL_ITERATIONS: u64 = 1_000_000;

/// The function the comprehensions of a compiled program call on their range, to charge it
/// to the evaluation's budget. `@` names cannot be written in CEL source, so no condition can
/// call or shadow it.
const CHARGE: &str = "@flatmachines_charge";

thread_local! {
    /// What is left of [`MAX_CEL_ITERATIONS`] for the evaluation running on this thread.
    static BUDGET: Cell<u64> = const { Cell::new(MAX_CEL_ITERATIONS) };
    /// Whether the evaluation running on this thread ran out of budget.
    static EXHAUSTED: Cell<bool> = const { Cell::new(false) };
}

/// [`CHARGE`]: counts the items of its argument (a list or map) against the budget and passes
/// the argument through as it is, without converting it (which would cost as much as the loop).
fn charge<'c, 'v>(ftx: &mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError> {
    let Some(range) = ftx.args.first().cloned() else {
        return Err(ftx.error("expects the comprehension's range"));
    };
    let items = range.as_ref().as_sizer().map_or(0, |s| *s.size().inner());
    let left = BUDGET.get();
    match u64::try_from(items) {
        Ok(items) if items <= left => {
            BUDGET.set(left - items);
            Ok(range)
        }
        _ => {
            EXHAUSTED.set(true);
            Err(ftx.error("iteration budget exhausted"))
        }
    }
}

/// The type `cel` registers raw functions as (`Function` in its private `magic` module).
type RawFunction = Box<
    dyn for<'c, 'v> Fn(&mut FunctionContext<'c, 'v>) -> Result<CowVal<'c, 'v>, ExecutionError>
        + Send
        + Sync,
>;

/// Makes every comprehension of `e` charge its range to the budget (`iter_range` becomes
/// `@flatmachines_charge(iter_range)`); returns whether there was one. The loop itself is left
/// as the macro expanded it, so the interpreter's fast paths for `map`/`filter`/`all`/`exists`
/// still apply. Recurses as deep as the tree ([`MAX_CEL_DEPTH`]).
fn instrument(e: &mut IdedExpr) -> bool {
    let mut found = false;
    let mut visit = |e: &mut IdedExpr| found |= instrument(e);
    match &mut e.expr {
        CelExpr::Unspecified | CelExpr::Ident(_) | CelExpr::Literal(_) => {}
        CelExpr::Call(call) => {
            if let Some(t) = call.target.as_deref_mut() {
                visit(t);
            }
            call.args.iter_mut().for_each(visit);
        }
        CelExpr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                visit(part);
            }
            let range = std::mem::take(&mut c.iter_range);
            c.iter_range = IdedExpr {
                id: range.id,
                expr: CelExpr::Call(CallExpr {
                    func_name: CHARGE.to_owned(),
                    target: None,
                    args: vec![range],
                }),
            };
            found = true;
        }
        CelExpr::List(list) => list.elements.iter_mut().for_each(visit),
        CelExpr::Map(map) => {
            for entry in &mut map.entries {
                match &mut entry.expr {
                    EntryExpr::StructField(f) => visit(&mut f.value),
                    EntryExpr::MapEntry(m) => {
                        visit(&mut m.key);
                        visit(&mut m.value);
                    }
                }
            }
        }
        CelExpr::Select(select) => visit(&mut select.operand),
        CelExpr::Struct(st) => {
            for entry in &mut st.entries {
                match &mut entry.expr {
                    EntryExpr::StructField(f) => visit(&mut f.value),
                    EntryExpr::MapEntry(m) => {
                        visit(&mut m.key);
                        visit(&mut m.value);
                    }
                }
            }
        }
    }
    found
}

/// Deepest JSON nesting converted to CEL values (`serde_json` parses at most 128).
const MAX_CONTEXT_DEPTH: usize = 256;

/// Stack for the thread that runs the `cel` parser, which needs far more than a default
/// thread has for deeply nested input (see `flatmachines_compiler::expr::cel`). Only the
/// pages actually touched are committed.
const PARSER_STACK: usize = 128 << 20;

/// The standard CEL environment, shared by every program.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

/// A compiled CEL condition, cheap to clone and shareable across threads.
///
/// Evaluation follows standard CEL over the JSON context, bound as the variable `context`:
/// JSON objects are maps with string keys, arrays lists, integers `int` (`uint` above
/// `i64::MAX`), other numbers `double`, plus strings, bools and null. So
/// `context.score >= 8 && size(context.items) > 0`, `has(context.x)`,
/// `context.name.startsWith("b")` and `context.items.exists(i, i > 2)` work as in any CEL
/// implementation. Selecting a missing key (`context.missing`) is an error; use `has()`.
/// Numbers compare across `int`, `uint` and `double` (`context.score == 8` and
/// `context.score == 8.0` are both true for a score of 8), but arithmetic does not mix
/// them (`context.score + 0.5` is an error).
///
/// The result is converted to a boolean with Python truthiness: a CEL `bool` as is; null,
/// zero, empty strings, bytes, lists and maps and a zero duration are false; anything else
/// is true.
///
/// The reference (flatmachines 2.6.0 with cel-python 0.5.0) cannot select fields of the
/// context at all ("does not support field selection"); this is the standard behaviour it
/// intends.
#[derive(Clone)]
pub struct CelCondition {
    source: Arc<str>,
    program: Arc<Program>,
    /// The program's tree with its comprehensions charging the budget, if it has any: what
    /// is evaluated.
    charged: Option<Arc<IdedExpr>>,
    depth: usize,
}

impl fmt::Debug for CelCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CelCondition").field(&self.source).finish()
    }
}

fn cel_error(src: &str, error: impl fmt::Display) -> ConditionError {
    ConditionError::new(
        ErrorKind::ValueError,
        format!("CEL expression error: {src} - {error}"),
    )
}

impl CelCondition {
    /// Parses `src` (not empty: [`Condition::compile`](super::Condition::compile) turns
    /// empty text into `Always` first).
    ///
    /// Parsing runs on a short-lived thread with a large stack, so that no input can
    /// overflow the caller's stack; compile once per machine, not per evaluation.
    ///
    /// # Errors
    /// `ValueError` `CEL expression error: <src> - <error>` for a syntax error, for text
    /// longer than `flatmachines_ir::expr::MAX_CEL_LEN` bytes, or for a syntax tree
    /// deeper than [`MAX_CEL_DEPTH`].
    pub fn compile(src: &str) -> Result<CelCondition, ConditionError> {
        use flatmachines_ir::expr::MAX_CEL_LEN as MAX_LEN;
        if src.len() > MAX_LEN {
            return Err(cel_error(
                src,
                format!(
                    "expression is too long ({} bytes; at most {MAX_LEN})",
                    src.len()
                ),
            ));
        }
        let owned = src.to_owned();
        let outcome = std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(PARSER_STACK)
            .spawn(
                move || -> Result<(Program, Option<IdedExpr>, usize), String> {
                    let program = Program::compile(&owned).map_err(|e| e.to_string())?;
                    let depth = depth(program.expression(), MAX_CEL_DEPTH + 1);
                    if depth > MAX_CEL_DEPTH {
                        // Dropped here, on the large stack: dropping is recursive too.
                        drop(program);
                        return Err(format!(
                            "expression is nested too deeply (more than {MAX_CEL_DEPTH} levels)"
                        ));
                    }
                    let mut charged = program.expression().clone();
                    let charged = instrument(&mut charged).then_some(charged);
                    Ok((program, charged, depth))
                },
            )
            .map_err(|e| cel_error(src, format!("could not start the CEL parser: {e}")))?
            .join();
        match outcome {
            Ok(Ok((program, charged, depth))) => Ok(CelCondition {
                source: Arc::from(src),
                program: Arc::new(program),
                charged: charged.map(Arc::new),
                depth,
            }),
            Ok(Err(message)) => Err(cel_error(src, message)),
            Err(_) => Err(cel_error(src, "the CEL parser failed on this expression")),
        }
    }

    /// The condition text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The compiled program.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// The depth of the program's syntax tree (a lone identifier has depth 1).
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Evaluates the program with `context` bound to the variable `context` and returns
    /// the CEL result.
    ///
    /// The context is converted to CEL values on every call. Programs deeper than a few
    /// levels (10 in debug builds, 48 in release builds; see [`CelCondition::depth`]) are
    /// evaluated on a short-lived helper thread with a large stack, as the `cel`
    /// interpreter's recursion could otherwise overflow the caller's stack.
    ///
    /// # Errors
    /// `ValueError` `CEL expression error: <src> - <error>` for any evaluation error
    /// (missing key, no matching overload, division by zero, …), for a context nested
    /// deeper than 256 levels, and for a panic inside the `cel` crate.
    pub fn evaluate_value(&self, context: &Value) -> Result<CelValue, ConditionError> {
        let value = json_to_cel(context, 0).map_err(|e| cel_error(&self.source, e))?;
        let run = || -> Result<CelValue, String> {
            let mut ctx = Context::with_env(Arc::clone(env()));
            ctx.add_variable_from_value("context", value);
            let outcome = match &self.charged {
                None => catch_unwind(AssertUnwindSafe(|| self.program.execute(&ctx))),
                Some(charged) => {
                    // The budget is per evaluation, on the thread that evaluates.
                    BUDGET.set(MAX_CEL_ITERATIONS);
                    EXHAUSTED.set(false);
                    ctx.add_function(CHARGE, Box::new(charge) as RawFunction)
                        .map_err(|e| format!("cannot set up the iteration budget: {e}"))?;
                    catch_unwind(AssertUnwindSafe(|| CelValue::resolve(charged, &ctx)))
                }
            };
            match outcome {
                // Also when the result is a value: `all()`/`exists()` let a later element
                // override an error (`error && false` is false), which must not turn an
                // evaluation cut short into an answer.
                Ok(_) if self.charged.is_some() && EXHAUSTED.get() => Err(format!(
                    "the comprehensions (all, exists, exists_one, map, filter) of one \
                     evaluation may range over at most {MAX_CEL_ITERATIONS} items in all"
                )),
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the CEL interpreter failed".to_owned()),
            }
        };
        let outcome = if self.depth <= INLINE_DEPTH {
            run()
        } else {
            std::thread::scope(|scope| {
                std::thread::Builder::new()
                    .name("cel-eval".into())
                    .stack_size(EVAL_STACK)
                    .spawn_scoped(scope, run)
                    .map_err(|e| format!("could not start the CEL interpreter: {e}"))?
                    .join()
                    .unwrap_or_else(|_| Err("the CEL interpreter failed".to_owned()))
            })
        };
        outcome.map_err(|e| cel_error(&self.source, e))
    }

    /// Evaluates the program and converts the result with Python truthiness.
    ///
    /// # Errors
    /// As [`CelCondition::evaluate_value`].
    pub fn evaluate(&self, context: &Value) -> Result<bool, ConditionError> {
        self.evaluate_value(context).map(|v| cel_truthy(&v))
    }
}

/// Python truthiness of a CEL result once converted to a plain value: `bool` as is; null,
/// `0`, `0u`, `0.0`, empty string, bytes, list or map, and a zero duration are false;
/// anything else (timestamps, types, …) is true.
pub fn cel_truthy(v: &CelValue) -> bool {
    match v {
        CelValue::Bool(b) => *b,
        other => !other.is_zero(),
    }
}

/// Converts a JSON value to a CEL value.
fn json_to_cel(v: &Value, depth: usize) -> Result<CelValue, String> {
    if depth > MAX_CONTEXT_DEPTH {
        return Err(format!(
            "the context is nested too deeply (more than {MAX_CONTEXT_DEPTH} levels)"
        ));
    }
    Ok(match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                CelValue::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => CelValue::List(Arc::new(
            items
                .iter()
                .map(|item| json_to_cel(item, depth + 1))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(map) => {
            let mut out = HashMap::with_capacity(map.len());
            for (k, item) in map {
                out.insert(
                    Key::String(Arc::new(k.clone())),
                    json_to_cel(item, depth + 1)?,
                );
            }
            CelValue::Map(Map { map: Arc::new(out) })
        }
    })
}

/// Depth of a CEL syntax tree (a lone identifier has depth 1), counting no further than
/// `limit`.
fn depth(e: &IdedExpr, limit: usize) -> usize {
    if limit == 0 {
        return 0;
    }
    let below = |e: &IdedExpr| depth(e, limit - 1);
    let entries = |entries: &[cel::common::ast::IdedEntryExpr]| {
        entries
            .iter()
            .map(|entry| match &entry.expr {
                EntryExpr::StructField(f) => below(&f.value),
                EntryExpr::MapEntry(m) => below(&m.key).max(below(&m.value)),
            })
            .max()
            .unwrap_or(0)
    };
    1 + match &e.expr {
        CelExpr::Unspecified | CelExpr::Ident(_) | CelExpr::Literal(_) => 0,
        CelExpr::Call(call) => call
            .target
            .iter()
            .map(|t| below(t))
            .chain(call.args.iter().map(below))
            .max()
            .unwrap_or(0),
        CelExpr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .map(below)
        .max()
        .unwrap_or(0),
        CelExpr::List(list) => list.elements.iter().map(below).max().unwrap_or(0),
        CelExpr::Map(map) => entries(&map.entries),
        CelExpr::Select(select) => below(&select.operand),
        CelExpr::Struct(s) => entries(&s.entries),
    }
}

#[cfg(test)]
mod tests;
