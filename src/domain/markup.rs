//! Escaping text for HTML and SVG: element content and quoted attribute
//! values. One rule for the sign-in pages and the server-drawn charts.

/// `s` with `& < > " '` replaced by their entities.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
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
