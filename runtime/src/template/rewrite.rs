//! Load-time rewrite of the operators minijinja evaluates differently from Jinja2.
//!
//! * `a % b`: Jinja2 hands it to Python, so `'%.2f' % x` and `'%s-%s' % (a, b)` format
//!   strings printf-style; minijinja only knows the numeric remainder.
//! * `a ~ b`: Jinja2 joins `str(a)` and `str(b)`, so floats print as Python does (`1e-05`);
//!   minijinja prints its own float text (`0.00001`).
//! * `a < b` (and `<=`, `>`, `>=`): Python raises `TypeError` for unrelated types and
//!   Jinja2's `Undefined` raises `UndefinedError`; minijinja orders anything.
//!
//! minijinja has no hook for operators, so before a template is compiled every such
//! operator is replaced by a call of a global function that does what Python does:
//! `a % b` becomes `__fm_mod(a, b)`, `a ~ b` becomes `__fm_concat(a, b)` and `a < b` becomes
//! `__fm_cmp(a, '<', b)`. A comparison chain is one call, `a < b == c` becoming
//! `__fm_cmp(a, '<', b, '==', c)`, so `b` is evaluated once as in Python (but `c` is
//! evaluated even when `a < b` is false; chains holding `in` and chains of `==`/`!=` alone
//! never raise and are left alone). Templates whose tags hold no `<`/`>` (and no `%`/`~`)
//! are not parsed here at all, so the rewrite costs nothing to those. The operands are
//! found with minijinja's own parser (so precedence and associativity are exactly the ones
//! the unrewritten template would have had) and its own tokenizer (so a `%` or `~` inside a
//! string literal is never touched). Only characters are inserted or replaced inside the
//! expression, never newlines, so line numbers of later errors are unchanged. Text the parser
//! refuses is returned as it is: compiling it reports the syntax error of the original.

use minijinja::machinery::ast::{self, CallArg, Expr, Stmt};
use minijinja::machinery::{Token, parse, tokenize};
use minijinja::syntax::SyntaxConfig;

pub(crate) use super::pycmp::CMP_FN;

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

/// Whether a `<` or `>` occurs inside a `{{ … }}` or `{% … %}` tag of `source`. Prompts are
/// full of `<tags>` in their text; those alone must not make a template be parsed twice.
///
/// Sound for the rewrite: a tag ends only at its own closing delimiter outside string
/// literals and brackets (as minijinja's lexer sees it), so no operator inside a tag is
/// missed; text it wrongly takes for a tag (inside `{% raw %}`) only costs a parse.
fn may_compare(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        let close = match bytes[i + 1] {
            b'{' => b'}',
            b'%' => b'%',
            b'#' => {
                // A comment: skip to its end.
                match source[i + 2..].find("#}") {
                    Some(end) => i += 2 + end + 2,
                    None => return false,
                }
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        i += 2;
        let (mut depth, mut quote) = (0usize, None::<u8>);
        while i < bytes.len() {
            let b = bytes[i];
            match quote {
                Some(q) => {
                    if b == b'\\' {
                        i += 1;
                    } else if b == q {
                        quote = None;
                    }
                }
                None => match b {
                    b'<' | b'>' => return true,
                    b'\'' | b'"' => quote = Some(b),
                    b'(' | b'[' | b'{' => depth += 1,
                    b'}' if close == b'}' && depth == 0 && bytes.get(i + 1) == Some(&b'}') => {
                        break;
                    }
                    b'%' if close == b'%' && depth == 0 && bytes.get(i + 1) == Some(&b'}') => {
                        break;
                    }
                    b')' | b']' | b'}' => depth = depth.saturating_sub(1),
                    _ => {}
                },
            }
            i += 1;
        }
        i += 2;
    }
    false
}

/// What a rewritten node becomes.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// `a % b`.
    Mod,
    /// `a ~ b`.
    Concat,
    /// An ordering comparison, or a chain of comparisons holding one, with this many
    /// operators. Its span starts one token early (minijinja's parser starts it at the token
    /// before the left operand), which [`rewrite`] corrects.
    Compare(usize),
}

/// One operator node to replace: the whole expression `[start, end)`, the function it
/// becomes, and its operator tokens `(start, end, replacement)`.
struct Site {
    start: usize,
    end: usize,
    func: &'static str,
    ops: Vec<(usize, usize, &'static str)>,
}

/// An operator token: its span, bracket depth and kind.
struct OpToken {
    start: usize,
    end: usize,
    depth: usize,
    kind: OpKind,
}

#[derive(Clone, Copy, PartialEq)]
enum OpKind {
    Mod,
    Tilde,
    /// A comparison operator, with the text its call passes.
    Cmp(&'static str),
}

/// Rewrites the `%`, `~` and ordering operators of `source` (see the module docs).
pub(crate) fn rewrite(source: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !may_need_rewrite(source) && !may_compare(source) {
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
    // Operator tokens with their bracket depth, and where every token starts, in source
    // order.
    let mut ops: Vec<OpToken> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    for token in tokenize(source, false, SyntaxConfig::default()) {
        let Ok((token, span)) = token else {
            return Cow::Borrowed(source);
        };
        let (start, end) = (span.start_offset as usize, span.end_offset as usize);
        starts.push(start);
        let kind = match token {
            Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => {
                depth += 1;
                continue;
            }
            Token::ParenClose | Token::BracketClose | Token::BraceClose => {
                depth = depth.saturating_sub(1);
                continue;
            }
            Token::Mod => OpKind::Mod,
            Token::Tilde => OpKind::Tilde,
            Token::Lt => OpKind::Cmp("'<'"),
            Token::Lte => OpKind::Cmp("'<='"),
            Token::Gt => OpKind::Cmp("'>'"),
            Token::Gte => OpKind::Cmp("'>='"),
            Token::Eq => OpKind::Cmp("'=='"),
            Token::Ne => OpKind::Cmp("'!='"),
            _ => continue,
        };
        ops.push(OpToken {
            start,
            end,
            depth,
            kind,
        });
    }
    let mut sites = Vec::new();
    for (start, end, kind) in spans {
        let start = match kind {
            // The comparison really starts at the token after the one its span starts at.
            Kind::Compare(_) => match starts.binary_search(&start) {
                Ok(i) if i + 1 < starts.len() => starts[i + 1],
                _ => return Cow::Borrowed(source),
            },
            _ => start,
        };
        let matches = |t: &OpToken| match kind {
            Kind::Mod => t.kind == OpKind::Mod,
            Kind::Concat => t.kind == OpKind::Tilde,
            Kind::Compare(_) => matches!(t.kind, OpKind::Cmp(_)),
        };
        let inside = |t: &&OpToken| t.start >= start && t.start < end && matches(t);
        // The operators of the node itself are those at its own bracket depth, the lowest
        // one inside it: its operands hold no operator of the same precedence level
        // outside brackets, except the left operand of a left-associative chain
        // (`a % b % c`), whose node is the last operator.
        let Some(base) = ops.iter().filter(inside).map(|t| t.depth).min() else {
            return Cow::Borrowed(source);
        };
        let at_base: Vec<&OpToken> = ops
            .iter()
            .filter(inside)
            .filter(|t| t.depth == base)
            .collect();
        let (func, node_ops) = match kind {
            Kind::Mod | Kind::Concat => {
                let Some(last) = at_base.last() else {
                    return Cow::Borrowed(source);
                };
                let func = if kind == Kind::Mod { MOD_FN } else { CONCAT_FN };
                (func, vec![(last.start, last.end, ",")])
            }
            Kind::Compare(n) => {
                // A comparison's operands are below comparisons in precedence, so every
                // comparison token at its depth is one of its operators. Anything else (a
                // test such as `is in` between them) leaves this node as minijinja has it.
                if at_base.len() != n {
                    continue;
                }
                let ops = at_base
                    .iter()
                    .map(|t| match t.kind {
                        OpKind::Cmp(text) => (t.start, t.end, text),
                        _ => unreachable!("filtered to comparisons"),
                    })
                    .collect();
                (CMP_FN, ops)
            }
        };
        sites.push(Site {
            start,
            end,
            func,
            ops: node_ops,
        });
    }
    // Edits: (position, order, replaced length, text); at one position closing parentheses
    // come first, and openings keep the visiting order, outer nodes first.
    let mut edits: Vec<(usize, u8, usize, String)> = Vec::new();
    for site in &sites {
        edits.push((site.start, 1, 0, format!("{}(", site.func)));
        for &(op_start, op_end, text) in &site.ops {
            let text = if text == "," {
                ",".to_owned()
            } else {
                format!(",{text},")
            };
            edits.push((op_start, 2, op_end - op_start, text));
        }
        edits.push((site.end, 0, 0, ")".into()));
    }
    if edits.is_empty() {
        return Cow::Borrowed(source);
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

type Spans = Vec<(usize, usize, Kind)>;

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
            let kind = match b.op {
                ast::BinOpKind::Rem => Some(Kind::Mod),
                ast::BinOpKind::Concat => Some(Kind::Concat),
                ast::BinOpKind::Lt
                | ast::BinOpKind::Lte
                | ast::BinOpKind::Gt
                | ast::BinOpKind::Gte => Some(Kind::Compare(1)),
                _ => None,
            };
            if let Some(kind) = kind {
                out.push((span.start_offset as usize, span.end_offset as usize, kind));
            }
            visit_expr(&b.left, out);
            visit_expr(&b.right, out);
        }
        Expr::Compare(c) => {
            // A chain (`a < b < c`; a single comparison is a `BinOp`). Chains of `==`/`!=`
            // only never raise, and chains with `in` are left to minijinja.
            use ast::CompareOpKind as K;
            let ordering = c
                .ops
                .iter()
                .any(|o| matches!(o.op, K::Lt | K::Lte | K::Gt | K::Gte));
            let membership = c.ops.iter().any(|o| matches!(o.op, K::In | K::NotIn));
            if ordering && !membership {
                let span = expr.span();
                out.push((
                    span.start_offset as usize,
                    span.end_offset as usize,
                    Kind::Compare(c.ops.len()),
                ));
            }
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
    fn ordering_comparisons_become_calls() {
        assert_eq!(rewrite("{{ a < b }}"), "{{ __fm_cmp(a ,'<', b) }}");
        assert_eq!(rewrite("{{ a>=b }}"), "{{ __fm_cmp(a,'>=',b) }}");
        // A chain is one call: each operand is evaluated once.
        assert_eq!(
            rewrite("{{ 0 < x <= 5 }}"),
            "{{ __fm_cmp(0 ,'<', x ,'<=', 5) }}"
        );
        assert_eq!(
            rewrite("{{ a == b < c }}"),
            "{{ __fm_cmp(a ,'==', b ,'<', c) }}"
        );
        // The span minijinja gives a comparison starts at the token before it.
        assert_eq!(
            rewrite("{% if not x % 2 < 1 %}y{% endif %}"),
            "{% if not __fm_cmp(__fm_mod(x , 2) ,'<', 1) %}y{% endif %}"
        );
        assert_eq!(
            rewrite("{{ (a < b) ~ f(k=c > d)[e < 1] }}"),
            "{{ __fm_concat((__fm_cmp(a ,'<', b)) , f(k=__fm_cmp(c ,'>', d))[__fm_cmp(e ,'<', 1)]) }}"
        );
        assert_eq!(
            rewrite("{% for x in l if x > 1 %}{{ x if x < 3 else 'n' }}{% endfor %}"),
            "{% for x in l if __fm_cmp(x ,'>', 1) %}{{ x if __fm_cmp(x ,'<', 3) else 'n' }}{% endfor %}"
        );
        assert_eq!(
            rewrite("{{ '}}' ~ (a < b) }}"),
            "{{ __fm_concat('}}' , (__fm_cmp(a ,'<', b))) }}"
        );
        // Equality and membership never raise: left to minijinja, also in chains.
        for src in [
            "{{ a == b }}",
            "{{ a != b == c }}",
            "{{ a in b < c }}",
            "{{ x is lt(3) }}",
            "{{ '<b>' }}",
        ] {
            assert_eq!(rewrite(src), src);
        }
    }

    #[test]
    fn only_tags_with_angle_brackets_are_parsed() {
        use super::may_compare;
        for src in [
            "<p>{{ x }}</p>",
            "{# a < b #}{{ x }}",
            "{{ {'a': {'b': 1}} }}<x>",
            "{% if x %}<b>{% endif %}",
            "a > b",
            "{{ x }",
        ] {
            assert!(!may_compare(src), "{src}");
        }
        for src in [
            "{{ a < b }}",
            "{% if a>b %}{% endif %}",
            "{{ '}}' ~ (a < b) }}",
            "{{ {'k': 1}['k'] > 0 }}",
            "{{ \"\\\"\" ~ (a < b) }}",
            "<p>{{ x }}</p>{{ y >= 1 }}",
        ] {
            assert!(may_compare(src), "{src}");
        }
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
        let src = "a\n{{ x\n ~ y }}\n{{ '%d' %\n n }}\n{% if a\n <\n b %}{% endif %}";
        assert_eq!(
            rewrite(src).matches('\n').count(),
            src.matches('\n').count()
        );
    }
}
