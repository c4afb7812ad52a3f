//! Errors in organiser input (event.toml, schedules) that point at the place
//! in the file where the problem is, the way a compiler does.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one input file, with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InputError {
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is the file as a whole.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    pub message: String,
    /// The offending line of the file, shown under the message.
    pub excerpt: Option<String>,
}

impl InputError {
    /// An error at a byte offset of `source`.
    pub fn at_offset(file: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(source, offset);
        let excerpt = source.lines().nth(line - 1).map(str::to_owned);
        InputError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            excerpt,
        }
    }

    /// An error at a known line and column of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        let excerpt = source
            .lines()
            .nth(line.saturating_sub(1))
            .map(str::to_owned);
        InputError {
            file: file.to_path_buf(),
            line,
            column,
            message: message.into(),
            excerpt,
        }
    }

    /// An error about the file as a whole (it cannot be read, it is empty, ...).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        InputError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            message: message.into(),
            excerpt: None,
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(text) = &self.excerpt {
            let gutter = self.line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{} | {}\n{:gutter$} | {:>col$}",
                "",
                self.line,
                text,
                "",
                "^",
                gutter = gutter,
                col = self.column.max(1)
            )?;
        }
        Ok(())
    }
}

/// 1-based line and character column of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The closest of `candidates` to `word`, if it is close enough to be a
/// plausible typo (edit distance at most a third of the word, at least 1).
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: Levenshtein plus swapped neighbours,
/// the commonest typo (`nmae`).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // 'é' is two bytes: the offset of '=' on line 2 is 6 + 4.
        assert_eq!(line_column(src, 10), (2, 4));
    }

    #[test]
    fn suggests_only_close_words() {
        let keys = ["name", "kind", "backend", "peak", "webcams"];
        assert_eq!(did_you_mean("nmae", keys), Some("name"));
        assert_eq!(did_you_mean("webcam", keys), Some("webcams"));
        assert_eq!(did_you_mean("colour", keys), None);
    }

    #[test]
    fn display_points_at_the_column() {
        let src = "id = \"x\"\nattendees = -5\n";
        let e = InputError::at(Path::new("e.toml"), src, 2, 13, "must not be negative");
        let shown = e.to_string();
        assert!(
            shown.starts_with("e.toml:2:13: must not be negative"),
            "{shown}"
        );
        assert!(shown.contains("2 | attendees = -5"), "{shown}");
        assert!(shown.ends_with("|             ^"), "{shown}");
    }
}
