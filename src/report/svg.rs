//! A minimal SVG line chart: axes, ticks, one polyline per series, a legend.

use std::fmt::Write as _;

use super::escape;

/// One named line: (x, y) points in drawing order, and (x, low, high) intervals drawn as
/// vertical bars (empty for a series without intervals).
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub intervals: Vec<(f64, f64, f64)>,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 40.0;
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
];

/// Renders the series as an inline `<svg>` element, each interval as a bar with caps.
/// Non-finite points and intervals are skipped.
pub fn line_chart(series: &[Series], x_label: &str, y_label: &str) -> String {
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let bars = |s: &Series| {
        s.intervals
            .iter()
            .filter(|(x, lo, hi)| x.is_finite() && lo.is_finite() && hi.is_finite())
            .flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)])
            .collect::<Vec<_>>()
    };
    let all: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().filter(finite).copied().chain(bars(s)))
        .collect();
    let (mut x0, mut x1) = bounds(all.iter().map(|p| p.0));
    let (mut y0, mut y1) = bounds(all.iter().map(|p| p.1));
    if x1 - x0 < 1e-9 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    if y1 - y0 < 1e-9 {
        y0 -= 0.5;
        y1 += 0.5;
    }
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * plot_w;
    let sy = |y: f64| TOP + (1.0 - (y - y0) / (y1 - y0)) * plot_h;

    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-size=\"11\">"
    );
    let _ = write!(
        svg,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#999\"/>"
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let yv = y0 + f * (y1 - y0);
        let xv = x0 + f * (x1 - x0);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT - 4.0,
            sy(yv) + 4.0,
            tick(yv),
            LEFT + plot_w,
            sy(yv),
            sy(yv),
            sx(xv),
            TOP + plot_h + 14.0,
            tick(xv)
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"12\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 12 {:.1})\">{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(x_label),
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .filter(finite)
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for pair in bars(s).chunks(2) {
            if let [(x, lo), (_, hi)] = pair {
                let (x, lo, hi) = (sx(*x), sy(*lo), sy(*hi));
                let _ = write!(
                    svg,
                    "<path class=\"interval\" d=\"M{:.1},{lo:.1}H{:.1}M{x:.1},{lo:.1}V{hi:.1}M{:.1},{hi:.1}H{:.1}\" \
                     stroke=\"{colour}\" stroke-opacity=\"0.5\" fill=\"none\"/>",
                    x - 3.0,
                    x + 3.0,
                    x - 3.0,
                    x + 3.0
                );
            }
        }
        for p in &points {
            if let Some((x, y)) = p.split_once(',') {
                let _ = write!(
                    svg,
                    "<circle cx=\"{x}\" cy=\"{y}\" r=\"2.5\" fill=\"{colour}\"/>"
                );
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let ly = TOP + 14.0 + 16.0 * i as f64;
        let lx = LEFT + plot_w + 12.0;
        let _ = write!(
            svg,
            "<line x1=\"{lx:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>",
            lx + 16.0,
            ly - 4.0,
            ly - 4.0,
            lx + 20.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The range of `values`; an empty chart gets the unit range.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo.is_finite() && hi.is_finite() {
        (lo, hi)
    } else {
        (0.0, 1.0)
    }
}

fn tick(v: f64) -> String {
    if v.abs() >= 100.0 || (v.fract() == 0.0 && v.abs() < 1e6) {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
