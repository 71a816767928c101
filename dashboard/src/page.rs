//! The page: one HTML document with its CSS inlined and its charts as
//! inline SVG. No script and no request to anywhere: the time-range
//! selector is radio buttons and CSS. Every string from the data is
//! escaped here.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::{
    data::{total, Dashboard, Point, View},
    plot::{css_color, time_chart, Axes, Line},
};

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d1d1f;background:#f4f5f7}
header{padding:16px 20px 8px}
h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#555;overflow-wrap:anywhere}
.range-choice{position:absolute;opacity:0;width:1px;height:1px;pointer-events:none}
nav.ranges{display:flex;flex-wrap:wrap;gap:6px;padding:4px 20px 12px}
nav.ranges label{padding:4px 12px;border:1px solid #c8ccd2;border-radius:16px;background:#fff;cursor:pointer}
.view{display:none}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,460px),1fr));gap:14px;padding:0 20px 14px}
figure,section.panel{margin:0;background:#fff;border:1px solid #e1e4e8;border-radius:8px;padding:12px 14px;min-width:0}
figcaption h2,section.panel h2{margin:0;font-size:16px}
.totals{margin:2px 0 6px;color:#333}
.chart svg{display:block;width:100%;height:auto}
.empty{color:#777;font-style:italic;margin:24px 0}
ul.legend{list-style:none;margin:0 0 6px;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px}
ul.legend li{overflow-wrap:anywhere}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
details{margin-top:6px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:3px 6px;border-bottom:1px solid #eee;vertical-align:top}
td.num,th.num{text-align:right;white-space:nowrap}
td.key{overflow-wrap:anywhere;word-break:break-all}
.bar{height:8px;background:#1f77b4;border-radius:2px;min-width:2px}
.table-wrap{overflow-x:auto}
"#;

/// The whole page.
pub fn render(d: &Dashboard) -> String {
    let mut html = String::new();
    html.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    html.push_str("<title>runcache dashboard</title>\n<style>");
    html.push_str(STYLE);
    for v in &d.views {
        let id = v.range.id;
        let _ = write!(
            html,
            "#range-{id}:checked~main #view-{id}{{display:block}}\
             #range-{id}:checked~nav label[for=range-{id}]{{background:#1f77b4;color:#fff;border-color:#1f77b4}}\
             #range-{id}:focus-visible~nav label[for=range-{id}]{{outline:2px solid #1f77b4;outline-offset:2px}}"
        );
    }
    html.push_str("</style>\n</head>\n<body>\n<header><h1>runcache</h1><p>");
    let _ = write!(
        html,
        "{} · drawn {}{}",
        esc(&d.source),
        d.generated_at.format("%Y-%m-%d %H:%M:%S UTC"),
        d.repository
            .as_deref()
            .map(|r| format!(" · repository <strong>{}</strong>", esc(r)))
            .unwrap_or_default()
    );
    html.push_str("</p></header>\n");
    for v in &d.views {
        let id = v.range.id;
        let checked = if id == d.initial_range {
            " checked"
        } else {
            ""
        };
        let _ = writeln!(
            html,
            "<input type=\"radio\" name=\"range\" class=\"range-choice\" id=\"range-{id}\"{checked}>"
        );
    }
    html.push_str("<nav class=\"ranges\" aria-label=\"time range\">");
    for v in &d.views {
        let _ = write!(
            html,
            "<label for=\"range-{}\">{}</label>",
            v.range.id, v.range.label
        );
    }
    html.push_str("</nav>\n<main>\n");
    for v in &d.views {
        view(&mut html, v);
    }
    current(&mut html, d);
    html.push_str("</main>\n</body>\n</html>\n");
    html
}

/// One range's plots.
fn view(html: &mut String, v: &View) {
    let _ = writeln!(
        html,
        "<section class=\"view\" id=\"view-{}\" data-range=\"{}\" data-since=\"{}\" data-until=\"{}\">\n<div class=\"grid\">",
        v.range.id,
        v.range.id,
        v.since.to_rfc3339(),
        v.until.to_rfc3339()
    );
    let time_format = match v.range.id {
        "1h" | "24h" => "%H:%M",
        "7d" => "%d %b %Hh",
        _ => "%d %b",
    };
    let axes = |y_max: f64, y_format: fn(f64) -> String, y_desc: &'static str| Axes {
        since: v.since,
        until: v.until,
        time_format,
        y_max,
        y_format,
        y_desc,
    };

    // Hit rate per repository.
    let hits: u64 = v.hit_rate.iter().map(|r| r.hits()).sum();
    let misses: u64 = v.hit_rate.iter().map(|r| r.misses()).sum();
    let mut legend = String::new();
    let mut lines = Vec::new();
    let mut rows = String::new();
    for (i, r) in v.hit_rate.iter().enumerate() {
        let (h, m) = (r.hits(), r.misses());
        let _ = write!(
            legend,
            "<li><span class=\"swatch\" style=\"background:{}\"></span>{}: {}</li>",
            css_color(i),
            esc(&r.repository),
            restores(h, m)
        );
        lines.push(Line {
            color: i,
            points: r.points.iter().map(|p| (p.at, p.rate())).collect(),
        });
        for p in &r.points {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0}%</td></tr>",
                when(p.at),
                esc(&r.repository),
                p.hits,
                p.misses,
                p.rate()
            );
        }
    }
    figure(
        html,
        Figure {
            plot: "hit-rate",
            title: "Hit rate per repository",
            totals: format!(
                "<span data-hits=\"{hits}\" data-misses=\"{misses}\">{}</span> across {} {}",
                restores(hits, misses),
                v.hit_rate.len(),
                plural(v.hit_rate.len() as u64, "repository", "repositories")
            ),
            legend,
            chart: chart(&axes(100.0, |x| format!("{x:.0}%"), "hits / restores"), &lines),
            head: "<th>bucket</th><th>repository</th><th class=\"num\">hits</th><th class=\"num\">misses</th><th class=\"num\">rate</th>",
            rows,
        },
    );

    // Stored bytes.
    let latest = v.stored_bytes.last().map_or(0.0, |p| p.value);
    single(
        html,
        "stored-bytes",
        "Stored bytes",
        format!(
            "<span data-latest=\"{latest}\">{}</span> stored at the end of the range",
            bytes(latest)
        ),
        &v.stored_bytes,
        &axes(max(&v.stored_bytes) * 1.1, bytes, "live entries' bytes"),
        bytes,
    );

    // Build time saved.
    let saved = total(&v.build_time_saved);
    single(
        html,
        "build-time-saved",
        "Build time saved by hits",
        format!(
            "<span data-total=\"{saved}\">{}</span> saved: each exact hit's recorded build time minus its restore time",
            seconds(saved)
        ),
        &v.build_time_saved,
        &axes(max(&v.build_time_saved) * 1.1, seconds, "saved per bucket"),
        seconds,
    );

    // Evictions and invalidations, on one chart.
    let (ev, inv) = (total(&v.evictions), total(&v.invalidations));
    let mut rows = String::new();
    for (what, series) in [
        ("eviction", &v.evictions),
        ("invalidation", &v.invalidations),
    ] {
        for p in series.iter() {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{what}</td><td class=\"num\">{}</td></tr>",
                when(p.at),
                p.value
            );
        }
    }
    let y = max(&v.evictions).max(max(&v.invalidations)) * 1.1;
    figure(
        html,
        Figure {
            plot: "evictions-invalidations",
            title: "Evictions and invalidations",
            totals: format!(
                "<span data-evictions=\"{ev}\" data-invalidations=\"{inv}\">{} {}, {} {}</span>",
                ev,
                plural(ev as u64, "eviction", "evictions"),
                inv,
                plural(inv as u64, "invalidation", "invalidations")
            ),
            legend: format!(
                "<li><span class=\"swatch\" style=\"background:{}\"></span>evictions (TTL, quota)</li>\
                 <li><span class=\"swatch\" style=\"background:{}\"></span>invalidations</li>",
                css_color(0),
                css_color(1)
            ),
            chart: chart(
                &axes(y.max(1.0), count, "entries"),
                &[
                    Line {
                        color: 0,
                        points: points(&v.evictions),
                    },
                    Line {
                        color: 1,
                        points: points(&v.invalidations),
                    },
                ],
            ),
            head: "<th>bucket</th><th>what</th><th class=\"num\">entries</th>",
            rows,
        },
    );

    // Rejected (quarantined) uploads.
    let rejected = total(&v.rejected);
    single(
        html,
        "rejected",
        "Uploads rejected and quarantined",
        format!(
            "<span data-total=\"{rejected}\">{rejected} {}</span> refused by promote (hash, size or claim did not match)",
            plural(rejected as u64, "upload", "uploads")
        ),
        &v.rejected,
        &axes((max(&v.rejected) * 1.1).max(1.0), count, "uploads"),
        count,
    );
    html.push_str("</div>\n</section>\n");
}

/// The panels that are not over time: most accessed entries, dead letters.
fn current(html: &mut String, d: &Dashboard) {
    html.push_str("<div class=\"grid\">\n<section class=\"panel\" data-plot=\"most-accessed\">\n<h2>Most accessed entries</h2>\n");
    let reads: u64 = d.most_accessed.iter().map(|e| e.access_count).sum();
    let _ = write!(
        html,
        "<p class=\"totals\"><span data-entries=\"{}\" data-reads=\"{reads}\">{} {}, {reads} {}</span> (live entries, all time; {} index {} read{})</p>",
        d.most_accessed.len(),
        d.most_accessed.len(),
        plural(d.most_accessed.len() as u64, "entry", "entries"),
        plural(reads, "read", "reads"),
        d.entries_scanned,
        plural(d.entries_scanned, "entry", "entries"),
        if d.scan_capped { ", the scan stopped there" } else { "" }
    );
    if d.most_accessed.is_empty() {
        html.push_str("<p class=\"empty\">No entry has been read yet.</p>\n");
    } else {
        let most = d
            .most_accessed
            .iter()
            .map(|e| e.access_count)
            .max()
            .unwrap_or(1)
            .max(1);
        html.push_str("<div class=\"table-wrap\"><table><thead><tr><th class=\"num\">reads</th><th></th><th>key</th><th>repository · ref</th><th class=\"num\">size</th><th>last read</th></tr></thead><tbody>\n");
        for e in &d.most_accessed {
            let _ = writeln!(
                html,
                "<tr class=\"entry\"><td class=\"num\">{}</td><td style=\"width:20%\"><div class=\"bar\" style=\"width:{:.1}%\"></div></td><td class=\"key\">{}</td><td class=\"key\">{} · {}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                e.access_count,
                e.access_count as f64 * 100.0 / most as f64,
                esc(&e.cache_key),
                esc(&e.repository),
                esc(&e.git_ref),
                bytes(e.size_bytes as f64),
                when(e.last_accessed)
            );
        }
        html.push_str("</tbody></table></div>\n");
    }
    html.push_str("</section>\n");
    if let Some(queues) = &d.queues {
        let dead: u64 = queues.iter().map(|q| q.dead_letters).sum();
        let _ = write!(
            html,
            "<section class=\"panel\" data-plot=\"dead-letters\">\n<h2>Dead-lettered messages</h2>\n<p class=\"totals\"><span data-total=\"{dead}\">{dead} {}</span> now, in the dead-letter queues (messages the workers gave up on: see docs/deploy.md)</p>\n<table><thead><tr><th>queue</th><th class=\"num\">dead letters</th><th class=\"num\">waiting</th></tr></thead><tbody>",
            plural(dead, "message", "messages")
        );
        for q in queues {
            let _ = write!(
                html,
                "<tr><td class=\"key\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(&q.queue),
                q.dead_letters,
                q.visible
            );
        }
        html.push_str("</tbody></table>\n</section>\n");
    }
    html.push_str("</div>\n");
}

struct Figure {
    plot: &'static str,
    title: &'static str,
    /// HTML.
    totals: String,
    /// `<li>` items, HTML.
    legend: String,
    /// SVG, or an HTML note when there is nothing to draw.
    chart: String,
    head: &'static str,
    rows: String,
}

fn figure(html: &mut String, f: Figure) {
    let _ = write!(
        html,
        "<figure data-plot=\"{}\">\n<figcaption><h2>{}</h2><p class=\"totals\">{}</p></figcaption>\n",
        f.plot, f.title, f.totals
    );
    if !f.legend.is_empty() {
        let _ = writeln!(html, "<ul class=\"legend\">{}</ul>", f.legend);
    }
    let _ = write!(
        html,
        "<div class=\"chart\">{}</div>\n<details><summary>Data</summary><div class=\"table-wrap\"><table><thead><tr>{}</tr></thead><tbody>{}</tbody></table></div></details>\n</figure>\n",
        f.chart, f.head, f.rows
    );
}

/// A figure with one series.
fn single(
    html: &mut String,
    plot: &'static str,
    title: &'static str,
    totals: String,
    series: &[Point],
    axes: &Axes,
    format: fn(f64) -> String,
) {
    let rows = series
        .iter()
        .map(|p| {
            format!(
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                when(p.at),
                format(p.value)
            )
        })
        .collect();
    figure(
        html,
        Figure {
            plot,
            title,
            totals,
            legend: String::new(),
            chart: chart(
                axes,
                &[Line {
                    color: 0,
                    points: points(series),
                }],
            ),
            head: "<th>bucket</th><th class=\"num\">value</th>",
            rows,
        },
    );
}

/// The chart, or a note when no line has a point.
fn chart(axes: &Axes, lines: &[Line]) -> String {
    if lines.iter().all(|l| l.points.is_empty()) {
        return "<p class=\"empty\">Nothing in this range.</p>".to_string();
    }
    match time_chart(axes, lines) {
        Ok(svg) => svg,
        Err(e) => format!(
            "<p class=\"empty\">This chart could not be drawn: {}</p>",
            esc(&e)
        ),
    }
}

fn points(series: &[Point]) -> Vec<(DateTime<Utc>, f64)> {
    series.iter().map(|p| (p.at, p.value)).collect()
}

fn max(series: &[Point]) -> f64 {
    series.iter().map(|p| p.value).fold(0.0, f64::max)
}

fn restores(hits: u64, misses: u64) -> String {
    let all = hits + misses;
    let rate = if all == 0 {
        "no restores".to_string()
    } else {
        format!("{:.0}% hit rate", hits as f64 * 100.0 / all as f64)
    };
    format!(
        "{hits} {}, {misses} {} ({rate})",
        plural(hits, "hit", "hits"),
        plural(misses, "miss", "misses")
    )
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn count(v: f64) -> String {
    format!("{v:.0}")
}

/// Bytes in binary units.
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Seconds as s, min or h.
pub fn seconds(v: f64) -> String {
    if v < 120.0 {
        format!("{v:.1} s")
    } else if v < 7200.0 {
        format!("{:.1} min", v / 60.0)
    } else {
        format!("{:.1} h", v / 3600.0)
    }
}

/// `s` safe in HTML text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{RepositoryRestores, RestorePoint, TopEntry, RANGES};

    fn dashboard() -> Dashboard {
        let until = DateTime::from_timestamp(1_800_003_600, 0).unwrap();
        let since = until - chrono::Duration::hours(1);
        let at = since + chrono::Duration::minutes(30);
        let view = View {
            range: RANGES[0],
            since,
            until,
            hit_rate: vec![RepositoryRestores {
                repository: "acme/<script>alert(1)</script>".into(),
                points: vec![RestorePoint {
                    at,
                    hits: 3,
                    misses: 1,
                }],
            }],
            stored_bytes: vec![Point { at, value: 2048.0 }],
            build_time_saved: vec![],
            evictions: vec![Point { at, value: 1.0 }],
            invalidations: vec![],
            rejected: vec![],
        };
        Dashboard {
            generated_at: until,
            source: "test".into(),
            repository: None,
            initial_range: "1h",
            views: vec![view],
            most_accessed: vec![TopEntry {
                repository: "acme/app".into(),
                git_ref: "refs/heads/main".into(),
                cache_key: "deps-\"><img src=x onerror=alert(1)>".into(),
                access_count: 4,
                size_bytes: 10,
                last_accessed: until,
            }],
            entries_scanned: 1,
            scan_capped: false,
            queues: None,
        }
    }

    #[test]
    fn text_from_the_data_is_escaped_everywhere() {
        let html = render(&dashboard());
        assert!(!html.contains("<script"), "no script element at all");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("acme/&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("deps-&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    }

    #[test]
    fn totals_and_points_come_from_the_data() {
        let html = render(&dashboard());
        assert!(html.contains("3 hits, 1 miss (75% hit rate)"), "{html}");
        assert!(html.contains("2.0 KiB"));
        assert!(
            html.contains("Nothing in this range."),
            "empty series say so"
        );
        // One hit-rate point, one stored-bytes point, one eviction point.
        assert_eq!(html.matches("<circle").count(), 3);
    }

    #[test]
    fn units_read_as_people_write_them() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB");
        assert_eq!(seconds(12.34), "12.3 s");
        assert_eq!(seconds(600.0), "10.0 min");
        assert_eq!(seconds(36000.0), "10.0 h");
    }
}
