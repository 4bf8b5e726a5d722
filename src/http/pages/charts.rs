//! Charts drawn on the server as SVG from Herald's own numbers: nothing to load, no script, and
//! no text of a user's in them (only counts and times), so they are inserted unescaped.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::service::analytics::{Bucket, TimelinePoint};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;

/// A line of a chart: its name, its colour and its value at a point.
type Series = (&'static str, &'static str, fn(&TimelinePoint) -> i64);

/// A campaign's sends, deliveries, reads and failures per bucket, as lines over time.
pub fn timeline(points: &[TimelinePoint], bucket: Bucket) -> String {
    let series: [Series; 4] = [
        ("sent", "#2563eb", |p| p.sent),
        ("delivered", "#16a34a", |p| p.delivered),
        ("read", "#9333ea", |p| p.read),
        ("failed", "#dc2626", |p| p.failed),
    ];
    let top = points
        .iter()
        .flat_map(|point| series.iter().map(move |(_, _, value)| value(point)))
        .max()
        .unwrap_or(0)
        .max(1);
    let (first, last) = match (points.first(), points.last()) {
        (Some(first), Some(last)) => (first.at, last.at),
        _ => return String::new(),
    };
    let span = (last - first).num_seconds().max(1) as f64;
    let x = |at: DateTime<Utc>| {
        if first == last {
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (at - first).num_seconds() as f64 / span * (WIDTH - LEFT - RIGHT)
        }
    };
    let y = |value: i64| TOP + (1.0 - value as f64 / top as f64) * (HEIGHT - TOP - BOTTOM);
    let unit = match bucket {
        Bucket::Minute => "minute",
        Bucket::Hour => "hour",
    };
    let mut svg = String::with_capacity(2048);
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="timeline-title"><title id="timeline-title">Messages per {unit}: sent, delivered, read and failed, from {} to {}</title>"#,
        label(first),
        label(last),
    );
    // Axes and the scale's top.
    let _ = write!(
        svg,
        r##"<g stroke="#9ca3af" stroke-width="1"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}"/></g><g font-size="11" fill="#4b5563"><text x="{tx}" y="{ty}" text-anchor="end">{top}</text><text x="{tx}" y="{b}" text-anchor="end">0</text><text x="{LEFT}" y="{lb}">{}</text><text x="{r}" y="{lb}" text-anchor="end">{}</text></g>"##,
        label(first),
        label(last),
        b = HEIGHT - BOTTOM,
        r = WIDTH - RIGHT,
        tx = LEFT - 6.0,
        ty = TOP + 10.0,
        lb = HEIGHT - BOTTOM + 16.0,
    );
    for (_, colour, value) in series.iter() {
        let mut line = String::new();
        for point in points {
            let _ = write!(line, "{:.1},{:.1} ", x(point.at), y(value(point)));
        }
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            line.trim_end()
        );
        // Dots too, so that a campaign of one bucket still shows its counts.
        for point in points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                x(point.at),
                y(value(point))
            );
        }
    }
    let names: Vec<(&str, &str)> = series
        .iter()
        .map(|(name, colour, _)| (*name, *colour))
        .collect();
    legend(&mut svg, &names);
    svg.push_str("</svg>");
    svg
}

/// Messages by local hour of the day (0–23), outbound and inbound side by side.
pub fn hours(outbound: &[i64; 24], inbound: &[i64; 24]) -> String {
    let top = outbound
        .iter()
        .chain(inbound)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let slot = (WIDTH - LEFT - RIGHT) / 24.0;
    let bar = slot * 0.4;
    let height = |value: i64| value as f64 / top as f64 * (HEIGHT - TOP - BOTTOM);
    let base = HEIGHT - BOTTOM;
    let mut svg = String::with_capacity(8192);
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="hours-title"><title id="hours-title">Messages by local hour of the day: sent and received</title><g stroke="#9ca3af" stroke-width="1"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/><line x1="{LEFT}" y1="{base}" x2="{r}" y2="{base}"/></g><g font-size="11" fill="#4b5563"><text x="{tx}" y="{ty}" text-anchor="end">{top}</text><text x="{tx}" y="{base}" text-anchor="end">0</text></g>"##,
        r = WIDTH - RIGHT,
        tx = LEFT - 6.0,
        ty = TOP + 10.0,
    );
    for hour in 0..24 {
        let x = LEFT + hour as f64 * slot + slot * 0.1;
        for (offset, value, colour, what) in [
            (0.0, outbound[hour], "#2563eb", "sent"),
            (bar, inbound[hour], "#f59e0b", "received"),
        ] {
            let h = height(value);
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" fill="{colour}"><title>{hour:02}:00 {what}: {value}</title></rect>"#,
                x + offset,
                base - h,
            );
        }
        if hour % 3 == 0 {
            let _ = write!(
                svg,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" fill="#4b5563">{hour:02}</text>"##,
                x,
                base + 16.0
            );
        }
    }
    legend(&mut svg, &[("sent", "#2563eb"), ("received", "#f59e0b")]);
    svg.push_str("</svg>");
    svg
}

/// Delivery and read rates (0–100 %) of campaigns by when they started.
pub fn rates(points: &[(DateTime<Utc>, f64, f64)]) -> String {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return String::new();
    };
    let (first, last) = (first.0, last.0);
    let span = (last - first).num_seconds().max(1) as f64;
    let x = |at: DateTime<Utc>| {
        if first == last {
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0
        } else {
            LEFT + (at - first).num_seconds() as f64 / span * (WIDTH - LEFT - RIGHT)
        }
    };
    let y = |rate: f64| TOP + (1.0 - rate.clamp(0.0, 100.0) / 100.0) * (HEIGHT - TOP - BOTTOM);
    let base = HEIGHT - BOTTOM;
    let mut svg = String::with_capacity(4096);
    let _ = write!(
        svg,
        r##"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="rates-title"><title id="rates-title">Delivery and read rates of campaigns by start, from {} to {}</title><g stroke="#9ca3af" stroke-width="1"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}"/><line x1="{LEFT}" y1="{base}" x2="{r}" y2="{base}"/></g><g font-size="11" fill="#4b5563"><text x="{tx}" y="{ty}" text-anchor="end">100%</text><text x="{tx}" y="{base}" text-anchor="end">0%</text><text x="{LEFT}" y="{lb}">{}</text><text x="{r}" y="{lb}" text-anchor="end">{}</text></g>"##,
        label(first),
        label(last),
        label(first),
        label(last),
        r = WIDTH - RIGHT,
        tx = LEFT - 6.0,
        ty = TOP + 10.0,
        lb = base + 16.0,
    );
    for (colour, of_read) in [("#16a34a", false), ("#9333ea", true)] {
        let value = |point: &(DateTime<Utc>, f64, f64)| if of_read { point.2 } else { point.1 };
        let line: Vec<String> = points
            .iter()
            .map(|point| format!("{:.1},{:.1}", x(point.0), y(value(point))))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            line.join(" ")
        );
        for point in points {
            let _ = write!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                x(point.0),
                y(value(point))
            );
        }
    }
    legend(
        &mut svg,
        &[("delivery rate", "#16a34a"), ("read rate", "#9333ea")],
    );
    svg.push_str("</svg>");
    svg
}

/// Coloured squares and names under a chart's axis.
fn legend(svg: &mut String, entries: &[(&str, &str)]) {
    for (index, (name, colour)) in entries.iter().enumerate() {
        let lx = LEFT + index as f64 * 110.0;
        let ly = HEIGHT - 8.0;
        let _ = write!(
            svg,
            r##"<rect x="{lx}" y="{}" width="10" height="10" fill="{colour}"/><text x="{}" y="{ly}" font-size="11" fill="#374151">{name}</text>"##,
            ly - 9.0,
            lx + 14.0,
        );
    }
}

fn label(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(minute: i64, sent: i64, delivered: i64) -> TimelinePoint {
        TimelinePoint {
            at: DateTime::from_timestamp(1_764_000_000 + minute * 60, 0).unwrap(),
            sent,
            delivered,
            read: 0,
            failed: 0,
        }
    }

    #[test]
    fn lines_span_the_chart_and_scale_to_the_largest_count() {
        let svg = timeline(&[point(0, 10, 0), point(5, 40, 20)], Bucket::Minute);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        // The sent line starts at the left edge and reaches the top at the largest count.
        assert!(
            svg.contains(r##"stroke="#2563eb" stroke-width="2" points="48.0,138.0 708.0,12.0""##),
            "{svg}"
        );
        assert!(svg.contains(">40</text>"));
        assert_eq!(timeline(&[], Bucket::Hour), "");
    }

    #[test]
    fn hours_draw_two_bars_an_hour_and_rates_a_line_each() {
        let mut outbound = [0; 24];
        let mut inbound = [0; 24];
        outbound[9] = 10;
        inbound[9] = 5;
        let svg = hours(&outbound, &inbound);
        assert_eq!(
            svg.matches("<rect").count(),
            48 + 2,
            "bars and the legend's squares"
        );
        assert!(svg.contains("<title>09:00 sent: 10</title>"));
        let at = DateTime::from_timestamp(1_764_000_000, 0).unwrap();
        let svg = rates(&[
            (at, 100.0, 50.0),
            (at + chrono::Duration::days(1), 80.0, 40.0),
        ]);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("points=\"48.0,12.0 708.0,45.6\""), "{svg}");
        assert_eq!(rates(&[]), "");
    }
}
