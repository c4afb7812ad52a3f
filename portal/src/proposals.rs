//! Reading talk proposals for the vote: pretalx's submissions as JSON (the
//! API's `/submissions/` answer, a page with `results` or a bare list) or a
//! CSV file with the header `id,title,abstract,track,speakers` (speakers
//! separated by `;`). Withdrawn, cancelled, deleted and draft submissions
//! are left out.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::store::Proposal;

/// Reads `path`, JSON or CSV by its first character. The first bad entry is
/// an error naming it; nothing is returned half.
pub fn read(path: &Path) -> Result<Vec<Proposal>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let proposals = match text.trim_start().chars().next() {
        Some('[' | '{') => from_json(path, &text)?,
        _ => from_csv(path, &text)?,
    };
    let mut seen = std::collections::HashSet::new();
    for p in &proposals {
        if !seen.insert(p.id.as_str()) {
            bail!("{}: proposal `{}` is listed twice", path.display(), p.id);
        }
    }
    Ok(proposals)
}

/// A pretalx text field: a string, or a map of languages (English first).
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Object(m) => m
            .get("en")
            .or_else(|| m.get("name"))
            .or_else(|| m.values().next())
            .and_then(|v| text(Some(v))),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

fn from_json(path: &Path, source: &str) -> Result<Vec<Proposal>> {
    let doc: Value = serde_json::from_str(source).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}:{}: not JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let list = match &doc {
        Value::Array(a) => a,
        Value::Object(o) => match o.get("results").or_else(|| o.get("submissions")) {
            Some(Value::Array(a)) => a,
            _ => bail!(
                "{}: expected a list of submissions, or an object with `results` (pretalx's API)",
                path.display()
            ),
        },
        _ => bail!("{}: expected a list of submissions", path.display()),
    };
    let mut out = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let n = i + 1;
        let Value::Object(o) = item else {
            bail!("{}: submission {n} is not an object", path.display());
        };
        let state = o
            .get("state")
            .and_then(Value::as_str)
            .unwrap_or("submitted");
        if matches!(
            state,
            "withdrawn" | "canceled" | "cancelled" | "deleted" | "draft"
        ) {
            continue;
        }
        let Some(id) = text(o.get("code").or_else(|| o.get("id"))) else {
            bail!("{}: submission {n} has no `code` (or `id`)", path.display());
        };
        let Some(title) = text(o.get("title")) else {
            bail!("{}: submission {n} ({id}) has no title", path.display());
        };
        let speakers = match o.get("speakers") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|s| match s {
                    Value::Object(m) => text(m.get("name")),
                    other => text(Some(other)),
                })
                .collect(),
            Some(_) => bail!(
                "{}: submission {n} ({id}): `speakers` must be a list",
                path.display()
            ),
        };
        out.push(Proposal {
            id,
            title,
            abstract_: text(o.get("abstract")).unwrap_or_default(),
            track: text(o.get("track")),
            speakers,
        });
    }
    Ok(out)
}

fn from_csv(path: &Path, source: &str) -> Result<Vec<Proposal>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(source.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(ci), Some(ct)) = (col("id"), col("title")) else {
        bail!(
            "{}: line 1: the header must be `id,title,abstract,track,speakers` (abstract, track and speakers may be left out), not `{}`",
            path.display(),
            headers.join(",")
        );
    };
    let (ca, ck, cs) = (col("abstract"), col("track"), col("speakers"));
    let mut out = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let line = i + 2;
        let rec = rec.with_context(|| format!("{}: line {line}", path.display()))?;
        let field = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").trim().to_owned();
        let id = field(Some(ci));
        let title = field(Some(ct));
        if id.is_empty() {
            bail!("{}: line {line}: the id is empty", path.display());
        }
        if title.is_empty() {
            bail!(
                "{}: line {line}: proposal {id} has no title",
                path.display()
            );
        }
        let track = field(ck);
        out.push(Proposal {
            id,
            title,
            abstract_: field(ca),
            track: (!track.is_empty()).then_some(track),
            speakers: field(cs)
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!(
            "venue-proposals-{}-{name}",
            u64::from_le_bytes(crate::random_bytes::<8>())
        ));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_pretalx_json() {
        let p = write(
            "a.json",
            r#"{"count": 3, "next": null, "results": [
              {"code": "ABC123", "title": "Tracing <b>BPF</b>", "abstract": "Why.", "track": {"en": "Networking", "de": "Netz"},
               "speakers": [{"code": "X1", "name": "Ada Lovelace"}, {"code": "X2", "name": "Bob"}], "state": "submitted"},
              {"code": "DEF456", "title": {"en": "Rust in the kernel"}, "abstract": null, "track": null, "speakers": [], "state": "accepted"},
              {"code": "GONE01", "title": "Withdrawn talk", "state": "withdrawn"}]}"#,
        );
        let v = read(&p).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].id, "ABC123");
        assert_eq!(v[0].track.as_deref(), Some("Networking"));
        assert_eq!(v[0].speakers, ["Ada Lovelace", "Bob"]);
        assert_eq!(v[1].title, "Rust in the kernel");
        assert_eq!(v[1].track, None);
        let bad = write("b.json", r#"[{"code": "A1"}]"#);
        let e = read(&bad).unwrap_err().to_string();
        assert!(e.contains("submission 1 (A1) has no title"), "{e}");
        let broken = write("c.json", "[{\"code\": \n}");
        assert!(read(&broken).unwrap_err().to_string().contains(":2:"));
    }

    #[test]
    fn reads_csv() {
        let p = write(
            "a.csv",
            "id,title,abstract,track,speakers\nP1,First,An abstract,Kernel,Ada Lovelace; Bob\nP2,\"Second, with comma\",,,\n",
        );
        let v = read(&p).unwrap();
        assert_eq!(v[0].speakers, ["Ada Lovelace", "Bob"]);
        assert_eq!(v[1].title, "Second, with comma");
        assert_eq!(v[1].track, None);
        let bad = write("b.csv", "id,title\nP1,First\nP1,Again\n");
        assert!(read(&bad).unwrap_err().to_string().contains("listed twice"));
        let bad = write("c.csv", "id,title\nP1,\n");
        assert!(read(&bad).unwrap_err().to_string().contains("line 2"));
        let bad = write("d.csv", "name,title\n");
        assert!(read(&bad).unwrap_err().to_string().contains("line 1"));
    }
}
