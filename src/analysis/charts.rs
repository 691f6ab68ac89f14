//! The report's charts: plotters drawing into SVG text, which the page inlines. Two shapes
//! serve every chart: horizontal bars (a distribution, a funnel) and stacked columns (a
//! count over time, split by stage or workflow).

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("cannot draw the chart `{title}`: {message}")]
pub struct ChartError {
    title: String,
    message: String,
}

/// One stacked layer: its name (for the legend) and a value per column.
pub struct Series {
    pub name: String,
    pub values: Vec<i64>,
}

/// Colours for series and bars, in order; readable on white and apart for most eyes.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0x2b, 0x6c, 0xb0),
    RGBColor(0xe0, 0x7b, 0x24),
    RGBColor(0x3a, 0x9d, 0x5d),
    RGBColor(0xc0, 0x39, 0x2b),
    RGBColor(0x8e, 0x5e, 0xa2),
    RGBColor(0x7f, 0x8c, 0x8d),
    RGBColor(0xd4, 0xac, 0x0d),
    RGBColor(0x16, 0xa0, 0x85),
];

pub fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The width of a full-width chart.
pub const WIDTH: u32 = 720;

fn fail(title: &str) -> impl Fn(&dyn std::fmt::Display) -> ChartError + '_ {
    move |e| ChartError {
        title: title.to_string(),
        message: e.to_string(),
    }
}

/// Horizontal bars, the first label on top, each bar labelled with its value; `width` in
/// pixels (the page scales it down on narrow screens).
pub fn bars(
    title: &str,
    labels: &[String],
    values: &[i64],
    width: u32,
) -> Result<String, ChartError> {
    let values: Vec<f64> = values.iter().map(|v| *v as f64).collect();
    bar_chart(title, labels, &values, None, width, &|v| format!("{v:.0}"))
}

/// Shares as horizontal bars labelled in per cent (`0.125` is `12.5%`).
pub fn percent_bars(
    title: &str,
    labels: &[String],
    shares: &[f64],
    width: u32,
) -> Result<String, ChartError> {
    let values: Vec<f64> = shares.iter().map(|s| s * 100.0).collect();
    bar_chart(title, labels, &values, None, width, &|v| format!("{v:.1}%"))
}

/// Shares with an interval each, drawn as a whisker across the bar's end.
pub fn interval_bars(
    title: &str,
    labels: &[String],
    shares: &[(f64, f64, f64)],
    width: u32,
) -> Result<String, ChartError> {
    let values: Vec<f64> = shares.iter().map(|s| s.0 * 100.0).collect();
    let whiskers: Vec<(f64, f64)> = shares.iter().map(|s| (s.1 * 100.0, s.2 * 100.0)).collect();
    bar_chart(title, labels, &values, Some(&whiskers), width, &|v| {
        format!("{v:.1}%")
    })
}

fn bar_chart(
    title: &str,
    labels: &[String],
    values: &[f64],
    whiskers: Option<&[(f64, f64)]>,
    width: u32,
    shown: &dyn Fn(f64) -> String,
) -> Result<String, ChartError> {
    let fail = fail(title);
    let n = labels.len().max(1);
    let highest = whiskers.into_iter().flatten().map(|w| w.1);
    let max = values
        .iter()
        .copied()
        .chain(highest)
        .fold(0.0, f64::max)
        .max(1.0);
    let height = 60 + 28 * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let label_width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(16 + 7 * label_width)
            .build_cartesian_2d(0.0..max * 1.2 + 1.0, (0..n).into_segmented())
            .map_err(|e| fail(&e))?;
        let name_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < labels.len() => labels[labels.len() - 1 - i].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&name_of)
            .x_labels(6)
            .x_label_formatter(&|v| shown(*v))
            .draw()
            .map_err(|e| fail(&e))?;
        let count = labels.len();
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let row = count - 1 - i;
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(row)),
                        (*v, SegmentValue::Exact(row + 1)),
                    ],
                    colour(0).filled(),
                );
                bar.set_margin(4, 4, 0, 0);
                bar
            }))
            .map_err(|e| fail(&e))?;
        for (i, (low, high)) in whiskers.into_iter().flatten().enumerate() {
            let row = SegmentValue::CenterOf(count - 1 - i);
            let line = |points| PathElement::new(points, BLACK.stroke_width(2));
            let span = vec![(*low, row.clone()), (*high, row.clone())];
            chart.draw_series([line(span)]).map_err(|e| fail(&e))?;
        }
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                Text::new(
                    shown(*v),
                    (*v, SegmentValue::CenterOf(count - 1 - i)),
                    ("sans-serif", 13).into_font(),
                )
            }))
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

/// The width of a stacked chart's legend, beside the chart.
const LEGEND_WIDTH: u32 = 190;

/// Columns stacked by series, one column per label, with a legend of the series.
pub fn stacked(title: &str, labels: &[String], series: &[Series]) -> Result<String, ChartError> {
    let fail = fail(title);
    let n = labels.len().max(1);
    let max = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .sum::<i64>()
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let mut svg = String::new();
    {
        let height = 320.max(60 + 22 * series.len() as u32);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        // The legend has a strip of its own beside the chart, so it never covers a bar.
        let (plot, legend) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
        let mut chart = ChartBuilder::on(&plot)
            .caption(title, ("sans-serif", 18))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(40)
            .build_cartesian_2d((0..n).into_segmented(), 0..max + max / 8 + 1)
            .map_err(|e| fail(&e))?;
        let name_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&name_of)
            .y_labels(6)
            .draw()
            .map_err(|e| fail(&e))?;
        let mut base = vec![0i64; labels.len()];
        for (k, s) in series.iter().enumerate() {
            let colour = colour(k);
            let rects: Vec<_> = s
                .values
                .iter()
                .enumerate()
                .take(labels.len())
                .filter(|(_, v)| **v > 0)
                .map(|(i, v)| {
                    let mut r = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), base[i]),
                            (SegmentValue::Exact(i + 1), base[i] + v),
                        ],
                        colour.filled(),
                    );
                    r.set_margin(0, 0, 3, 3);
                    base[i] += v;
                    r
                })
                .collect();
            chart.draw_series(rects).map_err(|e| fail(&e))?;
            let y = 40 + 22 * k as i32;
            legend
                .draw(&Rectangle::new([(8, y - 6), (20, y + 6)], colour.filled()))
                .map_err(|e| fail(&e))?;
            let name: String = s.name.chars().take(24).collect();
            legend
                .draw(&Text::new(
                    name,
                    (26, y - 7),
                    ("sans-serif", 13).into_font(),
                ))
                .map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_draw_one_rectangle_per_value_and_label_each() {
        let labels = vec!["vip".to_string(), "lapsed".to_string()];
        let svg = bars("Stages", &labels, &[3, 5], WIDTH).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        // The background, then one bar per value in the palette's first colour.
        assert_eq!(svg.matches("fill=\"#2B6CB0\"").count(), 2, "{svg}");
        for text in ["vip", "lapsed", "Stages", ">\n3\n<", ">\n5\n<"] {
            assert!(svg.contains(text), "{text}: {svg}");
        }
    }

    #[test]
    fn stacked_columns_stack_and_skip_zeros() {
        let labels = vec!["06-01".to_string(), "06-02".to_string()];
        let series = vec![
            Series {
                name: "welcome".into(),
                values: vec![2, 0],
            },
            Series {
                name: "birthday".into(),
                values: vec![1, 4],
            },
        ];
        let svg = stacked("Sends", &labels, &series).unwrap();
        // welcome: one column (and its legend swatch); birthday: two (and its swatch).
        assert_eq!(svg.matches("fill=\"#2B6CB0\"").count(), 2, "{svg}");
        assert_eq!(svg.matches("fill=\"#E07B24\"").count(), 3, "{svg}");
        assert!(svg.contains("welcome") && svg.contains("birthday"), "{svg}");
        // Nothing to draw is still a chart, not an error.
        assert!(stacked("Empty", &[], &[]).unwrap().contains("Empty"));
        assert!(bars("Empty", &[], &[], 300).unwrap().contains("Empty"));
    }

    /// The legend has a strip of its own: every bar ends left of it, every legend swatch
    /// starts right of it, however many series there are.
    #[test]
    fn the_legend_never_covers_a_bar() {
        let labels: Vec<String> = (1..=8).map(|d| format!("06-0{d}")).collect();
        let series: Vec<Series> = (0..6)
            .map(|k| Series {
                name: format!("workflow-with-a-long-name-{k}"),
                values: (0..8).map(|i| 50 + 10 * ((i + k) % 4) as i64).collect(),
            })
            .collect();
        let svg = stacked("Emails sent per day", &labels, &series).unwrap();
        let strip = (WIDTH - LEGEND_WIDTH) as f64;
        let mut bars = 0;
        let mut swatches = 0;
        for rect in svg.split("<rect").skip(1) {
            let attr = |name: &str| -> Option<f64> {
                let at = rect.find(&format!(" {name}=\""))? + name.len() + 3;
                rect[at..].split('"').next()?.parse().ok()
            };
            let (Some(x), Some(w)) = (attr("x"), attr("width")) else {
                continue;
            };
            if w >= WIDTH as f64 - 1.0 {
                continue; // the background
            }
            if x >= strip {
                swatches += 1;
            } else {
                assert!(
                    x + w <= strip,
                    "a bar reaches into the legend: x {x}, width {w}"
                );
                bars += 1;
            }
        }
        assert_eq!(swatches, 6, "{svg}");
        assert!(bars >= 40, "{bars} bars");
    }
}
