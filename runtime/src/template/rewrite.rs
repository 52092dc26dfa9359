//! Load-time rewrite of the two operators minijinja evaluates differently from Jinja2.
//!
//! * `a % b`: Jinja2 hands it to Python, so `'%.2f' % x` and `'%s-%s' % (a, b)` format
//!   strings printf-style; minijinja only knows the numeric remainder.
//! * `a ~ b`: Jinja2 joins `str(a)` and `str(b)`, so floats print as Python does (`1e-05`);
//!   minijinja prints its own float text (`0.00001`).
//!
//! minijinja has no hook for operators, so before a template is compiled every such
//! operator is replaced by a call of a global function that does what Python does:
//! `a % b` becomes `__fm_mod(a, b)` and `a ~ b` becomes `__fm_concat(a, b)`. The operands are
//! found with minijinja's own parser (so precedence and associativity are exactly the ones
//! the unrewritten template would have had) and its own tokenizer (so a `%` or `~` inside a
//! string literal is never touched). Only characters are inserted or replaced inside the
//! expression, never newlines, so line numbers of later errors are unchanged. Text the parser
//! refuses is returned as it is: compiling it reports the syntax error of the original.

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::{Token, parse, tokenize};
use minijinja::syntax::SyntaxConfig;

/// The global that replaces `%`.
pub(crate) const MOD_FN: &str = "__fm_mod";
/// The global that replaces `~`.
pub(crate) const CONCAT_FN: &str = "__fm_concat";

/// Whether `source` may hold a `%` or `~` operator (a `%` that is not part of `{%`/`%}`),
/// so that templates without one are never parsed twice.
fn may_need_rewrite(source: &str) -> bool {
    if source.contains('~') {
        return true;
    }
    let bytes = source.as_bytes();
    bytes.iter().enumerate().any(|(i, b)| {
        *b == b'%' && !(i > 0 && bytes[i - 1] == b'{') && bytes.get(i + 1) != Some(&b'}')
    })
}

/// One operator to replace: the whole expression `[start, end)` and the operator token.
struct Site {
    start: usize,
    op_start: usize,
    op_end: usize,
    end: usize,
    func: &'static str,
}

/// Rewrites the `%` and `~` operators of `source` (see the module docs).
pub(crate) fn rewrite(source: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !may_need_rewrite(source) {
        return Cow::Borrowed(source);
    }
    let Ok(ast) = parse(source, "<template>", SyntaxConfig::default()) else {
        return Cow::Borrowed(source);
    };
    let mut spans = Vec::new();
    visit_stmt(&ast, &mut spans);
    if spans.is_empty() {
        return Cow::Borrowed(source);
    }
    // Operator tokens with their bracket depth, in source order.
    let mut ops: Vec<(usize, usize, usize, bool)> = Vec::new();
    let mut depth = 0usize;
    for token in tokenize(source, false, SyntaxConfig::default()) {
        let Ok((token, span)) = token else {
            return Cow::Borrowed(source);
        };
        let (start, end) = (span.start_offset as usize, span.end_offset as usize);
        match token {
            Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => depth += 1,
            Token::ParenClose | Token::BracketClose | Token::BraceClose => {
                depth = depth.saturating_sub(1)
            }
            Token::Mod => ops.push((start, end, depth, true)),
            Token::Tilde => ops.push((start, end, depth, false)),
            _ => {}
        }
    }
    let mut sites = Vec::new();
    for (start, end, is_mod) in spans {
        // The operator of a left-associative chain node is the last one of its kind at the
        // node's own bracket depth: the right operand binds tighter and holds none outside
        // brackets, the left one may hold earlier ones (`a % b % c`).
        let Some(base) = ops
            .iter()
            .filter(|(s, _, _, _)| *s >= start && *s < end)
            .map(|(_, _, d, _)| *d)
            .min()
        else {
            return Cow::Borrowed(source);
        };
        let Some(&(op_start, op_end, _, _)) = ops
            .iter()
            .rfind(|(s, _, d, m)| *s >= start && *s < end && *d == base && *m == is_mod)
        else {
            return Cow::Borrowed(source);
        };
        sites.push(Site {
            start,
            op_start,
            op_end,
            end,
            func: if is_mod { MOD_FN } else { CONCAT_FN },
        });
    }
    // Edits: (position, order, text); at one position closing parentheses come first.
    let mut edits: Vec<(usize, u8, usize, String)> = Vec::new();
    for site in &sites {
        edits.push((site.start, 1, 0, format!("{}(", site.func)));
        edits.push((site.op_start, 2, site.op_end - site.op_start, ",".into()));
        edits.push((site.end, 0, 0, ")".into()));
    }
    edits.sort_by_key(|(pos, order, _, _)| (*pos, *order));
    let mut out = String::with_capacity(source.len() + edits.len() * 12);
    let mut pos = 0;
    for (at, _, replace, text) in edits {
        // Spans are byte offsets at token boundaries; anything else means the parse did not
        // describe this text, and the template is left as it is.
        if at < pos || !source.is_char_boundary(at) || !source.is_char_boundary(at + replace) {
            return Cow::Borrowed(source);
        }
        out.push_str(&source[pos..at]);
        out.push_str(&text);
        pos = at + replace;
    }
    out.push_str(&source[pos..]);
    Cow::Owned(out)
}

type Spans = Vec<(usize, usize, bool)>;

fn visit_body(body: &[Stmt<'_>], out: &mut Spans) {
    for stmt in body {
        visit_stmt(stmt, out);
    }
}

fn visit_stmt(stmt: &Stmt<'_>, out: &mut Spans) {
    match stmt {
        Stmt::Template(t) => visit_body(&t.children, out),
        Stmt::EmitExpr(e) => visit_expr(&e.expr, out),
        Stmt::EmitRaw(_) => {}
        Stmt::ForLoop(f) => {
            visit_expr(&f.target, out);
            visit_expr(&f.iter, out);
            if let Some(e) = &f.filter_expr {
                visit_expr(e, out);
            }
            visit_body(&f.body, out);
            visit_body(&f.else_body, out);
        }
        Stmt::IfCond(c) => {
            visit_expr(&c.expr, out);
            visit_body(&c.true_body, out);
            visit_body(&c.false_body, out);
        }
        Stmt::WithBlock(w) => {
            for (a, b) in &w.assignments {
                visit_expr(a, out);
                visit_expr(b, out);
            }
            visit_body(&w.body, out);
        }
        Stmt::Set(s) => {
            visit_expr(&s.target, out);
            visit_expr(&s.expr, out);
        }
        Stmt::SetBlock(s) => {
            visit_expr(&s.target, out);
            if let Some(f) = &s.filter {
                visit_expr(f, out);
            }
            visit_body(&s.body, out);
        }
        Stmt::AutoEscape(a) => {
            visit_expr(&a.enabled, out);
            visit_body(&a.body, out);
        }
        Stmt::FilterBlock(f) => {
            visit_expr(&f.filter, out);
            visit_body(&f.body, out);
        }
        Stmt::Block(b) => visit_body(&b.body, out),
        Stmt::Import(i) => {
            visit_expr(&i.expr, out);
            visit_expr(&i.name, out);
        }
        Stmt::FromImport(i) => visit_expr(&i.expr, out),
        Stmt::Extends(e) => visit_expr(&e.name, out),
        Stmt::Include(i) => visit_expr(&i.name, out),
        Stmt::Macro(m) => visit_macro(m, out),
        Stmt::CallBlock(c) => {
            visit_call(&c.call, out);
            visit_macro(&c.macro_decl, out);
        }
        Stmt::Do(d) => visit_call(&d.call, out),
        // `{% break %}`/`{% continue %}` exist only with minijinja's `loop_controls`; they
        // hold no expression.
        #[allow(unreachable_patterns)]
        _ => {}
    }
}

fn visit_macro(m: &ast::Macro<'_>, out: &mut Spans) {
    for e in m.args.iter().chain(&m.defaults) {
        visit_expr(e, out);
    }
    visit_body(&m.body, out);
}

fn visit_call(c: &ast::Call<'_>, out: &mut Spans) {
    visit_expr(&c.expr, out);
    visit_args(&c.args, out);
}

fn visit_args(args: &[CallArg<'_>], out: &mut Spans) {
    for arg in args {
        match arg {
            CallArg::Pos(e)
            | CallArg::Kwarg(_, e)
            | CallArg::PosSplat(e)
            | CallArg::KwargSplat(e) => visit_expr(e, out),
        }
    }
}

fn visit_expr(expr: &Expr<'_>, out: &mut Spans) {
    match expr {
        Expr::Var(_) | Expr::Const(_) => {}
        Expr::Slice(s) => {
            visit_expr(&s.expr, out);
            for e in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                visit_expr(e, out);
            }
        }
        Expr::UnaryOp(u) => visit_expr(&u.expr, out),
        Expr::BinOp(b) => {
            let span = expr.span();
            match b.op {
                ast::BinOpKind::Rem => {
                    out.push((span.start_offset as usize, span.end_offset as usize, true))
                }
                ast::BinOpKind::Concat => {
                    out.push((span.start_offset as usize, span.end_offset as usize, false))
                }
                _ => {}
            }
            visit_expr(&b.left, out);
            visit_expr(&b.right, out);
        }
        Expr::Compare(c) => {
            visit_expr(&c.expr, out);
            for op in &c.ops {
                visit_expr(&op.expr, out);
            }
        }
        Expr::IfExpr(i) => {
            visit_expr(&i.test_expr, out);
            visit_expr(&i.true_expr, out);
            if let Some(e) = &i.false_expr {
                visit_expr(e, out);
            }
        }
        Expr::Filter(f) => {
            if let Some(e) = &f.expr {
                visit_expr(e, out);
            }
            visit_args(&f.args, out);
        }
        Expr::Test(t) => {
            visit_expr(&t.expr, out);
            visit_args(&t.args, out);
        }
        Expr::GetAttr(g) => visit_expr(&g.expr, out),
        Expr::GetItem(g) => {
            visit_expr(&g.expr, out);
            visit_expr(&g.subscript_expr, out);
        }
        Expr::Call(c) => visit_call(c, out),
        Expr::List(l) => l.items.iter().for_each(|e| visit_expr(e, out)),
        Expr::Tuple(t) => t.items.iter().for_each(|e| visit_expr(e, out)),
        Expr::Map(m) => m
            .keys
            .iter()
            .chain(&m.values)
            .for_each(|e| visit_expr(e, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn operators_become_calls_with_the_parsers_operands() {
        assert_eq!(
            rewrite("{{ '%s' % x | upper }}"),
            "{{ __fm_mod('%s' , x | upper) }}"
        );
        assert_eq!(
            rewrite("{{ 'n=%d' % n ~ '!' }}"),
            "{{ __fm_concat(__fm_mod('n=%d' , n) , '!') }}"
        );
        assert_eq!(
            rewrite("{{ a % b % c }}"),
            "{{ __fm_mod(__fm_mod(a , b) , c) }}"
        );
        assert_eq!(
            rewrite("{{ ('%s' % (a, b)) ~ x[1 % 2] }}"),
            "{{ __fm_concat((__fm_mod('%s' , (a, b))) , x[__fm_mod(1 , 2)]) }}"
        );
        assert_eq!(
            rewrite("{% for x in l if x % 2 %}{{ 'é' ~ x ~ 'ü' }}{% endfor %}"),
            "{% for x in l if __fm_mod(x , 2) %}{{ __fm_concat(__fm_concat('é' , x) , 'ü') }}{% endfor %}"
        );
    }

    #[test]
    fn text_without_operators_is_untouched() {
        for src in [
            "{% if x %}100% {{ y }}{% endif %}",
            "{{ '%s ~ %d' }}",
            "{#- a % b -#}{{ c }}",
            "{{ a % }}",
            "plain ~ text % here",
        ] {
            assert!(
                matches!(rewrite(src), std::borrow::Cow::Borrowed(_)),
                "{src}"
            );
        }
        // Newlines stay where they are, so error lines do not move.
        let src = "a\n{{ x\n ~ y }}\n{{ '%d' %\n n }}";
        assert_eq!(
            rewrite(src).matches('\n').count(),
            src.matches('\n').count()
        );
    }
}
