//! Python's spelling of scalars, which leaks into rendered templates and JSON keys, and its
//! reading of numbers from text (`int(s)`, `float(s)`), which guardrails written as templates
//! go through.

/// Formats a float as Python's `repr(float)` does: the shortest text that round-trips, in
/// scientific notation when the exponent is below -4 or at least 16 (`1e-05`, `1e+16`,
/// `1000000000000000.0`, `inf`, `nan`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    // `{:e}` gives the shortest round-trip digits with a decimal exponent, e.g. `1.5e-7`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let point = exp + 1; // number of digits before the decimal point
    if point <= 0 {
        format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!(
            "{sign}{digits}{}.0",
            "0".repeat(point as usize - digits.len())
        )
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{sign}{a}.{b}")
    }
}

/// Python's `int(s)` for a string: surrounding whitespace, an optional sign, decimal digits
/// with single `_` separators between digits.
pub fn parse_int(s: &str) -> Option<i64> {
    python_digits(s.trim())?.parse().ok()
}

/// Python's `float(s)` for a string (`inf`, `nan`, exponents and `_` between digits included).
pub fn parse_float(s: &str) -> Option<f64> {
    strip_separators(s.trim())?.parse().ok()
}

/// `t` without the `_` digit separators Python allows, if every `_` sits between two digits.
fn strip_separators(t: &str) -> Option<String> {
    let chars: Vec<char> = t.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c == '_' {
            let before = i > 0 && chars[i - 1].is_ascii_digit();
            let after = chars.get(i + 1).is_some_and(char::is_ascii_digit);
            if !(before && after) {
                return None;
            }
        }
    }
    Some(t.replace('_', ""))
}

fn python_digits(t: &str) -> Option<String> {
    let digits = strip_separators(t)?;
    let body = digits.strip_prefix(['+', '-']).unwrap_or(&digits);
    (!body.is_empty() && body.chars().all(|c| c.is_ascii_digit())).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::{float_repr, parse_float, parse_int};

    #[test]
    fn numbers_read_as_python_reads_them() {
        assert_eq!(parse_int(" 42 "), Some(42));
        assert_eq!(parse_int("+1_000"), Some(1000));
        assert_eq!(parse_int("-1_000"), Some(-1000));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("2.5"), None);
        assert_eq!(parse_int("1__0"), None);
        assert_eq!(parse_int("_1"), None);
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_float("2.5"), Some(2.5));
        assert_eq!(parse_float(" 1e3 "), Some(1000.0));
        assert_eq!(parse_float("1_0.5"), Some(10.5));
        assert_eq!(parse_float("1_.5"), None);
        assert_eq!(parse_float("inf"), Some(f64::INFINITY));
        assert!(parse_float("-Infinity").is_some_and(|f| f == f64::NEG_INFINITY));
        assert!(parse_float("nan").is_some_and(f64::is_nan));
        assert_eq!(parse_float("ten"), None);
        assert_eq!(parse_float("x"), None);
    }

    #[test]
    fn matches_python_repr() {
        let cases = [
            (1.5, "1.5"),
            (3.0, "3.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.2345678901234568e17, "1.2345678901234568e+17"),
            (f64::INFINITY, "inf"),
            (-0.0, "-0.0"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (-2.5, "-2.5"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f:?}");
        }
    }
}
