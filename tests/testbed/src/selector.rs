//! Hetzner's label selectors (the Kubernetes syntax): comma-joined terms of
//! `k=v`, `k==v`, `k!=v`, `k`, `!k`, `k in (a,b)`, `k notin (a,b)`.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Eq(String, String),
    Ne(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(pub Vec<Term>);

impl Selector {
    /// Parses a selector; the error says which term is malformed.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut terms = Vec::new();
        for raw in split_terms(text)? {
            let t = raw.trim();
            if t.is_empty() {
                return Err(format!("empty term in label selector {text:?}"));
            }
            terms
                .push(parse_term(t).ok_or_else(|| format!("malformed label selector term {t:?}"))?);
        }
        Ok(Selector(terms))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|t| match t {
            Term::Eq(k, v) => labels.get(k) == Some(v),
            Term::Ne(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
            Term::Absent(k) => !labels.contains_key(k),
            Term::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Term::NotIn(k, vs) => labels.get(k).is_none_or(|x| !vs.contains(x)),
        })
    }
}

/// Splits on commas outside parentheses (`k in (a,b)` holds commas).
fn split_terms(text: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced parenthesis in label selector {text:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced parenthesis in label selector {text:?}"));
    }
    out.push(&text[start..]);
    Ok(out)
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
}

fn valid_value(v: &str) -> bool {
    v.chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

fn parse_set(rest: &str) -> Option<Vec<String>> {
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    let vs: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
    vs.iter()
        .all(|v| !v.is_empty() && valid_value(v))
        .then_some(vs)
}

fn parse_term(t: &str) -> Option<Term> {
    if let Some(k) = t.strip_prefix('!') {
        let k = k.trim();
        return valid_key(k).then(|| Term::Absent(k.to_owned()));
    }
    for (op, ne) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((k, v)) = t.split_once(op) {
            let (k, v) = (k.trim(), v.trim());
            if !valid_key(k) || !valid_value(v) {
                return None;
            }
            return Some(if ne {
                Term::Ne(k.into(), v.into())
            } else {
                Term::Eq(k.into(), v.into())
            });
        }
    }
    let mut words = t.splitn(2, char::is_whitespace);
    let k = words.next()?.trim();
    match words.next().map(str::trim) {
        None => valid_key(k).then(|| Term::Exists(k.to_owned())),
        Some(rest) => {
            if let Some(set) = rest.strip_prefix("notin") {
                valid_key(k).then_some(())?;
                Some(Term::NotIn(k.into(), parse_set(set)?))
            } else if let Some(set) = rest.strip_prefix("in") {
                valid_key(k).then_some(())?;
                Some(Term::In(k.into(), parse_set(set)?))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("venue/event", "lpc-2020"), ("venue/role", "bbb")]);
        let m = |s: &str| Selector::parse(s).unwrap().matches(&l);
        assert!(m("venue/event=lpc-2020"));
        assert!(m("venue/event==lpc-2020"));
        assert!(!m("venue/event!=lpc-2020"));
        assert!(m("venue/event!=other"));
        assert!(m("venue/role"));
        assert!(!m("!venue/role"));
        assert!(m("!other"));
        assert!(m("venue/role in (jitsi, bbb)"));
        assert!(!m("venue/role notin (jitsi,bbb)"));
        assert!(m("missing notin (x)"));
        assert!(!m("missing in (x)"));
        assert!(m("venue/event=lpc-2020,venue/role in (bbb,jvb),!x"));
        assert!(!m("venue/event=lpc-2020,venue/role=jitsi"));
    }

    #[test]
    fn malformed_selectors_are_refused() {
        for s in [
            "",
            "a=b,",
            "k in (a",
            "k in a",
            "k between (a)",
            "=v",
            "k=v v",
            "!",
        ] {
            assert!(Selector::parse(s).is_err(), "{s}");
        }
    }
}
