//! The report's timeline charts, drawn as SVG by `plotters`: rows finished per second by
//! outcome; requests and 429s per second; the in-flight window, the account limit found and
//! the other traffic seen; answer latency (median and 95th percentile). Each is one `<svg>`
//! element to put inline in the page: no script, no font or style from elsewhere.

use plotters::prelude::*;

use crate::results::Outcome;
use crate::run::timeline::{Bucket, Timeline};

/// The size each chart is drawn at; the page scales it to its width.
const SIZE: (u32, u32) = (960, 300);

/// One line of a chart: its name, colour and points.
struct Line {
    name: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Colours for the outcomes, in [`Outcome::ALL`] order: green for done, reds and
/// oranges for rows that need a person, greys for the rest.
const OUTCOME_COLOURS: [RGBColor; 7] = [
    RGBColor(46, 139, 87),
    RGBColor(70, 130, 180),
    RGBColor(200, 30, 30),
    RGBColor(230, 120, 20),
    RGBColor(140, 140, 140),
    RGBColor(150, 60, 170),
    RGBColor(190, 150, 0),
];

/// The four charts of `timeline`, as SVG text, each with its title.
pub(crate) fn draw(timeline: &Timeline) -> Result<Vec<(String, String)>, String> {
    let axis = TimeAxis::of(timeline);
    let buckets = timeline.buckets();
    let rate = |value: u64| value as f64 / timeline.seconds_per_bucket() as f64;

    let rows = Outcome::ALL
        .iter()
        .zip(OUTCOME_COLOURS)
        .filter(|(outcome, _)| buckets.iter().any(|b| b.rows_of(**outcome) > 0))
        .map(|(&outcome, colour)| Line {
            name: outcome.as_str().to_string(),
            colour,
            points: axis.points(buckets, |b| Some(rate(b.rows_of(outcome)))),
        })
        .collect();
    let requests = vec![
        Line {
            name: "requests".into(),
            colour: RGBColor(70, 130, 180),
            points: axis.points(buckets, |b| Some(rate(b.requests))),
        },
        Line {
            name: "429s".into(),
            colour: RGBColor(200, 30, 30),
            points: axis.points(buckets, |b| Some(rate(b.throttled))),
        },
    ];
    let in_flight = vec![
        Line {
            name: "in-flight window".into(),
            colour: RGBColor(46, 139, 87),
            points: axis.points(buckets, Bucket::window),
        },
        Line {
            name: "account limit found".into(),
            colour: RGBColor(200, 30, 30),
            points: axis.points(buckets, |b| b.learned_limit.map(|l| l as f64)),
        },
        Line {
            name: "other traffic in flight".into(),
            colour: RGBColor(150, 60, 170),
            points: axis.points(buckets, Bucket::other_in_flight),
        },
    ];
    let millis = |q: f64| move |b: &Bucket| b.latency(q).map(|d| d.as_secs_f64() * 1000.0);
    let latency = vec![
        Line {
            name: "median".into(),
            colour: RGBColor(70, 130, 180),
            points: axis.points(buckets, millis(0.5)),
        },
        Line {
            name: "95th percentile".into(),
            colour: RGBColor(230, 120, 20),
            points: axis.points(buckets, millis(0.95)),
        },
    ];
    Ok(vec![
        (
            "Rows finished per second, by outcome".to_string(),
            chart(&axis, "rows/s", rows)?,
        ),
        (
            "Requests and 429s per second".to_string(),
            chart(&axis, "per second", requests)?,
        ),
        (
            "In flight: this run's window, the account limit found, other traffic".to_string(),
            chart(&axis, "requests in flight", in_flight)?,
        ),
        (
            "Answer latency".to_string(),
            chart(&axis, "milliseconds", latency)?,
        ),
    ])
}

/// The x axis: seconds, or minutes for a run over 20 minutes.
struct TimeAxis {
    seconds_per_bucket: f64,
    per_unit: f64,
    unit: &'static str,
    end: f64,
}

impl TimeAxis {
    fn of(timeline: &Timeline) -> Self {
        let seconds_per_bucket = timeline.seconds_per_bucket() as f64;
        let span = timeline.buckets().len() as f64 * seconds_per_bucket;
        let (per_unit, unit) = if span > 1200.0 {
            (60.0, "minutes since the start")
        } else {
            (1.0, "seconds since the start")
        };
        TimeAxis {
            seconds_per_bucket,
            per_unit,
            unit,
            end: (span / per_unit).max(1.0),
        }
    }

    /// A point per bucket that has a value, at the bucket's middle.
    fn points(
        &self,
        buckets: &[Bucket],
        value: impl Fn(&Bucket) -> Option<f64>,
    ) -> Vec<(f64, f64)> {
        buckets
            .iter()
            .enumerate()
            .filter_map(|(i, bucket)| {
                let x = (i as f64 + 0.5) * self.seconds_per_bucket / self.per_unit;
                value(bucket).filter(|v| v.is_finite()).map(|v| (x, v))
            })
            .collect()
    }
}

/// One chart of `lines` as SVG text.
fn chart(axis: &TimeAxis, y_label: &str, lines: Vec<Line>) -> Result<String, String> {
    let top = lines
        .iter()
        .flat_map(|line| line.points.iter().map(|&(_, y)| y))
        .fold(0.0_f64, f64::max);
    // Head room above the highest point, so the legend in the corner hides no line.
    let top = if top > 0.0 { top * 1.35 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..axis.end, 0.0..top)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(axis.unit)
            .y_desc(y_label)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(|e| e.to_string())?;
        let mut drawn = 0;
        for line in lines {
            if line.points.is_empty() {
                continue;
            }
            drawn += 1;
            let colour = line.colour;
            chart
                .draw_series(LineSeries::new(line.points, colour.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(line.name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                });
        }
        if drawn > 0 {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}
