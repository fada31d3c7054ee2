//! Logging with `tracing`: pretty or JSON lines on standard error.
//! Standard output is kept for what the operator must read (the bootstrap
//! credentials, the listening address): plain lines, or in JSON mode one
//! JSON object per line (see `startup::Application::announce`).
//!
//! Every line logged while a request is served carries its id as a span
//! `request{request_id=…}` (in JSON under `span` and `spans`), exactly as a
//! tracing span would write it. No tracing span is built per request: the
//! id rides in a task-local ([`in_request`]) and the formatters below write
//! it. A real span cost every request its registration, field formatting,
//! filter lock and enter/exit bookkeeping, all for lines that the warm
//! exchange never writes; the task-local costs a copy.

use std::future::Future;
use std::io::IsTerminal;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber. Errors name `TESSERA_LOG`.
///
/// Pretty lines are coloured only when standard error is a terminal and
/// `NO_COLOR` is unset: escape codes in a file or a log collector are noise.
pub fn init(filter: &str, format: LogFormat) -> Result<(), ConfigError> {
    let filter = EnvFilter::try_new(filter).map_err(|e| ConfigError {
        setting: "log (TESSERA_LOG)".into(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .event_format(JsonLines(tracing_subscriber::fmt::format().json()))
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(colour())
            .event_format(PrettyLines(
                tracing_subscriber::fmt::format()
                    .without_time()
                    .with_level(false),
            ))
            .try_init(),
    };
    // A second init (tests) keeps the first subscriber; that is fine.
    let _ = result;
    Ok(())
}

/// Whether pretty logs are coloured: on a terminal, unless `NO_COLOR` says
/// otherwise (<https://no-color.org>: any non-empty value).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Longest request id held (the access middleware keeps no longer one).
const MAX_ID: usize = 128;

/// A request id as the log writes it, held inline so that entering a
/// request allocates nothing.
#[derive(Clone, Copy)]
pub struct RequestId {
    len: u8,
    bytes: [u8; MAX_ID],
}

impl RequestId {
    /// The id, when it is 1 to 128 bytes of `[A-Za-z0-9._:-]`: the rule
    /// for a client's `X-Request-Id` to be kept (see `http::access`). Such
    /// an id needs no escaping in a header or in either log format.
    pub fn new(id: &[u8]) -> Option<Self> {
        let plain = id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if id.is_empty() || id.len() > MAX_ID || !plain {
            return None;
        }
        let mut bytes = [0u8; MAX_ID];
        bytes[..id.len()].copy_from_slice(id);
        Some(Self {
            len: u8::try_from(id.len()).ok()?,
            bytes,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

tokio::task_local! {
    static REQUEST: RequestId;
}

/// Runs `fut` as the request `id`: every line it logs carries the id.
pub fn in_request<F: Future>(id: RequestId, fut: F) -> impl Future<Output = F::Output> {
    REQUEST.scope(id, fut)
}

/// Runs `f` as the request `id` (the synchronous part of a request).
pub fn in_request_sync<R>(id: RequestId, f: impl FnOnce() -> R) -> R {
    REQUEST.sync_scope(id, f)
}

/// The request being served on this task, if any.
pub fn current_request() -> Option<RequestId> {
    REQUEST.try_with(|r| *r).ok()
}

/// JSON lines: tracing-subscriber's JSON, with the request's span first in
/// `spans` (and as `span` when no other span is open), as the JSON format
/// writes a span: `{"request_id":…,"name":"request"}`.
struct JsonLines<F>(F);

impl<S, N, F> FormatEvent<S, N> for JsonLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = current_request() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let spliced = with_request_span(&line, id.as_str());
        writeln!(writer, "{}", spliced.trim_end())
    }
}

/// `line` (one JSON object) with the request span added: first in `spans`,
/// and as `span` when no other span is open. Spliced into the text, not
/// parsed and written again, so keys keep their order and numbers their
/// digits. `id` needs no escaping (see `RequestId::new`), and `"spans":[`
/// can only be the top-level key: a quote inside a JSON string is escaped.
fn with_request_span(line: &str, id: &str) -> String {
    let span = format!(r#"{{"request_id":"{id}","name":"request"}}"#);
    let key = r#""spans":["#;
    match line.rfind(key) {
        Some(at) => match line.split_at_checked(at + key.len()) {
            Some((head, tail)) => {
                let more = if tail.starts_with(']') { "" } else { "," };
                format!("{head}{span}{more}{tail}")
            }
            None => line.to_owned(),
        },
        None => match line.trim_end().strip_suffix('}') {
            Some(head) => format!(r#"{head},"span":{span},"spans":[{span}]}}"#),
            None => line.to_owned(),
        },
    }
}

/// Pretty lines, as tracing-subscriber's full format writes them (time,
/// level, spans, target, fields), with the request's span first.
struct PrettyLines<F>(F);

impl<S, N, F> FormatEvent<S, N> for PrettyLines<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let ansi = writer.has_ansi_escapes();
        let paint = |w: &mut Writer<'_>, code: &str, text: &str| {
            if ansi {
                write!(w, "\x1b[{code}m{text}\x1b[0m")
            } else {
                w.write_str(text)
            }
        };
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        paint(&mut writer, "2", &time)?;
        let (label, colour) = match *event.metadata().level() {
            Level::TRACE => ("TRACE", "35"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::INFO => (" INFO", "32"),
            Level::WARN => (" WARN", "33"),
            Level::ERROR => ("ERROR", "31"),
        };
        writer.write_char(' ')?;
        paint(&mut writer, colour, label)?;
        writer.write_char(' ')?;
        if let Some(id) = current_request() {
            // As tracing-subscriber paints a span: bold name and braces,
            // italic field name, dimmed `=`.
            paint(&mut writer, "1", "request{")?;
            paint(&mut writer, "3", "request_id")?;
            paint(&mut writer, "2", "=")?;
            writer.write_str(id.as_str())?;
            paint(&mut writer, "1", "}")?;
            paint(&mut writer, "2", ":")?;
            // The inner format separates its own spans from the target.
            if ctx.event_scope().is_none() {
                writer.write_char(' ')?;
            }
        }
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_span_is_spliced_in_order() {
        let plain = r#"{"timestamp":"t","level":"WARN","fields":{"message":"m \"spans\":[x"},"target":"x"}"#;
        let out = with_request_span(&format!("{plain}\n"), "r-1");
        assert_eq!(
            out,
            r#"{"timestamp":"t","level":"WARN","fields":{"message":"m \"spans\":[x"},"target":"x","span":{"request_id":"r-1","name":"request"},"spans":[{"request_id":"r-1","name":"request"}]}"#
        );
        let open = r#"{"level":"DEBUG","span":{"name":"lib"},"spans":[{"name":"lib"}]}"#;
        let out = with_request_span(open, "r-2");
        assert_eq!(
            out,
            r#"{"level":"DEBUG","span":{"name":"lib"},"spans":[{"request_id":"r-2","name":"request"},{"name":"lib"}]}"#
        );
        for l in [plain, open] {
            let v: serde_json::Value = serde_json::from_str(&with_request_span(l, "r")).unwrap();
            assert_eq!(v["spans"][0]["request_id"], "r");
        }
    }

    #[test]
    fn request_ids_are_held_only_when_plain() {
        assert_eq!(
            RequestId::new(b"abc-1.2:3_x")
                .map(|r| r.as_str().to_owned())
                .as_deref(),
            Some("abc-1.2:3_x")
        );
        assert!(RequestId::new(&[b'a'; 128]).is_some());
        assert!(RequestId::new(&[b'a'; 129]).is_none());
        assert!(RequestId::new(b"").is_none());
        assert!(RequestId::new(b"a\"b").is_none());
        assert!(current_request().is_none());
        let id = RequestId::new(b"r-1");
        let seen =
            id.map(|id| in_request_sync(id, || current_request().map(|r| r.as_str().to_owned())));
        assert_eq!(seen.flatten().as_deref(), Some("r-1"));
    }
}
