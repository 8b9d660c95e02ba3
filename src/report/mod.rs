//! The run report: one self-contained `report.html` with inline SVG plots (TSR and ASR over
//! iterations with their 95% intervals, both players' rewards) and the win-rate matrix of the final agent against
//! every attacker. No JavaScript, no external assets: it opens from the run directory.

mod svg;

pub use svg::{Series, line_chart};

use std::fmt::Write as _;

/// One row of the win-rate table: an attacker and the final agent's record against it.
#[derive(Debug, Clone)]
pub struct WinRateRow {
    pub attacker: String,
    pub games: u64,
    pub attack_success_rate: f64,
    pub task_success_rate: f64,
}

/// Everything the report shows.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub title: String,
    /// Free-form facts shown at the top (seed, model, command...), in order.
    pub facts: Vec<(String, String)>,
    /// Charts: a title, a y-axis label and the series drawn.
    pub charts: Vec<(String, String, Vec<Series>)>,
    pub win_rates: Vec<WinRateRow>,
    /// Extra tables: a title, a header and rows of cells.
    pub tables: Vec<(String, Vec<String>, Vec<Vec<String>>)>,
}

impl Report {
    /// Renders the report as one HTML document.
    pub fn to_html(&self) -> String {
        let mut html = String::new();
        let _ = write!(
            html,
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title>\
             <style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}\
             table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}\
             th{{background:#f4f4f4}}td:first-child,th:first-child{{text-align:left}}</style></head><body>\n<h1>{t}</h1>\n",
            t = escape(&self.title)
        );
        if !self.facts.is_empty() {
            html.push_str("<table>\n");
            for (k, v) in &self.facts {
                let _ = writeln!(
                    html,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    escape(k),
                    escape(v)
                );
            }
            html.push_str("</table>\n");
        }
        for (title, y_label, series) in &self.charts {
            let _ = writeln!(html, "<h2>{}</h2>", escape(title));
            html.push_str(&line_chart(series, "iteration", y_label));
            html.push('\n');
        }
        if !self.win_rates.is_empty() {
            html.push_str("<h2>Final agent against each attacker</h2>\n<table>\n<tr><th>attacker</th><th>games</th><th>attack success rate</th><th>task success rate</th></tr>\n");
            for row in &self.win_rates {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td style=\"background:{}\">{:.3}</td><td>{:.3}</td></tr>",
                    escape(&row.attacker),
                    row.games,
                    heat(row.attack_success_rate),
                    row.attack_success_rate,
                    row.task_success_rate
                );
            }
            html.push_str("</table>\n");
        }
        for (title, header, rows) in &self.tables {
            let _ = writeln!(html, "<h2>{}</h2>\n<table>\n<tr>", escape(title));
            for h in header {
                let _ = write!(html, "<th>{}</th>", escape(h));
            }
            html.push_str("</tr>\n");
            for row in rows {
                html.push_str("<tr>");
                for cell in row {
                    let _ = write!(html, "<td>{}</td>", escape(cell));
                }
                html.push_str("</tr>\n");
            }
            html.push_str("</table>\n");
        }
        html.push_str("</body></html>\n");
        html
    }
}

/// Red for attacks that succeed, white for those that never do.
fn heat(rate: f64) -> String {
    let r = rate.clamp(0.0, 1.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let gb = (255.0 - 150.0 * r).round() as u8;
    format!("rgb(255,{gb},{gb})")
}

pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_charts_table_and_escapes_text() {
        let report = Report {
            title: "run <1>".into(),
            facts: vec![("seed".into(), "7".into())],
            charts: vec![(
                "Eval".into(),
                "rate".into(),
                vec![Series {
                    name: "ASR".into(),
                    points: vec![(0.0, 0.5), (1.0, 0.25)],
                    intervals: vec![(0.0, 0.2, 0.8), (1.0, 0.1, 0.4)],
                }],
            )],
            win_rates: vec![WinRateRow {
                attacker: "attacker-0000".into(),
                games: 10,
                attack_success_rate: 0.3,
                task_success_rate: 0.6,
            }],
            tables: vec![],
        };
        let html = report.to_html();
        assert!(html.contains("run &lt;1&gt;"));
        assert!(html.contains("<svg"));
        assert!(html.contains("<polyline"));
        assert_eq!(html.matches("class=\"interval\"").count(), 2);
        assert!(html.contains("attacker-0000"));
        assert!(html.contains("0.300"));
    }
}
