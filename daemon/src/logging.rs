//! Logs in containerd's shape: logrus text or JSON, RFC 3339 UTC timestamps
//! with fixed-width nanoseconds (`2018-07-24T08:11:07.397856489Z`), so the
//! tools that parse containerd's logs parse ours.

use std::fmt::{self, Write as _};

use time::format_description::FormatItem;
use time::macros::format_description;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z");

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `time="…" level=info msg="…" key=value`
    Text,
    /// One JSON object per line with `time`, `level`, `msg` and the fields.
    Json,
}

impl Format {
    /// Parses `text`/`json`; empty means text.
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        match s {
            "" | "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => {
                anyhow::bail!("log format {other:?} is not supported: use \"text\" or \"json\"")
            }
        }
    }
}

/// Parses a containerd log level; empty means info.
pub fn parse_level(s: &str) -> anyhow::Result<Level> {
    Ok(match s {
        "" | "info" => Level::INFO,
        "trace" => Level::TRACE,
        "debug" => Level::DEBUG,
        "warn" | "warning" => Level::WARN,
        "error" | "fatal" | "panic" => Level::ERROR,
        other => anyhow::bail!(
            "log level {other:?} is not supported: use trace, debug, info, warn or error"
        ),
    })
}

/// Installs the global subscriber writing to stderr.
pub fn init(level: Level, format: Format) {
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .event_format(Logrus { format })
        .finish();
    // A second init (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The current time as containerd prints it.
pub fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(TIMESTAMP)
        .unwrap_or_else(|_| "0000-00-00T00:00:00.000000000Z".into())
}

struct Logrus {
    format: Format,
}

#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.pairs.push((
                field.name().trim_start_matches("r#").to_owned(),
                value.to_owned(),
            ));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_str(field, &value.to_string());
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warning",
        Level::ERROR => "error",
    }
}

/// logrus quotes a value unless it is made of "safe" characters.
fn text_value(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+:".contains(c));
    if plain {
        out.push_str(value);
    } else {
        let _ = write!(out, "{value:?}");
    }
}

fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<S, N> FormatEvent<S, N> for Logrus
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = level_name(event.metadata().level());
        let mut line = String::with_capacity(128);
        match self.format {
            Format::Text => {
                let _ = write!(line, "time=\"{}\" level={level} msg=", timestamp());
                let _ = write!(line, "{:?}", fields.message);
                for (key, value) in &fields.pairs {
                    let _ = write!(line, " {key}=");
                    text_value(&mut line, value);
                }
            }
            Format::Json => {
                line.push('{');
                for (key, value) in &fields.pairs {
                    json_string(&mut line, key);
                    line.push(':');
                    json_string(&mut line, value);
                    line.push(',');
                }
                line.push_str("\"level\":");
                json_string(&mut line, level);
                line.push_str(",\"msg\":");
                json_string(&mut line, &fields.message);
                line.push_str(",\"time\":");
                json_string(&mut line, &timestamp());
                line.push('}');
            }
        }
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_fixed_width_nanoseconds() {
        let ts = timestamp();
        assert_eq!(ts.len(), "2018-07-24T08:11:07.397856489Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert_eq!(&ts[19..20], ".");
    }

    #[test]
    fn text_values_are_quoted_when_needed() {
        let mut s = String::new();
        text_value(&mut s, "io.containerd.grpc.v1");
        s.push(' ');
        text_value(&mut s, "has space");
        assert_eq!(s, "io.containerd.grpc.v1 \"has space\"");
    }

    #[test]
    fn json_escapes() {
        let mut s = String::new();
        json_string(&mut s, "a\"b\n\u{1}");
        assert_eq!(s, r#""a\"b\n\u0001""#);
    }

    #[test]
    fn formats_and_levels_parse() {
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert!(Format::parse("xml").is_err());
        assert_eq!(parse_level("warn").unwrap(), Level::WARN);
        assert!(parse_level("loud").is_err());
    }
}
