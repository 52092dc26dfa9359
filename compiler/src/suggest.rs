//! "Did you mean …?" suggestions by edit distance.

/// The candidate closest to `name`, if it is close enough to be a plausible typo: at most a third
/// of the name's length in Damerau–Levenshtein distance (and at least one edit allowed), or equal
/// ignoring case, `-` and `_`.
pub fn did_you_mean<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let norm = |s: &str| s.to_ascii_lowercase().replace(['-', '_'], "");
    let limit = (name.chars().count() / 3).max(1);
    let target = norm(name);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .filter_map(|c| {
            if norm(c) == target {
                return Some((0, c));
            }
            let d = strsim::damerau_levenshtein(name, c);
            (d <= limit).then_some((d, c))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A help line `did you mean `x`?` when there is a close candidate.
pub fn help<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    did_you_mean(name, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn finds_close_names_only() {
        let names = ["review", "write", "done"];
        assert_eq!(did_you_mean("revew", names), Some("review"));
        assert_eq!(did_you_mean("wirte", names), Some("write"));
        assert_eq!(did_you_mean("Done", names), Some("done"));
        assert_eq!(did_you_mean("banana", names), None);
        assert_eq!(did_you_mean("x", ["y"]), Some("y"));
        assert_eq!(
            did_you_mean("outpt_to_context", ["output_to_context", "output"]),
            Some("output_to_context")
        );
    }
}
