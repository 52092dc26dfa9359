//! Syntax check for `expression_engine: cel` conditions.
//!
//! Only parsing happens here: the `cel` crate's own parser (the one the
//! runtime evaluates with) decides what is valid, so the compiler and the
//! runtime cannot disagree about syntax. Its first error is translated into
//! a [`ParseError`] with a byte span.

use super::ParseError;
use std::ops::Range;

/// Longest condition text handed to the `cel` parser.
///
/// The longest CEL condition accepted (see [`MAX_CEL_LEN`](flatmachines_ir::expr::MAX_CEL_LEN)).
pub use flatmachines_ir::expr::MAX_CEL_LEN as MAX_LEN;

/// Stack given to the thread that runs the `cel` parser. A nested
/// parenthesis costs it about 20 KiB in debug builds, which overflows a
/// default 2 MiB thread well before its own recursion limit (96) trips;
/// 128 MiB leaves a wide margin for [`MAX_LEN`] bytes of input. Only the
/// pages actually touched are committed.
const PARSER_STACK: usize = 128 << 20;

/// Checks that `src` is a syntactically valid CEL expression.
///
/// Empty or whitespace-only text is valid: the reference treats it as
/// `true` before reaching the CEL engine. Macro misuse that the `cel` parser
/// reports (e.g. `has(1)`) counts as a syntax error too. Nothing is
/// evaluated, so unknown functions or variables are not detected.
///
/// # Errors
/// The first error the `cel` parser reports, with the span of the offending
/// token when the parser gives a position, or of the whole text otherwise.
/// Text longer than [`MAX_LEN`] bytes is rejected without parsing.
pub fn check(src: &str) -> Result<(), ParseError> {
    if src.trim().is_empty() {
        return Ok(());
    }
    if src.len() > MAX_LEN {
        return Err(ParseError::new(
            format!(
                "CEL condition is too long ({} bytes; at most {MAX_LEN})",
                src.len()
            ),
            0..src.len(),
        ));
    }
    let owned = src.to_owned();
    // The parser is run on its own thread for the large stack (see
    // PARSER_STACK); the thread also contains any panic from the generated
    // ANTLR code so that no input can bring the compiler down.
    let outcome = std::thread::Builder::new()
        .name("cel-parse".into())
        .stack_size(PARSER_STACK)
        .spawn(move || first_error(&owned))
        .map_err(|e| ParseError::new(format!("could not start the CEL parser: {e}"), 0..src.len()))?
        .join();
    match outcome {
        Ok(None) => Ok(()),
        Ok(Some((pos, msg))) => Err(translate(src, pos, &msg)),
        Err(_) => Err(ParseError::new(
            "the CEL parser failed on this condition",
            0..src.len(),
        )),
    }
}

/// Parses `src` and returns the position and message of the first error.
/// Plain data only, so that it can cross the thread boundary.
fn first_error(src: &str) -> Option<((isize, isize), String)> {
    match cel::Program::compile(src) {
        Ok(_) => None,
        Err(errors) => Some(
            errors
                .errors
                .first()
                .map(|e| (e.pos, e.msg.clone()))
                .unwrap_or(((0, 0), "invalid CEL expression".to_owned())),
        ),
    }
}

/// Turns a `cel` error into a [`ParseError`].
fn translate(src: &str, pos: (isize, isize), raw: &str) -> ParseError {
    let msg = raw.strip_prefix("Syntax error: ").unwrap_or(raw);
    let message = if let Some(limit) = recursion_limit(msg) {
        format!("CEL expression is nested too deeply (the parser allows {limit} levels)")
    } else {
        format!("CEL syntax error: {msg}")
    };
    let span = match offset_of(src, pos) {
        Some(start) => start..token_end(src, start, msg),
        None => 0..src.len(),
    };
    let err = ParseError::new(message, span);
    match python_help(src) {
        Some(help) => err.with_help(help),
        None => err,
    }
}

/// The limit from the `cel` parser's "Recursion limit of N exceeded" error,
/// which otherwise reaches us wrapped in a `Debug` dump of its own error.
fn recursion_limit(msg: &str) -> Option<&str> {
    let rest = &msg[msg.find("Recursion limit of ")? + "Recursion limit of ".len()..];
    let digits = rest.split(' ').next()?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

/// The byte offset of the `cel` parser's (1-based line, 1-based column)
/// position. ANTLR counts columns in `char`s and lines by `\n`.
fn offset_of(src: &str, (line, col): (isize, isize)) -> Option<usize> {
    let line = usize::try_from(line).ok()?.checked_sub(1)?;
    let col = usize::try_from(col).ok()?.checked_sub(1)?;
    let mut line_start = 0;
    for _ in 0..line {
        line_start += src[line_start..].find('\n')? + 1;
    }
    let text = &src[line_start..];
    let line_len = text.find('\n').unwrap_or(text.len());
    let in_line = match text[..line_len].char_indices().nth(col) {
        Some((i, _)) => i,
        // One past the last character: where `<EOF>` is reported.
        None if text[..line_len].chars().count() == col => line_len,
        None => return None,
    };
    Some(line_start + in_line)
}

/// Where the offending token that starts at `start` ends. ANTLR quotes the
/// token in its message (`mismatched input ')' …`); when the quoted text is
/// what the source has at `start`, the span covers it, otherwise one `char`.
fn token_end(src: &str, start: usize, msg: &str) -> usize {
    let rest = &src[start..];
    let quoted = ["input '", "at: '"].iter().find_map(|marker| {
        let from = msg.find(marker)? + marker.len();
        let len = msg[from..]
            .find("' ")
            .or_else(|| msg[from..].strip_suffix('\'').map(str::len))?;
        Some(&msg[from..from + len])
    });
    match quoted {
        Some("<EOF>") => start,
        Some(tok) if !tok.is_empty() && rest.starts_with(tok) => start + tok.len(),
        _ => start + rest.chars().next().map_or(0, char::len_utf8),
    }
}

/// A hint for conditions written in the simple engine's Python syntax, the
/// most likely cause of a CEL syntax error in a FlatMachine.
fn python_help(src: &str) -> Option<&'static str> {
    let words = words_outside_strings(src);
    let has = |w: &str| words.contains(&w);
    if has("and") || has("or") || has("not") {
        Some("CEL spells the boolean operators `&&`, `||` and `!`, not `and`, `or` and `not`")
    } else if has("if") && has("else") {
        Some("CEL's conditional expression is `cond ? a : b`")
    } else {
        None
    }
}

/// Identifier-like words of `src`, skipping quoted string contents.
fn words_outside_strings(src: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut word: Option<Range<usize>> = None;
    for (i, c) in src.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word = Some(word.map_or(i..i + c.len_utf8(), |w| w.start..i + c.len_utf8()));
            continue;
        }
        if let Some(w) = word.take() {
            words.push(&src[w]);
        }
        if c == '\'' || c == '"' {
            quote = Some(c);
        }
    }
    if let Some(w) = word {
        words.push(&src[w]);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> ParseError {
        check(src).expect_err(src)
    }

    #[test]
    fn accepts_valid_cel() {
        check("context.a > 1 && size(context.l) > 0").unwrap();
        check("has(context.x) ? context.x : 0").unwrap();
        check("context.l.exists(x, x > 2) || !context.flag").unwrap();
        check("'b' in context.names").unwrap();
        check("context.name.startsWith(\"b\")").unwrap();
        check("1 < 2").unwrap();
    }

    #[test]
    fn empty_and_whitespace_mean_true() {
        check("").unwrap();
        check("   \n\t ").unwrap();
    }

    #[test]
    fn missing_operand_points_at_end_of_text() {
        let e = err("context.a >");
        assert!(e.message.starts_with("CEL syntax error: "), "{e:?}");
        assert!(e.message.contains("<EOF>"), "{e:?}");
        assert_eq!(e.span, 11..11);

        let e = err("1 +");
        assert!(e.message.starts_with("CEL syntax error: "), "{e:?}");
        assert_eq!(e.span, 3..3);
        assert_eq!(e.help, None);
    }

    #[test]
    fn span_covers_the_quoted_offending_token() {
        let e = err("1 + )");
        assert!(e.message.contains("')'"), "{e:?}");
        assert_eq!(e.span, 4..5);
    }

    #[test]
    fn positions_are_converted_from_line_and_char_column_to_bytes() {
        // ANTLR counts `é` as one column; the span must be in bytes.
        let src = "'ééé' == 'x'\n  && é";
        let e = err(src);
        assert_eq!(&src[e.span.clone()], "é", "{e:?}");
        assert_eq!(e.span.start, src.rfind('é').unwrap());
    }

    #[test]
    fn python_spellings_get_a_hint() {
        let e = err("context.a and context.b");
        assert_eq!(&"context.a and context.b"[e.span.clone()], "and");
        assert!(e.help.unwrap().contains("&&"));
        let e = err("not context.a");
        assert!(e.help.unwrap().contains('!'));
        let e = err("context.a if context.b else 1");
        assert!(e.help.unwrap().contains("? a : b"));
        // Words inside string literals are not Python operators.
        let e = err("context.a == 'and' +");
        assert_eq!(e.help, None);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let src = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        let e = err(&src);
        assert!(e.message.contains("nested too deeply"), "{e:?}");
        // Long unary chains are not limited by the parser itself; they must
        // still not overflow the stack.
        check(&format!("{}true", "!".repeat(10_000))).unwrap();
    }

    #[test]
    fn overlong_text_is_rejected_up_front() {
        let src = "1 + ".repeat(MAX_LEN / 4) + "1";
        let e = err(&src);
        assert!(e.message.contains("too long"), "{e:?}");
        assert_eq!(e.span, 0..src.len());
    }

    #[test]
    fn spans_are_always_valid_slices() {
        for src in [
            "é",
            "\"abc",
            "`x`",
            "a ? b",
            "{{",
            "[1,2",
            "x.all(1,2)",
            "has(1)",
            "a\n\n)",
            "ü +",
            "\u{1F600} == 1",
            "a.b(",
            "1 ++ 2",
        ] {
            let e = err(src);
            assert!(src.get(e.span.clone()).is_some(), "{src:?}: {e:?}");
            assert!(e.span.start <= e.span.end, "{src:?}: {e:?}");
        }
    }
}
