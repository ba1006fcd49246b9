//! Plain-text tables with aligned columns, one shrinkable column, and an optional indented line under each row.

/// The printed report never exceeds this many columns.
pub const WIDTH: usize = 120;

/// Rows start after this indent, under their section title.
const INDENT: &str = "  ";
const GAP: &str = "  ";

#[derive(Clone, Copy, PartialEq)]
pub enum Align {
    Left,
    Right,
}

pub struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    /// The column cut down (with "…") when the table would be too wide.
    flex: Option<usize>,
    rows: Vec<(Vec<String>, Vec<String>)>,
}

/// Width in terminal columns, counted as chars: query text is mostly ASCII, and the few
/// symbols used here ("…", "✓", "–") are one column wide.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Cuts `s` to at most `max` columns, marking the cut with "…".
pub fn truncate(s: &str, max: usize) -> String {
    if width(s) <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// Collapses runs of whitespace (newlines in SQL included) to single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            align: columns.iter().map(|c| c.1).collect(),
            flex: None,
            rows: Vec::new(),
        }
    }

    /// Marks column `i` as the one to shorten when the table is too wide.
    pub fn flex(mut self, i: usize) -> Table {
        self.flex = Some(i);
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push((cells, Vec::new()));
    }

    /// A row followed by lines printed under it, indented and cut to the report's width.
    pub fn row_with_notes(&mut self, cells: Vec<String>, notes: Vec<String>) {
        self.rows.push((cells, notes));
    }

    pub fn render(&self, out: &mut String) {
        let n = self.headers.len();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for (cells, _) in &self.rows {
            for (i, c) in cells.iter().enumerate().take(n) {
                widths[i] = widths[i].max(width(c));
            }
        }
        let total = width(INDENT) + widths.iter().sum::<usize>() + width(GAP) * (n - 1);
        if let Some(f) = self.flex {
            if total > WIDTH {
                let others = total - widths[f];
                // Keep the flex column legible even if that breaks the width a little.
                widths[f] = WIDTH
                    .saturating_sub(others)
                    .max(width(self.headers[f]).max(12));
            }
        }
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        self.line(out, &headers, &widths);
        let note_indent = format!("{INDENT}    ");
        for (cells, notes) in &self.rows {
            self.line(out, cells, &widths);
            for note in notes {
                out.push_str(&note_indent);
                out.push_str(&truncate(note, WIDTH - width(&note_indent)));
                out.push('\n');
            }
        }
    }

    fn line(&self, out: &mut String, cells: &[String], widths: &[usize]) {
        let mut line = String::from(INDENT);
        for (i, w) in widths.iter().enumerate() {
            let cell = truncate(cells.get(i).map(String::as_str).unwrap_or(""), *w);
            let pad = w - width(&cell);
            if i > 0 {
                line.push_str(GAP);
            }
            match self.align[i] {
                Align::Left => {
                    line.push_str(&cell);
                    line.push_str(&" ".repeat(pad));
                }
                Align::Right => {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(&cell);
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}
