//! Python's string formatting for template values: `fmt % args` (printf-style, also behind
//! the `format` filter) and `str.format` with its format-spec mini-language.
//!
//! Values print as Python would print the reference's objects: `%s` is `str()` (floats in
//! repr form, lists and dicts as Python repr), `%r` is `repr()`, integers are arbitrary
//! size as far as `i128` goes.

use minijinja::Error;
use minijinja::value::{Value, ValueKind};

use super::env::py_error;
use super::pyrepr::{self, py_type_name};

/// Widths and precisions beyond this are refused (`MemoryError`), so a template cannot make
/// the process allocate without bound.
const MAX_WIDTH: usize = 100_000_000;

/// `%e`, `%f`, `%g` (and upper-case forms) of `x` with `precision` digits; `alt` is `#`.
pub(crate) fn format_float(x: f64, conv: char, precision: usize, alt: bool) -> String {
    let upper = conv.is_ascii_uppercase();
    let text = if x.is_nan() {
        "nan".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        match conv.to_ascii_lowercase() {
            'e' => exp_form(x, precision, alt),
            'f' => {
                let s = format!("{x:.precision$}");
                if alt && precision == 0 { s + "." } else { s }
            }
            'g' => {
                let p = precision.max(1);
                // The exponent %e would show with p significant digits.
                let e_text = format!("{:.*e}", p - 1, x);
                let exp: i64 = e_text
                    .rsplit('e')
                    .next()
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(0);
                let mut s = if exp >= -4 && exp < p as i64 {
                    let prec = (p as i64 - 1 - exp).max(0) as usize;
                    format!("{x:.prec$}")
                } else {
                    exp_form(x, p - 1, alt)
                };
                if !alt {
                    s = strip_zeros(&s);
                } else if !s.contains('.') && !s.contains('e') {
                    s.push('.');
                }
                s
            }
            _ => format!("{x}"),
        }
    };
    if upper { text.to_uppercase() } else { text }
}

/// Drops trailing fractional zeros (and a bare `.`) of a `%g` result, keeping any exponent.
fn strip_zeros(s: &str) -> String {
    let (mantissa, exp) = match s.find('e') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mantissa = if mantissa.contains('.') {
        mantissa.trim_end_matches('0').trim_end_matches('.')
    } else {
        mantissa
    };
    format!("{mantissa}{exp}")
}

/// `%.{p}e` with Python's exponent: a sign and at least two digits (`1.5e+00`).
fn exp_form(x: f64, precision: usize, alt: bool) -> String {
    let s = format!("{x:.precision$e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let (sign, digits) = match exp.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exp),
    };
    let dot = if alt && precision == 0 { "." } else { "" };
    format!("{mantissa}{dot}e{sign}{digits:0>2}")
}

/// An integer operand: `bool` counts, floats are refused (`%x`) or truncated (`%d`).
fn int_of(v: &Value, conv: char, allow_float: bool) -> Result<i128, Error> {
    match v.kind() {
        ValueKind::Bool => Ok(i128::from(v.is_true())),
        ValueKind::Number if v.is_integer() => i128::try_from(v.clone())
            .map_err(|_| py_error("OverflowError", "int too large to format")),
        ValueKind::Number if allow_float => {
            let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
            if f.is_nan() {
                Err(py_error(
                    "ValueError",
                    "cannot convert float NaN to integer",
                ))
            } else if f.is_infinite() {
                Err(py_error(
                    "OverflowError",
                    "cannot convert float infinity to integer",
                ))
            } else {
                Ok(f.trunc() as i128)
            }
        }
        ValueKind::Undefined => Err(super::env::undefined_error(v)),
        _ => Err(py_error(
            "TypeError",
            if allow_float {
                format!(
                    "%{conv} format: a real number is required, not {}",
                    py_type_name(v)
                )
            } else {
                format!(
                    "%{conv} format: an integer is required, not {}",
                    py_type_name(v)
                )
            },
        )),
    }
}

fn float_of(v: &Value) -> Result<f64, Error> {
    match v.kind() {
        ValueKind::Bool => Ok(f64::from(u8::from(v.is_true()))),
        ValueKind::Number => Ok(f64::try_from(v.clone()).unwrap_or(f64::NAN)),
        ValueKind::Undefined => Err(super::env::undefined_error(v)),
        _ => Err(py_error(
            "TypeError",
            format!("must be real number, not {}", py_type_name(v)),
        )),
    }
}

/// Python `ascii()`: `repr()` with every non-ASCII character escaped.
fn ascii_repr(v: &Value) -> String {
    let mut out = String::new();
    for c in pyrepr::mj_repr(v).chars() {
        match c as u32 {
            0..=0x7f => out.push(c),
            n @ 0x80..=0xff => out.push_str(&format!("\\x{n:02x}")),
            n @ 0x100..=0xffff => out.push_str(&format!("\\u{n:04x}")),
            n => out.push_str(&format!("\\U{n:08x}")),
        }
    }
    out
}

/// Pads `body` (after an optional `sign`/prefix) to `width`: left-aligned, zero-filled
/// between sign and digits, or right-aligned with spaces.
fn pad(sign: &str, body: &str, width: usize, left: bool, zero: bool) -> String {
    let len = sign.chars().count() + body.chars().count();
    if len >= width {
        return format!("{sign}{body}");
    }
    let fill = width - len;
    if left {
        format!("{sign}{body}{}", " ".repeat(fill))
    } else if zero {
        format!("{sign}{}{body}", "0".repeat(fill))
    } else {
        format!("{}{sign}{body}", " ".repeat(fill))
    }
}

/// Python `fmt % rhs`.
pub(crate) fn printf(fmt: &str, rhs: &Value) -> Result<String, Error> {
    let is_map = rhs.kind() == ValueKind::Map;
    // Python skips the "not all arguments converted" check for any non-tuple argument with
    // `__getitem__` (dicts, but also lists): `'x' % [1]` is `'x'`.
    let subscriptable = is_map || (rhs.kind() == ValueKind::Seq && !rhs.is_tuple());
    let args: Vec<Value> = if rhs.is_tuple() {
        rhs.try_iter()?.collect()
    } else {
        vec![rhs.clone()]
    };
    let mut next = 0usize;
    let mut out = String::with_capacity(fmt.len());
    let chars: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    let take = |next: &mut usize| -> Result<Value, Error> {
        let v = args
            .get(*next)
            .cloned()
            .ok_or_else(|| py_error("TypeError", "not enough arguments for format string"))?;
        *next += 1;
        Ok(v)
    };
    let mut used_map = false;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '%' {
            out.push(c);
            continue;
        }
        // Mapping key.
        let mut keyed: Option<Value> = None;
        if chars.get(i) == Some(&'(') {
            let mut depth = 1;
            let mut key = String::new();
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                key.push(chars[i]);
                i += 1;
            }
            if i >= chars.len() {
                return Err(py_error("ValueError", "incomplete format key"));
            }
            i += 1;
            if !is_map {
                return Err(py_error("TypeError", "format requires a mapping"));
            }
            used_map = true;
            let v = rhs.get_item(&Value::from(key.as_str())).unwrap_or_default();
            if v.is_undefined() {
                return Err(py_error("KeyError", pyrepr::mj_repr(&Value::from(key))));
            }
            keyed = Some(v);
        }
        let (mut left, mut zero, mut plus, mut space, mut alt) =
            (false, false, false, false, false);
        while let Some(f) = chars.get(i) {
            match f {
                '-' => left = true,
                '0' => zero = true,
                '+' => plus = true,
                ' ' => space = true,
                '#' => alt = true,
                _ => break,
            }
            i += 1;
        }
        let number = |i: &mut usize, next: &mut usize| -> Result<Option<usize>, Error> {
            if chars.get(*i) == Some(&'*') {
                *i += 1;
                let v = take(next)?;
                let n = int_of(&v, '*', false).map_err(|_| py_error("TypeError", "* wants int"))?;
                return Ok(Some(n.clamp(0, MAX_WIDTH as i128 + 1) as usize));
            }
            let start = *i;
            while chars.get(*i).is_some_and(char::is_ascii_digit) {
                *i += 1;
            }
            if *i == start {
                return Ok(None);
            }
            let digits: String = chars[start..*i].iter().collect();
            Ok(Some(digits.parse::<usize>().unwrap_or(usize::MAX)))
        };
        let width = number(&mut i, &mut next)?.unwrap_or(0);
        let precision = if chars.get(i) == Some(&'.') {
            i += 1;
            Some(number(&mut i, &mut next)?.unwrap_or(0))
        } else {
            None
        };
        if width > MAX_WIDTH || precision.is_some_and(|p| p > MAX_WIDTH) {
            return Err(py_error("MemoryError", "format width is too large"));
        }
        // Length modifiers are accepted and ignored, as in Python.
        while chars.get(i).is_some_and(|c| matches!(c, 'h' | 'l' | 'L')) {
            i += 1;
        }
        let Some(&conv) = chars.get(i) else {
            return Err(py_error("ValueError", "incomplete format"));
        };
        i += 1;
        if conv == '%' {
            out.push('%');
            continue;
        }
        if left {
            zero = false;
        }
        let value = match keyed.take() {
            Some(v) => v,
            None if matches!(
                conv,
                's' | 'r'
                    | 'a'
                    | 'd'
                    | 'i'
                    | 'u'
                    | 'o'
                    | 'x'
                    | 'X'
                    | 'e'
                    | 'E'
                    | 'f'
                    | 'F'
                    | 'g'
                    | 'G'
                    | 'c'
            ) =>
            {
                take(&mut next)?
            }
            None => Value::from(()),
        };
        let sign_of = |neg: bool| -> &'static str {
            if neg {
                "-"
            } else if plus {
                "+"
            } else if space {
                " "
            } else {
                ""
            }
        };
        let piece = match conv {
            's' | 'r' | 'a' => {
                let mut s = match conv {
                    's' => pyrepr::mj_str(&value),
                    'r' => pyrepr::mj_repr(&value),
                    _ => ascii_repr(&value),
                };
                if let Some(p) = precision {
                    s = s.chars().take(p).collect();
                }
                pad("", &s, width, left, false)
            }
            'd' | 'i' | 'u' | 'o' | 'x' | 'X' => {
                let n = int_of(&value, conv, matches!(conv, 'd' | 'i' | 'u'))?;
                let mag = n.unsigned_abs();
                let mut digits = match conv {
                    'o' => format!("{mag:o}"),
                    'x' => format!("{mag:x}"),
                    'X' => format!("{mag:X}"),
                    _ => mag.to_string(),
                };
                if let Some(p) = precision
                    && digits.len() < p
                {
                    digits = format!("{}{digits}", "0".repeat(p - digits.len()));
                }
                let prefix = match (alt, conv) {
                    (true, 'o') => "0o",
                    (true, 'x') => "0x",
                    (true, 'X') => "0X",
                    _ => "",
                };
                let sign = format!("{}{prefix}", sign_of(n < 0));
                pad(&sign, &digits, width, left, zero)
            }
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' => {
                let x = float_of(&value)?;
                let body = format_float(x.abs(), conv, precision.unwrap_or(6), alt);
                let neg = x.is_sign_negative() && !x.is_nan();
                let zero = zero && x.is_finite();
                pad(sign_of(neg), &body, width, left, zero)
            }
            'c' => {
                let ch = match value.kind() {
                    ValueKind::String => {
                        let s = value.as_str().unwrap_or_default();
                        let mut it = s.chars();
                        match (it.next(), it.next()) {
                            (Some(c), None) => c,
                            _ => {
                                return Err(py_error(
                                    "TypeError",
                                    "%c requires an int or a unicode character, not a string of length 2",
                                ));
                            }
                        }
                    }
                    _ => {
                        let n = int_of(&value, 'c', false)?;
                        u32::try_from(n)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| {
                                py_error("OverflowError", "%c arg not in range(0x110000)")
                            })?
                    }
                };
                pad("", &ch.to_string(), width, left, false)
            }
            other => {
                let index = i - 1;
                return Err(py_error(
                    "ValueError",
                    format!(
                        "unsupported format character '{other}' (0x{:x}) at index {index}",
                        other as u32
                    ),
                ));
            }
        };
        out.push_str(&piece);
    }
    if !subscriptable && !used_map && next < args.len() {
        return Err(py_error(
            "TypeError",
            "not all arguments converted during string formatting",
        ));
    }
    Ok(out)
}

/// A parsed `str.format` spec: `[[fill]align][sign][#][0][width][grouping][.precision][type]`.
#[derive(Default)]
struct Spec {
    fill: Option<char>,
    align: Option<char>,
    sign: Option<char>,
    alt: bool,
    zero: bool,
    width: usize,
    grouping: Option<char>,
    precision: Option<usize>,
    ty: Option<char>,
}

fn parse_spec(spec: &str) -> Result<Spec, Error> {
    let chars: Vec<char> = spec.chars().collect();
    let mut s = Spec::default();
    let mut i = 0;
    let is_align = |c: char| matches!(c, '<' | '>' | '^' | '=');
    if chars.len() >= 2 && is_align(chars[1]) {
        s.fill = Some(chars[0]);
        s.align = Some(chars[1]);
        i = 2;
    } else if chars.first().is_some_and(|c| is_align(*c)) {
        s.align = Some(chars[0]);
        i = 1;
    }
    if let Some(c @ ('+' | '-' | ' ')) = chars.get(i) {
        s.sign = Some(*c);
        i += 1;
    }
    if chars.get(i) == Some(&'#') {
        s.alt = true;
        i += 1;
    }
    if chars.get(i) == Some(&'0') {
        s.zero = true;
        i += 1;
    }
    let start = i;
    while chars.get(i).is_some_and(char::is_ascii_digit) {
        i += 1;
    }
    if i > start {
        s.width = chars[start..i]
            .iter()
            .collect::<String>()
            .parse()
            .unwrap_or(usize::MAX);
    }
    if let Some(c @ (',' | '_')) = chars.get(i) {
        s.grouping = Some(*c);
        i += 1;
    }
    if chars.get(i) == Some(&'.') {
        i += 1;
        let start = i;
        while chars.get(i).is_some_and(char::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return Err(py_error("ValueError", "Format specifier missing precision"));
        }
        s.precision = Some(
            chars[start..i]
                .iter()
                .collect::<String>()
                .parse()
                .unwrap_or(usize::MAX),
        );
    }
    if i < chars.len() {
        s.ty = Some(chars[i]);
        i += 1;
    }
    if i < chars.len() {
        return Err(py_error("ValueError", "Invalid format specifier"));
    }
    if s.width > MAX_WIDTH || s.precision.is_some_and(|p| p > MAX_WIDTH) {
        return Err(py_error("MemoryError", "format width is too large"));
    }
    Ok(s)
}

/// Inserts `sep` every three digits of the integer part of `digits`.
fn group(digits: &str, sep: char) -> String {
    let (int, rest) = match digits.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&digits[..i], &digits[i..]),
        None => (digits, ""),
    };
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(sep);
        }
        out.push(c);
    }
    out + rest
}

/// Python `format(value, spec)`.
fn format_value(v: &Value, spec: &str) -> Result<String, Error> {
    if spec.is_empty() {
        return Ok(pyrepr::mj_str(v));
    }
    let s = parse_spec(spec)?;
    let unknown = |ty: char| {
        py_error(
            "ValueError",
            format!(
                "Unknown format code '{ty}' for object of type '{}'",
                py_type_name(v)
            ),
        )
    };
    let numeric = matches!(v.kind(), ValueKind::Number | ValueKind::Bool);
    let (sign, body, default_align) = if numeric {
        let is_int = v.is_integer() || v.kind() == ValueKind::Bool;
        let ty = s.ty.unwrap_or(if is_int { 'd' } else { 'r' });
        let (neg, mut body) = match ty {
            'd' | 'n' | 'b' | 'o' | 'x' | 'X' | 'c' if is_int => {
                let n = int_of(v, ty, false)?;
                let mag = n.unsigned_abs();
                let body = match ty {
                    'b' => format!("{}{mag:b}", if s.alt { "0b" } else { "" }),
                    'o' => format!("{}{mag:o}", if s.alt { "0o" } else { "" }),
                    'x' => format!("{}{mag:x}", if s.alt { "0x" } else { "" }),
                    'X' => format!("{}{mag:X}", if s.alt { "0X" } else { "" }),
                    'c' => u32::try_from(n)
                        .ok()
                        .and_then(char::from_u32)
                        .map(String::from)
                        .unwrap_or_default(),
                    _ => mag.to_string(),
                };
                (n < 0, body)
            }
            'e' | 'E' | 'f' | 'F' | 'g' | 'G' | '%' | 'r' => {
                let x = float_of(v)?;
                let neg = x.is_sign_negative() && !x.is_nan();
                let body = match ty {
                    '%' => {
                        format_float(x.abs() * 100.0, 'f', s.precision.unwrap_or(6), s.alt) + "%"
                    }
                    'r' => match s.precision {
                        // No type: `str()`, or `g` keeping one decimal when fixed-point.
                        None => {
                            let mut t = String::new();
                            crate::py::repr::write_float(&mut t, x.abs(), false);
                            t
                        }
                        Some(p) => {
                            let g = format_float(x.abs(), 'g', p, s.alt);
                            if g.contains(['.', 'e', 'n', 'i']) {
                                g
                            } else {
                                g + ".0"
                            }
                        }
                    },
                    _ => format_float(x.abs(), ty, s.precision.unwrap_or(6), s.alt),
                };
                (neg, body)
            }
            other => return Err(unknown(other)),
        };
        if let Some(sep) = s.grouping {
            body = group(&body, sep);
        }
        let sign = match (neg, s.sign) {
            (true, _) => "-",
            (false, Some('+')) => "+",
            (false, Some(' ')) => " ",
            _ => "",
        };
        (sign, body, '>')
    } else {
        match s.ty {
            None | Some('s') if v.kind() == ValueKind::String => {
                let mut t = pyrepr::mj_str(v);
                if let Some(p) = s.precision {
                    t = t.chars().take(p).collect();
                }
                ("", t, '<')
            }
            Some(ty) => return Err(unknown(ty)),
            None => {
                return Err(py_error(
                    "TypeError",
                    format!(
                        "unsupported format string passed to {}.__format__",
                        py_type_name(v)
                    ),
                ));
            }
        }
    };
    let (fill, align) = match (s.fill, s.align) {
        (f, Some(a)) => (f.unwrap_or(' '), a),
        (_, None) if s.zero && numeric => ('0', '='),
        (_, None) => (' ', default_align),
    };
    let len = sign.chars().count() + body.chars().count();
    if len >= s.width {
        return Ok(format!("{sign}{body}"));
    }
    let n = s.width - len;
    let fills = |k: usize| std::iter::repeat_n(fill, k).collect::<String>();
    Ok(match align {
        '<' => format!("{sign}{body}{}", fills(n)),
        '^' => format!("{}{sign}{body}{}", fills(n / 2), fills(n - n / 2)),
        '=' => format!("{sign}{}{body}", fills(n)),
        _ => format!("{}{sign}{body}", fills(n)),
    })
}

/// Python `fmt.format(*args, **kwargs)`.
pub(crate) fn str_format(fmt: &str, args: &[Value]) -> Result<String, Error> {
    str_format_at(fmt, args, 0, &mut 0)
}

/// [`str_format`] inside `nesting` levels of nested replacement fields (`{:{width}}`); Python
/// allows two levels.
fn str_format_at(
    fmt: &str,
    args: &[Value],
    nesting: usize,
    auto: &mut usize,
) -> Result<String, Error> {
    let (positional, kwargs): (&[Value], Option<&Value>) = match args.last() {
        Some(last) if last.is_kwargs() => (&args[..args.len() - 1], Some(last)),
        _ => (args, None),
    };
    let mut out = String::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => {
                return Err(py_error(
                    "ValueError",
                    "Single '}' encountered in format string",
                ));
            }
            '{' => {
                let mut field = String::new();
                let mut depth = 1;
                loop {
                    match chars.next() {
                        None => {
                            return Err(py_error(
                                "ValueError",
                                "expected '}' before end of string",
                            ));
                        }
                        Some('{') => {
                            depth += 1;
                            field.push('{');
                        }
                        Some('}') => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                            field.push('}');
                        }
                        Some(c) => field.push(c),
                    }
                }
                let (head, spec) = match field.find(':') {
                    Some(i) => (&field[..i], &field[i + 1..]),
                    None => (field.as_str(), ""),
                };
                let (name, conversion) = match head.find('!') {
                    Some(i) => (&head[..i], Some(&head[i + 1..])),
                    None => (head, None),
                };
                let first_end = name.find(['.', '[']).unwrap_or(name.len());
                let (first, mut rest) = name.split_at(first_end);
                let mut value = if first.is_empty() {
                    *auto += 1;
                    let index = *auto - 1;
                    positional.get(index).cloned().ok_or_else(|| {
                        py_error(
                            "IndexError",
                            format!(
                                "Replacement index {index} out of range for positional args tuple"
                            ),
                        )
                    })?
                } else if let Ok(i) = first.parse::<usize>() {
                    positional.get(i).cloned().ok_or_else(|| {
                        py_error(
                            "IndexError",
                            format!("Replacement index {i} out of range for positional args tuple"),
                        )
                    })?
                } else {
                    kwargs
                        .and_then(|k| k.get_attr(first).ok())
                        .filter(|v| !v.is_undefined())
                        .ok_or_else(|| py_error("KeyError", format!("'{first}'")))?
                };
                // `.attr` and `[key]` lookups after the field name.
                while !rest.is_empty() {
                    if let Some(r) = rest.strip_prefix('.') {
                        let end = r.find(['.', '[']).unwrap_or(r.len());
                        let attr = &r[..end];
                        value = match (value.kind(), attr) {
                            (ValueKind::Number, "real") => value.clone(),
                            (ValueKind::Number, "imag") => Value::from(0),
                            _ => value
                                .get_attr(attr)
                                .ok()
                                .filter(|v| !v.is_undefined() && value.kind() != ValueKind::Map)
                                .ok_or_else(|| {
                                    py_error(
                                        "AttributeError",
                                        format!(
                                            "'{}' object has no attribute '{attr}'",
                                            py_type_name(&value)
                                        ),
                                    )
                                })?,
                        };
                        rest = &r[end..];
                    } else if let Some(r) = rest.strip_prefix('[') {
                        let end = r.find(']').ok_or_else(|| {
                            py_error("ValueError", "Missing ']' in format string")
                        })?;
                        let key = &r[..end];
                        let key = match key.parse::<i64>() {
                            Ok(i) => Value::from(i),
                            Err(_) => Value::from(key),
                        };
                        value = value
                            .get_item(&key)
                            .ok()
                            .filter(|v| !v.is_undefined())
                            .ok_or_else(|| py_error("IndexError", "index out of range"))?;
                        rest = &r[end + 1..];
                    } else {
                        return Err(py_error(
                            "ValueError",
                            "Only '.' or '[' may follow ']' in format field specifier",
                        ));
                    }
                }
                let value = match conversion {
                    None => value,
                    Some("s") => Value::from(pyrepr::mj_str(&value)),
                    Some("r") => Value::from(pyrepr::mj_repr(&value)),
                    Some("a") => Value::from(ascii_repr(&value)),
                    Some(other) => {
                        return Err(py_error(
                            "ValueError",
                            format!("Unknown conversion specifier {other}"),
                        ));
                    }
                };
                // Nested fields in the spec (`{:{width}}`) are filled in first.
                let spec = if spec.contains('{') {
                    // Python allows one level of nested fields, numbered on from the outer.
                    if nesting > 0 {
                        return Err(py_error("ValueError", "Max string recursion exceeded"));
                    }
                    str_format_at(spec, args, nesting + 1, auto)?
                } else {
                    spec.to_owned()
                };
                out.push_str(&format_value(&value, &spec)?);
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Python `a % b` for template values: printf formatting when `a` is a string, the
/// floored remainder for numbers.
pub(crate) fn py_mod(a: &Value, b: &Value) -> Result<Value, Error> {
    if let Some(fmt) = a.as_str() {
        return printf(fmt, b).map(Value::from);
    }
    if a.is_undefined() {
        return Err(super::env::undefined_error(a));
    }
    if b.is_undefined() {
        return Err(super::env::undefined_error(b));
    }
    let numeric = |v: &Value| matches!(v.kind(), ValueKind::Number | ValueKind::Bool);
    if !(numeric(a) && numeric(b)) {
        return Err(py_error(
            "TypeError",
            format!(
                "unsupported operand type(s) for %: '{}' and '{}'",
                py_type_name(a),
                py_type_name(b)
            ),
        ));
    }
    let is_int = |v: &Value| v.is_integer() || v.kind() == ValueKind::Bool;
    if is_int(a) && is_int(b) {
        let (x, y) = (int_of(a, 'd', false)?, int_of(b, 'd', false)?);
        if y == 0 {
            return Err(py_error("ZeroDivisionError", "integer modulo by zero"));
        }
        // Only `i128::MIN % -1` overflows; its remainder is 0.
        let r = x.checked_rem_euclid(y).unwrap_or(0);
        // Python's remainder takes the divisor's sign.
        let r = if r != 0 && y < 0 { r + y } else { r };
        return Ok(Value::from(r));
    }
    let (x, y) = (float_of(a)?, float_of(b)?);
    if y == 0.0 {
        return Err(py_error("ZeroDivisionError", "float modulo"));
    }
    let mut r = x % y;
    if r != 0.0 {
        if (r < 0.0) != (y < 0.0) {
            r += y;
        }
    } else {
        r = 0.0f64.copysign(y);
    }
    Ok(Value::from(r))
}

/// Python `str(a) + str(b)`, Jinja2's `~`.
pub(crate) fn py_concat(a: &Value, b: &Value) -> Value {
    let mut out = pyrepr::mj_str(a);
    pyrepr::write_mj_str(&mut out, b);
    Value::from(out)
}
