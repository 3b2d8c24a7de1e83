//! `looptune report --log FILE --out report.svg|report.html`: the tuning log drawn.
//!
//! Two charts in one SVG, drawn with `plotters` (its SVG backend only, so no font or bitmap
//! library is linked): the tuning curve, best GFLOP/s found so far against the trial number,
//! one line per (workload, tuner, thread count) in the log; and one pair of bars per workload,
//! the best GFLOP/s of any tuner next to the host's full-width FMA peak. The HTML form embeds the same SVG
//! above a table of the same numbers.
//!
//! Records do not store the peak, so it is measured (`looptune::backend::full_width_peak`) in the
//! run that draws the report (the main job passes the peak it measured itself), once per thread
//! count found in the log, and the report says so. A peak measured on another machine than the
//! log's records would make the ratio meaningless: a record whose CPU model differs from this
//! host's is named in a warning.

use super::logs::read_with_warnings;
use super::Usage;
use anyhow::Context;
use clap::Args;
use looptune::backend::full_width_peak;
use looptune::log::Record;
use looptune::runtime::Target;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `looptune report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The tuning log to draw.
    #[arg(long)]
    log: PathBuf,
    /// Where to write the report: `*.svg` (the charts) or `*.html` (the charts and a table).
    #[arg(long)]
    out: PathBuf,
}

/// What the report is written as, from the output's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The charts alone.
    Svg,
    /// A page embedding the charts above a table.
    Html,
}

impl Format {
    /// The format of `path`, by its extension (case-insensitive).
    pub fn of(path: &Path) -> Result<Format, Usage> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("html") | Some("htm") => Ok(Format::Html),
            _ => Err(Usage(format!(
                "--out {}: the report is written as .svg or .html, chosen by the file's extension",
                path.display()
            ))),
        }
    }
}

/// Peak GFLOP/s per thread count, and where they come from.
#[derive(Clone, Debug, Default)]
pub struct Peaks {
    gflops: BTreeMap<usize, f64>,
}

impl Peaks {
    /// A peak already measured in this run for `threads` threads.
    pub fn with(mut self, threads: usize, gflops: f64) -> Peaks {
        self.gflops.insert(threads, gflops);
        self
    }

    /// Measures the peak of every thread count in `records` not known yet.
    fn measure_missing(&mut self, records: &[Record]) -> anyhow::Result<()> {
        for record in records {
            let threads = record.target.threads.max(1);
            if let std::collections::btree_map::Entry::Vacant(entry) = self.gflops.entry(threads) {
                let peak = full_width_peak(threads)
                    .with_context(|| format!("measuring the peak on {threads} thread(s)"))?;
                entry.insert(peak.gflops);
            }
        }
        Ok(())
    }

    fn get(&self, threads: usize) -> Option<f64> {
        self.gflops.get(&threads).copied()
    }
}

/// One tuning curve: the records of one (workload, tuner, thread count) in log order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The workload key.
    pub workload: String,
    /// The tuner's name, from the records.
    pub tuner: String,
    /// Threads of the records' target.
    pub threads: usize,
    /// Records, failed ones included.
    pub trials: usize,
    /// Records without a valid time.
    pub errors: usize,
    /// (trial number from 1, best GFLOP/s up to that trial), from the first valid trial on.
    pub curve: Vec<(usize, f64)>,
}

impl Series {
    /// The best GFLOP/s of the series, if any trial was valid.
    pub fn best(&self) -> Option<f64> {
        self.curve.last().map(|&(_, gflops)| gflops)
    }

    /// The legend's text: the workload and the tuner, and the threads when not one.
    fn label(&self) -> String {
        let threads = if self.threads == 1 {
            String::new()
        } else {
            format!(", {} threads", self.threads)
        };
        format!("{} [{}{threads}]", self.workload, self.tuner)
    }
}

/// The tuning curves of `records`, in the order each (workload, tuner, threads) first appears.
pub fn series(records: &[Record]) -> Vec<Series> {
    let mut all: Vec<Series> = Vec::new();
    for record in records {
        let threads = record.target.threads.max(1);
        let index = match all.iter().position(|series| {
            series.workload == record.workload
                && series.tuner == record.tuner
                && series.threads == threads
        }) {
            Some(index) => index,
            None => {
                all.push(Series {
                    workload: record.workload.clone(),
                    tuner: record.tuner.clone(),
                    threads,
                    trials: 0,
                    errors: 0,
                    curve: Vec::new(),
                });
                all.len() - 1
            }
        };
        let series = &mut all[index];
        series.trials += 1;
        let gflops = record
            .gflops
            .filter(|gflops| record.is_valid() && gflops.is_finite());
        match gflops {
            Some(gflops) => {
                let best = series.best().map_or(gflops, |best| best.max(gflops));
                series.curve.push((series.trials, best));
            }
            None => {
                series.errors += 1;
                if let Some(best) = series.best() {
                    series.curve.push((series.trials, best));
                }
            }
        }
    }
    all
}

/// One bar pair: the best of any tuner for a workload on a thread count, and the peak.
#[derive(Clone, Debug, PartialEq)]
struct Bar {
    workload: String,
    threads: usize,
    best: f64,
    tuner: String,
    peak: Option<f64>,
}

/// The bars of `series`, in order of first appearance; workloads without a valid trial have
/// none.
fn bars(series: &[Series], peaks: &Peaks) -> Vec<Bar> {
    let mut bars: Vec<Bar> = Vec::new();
    for one in series {
        let Some(best) = one.best() else { continue };
        match bars
            .iter_mut()
            .find(|bar| bar.workload == one.workload && bar.threads == one.threads)
        {
            Some(bar) if bar.best >= best => {}
            Some(bar) => {
                bar.best = best;
                bar.tuner = one.tuner.clone();
            }
            None => bars.push(Bar {
                workload: one.workload.clone(),
                threads: one.threads,
                best,
                tuner: one.tuner.clone(),
                peak: peaks.get(one.threads),
            }),
        }
    }
    bars
}

/// Width of the SVG in pixels.
const WIDTH: u32 = 1100;
/// Height of the tuning-curve panel.
const CURVE_HEIGHT: u32 = 480;
/// Height of one workload's bar pair.
const BAR_ROW_HEIGHT: u32 = 90;

/// Where the peak came from, said under the bars.
pub const PEAK_MEASURED_HERE: &str =
    "peak: the host's full-width FMA peak, measured when this report was drawn \
     (tuning records do not store it)";

/// The two charts as an SVG document.
pub fn render_svg(series: &[Series], peaks: &Peaks, peak_note: &str) -> anyhow::Result<String> {
    let bars = bars(series, peaks);
    let height = CURVE_HEIGHT + 90 + BAR_ROW_HEIGHT * bars.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (upper, lower) = root.split_vertically(CURVE_HEIGHT);
        draw_curves(&upper, series)?;
        draw_bars(&lower, &bars, peak_note)?;
        root.present()?;
    }
    Ok(svg)
}

fn draw_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    series: &[Series],
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let max_trial = series
        .iter()
        .map(|one| one.trials)
        .max()
        .unwrap_or(1)
        .max(2);
    let max_gflops = series
        .iter()
        .filter_map(Series::best)
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Tuning curve: best GFLOP/s so far",
            ("sans-serif", 22).into_font(),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(1f64..max_trial as f64, 0f64..max_gflops * 1.1)
        .map_err(drawing_error)?;
    chart
        .configure_mesh()
        .x_desc("trial")
        .y_desc("GFLOP/s")
        .x_label_formatter(&|trial| format!("{trial:.0}"))
        .draw()
        .map_err(drawing_error)?;
    for (index, one) in series
        .iter()
        .filter(|one| !one.curve.is_empty())
        .enumerate()
    {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(
                one.curve
                    .iter()
                    .map(|&(trial, gflops)| (trial as f64, gflops)),
                color.stroke_width(2),
            ))
            .map_err(drawing_error)?
            .label(one.label())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13).into_font())
        .draw()
        .map_err(drawing_error)?;
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    bars: &[Bar],
    peak_note: &str,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let max_gflops = bars
        .iter()
        .flat_map(|bar| [Some(bar.best), bar.peak])
        .flatten()
        .fold(1.0f64, f64::max);
    // Room to the right of the longest bar for its label.
    let x_max = max_gflops * 1.5;
    let rows = (3 * bars.len().max(1)) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(
            "Best GFLOP/s per workload against the peak",
            ("sans-serif", 22).into_font(),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..x_max, 0f64..rows)
        .map_err(drawing_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc(format!("GFLOP/s ({peak_note})"))
        .draw()
        .map_err(drawing_error)?;
    let label_font = ("sans-serif", 13).into_font();
    let best_color = Palette99::pick(0).to_rgba();
    let peak_color = RGBColor(170, 170, 170);
    for (index, bar) in bars.iter().enumerate() {
        let top = rows - 3.0 * index as f64;
        let threads = if bar.threads == 1 {
            String::new()
        } else {
            format!(" ({} threads)", bar.threads)
        };
        let mut elements: Vec<DynElement<DB, (f64, f64)>> = vec![
            Text::new(
                format!("{}{threads}", bar.workload),
                (0.0, top - 0.15),
                ("sans-serif", 14).into_font(),
            )
            .into_dyn(),
            Rectangle::new(
                [(0.0, top - 1.05), (bar.best, top - 1.85)],
                best_color.filled(),
            )
            .into_dyn(),
        ];
        let ratio = bar.peak.map_or(String::new(), |peak| {
            format!(", {:.0}% of peak", 100.0 * bar.best / peak)
        });
        elements.push(
            Text::new(
                format!("best {:.2} GFLOP/s [{}]{ratio}", bar.best, bar.tuner),
                (bar.best + x_max * 0.01, top - 1.1),
                label_font.clone(),
            )
            .into_dyn(),
        );
        if let Some(peak) = bar.peak {
            elements.push(
                Rectangle::new([(0.0, top - 1.95), (peak, top - 2.75)], peak_color.filled())
                    .into_dyn(),
            );
            elements.push(
                Text::new(
                    format!("peak {peak:.2} GFLOP/s"),
                    (peak + x_max * 0.01, top - 2.0),
                    label_font.clone(),
                )
                .into_dyn(),
            );
        }
        chart.draw_series(elements).map_err(drawing_error)?;
    }
    Ok(())
}

/// A plotters error as an anyhow error (its backend error type is not always `Send`).
fn drawing_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the report: {error:?}")
}

/// The HTML page: the SVG, then a table of every series with its ratio to peak.
pub fn render_html(
    svg: &str,
    series: &[Series],
    peaks: &Peaks,
    peak_note: &str,
    log: &Path,
) -> String {
    let mut html = String::new();
    let title = format!("looptune report: {}", log.display());
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #bbb;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child,td:nth-child(2){{text-align:left}}</style>\n</head>\n<body>\n\
         <h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    html.push_str(svg);
    html.push_str(
        "\n<table>\n<tr><th>workload</th><th>tuner</th><th>threads</th><th>trials</th>\
         <th>errors</th><th>best GFLOP/s</th><th>peak GFLOP/s</th><th>of peak</th></tr>\n",
    );
    for one in series {
        let peak = peaks.get(one.threads);
        let cell = |value: Option<f64>, suffix: &str| {
            value.map_or("-".to_string(), |value| format!("{value:.2}{suffix}"))
        };
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&one.workload),
            escape(&one.tuner),
            one.threads,
            one.trials,
            one.errors,
            cell(one.best(), ""),
            cell(peak, ""),
            cell(one.best().zip(peak).map(|(best, peak)| 100.0 * best / peak), "%"),
        );
    }
    let _ = write!(
        html,
        "</table>\n<p>{}</p>\n</body>\n</html>\n",
        escape(peak_note)
    );
    html
}

/// `text` safe inside HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Writes the report of `records` (read from `log`) to `out`, measuring the peaks `peaks`
/// lacks. Shared by `looptune report` and the main job.
pub fn write(
    records: &[Record],
    log: &Path,
    out: &Path,
    mut peaks: Peaks,
    peak_note: &str,
) -> anyhow::Result<()> {
    let format = Format::of(out)?;
    if records.is_empty() {
        return Err(Usage(format!(
            "the tuning log {} holds no records: nothing to draw",
            log.display()
        ))
        .into());
    }
    let series = series(records);
    if series.iter().all(|one| one.curve.is_empty()) {
        return Err(Usage(format!(
            "the tuning log {} holds {} records, none with a valid time: nothing to draw",
            log.display(),
            records.len()
        ))
        .into());
    }
    let host = Target::host().cpu_model;
    if let Some(other) = records
        .iter()
        .find(|record| record.target.cpu_model != host)
    {
        eprintln!(
            "warning: records of {} were measured on `{}`, the peak on this host (`{host}`): \
             ratios to peak compare two machines",
            other.workload, other.target.cpu_model
        );
    }
    peaks.measure_missing(records)?;
    let svg = render_svg(&series, &peaks, peak_note)?;
    let text = match format {
        Format::Svg => svg,
        Format::Html => render_html(&svg, &series, &peaks, peak_note, log),
    };
    std::fs::write(out, text).with_context(|| format!("writing the report {}", out.display()))?;
    Ok(())
}

/// Runs `looptune report`.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    Format::of(&args.out)?;
    if !args.log.exists() {
        return Err(Usage(format!(
            "the tuning log {} does not exist",
            args.log.display()
        ))
        .into());
    }
    let contents = read_with_warnings(&args.log)?;
    write(
        &contents.records,
        &args.log,
        &args.out,
        Peaks::default(),
        PEAK_MEASURED_HERE,
    )?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use looptune::log::{RecordContext, TargetFingerprint};
    use looptune::runtime::measure::{Costs, MeasureError, MeasureErrorKind, MeasureResult};
    use looptune::CraneliftBackend;
    use looptune::Workload;
    use std::time::UNIX_EPOCH;

    fn record(workload: &str, tuner: &str, threads: usize, gflops: Option<f64>) -> Record {
        let workload: Workload = workload.parse().expect("a valid workload");
        let target = Target::host().with_threads(threads);
        let context = RecordContext::new(
            &workload,
            TargetFingerprint::new(&target, &CraneliftBackend::new()),
            tuner,
        );
        let result = MeasureResult::known(match gflops {
            Some(gflops) => Ok(Costs::at_throughput(gflops, workload.flops())),
            None => Err(MeasureError::new(MeasureErrorKind::WrongAnswer, "off")),
        });
        let mut record =
            Record::from_measurement(&context, 0, Vec::new(), &result, UNIX_EPOCH, UNIX_EPOCH);
        // Exactly the throughput asked for, not its round trip through seconds.
        record.gflops = gflops;
        record
    }

    #[test]
    fn curves_keep_the_best_so_far_per_workload_tuner_and_threads() {
        let mm = "matmul:m=8,n=8,k=8";
        let records = [
            record(mm, "random", 1, None),
            record(mm, "random", 1, Some(2.0)),
            record(mm, "xgb", 1, Some(1.0)),
            record(mm, "random", 1, Some(1.5)),
            record(mm, "random", 2, Some(9.0)),
            record(mm, "random", 1, None),
            record(mm, "random", 1, Some(3.0)),
        ];
        let all = series(&records);
        assert_eq!(all.len(), 3);
        assert_eq!((all[0].tuner.as_str(), all[0].threads), ("random", 1));
        assert_eq!(all[0].trials, 5);
        assert_eq!(all[0].errors, 2);
        // Trial 1 failed: the curve starts at the first valid trial and never goes down.
        assert_eq!(all[0].curve, vec![(2, 2.0), (3, 2.0), (4, 2.0), (5, 3.0)]);
        assert_eq!(
            (all[1].tuner.as_str(), all[1].curve.clone()),
            ("xgb", vec![(1, 1.0)])
        );
        assert_eq!((all[2].threads, all[2].best()), (2, Some(9.0)));
    }

    #[test]
    fn bars_take_the_best_tuner_of_each_workload_and_its_peak() {
        let records = [
            record("matmul:m=8,n=8,k=8", "random", 1, Some(2.0)),
            record("matmul:m=8,n=8,k=8", "xgb", 1, Some(4.0)),
            record("matmul:m=4,n=4,k=4", "grid", 1, None),
        ];
        let peaks = Peaks::default().with(1, 10.0);
        let bars = bars(&series(&records), &peaks);
        assert_eq!(bars.len(), 1, "a workload without a valid trial has no bar");
        assert_eq!((bars[0].best, bars[0].tuner.as_str()), (4.0, "xgb"));
        assert_eq!(bars[0].peak, Some(10.0));
    }

    #[test]
    fn the_svg_names_workloads_tuners_and_the_peak_and_the_html_embeds_it() {
        let records = [
            record("matmul:m=8,n=8,k=8", "random", 1, Some(2.0)),
            record(
                "conv2d:n=1,ic=2,h=5,w=5,oc=4,kh=3,kw=3",
                "xgb",
                1,
                Some(1.0),
            ),
        ];
        let all = series(&records);
        let peaks = Peaks::default().with(1, 10.0);
        let svg = render_svg(&all, &peaks, "peak: test").expect("draws");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        for text in [
            records[0].workload.as_str(),
            records[1].workload.as_str(),
            "[random]",
            "[xgb]",
            "peak 10.00 GFLOP/s",
            "20% of peak",
        ] {
            assert!(svg.contains(text), "the SVG lacks `{text}`");
        }
        let html = render_html(&svg, &all, &peaks, "peak <here>", Path::new("a.log"));
        assert!(html.contains(&svg));
        assert!(html.contains("<td>xgb</td>"));
        assert!(html.contains("peak &lt;here&gt;"));
    }

    #[test]
    fn formats_come_from_the_extension() {
        assert_eq!(Format::of(Path::new("r.SVG")).ok(), Some(Format::Svg));
        assert_eq!(Format::of(Path::new("r.html")).ok(), Some(Format::Html));
        let error = Format::of(Path::new("r.png")).expect_err("png is not written");
        assert!(error.0.contains("r.png"), "{}", error.0);
        assert!(Format::of(Path::new("report")).is_err());
    }
}
