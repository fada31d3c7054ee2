//! Reading console forms and showing their errors beside the fields.
//!
//! Forms arrive as name/value pairs (repeated names for checkboxes), read
//! field by field, so an error can name the field it is about and the page
//! can be shown again with what was typed.

use std::collections::BTreeMap;

/// A posted form's fields, in order, without its `csrf` token.
#[derive(Debug, Default)]
pub struct FormData {
    pairs: Vec<(String, String)>,
    csrf: String,
}

impl FormData {
    /// The form as posted; `csrf` is set aside.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        let mut csrf = String::new();
        let mut rest = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            if k == "csrf" {
                // Two tokens is one too many: keep none.
                csrf = if csrf.is_empty() { v } else { "\u{0}".into() };
            } else {
                rest.push((k, v));
            }
        }
        Self { pairs: rest, csrf }
    }

    /// The CSRF token sent (empty when none or several).
    pub fn csrf(&self) -> &str {
        if self.csrf == "\u{0}" { "" } else { &self.csrf }
    }

    /// The first value of `name`, or "" when absent.
    pub fn one(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name` (checkboxes, multiple selects), non-empty ones.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether `name` was sent (a ticked checkbox).
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }
}

/// Splits a text area into its non-empty lines, trimmed (one IP range, one
/// permission… per line; commas separate too).
pub fn lines(text: &str) -> Vec<String> {
    text.split(['\n', ',', '\r'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Errors of a form, by field name; `""` is the form as a whole.
#[derive(Debug, Default)]
pub struct FieldErrors(BTreeMap<String, String>);

impl FieldErrors {
    /// No errors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes an error on `field` (the first one per field is kept).
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_insert_with(|| message.into());
    }

    /// The error on `field`, if any (templates call this).
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `field` has one (for `aria-invalid`).
    pub fn on(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn fields_and_token() {
        let f = FormData::new(pairs(&[
            ("csrf", "t"),
            ("ids", "a"),
            ("ids", ""),
            ("ids", "b"),
            ("name", "x"),
        ]));
        assert_eq!(f.csrf(), "t");
        assert_eq!(f.all("ids"), vec!["a", "b"]);
        assert_eq!(f.one("name"), "x");
        assert_eq!(f.one("missing"), "");
        assert!(f.has("name") && !f.has("csrf"));
        let twice = FormData::new(pairs(&[("csrf", "t"), ("csrf", "t")]));
        assert_eq!(twice.csrf(), "", "two tokens count as none");
    }

    #[test]
    fn lines_split_and_trim() {
        assert_eq!(lines(" a\r\n\nb, c "), vec!["a", "b", "c"]);
        assert!(lines("  \n ").is_empty());
    }

    #[test]
    fn errors_keep_the_first_per_field() {
        let mut e = FieldErrors::new();
        assert!(e.is_empty());
        e.add("name", "first");
        e.add("name", "second");
        assert_eq!(e.get("name"), Some("first"));
        assert!(e.on("name") && !e.on("other"));
    }
}
