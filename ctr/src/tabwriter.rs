//! Go's `text/tabwriter` column layout, so our tables line up exactly like
//! containerd's ctr (scripts parse them by column).
//!
//! A line's cells are its tab-terminated pieces; the text after the last tab
//! is not aligned. A column is laid out per *block*: a run of consecutive
//! lines that all have a cell in that column, each block as wide as its
//! widest cell plus padding.

/// Layout settings, as `tabwriter.NewWriter(out, minwidth, tabwidth, padding, ' ', 0)`.
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    /// `Some(tabwidth)` pads with tabs (padchar `'\t'`), else spaces.
    tabs: Option<usize>,
    text: String,
}

impl TabWriter {
    /// A writer with Go's `minwidth` and `padding` (the tab width only matters
    /// for tab padding, which ctr does not use).
    pub fn new(minwidth: usize, padding: usize) -> Self {
        Self {
            minwidth,
            padding,
            tabs: None,
            text: String::new(),
        }
    }

    /// A writer padding with tabs, as `NewWriter(out, minwidth, tabwidth,
    /// padding, '\t', 0)`: cells are widened to a multiple of `tabwidth`.
    pub fn with_tabs(minwidth: usize, tabwidth: usize, padding: usize) -> Self {
        Self {
            tabs: Some(tabwidth.max(1)),
            ..Self::new(minwidth, padding)
        }
    }

    /// Appends a line (a newline is added).
    pub fn line(&mut self, line: impl AsRef<str>) {
        self.text.push_str(line.as_ref());
        self.text.push('\n');
    }

    /// The laid-out text.
    pub fn render(&self) -> String {
        let body = self.text.strip_suffix('\n').unwrap_or(&self.text);
        let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
        let mut out = String::new();
        let mut widths = Vec::new();
        self.format(&lines, 0, lines.len(), &mut widths, &mut out);
        out
    }

    fn format(
        &self,
        lines: &[Vec<&str>],
        mut line0: usize,
        line1: usize,
        widths: &mut Vec<usize>,
        out: &mut String,
    ) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            self.write_lines(lines, line0, this, widths, out);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < lines[this].len() {
                width = width.max(lines[this][column].chars().count() + self.padding);
                this += 1;
            }
            widths.push(width);
            self.format(lines, line0, this, widths, out);
            widths.pop();
            line0 = this;
        }
        self.write_lines(lines, line0, line1, widths, out);
    }

    fn write_lines(
        &self,
        lines: &[Vec<&str>],
        from: usize,
        to: usize,
        widths: &[usize],
        out: &mut String,
    ) {
        for cells in &lines[from..to] {
            for (j, cell) in cells.iter().enumerate() {
                out.push_str(cell);
                if j + 1 < cells.len() {
                    if let Some(width) = widths.get(j) {
                        let text = cell.chars().count();
                        match self.tabs {
                            None => {
                                out.extend(std::iter::repeat_n(' ', width.saturating_sub(text)))
                            }
                            Some(tab) => {
                                let cell_width = width.div_ceil(tab) * tab;
                                let n = cell_width.saturating_sub(text);
                                out.extend(std::iter::repeat_n('\t', n.div_ceil(tab)));
                            }
                        }
                    }
                }
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tab_padding_matches_go() {
        // tabwriter.NewWriter(os.Stdout, 1, 8, 1, '\t', 0)
        let mut w = TabWriter::with_tabs(1, 8, 1);
        w.line("REF\tSIZE\tAGE\t");
        w.line("a-long-ref-name\t1kB\t2 seconds\t");
        // REF column: 15 + 1 padding = 16 → "REF" takes two tabs, the long ref one.
        assert_eq!(
            w.render(),
            "REF\t\tSIZE\tAGE\t\t\na-long-ref-name\t1kB\t2 seconds\t\n"
        );
    }

    #[test]
    fn namespaces_table_matches_go() {
        // tabwriter.NewWriter(os.Stdout, 1, 8, 1, ' ', 0)
        let mut w = TabWriter::new(1, 1);
        w.line("NAME\tLABELS\t");
        w.line("default\t\t");
        w.line("foo\tmylabel=bar\t");
        assert_eq!(
            w.render(),
            "NAME    LABELS      \ndefault             \nfoo     mylabel=bar \n"
        );
    }

    #[test]
    fn blocks_are_laid_out_separately() {
        let mut w = TabWriter::new(4, 4);
        w.line("Type:\t a");
        w.line("Exports:\t");
        w.line("\t k \t v");
        // Column 0 spans all three lines (widest "Exports:" + 4); column 1
        // exists only on the last line, so only it is padded there.
        assert_eq!(
            w.render(),
            "Type:        a\nExports:    \n             k      v\n"
        );
    }
}
