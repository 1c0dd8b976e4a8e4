//! Keeping secrets out of logs and error messages: passwords in URLs (userinfo and query
//! parameters), and values the config marks secret.
//!
//! Everything that prints a configured URL prints [`redact_url`] of it; text that may echo
//! what the operator wrote (a parser's error with its source line) goes through
//! [`redact_text`]. Secret values are held in [`Secret`], whose `Debug` shows no value.

use std::fmt;

const REDACTED: &str = "REDACTED";

/// Query parameters that carry credentials (compared without case).
const SECRET_PARAMETERS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "sslpassword",
    "auth",
    "access_token",
    "api_key",
    "apikey",
];

fn is_secret_parameter(name: &str) -> bool {
    SECRET_PARAMETERS
        .iter()
        .any(|p| p.eq_ignore_ascii_case(name.trim()))
}

/// `redis://user:secret@host:6379/0?password=x` → `redis://user@host:6379/0?password=REDACTED`.
/// What does not parse as a URL is redacted as text.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = url::Url::parse(text) else {
        return redact_text(text);
    };
    if url.password().is_some() {
        let _ = url.set_password(None);
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_parameter(&k) {
                    REDACTED.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Redacts credentials wherever they appear in free text: the password of every
/// `scheme://user:password@` and the value of every `password=`-like parameter (in URLs and in
/// `key=value` connection strings).
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first character that cannot be in one.
        let end = after
            .find(|c: char| {
                c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == '"' || c == '\''
            })
            .unwrap_or(after.len());
        let (authority, tail) = after.split_at(end);
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                out.push_str(user);
                if userinfo.contains(':') {
                    out.push(':');
                    out.push_str(REDACTED);
                }
                out.push('@');
                out.push_str(host);
            }
            None => out.push_str(authority),
        }
        rest = tail;
    }
    out.push_str(rest);
    redact_parameters(&out)
}

/// `password=x` (after `?`, `&`, `;`, a space or at the start) → `password=REDACTED`.
fn redact_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        let name_start = head
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let name = &head[name_start..];
        out.push_str(head);
        out.push('=');
        let value = &tail[1..];
        if is_secret_parameter(name) {
            let quoted = value.starts_with(['\'', '"']);
            let end = if quoted {
                let quote = value.as_bytes()[0] as char;
                value[1..].find(quote).map_or(value.len(), |i| i + 2)
            } else {
                value
                    .find(|c: char| {
                        c == '&'
                            || c == ';'
                            || c == '#'
                            || c.is_whitespace()
                            || c == '"'
                            || c == '\''
                    })
                    .unwrap_or(value.len())
            };
            out.push_str(REDACTED);
            rest = &value[end..];
        } else {
            rest = value;
        }
    }
    out.push_str(rest);
    out
}

/// A log writer that redacts credentials from every line before it reaches `inner`: the last
/// line of defence, should a message ever carry a URL or `password=` unredacted.
pub struct RedactingWriter<W> {
    inner: W,
}

impl<W: std::io::Write> RedactingWriter<W> {
    pub fn new(inner: W) -> RedactingWriter<W> {
        RedactingWriter { inner }
    }
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    /// Takes a whole formatted event at a time (tracing's formatter writes each in one call).
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(redact_text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A value that must not be printed: its `Debug` and `Display` show `REDACTED`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Secret)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_leave_urls_wherever_they_are() {
        assert_eq!(
            redact_url("redis://user:s3cret@127.0.0.1:6379/0"),
            "redis://user@127.0.0.1:6379/0"
        );
        let pg = redact_url("postgres://app@db/app?sslmode=require&password=s3cret&Pass=x");
        assert!(!pg.contains("s3cret") && !pg.contains("=x"), "{pg}");
        assert!(pg.contains("sslmode=require"), "{pg}");
        assert_eq!(redact_url("postgres://db/app"), "postgres://db/app");
    }

    #[test]
    fn passwords_leave_free_text() {
        let text = "line 3: url = \"postgres://app:s3cret@db/x?password=hunter2\" and \
                    host=db password='two words' user=app rediss://:tok@r:6380";
        let redacted = redact_text(text);
        for secret in ["s3cret", "hunter2", "two words", "tok@"] {
            assert!(!redacted.contains(secret), "{secret} in {redacted}");
        }
        assert!(redacted.contains("user=app") && redacted.contains("app:REDACTED@db"));
        assert_eq!(redact_text("no secrets here"), "no secrets here");
        // Found by the config fuzzer: a name after a multi-byte character.
        assert_eq!(redact_text("𜲤password=x"), "𜲤password=REDACTED");
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "REDACTED");
    }
}
