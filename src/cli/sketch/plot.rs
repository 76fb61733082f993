//! `--plot`: error and top-100 recall against memory, one row of charts per workload, drawn with
//! plotters' bitmap backend and a font compiled into the binary, so it renders on a machine with no
//! system fonts or graphics libraries.

use std::collections::BTreeMap;
use std::f64::consts::E;
use std::path::Path;

use anyhow::{anyhow, bail, Context};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use weir_processors::sketch::accuracy::{Algorithm, BenchResults, Measurement};
use weir_processors::sketch::CountMinSketch;

/// DejaVu Sans (Bitstream Vera license, see `assets/fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";
const ROW_HEIGHT_PX: u32 = 430;
const WIDTH_PX: u32 = 1500;
const TITLE_PX: u32 = 50;

/// Fails early, before the benchmark runs, if the plot could not be written.
pub fn check_target(path: &Path) -> anyhow::Result<()> {
    if path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("png")
    {
        bail!("--plot {} must name a .png file", path.display());
    }
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "--plot {}: directory {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

fn color(algorithm: Algorithm) -> RGBColor {
    match algorithm {
        Algorithm::CmsPlain => RGBColor(31, 119, 180),
        Algorithm::CmsConservative => RGBColor(255, 127, 14),
        Algorithm::TopkCms => RGBColor(44, 160, 44),
        Algorithm::SpaceSaving => RGBColor(214, 39, 40),
        Algorithm::Heavykeeper => RGBColor(148, 103, 189),
        Algorithm::FrequentItems => RGBColor(140, 86, 75),
    }
}

fn budget_label(log2_bytes: &f64) -> String {
    let bytes = 2f64.powf(*log2_bytes).round() as u64;
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

pub fn draw(path: &Path, results: &BenchResults, depth: u32) -> anyhow::Result<()> {
    register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the built-in font does not load"))?;
    let mut by_workload: Vec<(&str, Vec<&Measurement>)> = Vec::new();
    for m in &results.measurements {
        match by_workload.iter_mut().find(|(name, _)| *name == m.workload) {
            Some((_, rows)) => rows.push(m),
            None => by_workload.push((&m.workload, vec![m])),
        }
    }
    if by_workload.is_empty() {
        bail!("nothing to plot: no measurement succeeded");
    }
    let height = TITLE_PX + ROW_HEIGHT_PX * by_workload.len() as u32;
    let root = BitMapBackend::new(path, (WIDTH_PX, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (title, body) = root.split_vertically(TITLE_PX);
    title
        .titled(
            "Sketch accuracy against memory (weir sketch bench)",
            (FAMILY, 26),
        )
        .map_err(plot_error)?;
    for ((name, rows), area) in by_workload
        .iter()
        .zip(body.split_evenly((by_workload.len(), 1)))
    {
        let (left, right) = area.split_horizontally(WIDTH_PX / 2);
        error_chart(&left, name, rows, depth)?;
        recall_chart(&right, name, rows)?;
    }
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("cannot write --plot {}", path.display()))?;
    Ok(())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// Lines of (log2 budget, value) per algorithm.
fn series(
    rows: &[&Measurement],
    value: impl Fn(&Measurement) -> Option<f64>,
) -> BTreeMap<u8, (Algorithm, Vec<(f64, f64)>)> {
    let mut lines: BTreeMap<u8, (Algorithm, Vec<(f64, f64)>)> = BTreeMap::new();
    for m in rows {
        if let Some(v) = value(m) {
            let entry = lines
                .entry(m.algorithm as u8)
                .or_insert_with(|| (m.algorithm, Vec::new()));
            entry.1.push(((m.budget_bytes as f64).log2(), v));
        }
    }
    lines
}

fn x_range(rows: &[&Measurement]) -> (f64, f64) {
    let logs = rows.iter().map(|m| (m.budget_bytes as f64).log2());
    let low = logs.clone().fold(f64::INFINITY, f64::min);
    let high = logs.fold(f64::NEG_INFINITY, f64::max);
    if high > low {
        (low - 0.2, high + 0.2)
    } else {
        (low - 1.0, high + 1.0)
    }
}

fn count_label(value: &f64) -> String {
    match *value {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}

fn error_chart(
    area: &Area,
    workload: &str,
    rows: &[&Measurement],
    depth: u32,
) -> anyhow::Result<()> {
    // Errors can be 0 for large budgets; a floor of 0.01 keeps them on the log axis.
    let floor = 0.01;
    let lines = series(rows, |m| Some(m.mean_abs_error_all.max(floor)));
    let events = rows.first().map_or(0, |m| m.events) as f64;
    let bound: Vec<(f64, f64)> = rows
        .iter()
        .filter(|m| m.algorithm == Algorithm::CmsPlain)
        .map(|m| {
            let width = CountMinSketch::width_for_budget(m.budget_bytes, depth).max(1) as f64;
            ((m.budget_bytes as f64).log2(), E / width * events)
        })
        .collect();
    let values = lines
        .values()
        .flat_map(|(_, p)| p.iter().map(|&(_, y)| y))
        .chain(bound.iter().map(|&(_, y)| y));
    let y_high = values.fold(1.0f64, f64::max) * 3.0;
    let (x_low, x_high) = x_range(rows);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{workload}: mean |error| over all keys"),
            (FAMILY, 20),
        )
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72)
        .build_cartesian_2d(x_low..x_high, (floor..y_high).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("memory budget")
        .y_desc("mean absolute error (events)")
        .x_label_formatter(&budget_label)
        .y_label_formatter(&count_label)
        .x_labels(12)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(plot_error)?;
    for (algorithm, points) in lines.values() {
        draw_line(&mut chart, *algorithm, points)?;
    }
    if !bound.is_empty() {
        let style = ShapeStyle::from(&BLACK).stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(bound, 8, 6, style))
            .map_err(plot_error)?
            .label(format!("CMS bound ε·N (d={depth}, holds w.p. 1−δ)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn recall_chart(area: &Area, workload: &str, rows: &[&Measurement]) -> anyhow::Result<()> {
    let lines = series(rows, |m| m.recall_at_100);
    let (x_low, x_high) = x_range(rows);
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{workload}: top-100 recall"), (FAMILY, 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(x_low..x_high, 0.0..1.05)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("memory budget")
        .y_desc("recall of the true top 100")
        .x_label_formatter(&budget_label)
        .x_labels(12)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(plot_error)?;
    for (algorithm, points) in lines.values() {
        draw_line(&mut chart, *algorithm, points)?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn draw_line<'a, Y>(
    chart: &mut ChartContext<
        'a,
        BitMapBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
    >,
    algorithm: Algorithm,
    points: &[(f64, f64)],
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    let style = ShapeStyle::from(&color(algorithm)).stroke_width(2);
    chart
        .draw_series(LineSeries::new(points.iter().copied(), style).point_size(3))
        .map_err(plot_error)?
        .label(algorithm.name())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    Ok(())
}

fn legend<'a, Y>(
    chart: &mut ChartContext<
        'a,
        BitMapBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, Y>,
    >,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(
    error: DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("cannot draw the plot: {error}")
}
