//! SVG charts drawn with plotters: a time axis, one line per series and a
//! circle per data point (the page's legends are HTML, so every `<circle>`
//! of a chart is a data point). No text from the data goes into the SVG:
//! repository names and keys stay in the page's escaped HTML.

use chrono::{DateTime, Utc};
use plotters::prelude::*;

/// Drawing size; the page scales it to the column's width.
const SIZE: (u32, u32) = (640, 280);

/// The series' colors, in order (repositories beyond them cycle).
pub const PALETTE: [(u8, u8, u8); 6] = [
    (31, 119, 180),
    (214, 39, 40),
    (44, 160, 44),
    (148, 103, 189),
    (255, 127, 14),
    (23, 190, 207),
];

/// The CSS color of series `i`.
pub fn css_color(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("rgb({r},{g},{b})")
}

/// One line of a chart.
pub struct Line {
    pub color: usize,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// How the axes read.
pub struct Axes {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// strftime format of the time labels.
    pub time_format: &'static str,
    /// The top of the value axis (at least the largest value).
    pub y_max: f64,
    pub y_format: fn(f64) -> String,
    pub y_desc: &'static str,
}

/// The chart as an SVG document, or why it could not be drawn.
pub fn time_chart(axes: &Axes, lines: &[Line]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let y_max = if axes.y_max > 0.0 { axes.y_max } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(64)
            .build_cartesian_2d(axes.since..axes.until, 0.0..y_max)
            .map_err(|e| e.to_string())?;
        let time_format = axes.time_format;
        let y_format = axes.y_format;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(5)
            .x_label_formatter(&|t: &DateTime<Utc>| t.format(time_format).to_string())
            .y_label_formatter(&|v: &f64| y_format(*v))
            .y_desc(axes.y_desc)
            .light_line_style(TRANSPARENT)
            .bold_line_style(RGBColor(215, 215, 215))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        for line in lines {
            let (r, g, b) = PALETTE[line.color % PALETTE.len()];
            let color = RGBColor(r, g, b);
            chart
                .draw_series(LineSeries::new(
                    line.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(
                    line.points
                        .iter()
                        .map(|p| Circle::new(*p, 3, color.filled())),
                )
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_one_circle() {
        let since = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let until = since + chrono::Duration::hours(1);
        let axes = Axes {
            since,
            until,
            time_format: "%H:%M",
            y_max: 100.0,
            y_format: |v| format!("{v:.0}%"),
            y_desc: "hit rate",
        };
        let lines = [
            Line {
                color: 0,
                points: vec![
                    (since + chrono::Duration::minutes(5), 50.0),
                    (since + chrono::Duration::minutes(6), 75.0),
                ],
            },
            Line {
                color: 1,
                points: vec![(since + chrono::Duration::minutes(9), 100.0)],
            },
        ];
        let svg = time_chart(&axes, &lines).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
    }
}
