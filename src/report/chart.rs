//! Hand-written inline SVG line charts for `report.html`: axes with "nice" ticks, a legend,
//! one polyline per series (broken where samples are missing, e.g. gauges absent while Redis
//! was down), fault windows as shaded, labelled rectangles and marks as dashed lines.
//! Long series are decimated per pixel column ([`decimate`], M4: the first, lowest, highest and
//! last point of each column), so an hour at 1 s resolution draws the same picture — every
//! spike included — with at most a few points per column instead of 3600 per series.
//! No script and no external resource, so the report opens offline in any browser.

use std::fmt::Write as _;

use super::escape::html as esc;
use super::{fmt_ms, fmt_num, FaultWindow, Mark};

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 44.0;
/// Height of one row of fault labels inside the plot.
const LABEL_ROW: f64 = 14.0;
/// At most this many rows of fault labels; more would squash the data.
const MAX_LABEL_ROWS: usize = 4;
/// Width in pixels of one decimation column: a series keeps at most 4 points per column.
const COLUMN_PX: f64 = 2.0;
/// Rough width of one character of 11px sans-serif, to keep labels from overlapping.
const CHAR_W: f64 = 6.2;

/// One line of a chart.
pub struct Line<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub color: &'a str,
    pub points: &'a [(u64, f64)],
    /// Draw a dot at every point: the scrape instants of a polled series.
    pub dots: bool,
    /// Each point is the value of the bucket of this width ending at it: drawn as a flat
    /// step over the bucket instead of a line between points.
    pub step_ms: Option<u64>,
}

/// One chart: its lines share the y axis.
pub struct Chart<'a> {
    /// Element id, also used to make ids inside the SVG unique.
    pub id: &'a str,
    pub title: &'a str,
    /// Title of the y axis (the unit of every line).
    pub axis_title: &'a str,
    pub lines: Vec<Line<'a>>,
    /// Right end of the x axis (the run's duration, or the last sample if later).
    pub x_max_ms: u64,
    pub faults: &'a [FaultWindow],
    pub marks: &'a [Mark],
    /// Consecutive samples further apart than this are not joined.
    pub gap_ms: u64,
}

/// A step of 1, 2 or 5 times a power of ten giving about `target` intervals over `range`.
fn nice_step(range: f64, target: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / target;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let mult = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    mult * mag
}

/// Tick values from `lo` to `hi` (inclusive, within rounding) every `step`.
fn ticks(lo: f64, hi: f64, step: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    for i in first..=last {
        out.push(i as f64 * step);
    }
    out
}

/// Compact tick label: `1.5k`, `2M`, `0.25`.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", fmt_num(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", fmt_num(v / 1e3))
    } else {
        fmt_num(v)
    }
}

fn f(v: f64) -> String {
    format!("{v:.1}")
}

/// Renders the chart as an `<svg>` element.
pub fn render(c: &Chart<'_>) -> String {
    let x_max_ms = c
        .lines
        .iter()
        .filter_map(|l| l.points.last().map(|p| p.0))
        .fold(c.x_max_ms, u64::max)
        .max(1);
    let faults = fault_layer(c, x_max_ms);
    let frame = Frame::new(c, x_max_ms, faults.band);

    let mut o = String::new();
    // `write!` into a String cannot fail.
    let _ = writeln!(
        o,
        "<svg class=\"chart\" id=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{}\">",
        esc(c.id),
        esc(c.title)
    );
    let _ = writeln!(o, "<title>{}</title>", esc(c.title));
    let _ = writeln!(
        o,
        "<rect class=\"plot\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/>",
        f(LEFT),
        f(TOP),
        f(PLOT_W),
        f(PLOT_H)
    );
    o.push_str(&faults.rects);
    axes(&mut o, c, &frame);
    marks(&mut o, c, &frame);
    lines(&mut o, c, &frame);
    o.push_str(&faults.labels);
    legend(&mut o, c);
    o.push_str("</svg>\n");
    o
}

/// Width and height of the plot area inside the margins.
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = HEIGHT - TOP - BOTTOM;

/// Where data lands on the plot: the x range (ms since start) and the y range, which starts
/// below the band of fault labels.
struct Frame {
    x_max: f64,
    data_top: f64,
    data_h: f64,
    y_lo: f64,
    y_hi: f64,
    y_step: f64,
}

impl Frame {
    fn new(c: &Chart<'_>, x_max_ms: u64, band: f64) -> Frame {
        let (mut y_lo, mut y_hi) = (0.0f64, 0.0f64);
        for l in &c.lines {
            for &(_, v) in l.points {
                y_lo = y_lo.min(v);
                y_hi = y_hi.max(v);
            }
        }
        if y_hi - y_lo <= 0.0 {
            y_hi = y_lo + 1.0;
        }
        let y_step = nice_step(y_hi - y_lo, 5.0);
        Frame {
            x_max: x_max_ms as f64,
            data_top: TOP + band,
            data_h: PLOT_H - band,
            y_lo: (y_lo / y_step).floor() * y_step,
            y_hi: (y_hi / y_step).ceil() * y_step,
            y_step,
        }
    }

    fn sx(&self, t: u64) -> f64 {
        LEFT + (t as f64 / self.x_max).min(1.0) * PLOT_W
    }

    fn sy(&self, v: f64) -> f64 {
        self.data_top + self.data_h - (v - self.y_lo) / (self.y_hi - self.y_lo) * self.data_h
    }
}

/// The shaded fault windows, their labels, and the height of the label band.
struct FaultLayer {
    rects: String,
    labels: String,
    band: f64,
}

/// Fault windows: shaded over the whole plot height. Their labels sit in a band at the top of
/// the plot, above the data, each in the first row where it does not overlap the label to its
/// left (at most MAX_LABEL_ROWS rows; past that, the least crowded row).
fn fault_layer(c: &Chart<'_>, x_max_ms: u64) -> FaultLayer {
    let x_max = x_max_ms as f64;
    let sx = |t: u64| LEFT + (t as f64 / x_max).min(1.0) * PLOT_W;
    let plot_h = PLOT_H;
    let mut rects = String::new();
    let mut labels = String::new();
    let mut rows_end: Vec<f64> = Vec::new();
    for (i, w) in c.faults.iter().enumerate() {
        let x0 = sx(w.start_ms);
        let end = w.end_ms.unwrap_or(x_max_ms);
        let instant = w.end_ms == Some(w.start_ms);
        let x1 = sx(end).max(x0 + 2.0);
        let label = if w.end_ms.is_none() {
            format!("{} (not undone)", w.kind)
        } else {
            w.kind.clone()
        };
        let span = match w.end_ms {
            Some(e) if e == w.start_ms => format!("at {}", fmt_ms(w.start_ms)),
            Some(e) => format!("{} – {}", fmt_ms(w.start_ms), fmt_ms(e)),
            None => format!("from {} to the end", fmt_ms(w.start_ms)),
        };
        let tooltip = format!("{} {} {} {}", w.kind, w.target, span, w.note);
        let _ = writeln!(
            rects,
            "<rect class=\"fault{}\" data-fault=\"{i}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"><title>{}</title></rect>",
            if instant { " instant" } else { "" },
            f(x0),
            f(TOP),
            f(x1 - x0),
            f(plot_h),
            esc(tooltip.trim())
        );
        let text_w = label.chars().count() as f64 * CHAR_W;
        // A label that would run off the right edge is anchored at its window's end instead.
        let (lx, anchor, from, to) = if x0 + 3.0 + text_w > WIDTH - RIGHT {
            (x1 - 3.0, "end", x1 - 3.0 - text_w, x1 - 3.0)
        } else {
            (x0 + 3.0, "start", x0 + 3.0, x0 + 3.0 + text_w)
        };
        let row = match rows_end.iter().position(|&e| from > e + 6.0) {
            Some(r) => r,
            None if rows_end.len() < MAX_LABEL_ROWS => {
                rows_end.push(f64::MIN);
                rows_end.len() - 1
            }
            None => rows_end
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(r, _)| r),
        };
        rows_end[row] = to;
        let _ = writeln!(
            labels,
            "<text class=\"fault-label\" x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\">{}</text>",
            f(lx),
            f(TOP + 11.0 + row as f64 * LABEL_ROW),
            esc(&label)
        );
    }
    let band = if rows_end.is_empty() {
        0.0
    } else {
        rows_end.len() as f64 * LABEL_ROW + 6.0
    };
    FaultLayer {
        rects,
        labels,
        band,
    }
}

/// Axes: y grid and labels, x ticks in seconds, axis titles.
fn axes(o: &mut String, c: &Chart<'_>, fr: &Frame) {
    let plot_w = PLOT_W;
    let plot_h = PLOT_H;
    let x_max = fr.x_max;
    for v in ticks(fr.y_lo, fr.y_hi, fr.y_step) {
        let y = fr.sy(v);
        let _ = writeln!(
            o,
            "<line class=\"grid\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            f(LEFT),
            f(y),
            f(LEFT + plot_w),
            f(y),
            f(LEFT - 6.0),
            f(y + 4.0),
            esc(&tick_label(v))
        );
    }
    let x_step_s = nice_step(x_max / 1000.0, 10.0);
    for s in ticks(0.0, x_max / 1000.0, x_step_s) {
        let x = fr.sx((s * 1000.0).round() as u64);
        let _ = writeln!(
            o,
            "<line class=\"axis\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
            f(x),
            f(TOP + plot_h),
            f(x),
            f(TOP + plot_h + 5.0),
            f(x),
            f(TOP + plot_h + 18.0),
            esc(&fmt_num(s))
        );
    }
    let _ = writeln!(
        o,
        "<line class=\"axis\" x1=\"{l}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\"/><line class=\"axis\" x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{b}\"/>",
        l = f(LEFT),
        r = f(LEFT + plot_w),
        t = f(TOP),
        b = f(TOP + plot_h)
    );
    let _ = writeln!(
        o,
        "<text class=\"axis-title\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">time since start (s)</text>",
        f(LEFT + plot_w / 2.0),
        f(HEIGHT - 6.0)
    );
    let _ = writeln!(
        o,
        "<text class=\"axis-title\" transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
        f(TOP + plot_h / 2.0),
        esc(c.axis_title)
    );
}

/// Marks: dashed vertical lines labelled at the bottom of the plot.
fn marks(o: &mut String, c: &Chart<'_>, fr: &Frame) {
    let plot_h = PLOT_H;
    for m in c.marks {
        let x = fr.sx(m.at_ms);
        let _ = writeln!(
            o,
            "<line class=\"mark\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><text class=\"mark-label\" x=\"{}\" y=\"{}\">{}</text>",
            f(x),
            f(TOP),
            f(x),
            f(TOP + plot_h),
            f(x + 3.0),
            f(TOP + plot_h - 5.0),
            esc(&m.name)
        );
    }
}

/// The series, split where samples are missing (gaps longer than `gap_ms`); "no samples" when
/// there is nothing to draw.
fn lines(o: &mut String, c: &Chart<'_>, fr: &Frame) {
    let plot_w = PLOT_W;
    let plot_h = PLOT_H;
    let mut any = false;
    for l in &c.lines {
        let mut segment: Vec<(u64, f64)> = Vec::new();
        let mut segments: Vec<Vec<(u64, f64)>> = Vec::new();
        for &p in l.points {
            if let Some(&(prev, _)) = segment.last() {
                if p.0.saturating_sub(prev) > c.gap_ms {
                    segments.push(std::mem::take(&mut segment));
                }
            }
            segment.push(p);
        }
        if !segment.is_empty() {
            segments.push(segment);
        }
        for seg in segments {
            any = true;
            if seg.len() == 1 && l.step_ms.is_none() {
                let (t, v) = seg[0];
                let _ = writeln!(
                    o,
                    "<circle class=\"series\" data-series=\"{}\" cx=\"{}\" cy=\"{}\" r=\"2.5\" fill=\"{}\"/>",
                    esc(l.name),
                    f(fr.sx(t)),
                    f(fr.sy(v)),
                    esc(l.color)
                );
                continue;
            }
            let seg = match l.step_ms {
                Some(w) => steps(&seg, w),
                None => seg,
            };
            let dense = seg.len() as f64 > PLOT_W / COLUMN_PX;
            let seg = if dense {
                decimate(&seg, |t| (fr.sx(t) / COLUMN_PX) as i64)
            } else {
                seg
            };
            // Scrape dots denser than one per column would only paint the line over.
            if l.dots && !dense {
                for &(t, v) in &seg {
                    let _ = writeln!(
                        o,
                        "<circle class=\"scrape\" data-series=\"{}\" cx=\"{}\" cy=\"{}\" r=\"2\" fill=\"{}\"/>",
                        esc(l.name),
                        f(fr.sx(t)),
                        f(fr.sy(v)),
                        esc(l.color)
                    );
                }
            }
            let pts: Vec<String> = seg
                .iter()
                .map(|&(t, v)| format!("{},{}", f(fr.sx(t)), f(fr.sy(v))))
                .collect();
            let _ = writeln!(
                o,
                "<polyline class=\"series\" data-series=\"{}\" stroke=\"{}\" points=\"{}\"/>",
                esc(l.name),
                esc(l.color),
                pts.join(" ")
            );
        }
    }
    if !any {
        let _ = writeln!(
            o,
            "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no samples</text>",
            f(LEFT + plot_w / 2.0),
            f(TOP + plot_h / 2.0)
        );
    }
}

/// M4 decimation: of each run of consecutive points in the same column (`column(t)`), keeps
/// the first, the lowest, the highest and the last, in time order — the polyline through them
/// covers the same pixels as the one through every point, spikes included.
pub fn decimate(seg: &[(u64, f64)], column: impl Fn(u64) -> i64) -> Vec<(u64, f64)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < seg.len() {
        let col = column(seg[i].0);
        let mut j = i;
        while j + 1 < seg.len() && column(seg[j + 1].0) == col {
            j += 1;
        }
        let run = &seg[i..=j];
        let (mut lo, mut hi) = (0, 0);
        for (k, p) in run.iter().enumerate() {
            if p.1 < run[lo].1 {
                lo = k;
            }
            if p.1 > run[hi].1 {
                hi = k;
            }
        }
        let mut keep = vec![0, lo, hi, run.len() - 1];
        keep.sort_unstable();
        keep.dedup();
        out.extend(keep.into_iter().map(|k| run[k]));
        i = j + 1;
    }
    out
}

/// A bucketed series as a staircase: each value held flat from its bucket's start (or the
/// previous point) to its point.
fn steps(seg: &[(u64, f64)], width: u64) -> Vec<(u64, f64)> {
    let mut out = Vec::with_capacity(seg.len() * 2);
    let mut prev: Option<u64> = None;
    for &(t, v) in seg {
        let from = prev.unwrap_or_else(|| t.saturating_sub(width));
        out.push((from, v));
        out.push((t, v));
        prev = Some(t);
    }
    out
}

/// The legend above the plot.
fn legend(o: &mut String, c: &Chart<'_>) {
    let mut x = LEFT;
    for l in &c.lines {
        let _ = writeln!(
            o,
            "<g class=\"legend\"><rect x=\"{}\" y=\"10\" width=\"14\" height=\"4\" fill=\"{}\"/><text x=\"{}\" y=\"16\">{}</text></g>",
            f(x),
            esc(l.color),
            f(x + 18.0),
            esc(l.label)
        );
        x += 18.0 + l.label.chars().count() as f64 * CHAR_W + 22.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps_are_1_2_5() {
        assert_eq!(nice_step(10.0, 5.0), 2.0);
        assert_eq!(nice_step(48.2, 10.0), 5.0);
        assert_eq!(nice_step(640.0, 5.0), 200.0);
        assert_eq!(nice_step(0.0, 5.0), 1.0);
        assert_eq!(ticks(0.0, 10.0, 2.0), vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    }

    #[test]
    fn decimation_keeps_first_last_and_extremes_of_each_column() {
        let pts: Vec<(u64, f64)> = (0..10)
            .map(|i| (i, [3., 1., 9., 2., 5., 5., 0., 7., 4., 6.][i as usize]))
            .collect();
        // Columns of 5 points: [3 1 9 2 5] [5 0 7 4 6].
        let d = decimate(&pts, |t| (t / 5) as i64);
        assert_eq!(
            d,
            vec![
                (0, 3.),
                (1, 1.),
                (2, 9.),
                (4, 5.),
                (5, 5.),
                (6, 0.),
                (7, 7.),
                (9, 6.)
            ]
        );
        assert_eq!(decimate(&pts[..2], |t| t as i64), pts[..2].to_vec());
    }

    /// A one-hour run at 1 s resolution: 3600 points per series, one spike of one second.
    /// The SVG holds a few points per pixel column, and the spike is still drawn.
    #[test]
    fn an_hour_at_one_second_draws_at_most_a_few_points_per_column_and_keeps_spikes() {
        let pts: Vec<(u64, f64)> = (1..=3600)
            .map(|s| {
                (
                    s * 1000,
                    if s == 1777 {
                        100.0
                    } else {
                        1.0 + (s % 3) as f64
                    },
                )
            })
            .collect();
        let chart = |step_ms| {
            render(&Chart {
                id: "c",
                title: "t",
                axis_title: "u",
                lines: vec![Line {
                    name: "sent_rate",
                    label: "sent",
                    color: "#000",
                    points: &pts,
                    dots: true,
                    step_ms,
                }],
                x_max_ms: 3_600_000,
                faults: &[],
                marks: &[],
                gap_ms: 5000,
            })
        };
        for step_ms in [None, Some(1000)] {
            let svg = chart(step_ms);
            let poly = svg
                .lines()
                .find(|l| l.starts_with("<polyline class=\"series\""))
                .expect("a polyline");
            let points = poly
                .split("points=\"")
                .nth(1)
                .unwrap()
                .trim_end_matches("\"/>");
            let n = points.split(' ').count();
            assert!(n <= 4 * (PLOT_W / COLUMN_PX) as usize + 4, "{n} points");
            assert!(n >= 200, "{n} points: the line must still follow the data");
            // The spike is the highest point: the smallest y of the polyline is the plot's top
            // data row.
            let min_y = points
                .split(' ')
                .map(|p| p.split(',').nth(1).unwrap().parse::<f64>().unwrap())
                .fold(f64::MAX, f64::min);
            let top = Frame {
                x_max: 3_600_000.0,
                data_top: TOP,
                data_h: PLOT_H,
                y_lo: 0.0,
                y_hi: 100.0,
                y_step: 20.0,
            }
            .sy(100.0);
            assert!(
                (min_y - top).abs() < 0.01,
                "spike lost: min y {min_y}, top {top}"
            );
            assert_eq!(
                svg.matches("class=\"scrape\"").count(),
                0,
                "dots of a dense series"
            );
        }
    }

    #[test]
    fn missing_samples_break_the_line() {
        let pts = [(0, 1.0), (1000, 2.0), (5000, 2.0), (6000, 1.0)];
        let svg = render(&Chart {
            id: "c",
            title: "t",
            axis_title: "u",
            lines: vec![Line {
                name: "waiting",
                label: "waiting",
                color: "#000",
                points: &pts,
                dots: false,
                step_ms: None,
            }],
            x_max_ms: 6000,
            faults: &[],
            marks: &[],
            gap_ms: 2500,
        });
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
    }
}
