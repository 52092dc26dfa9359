//! Transition conditions compiled to Rust, and the transition function over `State`.
//!
//! A `simple`-engine condition becomes straight-line Rust over the context that calls, for each
//! construct, the runtime function the interpreter calls for it (`__private::ops`): `context.a.b`
//! is a chain of `ops::get` on the JSON, operators are `ops::lt`, `ops::add`, …, `and`/`or` are
//! Rust's short-circuiting `&&`/`||` and comparison chains are nested blocks that stop at the
//! first false link. Operands are evaluated in the interpreter's order, so the first error
//! raised is the same one. CEL conditions, and text that does not parse (only in a machine with
//! errors), are left to the interpreter.

use crate::expr::simple::{self, ArithOp, CmpOp, Expr, ExprKind, Literal};
use crate::ir;
use proc_macro2::{Ident, Literal as Lit, TokenStream};
use quote::{format_ident, quote};
use std::collections::HashMap;

/// How a transition's condition is evaluated.
enum Kind {
    /// Compiled to Rust.
    Native(Expr),
    /// Interpreted at run time (CEL, or text that does not parse).
    Lazy { cel: bool },
}

/// One distinct condition text of an engine, with where it is used.
struct Entry {
    text: String,
    kind: Kind,
    ident: Ident,
    used_in: Vec<String>,
}

/// Every condition of a bundle, each text once per engine.
pub(super) struct Conditions {
    entries: Vec<Entry>,
    by_text: HashMap<(bool, String), usize>,
}

impl Conditions {
    /// Collects the conditions of every machine of `bundle`, the entry machine first.
    pub(super) fn collect(bundle: &ir::Bundle) -> Self {
        let mut this = Conditions {
            entries: Vec::new(),
            by_text: HashMap::new(),
        };
        for m in bundle.machines.iter() {
            let cel = m.engine == ir::Engine::Cel;
            for s in m.states.iter() {
                for t in s.transitions.iter().chain(s.loop_exits.iter()) {
                    if let Some(c) = t.condition {
                        let used = format!("state `{}` of `{}`", s.name, m.name);
                        this.add(&m.conditions[c as usize], cel, used);
                    }
                }
            }
        }
        this
    }

    fn add(&mut self, text: &str, cel: bool, used: String) {
        let key = (cel, text.to_string());
        if let Some(&i) = self.by_text.get(&key) {
            if !self.entries[i].used_in.contains(&used) {
                self.entries[i].used_in.push(used);
            }
            return;
        }
        let kind = if cel {
            Kind::Lazy { cel: true }
        } else {
            match simple::parse(text) {
                Ok(Some(expr)) => Kind::Native(expr),
                // Blank text is an unconditional transition in the IR, never a condition.
                Ok(None) | Err(_) => Kind::Lazy { cel: false },
            }
        };
        let ident = format_ident!("C{}", self.entries.len());
        self.by_text.insert(key, self.entries.len());
        self.entries.push(Entry {
            text: text.to_string(),
            kind,
            ident,
            used_in: vec![used],
        });
    }

    /// The item of condition `text` of a machine (with engine `cel`).
    fn item(&self, text: &str, cel: bool) -> &Ident {
        &self.entries[self.by_text[&(cel, text.to_string())]].ident
    }

    /// The `conditions` module: one item per condition.
    pub(super) fn module(&self) -> TokenStream {
        let items = self.entries.iter().map(|e| {
            let ident = &e.ident;
            let text = Lit::string(&e.text);
            let doc = format!(" `{}`", e.text.trim());
            let used = format!(" Used in {}.", e.used_in.join(", "));
            match &e.kind {
                Kind::Native(expr) => {
                    let body = Gen::default().truth(expr);
                    let func = format_ident!("{}", ident.to_string().to_lowercase());
                    quote! {
                        #[doc = #doc]
                        #[doc = ""]
                        #[doc = #used]
                        pub const #ident: ::flatmachines::__private::NativeCondition =
                            ::flatmachines::__private::NativeCondition::new(#text, #func);

                        fn #func(
                            context: &::flatmachines::__private::serde_json::Value,
                        ) -> ::core::result::Result<bool, ::flatmachines::__private::ConditionError> {
                            ::core::result::Result::Ok(#body)
                        }
                    }
                }
                Kind::Lazy { cel } => {
                    let engine = if *cel {
                        quote!(::flatmachines::__private::Engine::Cel)
                    } else {
                        quote!(::flatmachines::__private::Engine::Simple)
                    };
                    let how = if *cel {
                        " A CEL condition: interpreted, parsed on first use."
                    } else {
                        " Does not parse: interpreted, so it fails as the interpreter does."
                    };
                    quote! {
                        #[doc = #doc]
                        #[doc = ""]
                        #[doc = #how]
                        #[doc = #used]
                        pub static #ident: ::flatmachines::__private::LazyCondition =
                            ::flatmachines::__private::LazyCondition::new(#text, #engine);
                    }
                }
            }
        });
        let natives = self.entries.iter().filter_map(|e| match e.kind {
            Kind::Native(_) => Some(&e.ident),
            Kind::Lazy { .. } => None,
        });
        quote! {
            /// The machine's transition conditions (and its child machines'), one item per
            /// distinct text. `simple`-engine ones are compiled to Rust; CEL ones are interpreted.
            pub mod conditions {
                #[allow(unused_imports)]
                use ::flatmachines::__private::ops;

                #(#items)*

                /// The conditions compiled to Rust (each with its text), which the
                /// [`transitions`](super::transitions) functions call.
                pub const ALL: &[::flatmachines::__private::NativeCondition] = &[#(#natives),*];
            }
        }
    }
}

/// The name of the generated transition function of machine `i` of the bundle.
pub(super) fn next_fn_name(i: usize) -> Ident {
    format_ident!("next_{}", i)
}

/// The `transitions` module: for every machine of the bundle, the function the executor calls
/// to choose the next state (by index), with the conditions compiled to Rust.
pub(super) fn transitions_module(bundle: &ir::Bundle, conditions: &Conditions) -> TokenStream {
    let fns = bundle.machines.iter().enumerate().map(|(i, m)| {
        let func = next_fn_name(i);
        let cel = m.engine == ir::Engine::Cel;
        let machine = Lit::string(&m.name);
        let mut uses_context = false;
        // One `match` arm per state: the transitions in order, the first that holds wins.
        let mut arms_of = |pick: &dyn Fn(&ir::StateIr) -> &[ir::Transition]| {
            let mut arms = Vec::new();
            for (si, s) in m.states.iter().enumerate() {
                let transitions = pick(s);
                if s.is_final || transitions.is_empty() {
                    continue;
                }
                let name = Lit::string(&s.name);
                let mut body = Vec::new();
                let mut fallthrough =
                    quote!(::core::result::Result::Ok(::core::option::Option::None));
                for t in transitions {
                    let target = t.target as usize;
                    let next =
                        quote!(::core::result::Result::Ok(::core::option::Option::Some(#target)));
                    match t.condition {
                        None => {
                            fallthrough = next;
                            break;
                        }
                        Some(c) => {
                            uses_context = true;
                            let cond = conditions.item(&m.conditions[c as usize], cel);
                            body.push(quote! {
                                if ::flatmachines::__private::holds(&super::conditions::#cond, context, #machine, #name)? {
                                    return #next;
                                }
                            });
                        }
                    }
                }
                arms.push(if body.is_empty() {
                    quote!(#si => #fallthrough,)
                } else {
                    quote!(#si => {
                        #(#body)*
                        #fallthrough
                    })
                });
            }
            arms
        };
        let arms = arms_of(&|s| &s.transitions);
        let exit_arms = arms_of(&|s| &s.loop_exits);
        let exits = if exit_arms.is_empty() {
            quote! {
                if loop_exit {
                    return ::core::result::Result::Ok(::core::option::Option::None);
                }
            }
        } else {
            quote! {
                if loop_exit {
                    return match from {
                        #(#exit_arms)*
                        _ => ::core::result::Result::Ok(::core::option::Option::None),
                    };
                }
            }
        };
        let unused = (!uses_context).then(|| quote!(let _ = context;));
        let doc = format!(
            " The next state of `{}` after state `from` (by index): the first transition whose \
             condition holds, in YAML order; `None` for a final state or when none holds. With \
             `loop_exit`, only the conditional transitions a tool loop checks after each tool \
             call.",
            m.name
        );
        quote! {
            #[doc = #doc]
            pub fn #func(
                from: usize,
                context: &::flatmachines::__private::serde_json::Value,
                loop_exit: bool,
            ) -> ::core::result::Result<::core::option::Option<usize>, ::flatmachines::Error> {
                #unused
                #exits
                match from {
                    #(#arms)*
                    _ => ::core::result::Result::Ok(::core::option::Option::None),
                }
            }
        }
    });
    let names = (0..bundle.machines.len()).map(next_fn_name);
    quote! {
        /// The generated transition functions, one per machine of [`IR`](super::IR) (the
        /// machine, then its children), which the executor calls to move between states.
        pub mod transitions {
            #(#fns)*

            /// Every function above, by machine index.
            pub static ALL: &[::flatmachines::__private::NextFn] = &[#(#names),*];
        }
    }
}

/// The typed transition function `next_state` and its async form `transition`, for the entry
/// machine: the executor's own function, over `State`.
pub(super) fn typed_transition_fns(has_states: bool) -> TokenStream {
    if !has_states {
        return quote!();
    }
    quote! {
        /// The state the machine moves to from `from`, as the executor chooses it: the first
        /// transition whose condition holds, in YAML order (conditions compiled to Rust).
        /// `None` for a final state, or when no condition holds (the run ends there).
        ///
        /// # Errors
        /// [`::flatmachines::Error::Condition`] when a condition fails to evaluate (as in
        /// Python: `'<' not supported between instances of 'str' and 'int'`, …).
        pub fn next_state(
            from: State,
            context: &::flatmachines::__private::serde_json::Value,
        ) -> ::core::result::Result<::core::option::Option<State>, ::flatmachines::Error> {
            ::core::result::Result::Ok(transitions::next_0(from.index(), context, false)?.map(|i| State::ALL[i]))
        }

        /// The executor's whole transition step out of `from`: [`next_state`], then the
        /// hooks' `on_transition`, which may redirect to another state (a name that is not a
        /// state ends the run, `None`) or edit the context.
        ///
        /// # Errors
        /// As [`next_state`].
        pub async fn transition<H>(
            hooks: &H,
            from: State,
            context: &mut ::flatmachines::__private::serde_json::Value,
        ) -> ::core::result::Result<::core::option::Option<State>, ::flatmachines::Error>
        where
            H: ::flatmachines::__private::MachineHooks + ?Sized,
        {
            let ::core::option::Option::Some(to) = next_state(from, context)? else {
                return ::core::result::Result::Ok(::core::option::Option::None);
            };
            let chosen =
                ::flatmachines::__private::on_transition(hooks, from.name(), to.name(), context).await;
            ::core::result::Result::Ok(match chosen {
                ::core::option::Option::Some(name) if name == to.name() => ::core::option::Option::Some(to),
                ::core::option::Option::Some(name) => State::from_name(&name),
                ::core::option::Option::None => ::core::option::Option::None,
            })
        }
    }
}

/// Rust for one expression, numbering the variables of comparison chains.
#[derive(Default)]
struct Gen {
    vars: usize,
}

impl Gen {
    /// A `bool` expression: the expression's Python truthiness. `and`/`or` come out without
    /// enclosing parentheses; [`Gen::operand`] adds them where Rust's precedence needs them.
    fn truth(&mut self, e: &Expr) -> TokenStream {
        match &e.kind {
            ExprKind::Not(x) => {
                let x = self.operand(x, false);
                quote!(!#x)
            }
            ExprKind::And(items) => self.join(items, &quote!(&&), true),
            ExprKind::Or(items) => self.join(items, &quote!(||), false),
            ExprKind::Compare { first, rest } => self.chain(first, rest),
            _ => {
                let v = self.value(e);
                quote!(ops::truthy(&#v))
            }
        }
    }

    /// [`Gen::truth`] of an operand of `!` (`in_and` false) or `&&` (`in_and` true):
    /// parenthesised when it is an `or`, or for `!` an `and`.
    fn operand(&mut self, e: &Expr, in_and: bool) -> TokenStream {
        let t = self.truth(e);
        match e.kind {
            ExprKind::Or(_) => quote!((#t)),
            ExprKind::And(_) if !in_and => quote!((#t)),
            _ => t,
        }
    }

    /// `a op b op …` over the operands' truthiness.
    fn join(&mut self, items: &[Expr], op: &TokenStream, and: bool) -> TokenStream {
        let mut out = TokenStream::new();
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.extend(op.clone());
            }
            out.extend(if and {
                self.operand(item, true)
            } else {
                self.truth(item)
            });
        }
        out
    }

    /// A `PyValue` expression.
    fn value(&mut self, e: &Expr) -> TokenStream {
        if let Some(json) = json_path(e) {
            return quote!(ops::val(#json));
        }
        match &e.kind {
            ExprKind::Literal(lit) => literal(lit),
            ExprKind::Name(name) => {
                let name = Lit::string(name);
                quote!(ops::name(#name, context)?)
            }
            ExprKind::Attr(base, name) => {
                let base = self.value(base);
                let name = Lit::string(name);
                quote!(ops::attr(&#base, #name))
            }
            ExprKind::Index(base, key) => {
                let base = self.value(base);
                let key = self.value(key);
                quote!(ops::index(&#base, &#key)?)
            }
            ExprKind::Not(_) | ExprKind::And(_) | ExprKind::Or(_) | ExprKind::Compare { .. } => {
                let b = self.truth(e);
                quote!(ops::boolean(#b))
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let f = match op {
                    ArithOp::Add => quote!(add),
                    ArithOp::Sub => quote!(sub),
                    ArithOp::Mul => quote!(mul),
                    ArithOp::Div => quote!(div),
                };
                let l = self.value(lhs);
                let r = self.value(rhs);
                quote!(ops::#f(&#l, &#r)?)
            }
        }
    }

    /// `first op1 x1 op2 x2 …`: each link compares the previous right operand with the next,
    /// each operand evaluated once, and the chain stops at the first false link.
    fn chain(&mut self, first: &Expr, rest: &[(CmpOp, Expr)]) -> TokenStream {
        if let [(op, rhs)] = rest {
            let l = self.value(first);
            let r = self.value(rhs);
            return compare(*op, &l, &r);
        }
        let first_value = self.value(first);
        let values: Vec<TokenStream> = rest.iter().map(|(_, x)| self.value(x)).collect();
        let vars: Vec<Ident> = (0..=rest.len())
            .map(|_| {
                self.vars += 1;
                format_ident!("v{}", self.vars - 1)
            })
            .collect();
        let link = |i: usize| {
            let (a, b) = (&vars[i], &vars[i + 1]);
            compare(rest[i].0, &quote!(#a), &quote!(#b))
        };
        let last = rest.len() - 1;
        let mut tail = link(last);
        for i in (1..last + 1).rev() {
            let (var, value) = (&vars[i + 1], &values[i]);
            let this = link(i - 1);
            tail = quote!(#this && { let #var = #value; #tail });
        }
        // `tail` now starts with link 0, which needs v0 and v1.
        let (v0, v1, x1) = (&vars[0], &vars[1], &values[0]);
        quote!({
            let #v0 = #first_value;
            let #v1 = #x1;
            #tail
        })
    }
}

fn compare(op: CmpOp, a: &TokenStream, b: &TokenStream) -> TokenStream {
    match op {
        CmpOp::Eq => quote!(ops::eq(&#a, &#b)),
        CmpOp::NotEq => quote!(ops::ne(&#a, &#b)),
        CmpOp::Lt => quote!(ops::lt(&#a, &#b)?),
        CmpOp::LtE => quote!(ops::le(&#a, &#b)?),
        CmpOp::Gt => quote!(ops::gt(&#a, &#b)?),
        CmpOp::GtE => quote!(ops::ge(&#a, &#b)?),
    }
}

/// `context` or `context.a.b…` as a `&Value` expression: attribute chains on the context read
/// the JSON directly, with no intermediate Python values.
fn json_path(e: &Expr) -> Option<TokenStream> {
    match &e.kind {
        ExprKind::Name(n) if n == "context" => Some(quote!(context)),
        ExprKind::Attr(base, name) => {
            let base = json_path(base)?;
            let name = Lit::string(name);
            Some(quote!(ops::get(#base, #name)))
        }
        _ => None,
    }
}

fn literal(lit: &Literal) -> TokenStream {
    match lit {
        Literal::Int(i) => {
            let i = Lit::i64_unsuffixed(*i);
            quote!(ops::int(#i))
        }
        Literal::Float(f) if f.is_finite() => {
            let f = Lit::f64_unsuffixed(*f);
            quote!(ops::float(#f))
        }
        // Only `inf` can be written (`1e999`); there is no unary minus and no NaN literal.
        Literal::Float(f) if *f > 0.0 => quote!(ops::float(f64::INFINITY)),
        Literal::Float(f) if *f < 0.0 => quote!(ops::float(f64::NEG_INFINITY)),
        Literal::Float(_) => quote!(ops::float(f64::NAN)),
        Literal::Str(s) => {
            let s = Lit::string(s);
            quote!(ops::string(#s))
        }
        Literal::Bool(b) => quote!(ops::boolean(#b)),
        Literal::Null => quote!(ops::NULL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated body of `src`, formatted, with whitespace runs collapsed to one space.
    fn rust_of(src: &str) -> String {
        let expr = simple::parse(src).unwrap().unwrap();
        let body = Gen::default().truth(&expr);
        let f: syn::File = syn::parse2(quote! { fn f() -> R { Ok(#body) } }).unwrap();
        let code = prettyplease::unparse(&f);
        let compact = code.split_whitespace().collect::<Vec<_>>().join(" ");
        compact
            .replace("( ", "(")
            .replace(" )", ")")
            .replace(",)", ")")
    }

    #[test]
    fn context_paths_read_the_json() {
        let code = rust_of("context.d.a.b == 5");
        assert!(
            code.contains(r#"ops::val(ops::get(ops::get(ops::get(context, "d"), "a"), "b"))"#),
            "{code}"
        );
    }

    #[test]
    fn chains_bind_each_operand_once_and_stop_at_the_first_false_link() {
        let code = rust_of("1 < context.round < 3 <= context.x");
        assert!(
            code.contains(
                "let v0 = ops::int(1); let v1 = ops::val(ops::get(context, \"round\")); \
                 ops::lt(&v0, &v1)? && { let v2 = ops::int(3); ops::lt(&v1, &v2)? && { \
                 let v3 = ops::val(ops::get(context, \"x\")); ops::le(&v2, &v3)? } }"
            ),
            "{code}"
        );
    }

    #[test]
    fn and_or_not_are_rust_operators_over_truthiness() {
        let code = rust_of("not context.a or context.b and 'x'");
        assert!(
            code.contains(
                "Ok(!ops::truthy(&ops::val(ops::get(context, \"a\"))) || \
                 ops::truthy(&ops::val(ops::get(context, \"b\"))) && \
                 ops::truthy(&ops::string(\"x\")))"
            ),
            "{code}"
        );
        // Parentheses only where Rust's precedence needs them.
        let code = rust_of("not (context.a and context.b) and (context.c or context.d)");
        let (a, b, c, d) = ["a", "b", "c", "d"]
            .map(|k| format!("ops::truthy(&ops::val(ops::get(context, \"{k}\")))"))
            .into();
        assert!(
            code.contains(&format!("Ok(!({a} && {b}) && ({c} || {d}))")),
            "{code}"
        );
    }

    #[test]
    fn other_constructs_use_python_values() {
        let code = rust_of("(context.a + 1.5)[0].x * None / True");
        for part in [
            "ops::add(&ops::val(ops::get(context, \"a\")), &ops::float(1.5))?",
            "ops::index(&",
            "&ops::int(0))?",
            "ops::attr(&",
            "ops::mul(&",
            "&ops::NULL)?",
            "ops::div(&",
            "&ops::boolean(true))?",
        ] {
            assert!(code.contains(part), "{part} not in {code}");
        }
        let code = rust_of("1e999 > input.x");
        assert!(code.contains("ops::float(f64::INFINITY)"), "{code}");
        assert!(code.contains("ops::name(\"input\", context)?"), "{code}");
        assert!(
            rust_of("context['k']")
                .contains("ops::index(&ops::val(context), &ops::string(\"k\"))?")
        );
    }
}
