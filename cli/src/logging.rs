//! The log on stderr: tracing's text lines, or one JSON object per line for log collectors.
//!
//! tracing-subscriber's own JSON format nests the request span's fields under `span`; a
//! collector filters on top-level keys, so this one flattens them: every line has `time` (RFC
//! 3339, UTC), `level`, `target` and `message`, then the fields of the spans it is in —
//! outermost first, so a request's `request_id`, `tenant` and `app` — then the event's own.
//! Either way every line passes through [`RedactingWriter`] on its way out, and the fields the
//! request span carries for traces only (`otel.*`) are left out.

use crate::traces::Traces;
use hostel::secrets::RedactingWriter;
use serde_json::Value;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::field::VisitOutput as _;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// tracing's human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the process's log subscriber, with `traces`' layer beside the log when traces are
/// exported. Without, it is the log alone, filtered once for the whole subscriber (the
/// cheapest way tracing-subscriber has); with, each layer has its own filter.
pub fn init(filter: EnvFilter, format: LogFormat, traces: Option<&Traces>) {
    // The spans made for traces alone are never the log's, whatever the filter says.
    let filter = filter.add_directive(
        format!("{}=off", hostel::traces::TARGET)
            .parse()
            .expect("a valid directive"),
    );
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let Some(traces) = traces else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(|| RedactingWriter::new(std::io::stderr()));
        match format {
            LogFormat::Text => builder.with_ansi(ansi).init(),
            LogFormat::Json => builder
                .with_ansi(false)
                .fmt_fields(JsonFields)
                .event_format(JsonLines)
                .init(),
        }
        return;
    };
    let subscriber = tracing_subscriber::registry().with(traces.layer());
    let log =
        tracing_subscriber::fmt::layer().with_writer(|| RedactingWriter::new(std::io::stderr()));
    match format {
        LogFormat::Text => subscriber
            .with(
                log.with_ansi(ansi)
                    .fmt_fields(TextFields)
                    .with_filter(filter),
            )
            .init(),
        LogFormat::Json => subscriber
            .with(
                log.with_ansi(false)
                    .fmt_fields(JsonFields)
                    .event_format(JsonLines)
                    .with_filter(filter),
            )
            .init(),
    }
}

/// Fields the trace layer reads and the log leaves out: `otel.name`, `otel.kind`, recorded on
/// the request span only while traces are exported.
fn for_traces_only(field: &Field) -> bool {
    field.name().starts_with("otel.")
}

/// tracing-subscriber's text fields without the [`for_traces_only`] ones.
pub struct TextFields;

impl<'writer> FormatFields<'writer> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = LogFieldsOnly(DefaultVisitor::new(writer, true));
        fields.record(&mut visitor);
        visitor.0.finish()
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let is_empty = current.fields.is_empty();
        let mut visitor = LogFieldsOnly(DefaultVisitor::new(current.as_writer(), is_empty));
        fields.record(&mut visitor);
        visitor.0.finish()
    }
}

/// Passes every field but the [`for_traces_only`] ones on to the text format's own visitor.
struct LogFieldsOnly<'a>(DefaultVisitor<'a>);

impl Visit for LogFieldsOnly<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !for_traces_only(field) {
            self.0.record_debug(field, value);
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if !for_traces_only(field) {
            self.0.record_str(field, value);
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if !for_traces_only(field) {
            self.0.record_i64(field, value);
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if !for_traces_only(field) {
            self.0.record_u64(field, value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if !for_traces_only(field) {
            self.0.record_bool(field, value);
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if !for_traces_only(field) {
            self.0.record_f64(field, value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !for_traces_only(field) {
            self.0.record_error(field, value);
        }
    }
}

/// The keys every line starts with; fields of the same name are left out rather than let
/// them overwrite these.
const FIXED: &[&str] = &["time", "level", "target", "message"];

/// Formats each span's fields once, when the span is made (and again when it records more),
/// as JSON `[key, value]` pairs in the order they were written, which every line in that
/// span then copies.
pub struct JsonFields;

impl<'writer> FormatFields<'writer> for JsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut line = Line::default();
        fields.record(&mut line);
        write!(writer, "{}", line.pairs())
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let mut line = Line::parse_pairs(&current.fields);
        fields.record(&mut line);
        current.fields = line.pairs();
        Ok(())
    }
}

/// The event formatter of the JSON format.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut time = String::new();
        SystemTime.format_time(&mut Writer::new(&mut time))?;
        let meta = event.metadata();
        let mut event_fields = Line::default();
        event.record(&mut event_fields);
        let message = event_fields.take("message").unwrap_or_default();

        let mut line = Line::default();
        line.put("time", time.into());
        line.put("level", meta.level().as_str().into());
        line.put("target", meta.target().into());
        line.put("message", message);
        for span in ctx.event_scope().into_iter().flat_map(|s| s.from_root()) {
            let extensions = span.extensions();
            if let Some(fields) = extensions.get::<FormattedFields<N>>() {
                line.extend(Line::parse_pairs(&fields.fields));
            }
        }
        line.extend(event_fields);
        writeln!(writer, "{}", line.object())
    }
}

/// A line's keys in the order they were first given; a later value for a key replaces the
/// earlier one (an inner span's over an outer's, the event's over a span's).
#[derive(Default)]
struct Line(Vec<(String, Value)>);

impl Line {
    fn put(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) => *old = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(at).1)
    }

    /// Adds `fields`, but never over the keys every line starts with.
    fn extend(&mut self, fields: Line) {
        for (key, value) in fields.0 {
            if !FIXED.contains(&key.as_str()) {
                self.put(&key, value);
            }
        }
    }

    /// The fields as a JSON object, in order.
    fn object(&self) -> String {
        let members: Vec<String> = (self.0.iter())
            .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    /// The fields as JSON `[key, value]` pairs: how a span keeps them, in order.
    fn pairs(&self) -> String {
        serde_json::to_string(&self.0).expect("JSON values serialise")
    }

    fn parse_pairs(text: &str) -> Line {
        Line(serde_json::from_str(text).unwrap_or_default())
    }

    fn record(&mut self, field: &Field, value: Value) {
        if !for_traces_only(field) {
            self.put(field.name(), value);
        }
    }
}

/// Fields as JSON values: numbers and booleans as such, everything else as its text.
impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}").into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.record(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity: those become text.
        let value = serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string().into(), Value::Number);
        self.record(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record(field, value.to_string().into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Everything written, for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `log` writes, each line as written and as parsed.
    fn json_lines(log: impl FnOnce()) -> Vec<(String, Value)> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || RedactingWriter::new(sink.clone()))
            .with_ansi(false)
            .fmt_fields(JsonFields)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| {
                let value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                (line.to_string(), value)
            })
            .collect()
    }

    /// A request span as `hostel::request` makes it with traces on: `otel.*` recorded later.
    fn in_a_traced_request() {
        let span = tracing::error_span!(
            "request",
            request_id = "abc-1",
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
            tenant = "acme",
        );
        span.record("otel.kind", "server");
        span.record("otel.name", "GET /api");
        span.in_scope(|| tracing::info!(status = 200u16, "request"));
    }

    #[test]
    fn trace_only_fields_stay_out_of_json_lines() {
        let lines = json_lines(in_a_traced_request);
        let (text, line) = &lines[0];
        assert!(!text.contains("otel"), "{text}");
        assert_eq!(line["request_id"], "abc-1");
        assert_eq!(line["tenant"], "acme");
    }

    #[test]
    fn trace_only_fields_stay_out_of_text_lines() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .fmt_fields(TextFields)
            .finish();
        tracing::subscriber::with_default(subscriber, in_a_traced_request);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains(r#"request{request_id="abc-1" tenant="acme"}: "#),
            "{text}"
        );
        assert!(text.contains("request status=200"), "{text}");
        assert!(!text.contains("otel"), "{text}");
    }

    #[test]
    fn span_fields_are_flattened_beside_the_event_fields_and_secrets_redacted() {
        let lines = json_lines(|| {
            let span = tracing::error_span!("request", request_id = "abc-1", tenant = "acme");
            span.record("tenant", "acme2");
            let _in = span.enter();
            let inner = tracing::error_span!("inner", app = "api", n = 2u64);
            inner.in_scope(|| {
                tracing::info!(target: "hostel::access", status = 200u16, ms = 1.5, ok = true, "request");
                tracing::warn!(url = "redis://:s3cret@h:1", "cannot reach \"redis://u:pw2@h\"");
            });
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (text, access) = &lines[0];
        // In the order written: the fixed keys, the spans' outermost first, the event's.
        let at = |key: &str| text.find(&format!("\"{key}\":")).unwrap();
        let order = [
            "time",
            "level",
            "target",
            "message",
            "request_id",
            "tenant",
            "app",
        ];
        assert!(order.windows(2).all(|w| at(w[0]) < at(w[1])), "{text}");
        assert!(
            at("app") < at("status") && at("status") < at("ok"),
            "{text}"
        );
        assert_eq!(access["level"], "INFO");
        assert_eq!(access["target"], "hostel::access");
        assert_eq!(access["message"], "request");
        assert_eq!(access["request_id"], "abc-1");
        assert_eq!(access["tenant"], "acme2");
        assert_eq!(access["app"], "api");
        assert_eq!(access["n"], 2);
        assert_eq!(access["status"], 200);
        assert_eq!(access["ms"], 1.5);
        assert_eq!(access["ok"], true);
        let time = access["time"].as_str().unwrap();
        assert!(
            time.len() >= 20 && time.ends_with('Z') && &time[10..11] == "T",
            "{time}"
        );
        let keys: Vec<&String> = access.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 11, "{keys:?}");
        let warning = &lines[1].0;
        assert!(
            !warning.contains("s3cret") && !warning.contains("pw2"),
            "{warning}"
        );
        assert!(warning.contains("REDACTED"), "{warning}");
    }
}
