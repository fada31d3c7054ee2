//! The console's chart of exchanges per hour (docs/api.md, "The console"): inline SVG, built
//! on the server from [`super::usage::hourly`]'s figures.
//!
//! The console's `Content-Security-Policy` allows no script and no inline
//! style, so the chart uses presentation attributes (`fill`, `stroke`,
//! `font-size`) and classes only, references nothing outside itself, and
//! draws in `currentColor` so it follows the page's text colour. Its
//! `viewBox` is fixed and it has no fixed size, so it scales to its
//! container (375 px wide on a phone) with its text still readable.

use chrono::{DateTime, TimeZone, Timelike, Utc};
use std::fmt::Write;

/// The drawing's coordinate space.
const WIDTH: f64 = 400.0;
const HEIGHT: f64 = 170.0;
/// The plot area: bars stand on `BOTTOM` and reach `TOP` at the peak.
const LEFT: f64 = 48.0;
const RIGHT: f64 = 384.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 136.0;
/// Text size, in drawing units (about 10 px at 375 px wide).
const FONT: &str = "11";
/// Half the width a day label takes, to keep labels inside the drawing.
const HALF_LABEL: f64 = 20.0;

/// Renders `counts` (exchanges per hour, oldest first, the last one for the
/// hour starting at `last_hour`) as an accessible inline SVG: `role="img"`
/// with a `<title>` and a `<desc>` giving the total and the peak, one bar
/// per hour (each with its own `<title>`), the peak as the y-axis maximum
/// and a label at each midnight (UTC) on the x-axis.
pub fn svg(counts: &[u64], last_hour: DateTime<Utc>) -> String {
    let last = last_hour.timestamp().div_euclid(3600) * 3600;
    let hours = counts.len();
    let hour_at = |i: usize| {
        let back = i64::try_from(hours - 1 - i).unwrap_or(i64::MAX);
        last.saturating_sub(back.saturating_mul(3600))
    };
    let total = counts.iter().fold(0u64, |a, &n| a.saturating_add(n));
    // The first hour with the highest count.
    let peak = counts
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, u64)>, (i, &n)| match best {
            Some((_, m)) if m >= n => best,
            _ => Some((i, n)),
        })
        .filter(|&(_, n)| n > 0);
    let desc = match peak {
        None => "No exchanges in the last 7 days".to_owned(),
        Some((i, n)) => format!(
            "Exchanges per hour over the last 7 days: {} in total, peak {} at {}",
            grouped(total),
            grouped(n),
            hour_label(hour_at(i)),
        ),
    };

    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="usage-chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" role="img" aria-labelledby="usage-chart-title usage-chart-desc" font-size="{FONT}" fill="currentColor"><title id="usage-chart-title">{}</title><desc id="usage-chart-desc">{}</desc>"#,
        crate::domain::markup::escape("Exchanges per hour, last 7 days"),
        crate::domain::markup::escape(&desc),
    );

    // Axes: the baseline with its 0, and a faint line at the peak with its
    // value; with no exchanges, the message instead of a peak.
    let _ = write!(
        out,
        r#"<g class="axis" stroke="currentColor" stroke-width="1"><line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/></g><g class="y-labels" text-anchor="end"><text x="{x}" y="{BOTTOM}">0</text></g>"#,
        x = LEFT - 4.0,
    );
    match peak {
        Some((_, n)) => {
            let _ = write!(
                out,
                r#"<g class="peak"><line x1="{LEFT}" y1="{TOP}" x2="{RIGHT}" y2="{TOP}" stroke="currentColor" stroke-opacity="0.25" stroke-dasharray="3 3"/><text x="{x}" y="{y}" text-anchor="end">{}</text></g>"#,
                crate::domain::markup::escape(&grouped(n)),
                x = LEFT - 4.0,
                y = TOP + 4.0,
            );
        }
        None => {
            let _ = write!(
                out,
                r#"<text class="empty" x="{x}" y="{y}" text-anchor="middle">{}</text>"#,
                crate::domain::markup::escape(&desc),
                x = (LEFT + RIGHT) / 2.0,
                y = (TOP + BOTTOM) / 2.0,
            );
        }
    }

    // One slot per hour; a bar fills most of it, so neighbours stay apart.
    let slot = if hours == 0 {
        0.0
    } else {
        (RIGHT - LEFT) / hours as f64
    };
    if let Some((_, peak_n)) = peak {
        out.push_str(r#"<g class="bars">"#);
        for (i, &n) in counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            // At least one unit tall, so a single exchange shows.
            let h = ((n as f64 / peak_n as f64) * (BOTTOM - TOP)).max(1.0);
            let _ = write!(
                out,
                r#"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}"><title>{}</title></rect>"#,
                LEFT + slot * i as f64,
                BOTTOM - h,
                slot * 0.75,
                h,
                crate::domain::markup::escape(&format!(
                    "{}: {} {}",
                    hour_label(hour_at(i)),
                    grouped(n),
                    if n == 1 { "exchange" } else { "exchanges" }
                )),
            );
        }
        out.push_str("</g>");
    }

    // A tick and a label at each midnight, UTC.
    out.push_str(r#"<g class="x-labels">"#);
    for i in 0..hours {
        let Some(at) = Utc.timestamp_opt(hour_at(i), 0).single() else {
            continue;
        };
        if at.hour() != 0 {
            continue;
        }
        let x = LEFT + slot * i as f64;
        let anchor = if x - HALF_LABEL < 0.0 {
            "start"
        } else if x + HALF_LABEL > WIDTH {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            r#"<line x1="{x:.2}" y1="{BOTTOM}" x2="{x:.2}" y2="{tick}" stroke="currentColor"/><text x="{x:.2}" y="{label}" text-anchor="{anchor}">{}</text>"#,
            crate::domain::markup::escape(&at.format("%b %-d").to_string()),
            tick = BOTTOM + 4.0,
            label = BOTTOM + 16.0,
        );
    }
    out.push_str("</g></svg>");
    out
}

/// "2026-11-20 14:00 UTC" for the hour starting at `hour` (unix seconds).
fn hour_label(hour: i64) -> String {
    Utc.timestamp_opt(hour, 0).single().map_or_else(
        || "an unknown hour".to_owned(),
        |t| t.format("%Y-%m-%d %H:00 UTC").to_string(),
    )
}

/// 1234567 → "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn safe(svg: &str) {
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"), "{svg}");
        let lower = svg.to_ascii_lowercase();
        for banned in ["<script", "style=", "<style", "href", "url(", "javascript:"] {
            assert!(!lower.contains(banned), "{banned} in {svg}");
        }
        // No event handler attribute (` on…=`).
        for (i, _) in lower.match_indices(" on") {
            let name: String = lower[i + 1..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            assert!(
                !lower[i + 1 + name.len()..].starts_with('='),
                "{name}= in {svg}"
            );
        }
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"viewBox="0 0 400 170""#));
    }

    #[test]
    fn no_exchanges_reads_as_such() {
        let svg = svg(&[0; 168], at("2026-11-20T14:00:00Z"));
        safe(&svg);
        assert!(
            svg.contains(r#"<desc id="usage-chart-desc">No exchanges in the last 7 days</desc>"#),
            "{svg}"
        );
        assert!(!svg.contains("<rect"), "no bars");
        // Said on the chart too, over a readable axis: 0, and each day.
        assert!(svg.contains(r#"text-anchor="middle">No exchanges in the last 7 days</text>"#));
        assert_eq!(svg.matches("<text").count(), 1 + 1 + 7, "{svg}");
        let empty = super::svg(&[], at("2026-11-20T14:00:00Z"));
        safe(&empty);
        assert!(empty.contains("No exchanges in the last 7 days"));
    }

    #[test]
    fn total_and_peak_are_told() {
        let mut counts = [0u64; 168];
        counts[0] = 3;
        counts[100] = 1_200;
        counts[120] = 1_200; // a tie: the first peak is named
        counts[167] = 31;
        // The last hour starts at 14:00 on the 20th: index 100 is 67 hours
        // earlier, 19:00 on the 17th.
        let svg = svg(&counts, at("2026-11-20T14:35:10Z"));
        safe(&svg);
        assert!(
            svg.contains(
                "Exchanges per hour over the last 7 days: 2,434 in total, \
                 peak 1,200 at 2026-11-17 19:00 UTC</desc>"
            ),
            "{svg}"
        );
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(svg.contains("<title>2026-11-20 14:00 UTC: 31 exchanges</title>"));
        assert!(svg.contains("<title>2026-11-13 15:00 UTC: 3 exchanges</title>"));
        // The y-axis maximum is the peak, and the peak's bar reaches it.
        assert!(
            svg.contains(r#"<text x="44" y="20" text-anchor="end">1,200</text>"#),
            "{svg}"
        );
        assert!(svg.contains(r#"y="16.00" width="1.50" height="120.00""#));
        // One exchange still shows.
        counts[5] = 1;
        let svg = super::svg(&counts, at("2026-11-20T14:00:00Z"));
        assert!(svg.contains("1 exchange</title>"));
        assert!(svg.contains(r#"height="1.00""#));
    }

    #[test]
    fn days_are_labelled_at_midnight_utc() {
        let svg = svg(&[1; 168], at("2026-11-20T14:00:00Z"));
        for day in [
            "Nov 14", "Nov 15", "Nov 16", "Nov 17", "Nov 18", "Nov 19", "Nov 20",
        ] {
            assert!(svg.contains(&format!(">{day}</text>")), "{day}: {svg}");
        }
        assert!(!svg.contains(">Nov 13<"), "the 13th has no midnight shown");
        // Midnight as the last hour: its label stays inside the drawing.
        let svg = super::svg(&[1; 168], at("2026-11-21T00:00:00Z"));
        assert!(svg.contains(r#"text-anchor="end">Nov 21</text>"#), "{svg}");
    }

    #[test]
    fn numbers_group_and_text_escapes() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(
            crate::domain::markup::escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        // Counts as large as they come neither panic nor overflow.
        let svg = svg(&[u64::MAX, u64::MAX], at("2026-11-20T14:00:00Z"));
        assert!(svg.contains("18,446,744,073,709,551,615 in total"), "{svg}");
    }
}
