//! The replay's chart: utilization and demand, waiters, and P95 over
//! incident time, with a vertical marker for every alert that fired and for
//! customer impact. Drawn as SVG (plotters): browsers and GitHub show it as
//! it is, with no font or rasterizer to build (a PNG step through resvg and
//! the system's fonts cost CI about 3 minutes of compiling, twice).

use std::error::Error;
use std::ops::Range;
use std::path::Path;

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use poolguard::{AlertState, Severity};

use crate::replay::{fmt_clock, Clock, Config, Pass, OLD_ALERT};

const SIZE: (u32, u32) = (1400, 1000);
const IMPACT: RGBColor = RGBColor(200, 0, 160);
const WARNING: RGBColor = RGBColor(230, 140, 0);
const CRITICAL: RGBColor = RGBColor(210, 30, 30);
const INFO: RGBColor = RGBColor(90, 120, 200);

/// Writes the chart as SVG (text in the viewer's sans-serif font).
pub fn draw(pass: &Pass, cfg: &Config, svg: &Path) -> Result<(), Box<dyn Error>> {
    let mut text = String::new();
    plot(
        SVGBackend::with_string(&mut text, SIZE).into_drawing_area(),
        pass,
        cfg,
    )?;
    std::fs::write(svg, &text)?;
    Ok(())
}

fn hhmm(t: &Clock) -> String {
    fmt_clock(*t)[..5].to_string()
}

/// A vertical line for every alert that fired, and for the impact.
struct Marker {
    at: Clock,
    label: String,
    color: RGBColor,
    /// Where the label goes (its line's time, or later when labels
    /// would overlap).
    label_at: Clock,
}

/// Incident minutes a rotated label needs (13 px text on a chart about
/// 1,500 px wide for 55 minutes, with a gap).
const LABEL_GAP: f64 = 0.75;

/// Moves labels right so that none is nearer than `gap` to the one before
/// it; the lines stay where they are.
fn spread(marks: &mut [Marker], gap: f64) {
    marks.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut last = f64::NEG_INFINITY;
    for m in marks.iter_mut() {
        m.label_at = m.at.max(last + gap);
        last = m.label_at;
    }
}

fn markers(pass: &Pass) -> Vec<Marker> {
    let mut out: Vec<Marker> = pass
        .marks
        .iter()
        .filter(|m| m.state == AlertState::Firing)
        .map(|m| Marker {
            at: m.at,
            label_at: m.at,
            label: match (&m.diagnosis, m.rule == OLD_ALERT) {
                (_, true) => "old alert: P50 > 1 s".into(),
                // The pool rules say why: the diagnosed cause.
                (Some(d), false) if m.rule == poolguard::rules::POOL_RULE => {
                    format!("{} {} (why: {})", m.rule, m.severity, d.cause)
                }
                _ => format!("{} {}", m.rule, m.severity),
            },
            color: match (m.rule == OLD_ALERT, m.severity) {
                (true, _) => BLACK,
                (_, Severity::Critical) => CRITICAL,
                (_, Severity::Info) => INFO,
                _ => WARNING,
            },
        })
        .collect();
    if let Some(t) = pass.impact {
        out.push(Marker {
            at: t,
            label_at: t,
            label: "CUSTOMER IMPACT".into(),
            color: IMPACT,
        });
    }
    spread(&mut out, LABEL_GAP);
    out
}

fn plot<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    pass: &Pass,
    cfg: &Config,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let title = format!(
        "INC-EX3 replay ({:?}): pool of {}, default poolguard rules vs the old alert",
        cfg.scenario, cfg.pool_size
    );
    // The first firing pool rule's diagnosis, under the title.
    let why = pass
        .marks
        .iter()
        .find(|m| {
            m.state == AlertState::Firing
                && m.diagnosis.is_some()
                && m.rule == poolguard::rules::POOL_RULE
        })
        .and_then(|m| m.diagnosis.as_ref().map(|d| (m.at, d)));

    let root = root.titled(&title, ("sans-serif", 24))?;
    let panels = root.split_evenly((3, 1));
    let x = pass.from..cfg.until;
    let marks = markers(pass);
    let s = &pass.samples;

    // Demand past 200 % is clipped: the interesting part is 34 % -> 100 %.
    let top = s
        .iter()
        .map(|s| s.demand * 100.0)
        .fold(110.0, f64::max)
        .min(200.0);
    let mut c = chart(
        &panels[0],
        x.clone(),
        0.0..top,
        "pool: utilization and demand, %",
    )?;
    // Demand first: it is never below utilization, which stays visible.
    c.draw_series(LineSeries::new(
        s.iter().map(|s| (s.at, s.demand.min(2.0) * 100.0)),
        GREEN.stroke_width(2),
    ))?
    .label(format!(
        "demand ((in use + waiters) / {}, clipped at 200 %)",
        cfg.pool_size
    ))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    c.draw_series(LineSeries::new(
        s.iter().map(|s| (s.at, s.utilization * 100.0)),
        BLUE.stroke_width(2),
    ))?
    .label(format!(
        "utilization (busy, or full while requests wait; / {})",
        cfg.pool_size
    ))
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    for (level, color) in [(80.0, WARNING), (90.0, CRITICAL)] {
        c.draw_series(DashedLineSeries::new(
            [(x.start, level), (x.end, level)],
            8,
            6,
            color.stroke_width(1),
        ))?;
    }
    draw_markers(&mut c, &marks, 0.0..top, true)?;
    if let Some((at, d)) = why {
        // The diagnosis, across the top of the first panel (right of the
        // legend), shortened to what fits.
        let mut text = format!("why the pool fills ({}): {d}", &fmt_clock(at)[..5]);
        if text.len() > 150 {
            let cut = (0..=147)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text.truncate(cut);
            text.push_str("...");
        }
        let span = cfg.until - pass.from;
        c.draw_series(std::iter::once(Text::new(
            text,
            (pass.from + span * 0.30, top * 0.97),
            ("sans-serif", 14).into_font().color(&BLACK),
        )))?;
    }
    legend(&mut c)?;

    let most = s.iter().map(|s| s.waiters).max().unwrap_or(0).max(10);
    let mut c = chart(
        &panels[1],
        x.clone(),
        0.0..f64::from(most) * 1.1,
        "requests waiting for a connection",
    )?;
    c.draw_series(LineSeries::new(
        s.iter().map(|s| (s.at, f64::from(s.waiters))),
        RED.stroke_width(2),
    ))?
    .label("waiters")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    draw_markers(&mut c, &marks, 0.0..f64::from(most) * 1.1, false)?;
    legend(&mut c)?;

    let p95_top = s.iter().filter_map(|s| s.p95_ms).fold(1000.0, f64::max) * 1.1;
    let mut c = chart(
        &panels[2],
        x,
        0.0..p95_top,
        "P95 response time, ms (requests completed in each 5 s)",
    )?;
    c.draw_series(LineSeries::new(
        s.iter().filter_map(|s| s.p95_ms.map(|v| (s.at, v))),
        MAGENTA.stroke_width(2),
    ))?
    .label("P95")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA.stroke_width(2)));
    c.draw_series(DashedLineSeries::new(
        [(pass.from, 500.0), (cfg.until, 500.0)],
        8,
        6,
        IMPACT.stroke_width(1),
    ))?
    .label("500 ms target (dashboard)")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], IMPACT));
    draw_markers(&mut c, &marks, 0.0..p95_top, false)?;
    legend(&mut c)?;
    root.present()?;
    Ok(())
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn chart<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    x: Range<f64>,
    y: Range<f64>,
    caption: &str,
) -> Result<Chart<'a, DB>, Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    let mut c = ChartBuilder::on(area)
        .margin(8)
        .margin_right(30)
        .caption(caption, ("sans-serif", 18))
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)?;
    c.configure_mesh()
        .x_labels(12)
        .x_label_formatter(&hhmm)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    Ok(c)
}

fn draw_markers<'a, DB: DrawingBackend + 'a>(
    c: &mut Chart<'a, DB>,
    marks: &[Marker],
    y: Range<f64>,
    labels: bool,
) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    for m in marks {
        let width = if m.color == IMPACT { 3 } else { 1 };
        c.draw_series(std::iter::once(PathElement::new(
            vec![(m.at, y.start), (m.at, y.end)],
            m.color.stroke_width(width),
        )))?;
        if labels {
            let style = ("sans-serif", 13)
                .into_font()
                .transform(FontTransform::Rotate270)
                .color(&m.color);
            c.draw_series(std::iter::once(Text::new(
                format!("{} {}", &fmt_clock(m.at)[..5], m.label),
                (m.label_at, y.start + (y.end - y.start) * 0.03),
                style,
            )))?;
        }
    }
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a>(c: &mut Chart<'a, DB>) -> Result<(), Box<dyn Error>>
where
    DB::ErrorType: 'static,
{
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
