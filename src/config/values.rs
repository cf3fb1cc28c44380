//! Parsers for the value types web.config uses: whole numbers in a range,
//! booleans, IIS time spans, and hpgate's enumerations.
//!
//! Owns the wording of "what was wrong and what is valid". Each parser
//! returns a message without a position; the caller adds where it was.

use serde::Serialize;

/// `min..=max` whole number.
pub fn number(raw: &str, min: u64, max: u64, unit: &str) -> Result<u64, String> {
    let trimmed = raw.trim();
    let n: u64 = trimmed.parse().map_err(|_| {
        format!("\"{raw}\" is not a whole number; expected {unit} from {min} to {max}")
    })?;
    if n < min || n > max {
        return Err(format!(
            "{n} is out of range; expected {unit} from {min} to {max}"
        ));
    }
    Ok(n)
}

/// `true` / `false`, any case, as IIS accepts them.
pub fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "\"{raw}\" is not a boolean; expected true or false"
        )),
    }
}

/// An IIS time span: `hh:mm:ss`, optionally `d.hh:mm:ss` and a fraction of
/// a second. Returns whole seconds (fractions round up, so a limit is never
/// shorter than written). A bare number is refused: .NET would read "5" as
/// five days, which is never what someone writing `requestTimeout="5"` meant.
pub fn time_span(raw: &str, max_secs: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "\"{raw}\" is not a time span; write hh:mm:ss (for example \"00:00:05\" for 5 seconds, \"00:02:00\" for 2 minutes)"
        )
    };
    let s = raw.trim();
    let (days, clock) = match s.split_once(':') {
        Some((head, _)) if head.contains('.') => {
            let (d, rest) = s.split_once('.').ok_or_else(bad)?;
            (d.parse::<u64>().map_err(|_| bad())?, rest)
        }
        Some(_) => (0, s),
        None => return Err(bad()),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let (secs, round_up) = match parts[2].split_once('.') {
        Some((s, f)) if !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()) => {
            (s, f.chars().any(|c| c != '0'))
        }
        Some(_) => return Err(bad()),
        None => (parts[2], false),
    };
    let field = |p: &str, max: u64| -> Result<u64, String> {
        if p.is_empty() || p.len() > 2 || !p.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<u64>().ok().filter(|v| *v <= max).ok_or_else(bad)
    };
    let clock_secs = field(parts[0], 23)? * 3600
        + field(parts[1], 59)? * 60
        + field(secs, 59)?
        + u64::from(round_up);
    let total = days
        .checked_mul(86_400)
        .and_then(|d| d.checked_add(clock_secs))
        .ok_or_else(bad)?;
    if total > max_secs {
        return Err(format!(
            "\"{raw}\" is out of range; expected from 00:00:00 to {}",
            format_span(max_secs)
        ));
    }
    Ok(total)
}

/// Renders seconds the way web.config writes them, for messages and docs.
pub fn format_span(secs: u64) -> String {
    let (d, rem) = (secs / 86_400, secs % 86_400);
    let clock = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    if d > 0 {
        format!("{d}.{clock}")
    } else {
        clock
    }
}

/// What hpgate does with WebSocket compression negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Client and app negotiate permessage-deflate end to end.
    #[default]
    Passthrough,
    /// permessage-deflate is removed from the offer, so nobody compresses.
    Disable,
    /// hpgate compresses toward the client; the app talks uncompressed.
    Offload,
}

impl Compression {
    pub const NAMES: &'static str = "passthrough, disable or offload";

    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "passthrough" => Ok(Compression::Passthrough),
            "disable" => Ok(Compression::Disable),
            "offload" => Ok(Compression::Offload),
            _ => Err(format!(
                "\"{raw}\" is not a compression mode; expected {}",
                Self::NAMES
            )),
        }
    }
}

/// How hpgate writes its own log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "\"{raw}\" is not a log format; expected text or json"
            )),
        }
    }
}

/// An `arguments` value whose last quote is never closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnclosedQuote {
    /// 1-based character position of the opening quote.
    pub at: usize,
}

impl std::fmt::Display for UnclosedQuote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unbalanced quote: the \" at character {} opens a quoted part that is never closed; close it, or write \\\" for a literal quote",
            self.at
        )
    }
}

/// Splits an `arguments` string into argv, refusing an unclosed quote.
/// See [`split_windows`] for the rules.
pub fn split_arguments(s: &str) -> Result<Vec<String>, UnclosedQuote> {
    match split_windows(s) {
        (args, None) => Ok(args),
        (_, Some(at)) => Err(UnclosedQuote { at }),
    }
}

/// Splits a command line the way Windows' `CommandLineToArgvW` and the
/// Microsoft C runtime since 2008 do (web.config files are written for
/// Windows): spaces and tabs (and line breaks) separate arguments outside
/// quotes; 2n backslashes before a `"` give n backslashes and the quote
/// starts or ends a quoted part; 2n+1 backslashes before a `"` give n
/// backslashes and a literal `"`; backslashes elsewhere are literal; `""`
/// inside a quoted part is a literal `"` and the part goes on. Also returns
/// the 1-based character position of a quote left open at the end.
pub fn split_windows(s: &str) -> (Vec<String>, Option<usize>) {
    let chars: Vec<char> = s.chars().collect();
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_arg = false;
    let mut open: Option<usize> = None;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let run = chars[i..].iter().take_while(|&&b| b == '\\').count();
            i += run;
            in_arg = true;
            if chars.get(i) == Some(&'"') {
                cur.extend(std::iter::repeat_n('\\', run / 2));
                if run % 2 == 1 {
                    cur.push('"');
                    i += 1;
                }
            } else {
                cur.extend(std::iter::repeat_n('\\', run));
            }
            continue;
        }
        match c {
            '"' if open.is_some() && chars.get(i + 1) == Some(&'"') => {
                cur.push('"');
                i += 1;
            }
            '"' => open = if open.is_some() { None } else { Some(i + 1) },
            ' ' | '\t' | '\n' | '\r' if open.is_none() => {
                if in_arg {
                    args.push(std::mem::take(&mut cur));
                }
                in_arg = false;
                i += 1;
                continue;
            }
            c => cur.push(c),
        }
        in_arg = true;
        i += 1;
    }
    if in_arg {
        args.push(cur);
    }
    (args, open)
}

/// Joins argv back into one `arguments` string (for display only) that
/// [`split_arguments`] turns back into the same argv.
pub fn join_arguments(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && !a.contains([' ', '\t', '\n', '\r', '"']) {
                return a.clone();
            }
            let mut out = String::from("\"");
            let mut backslashes = 0;
            for c in a.chars() {
                match c {
                    '\\' => backslashes += 1,
                    '"' => {
                        // Double the run before a quote and escape the quote.
                        out.extend(std::iter::repeat_n('\\', backslashes * 2 + 1));
                        backslashes = 0;
                    }
                    _ => {
                        out.extend(std::iter::repeat_n('\\', backslashes));
                        backslashes = 0;
                    }
                }
                if c != '\\' {
                    out.push(c);
                }
            }
            // A run before the closing quote must be doubled too.
            out.extend(std::iter::repeat_n('\\', backslashes * 2));
            out.push('"');
            out
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("20", 0, 3600, "seconds"), Ok(20));
        assert_eq!(number(" 7 ", 0, 10, "x"), Ok(7));
        assert!(number("ten", 0, 3600, "seconds")
            .unwrap_err()
            .contains("0 to 3600"));
        assert!(number("3601", 0, 3600, "seconds")
            .unwrap_err()
            .contains("out of range"));
        assert!(number("-1", 0, 3600, "seconds").is_err());
        assert!(number("1.5", 0, 3600, "seconds").is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(boolean("TRUE"), Ok(true));
        assert_eq!(boolean("false"), Ok(false));
        assert!(boolean("yes").is_err());
    }

    #[test]
    fn time_spans() {
        let max = 30 * 86_400;
        assert_eq!(time_span("00:02:00", max), Ok(120));
        assert_eq!(time_span("00:00:05", max), Ok(5));
        assert_eq!(time_span("1.00:00:00", max), Ok(86_400));
        assert_eq!(time_span("30.00:00:00", max), Ok(max));
        assert_eq!(time_span("00:00:01.5", max), Ok(2));
        assert_eq!(time_span("00:00:00", max), Ok(0));
        assert!(time_span("5", max).unwrap_err().contains("00:00:05"));
        assert!(time_span("00:60:00", max).is_err());
        assert!(time_span("24:00:00", max).is_err());
        assert!(time_span("31.00:00:00", max)
            .unwrap_err()
            .contains("30.00:00:00"));
        assert!(time_span("a:b:c", max).is_err());
        assert!(time_span("00:00", max).is_err());
        assert!(time_span("99999999999999999.00:00:00", max).is_err());
    }

    #[test]
    fn modes() {
        assert_eq!(Compression::parse("Offload"), Ok(Compression::Offload));
        assert!(Compression::parse("gzip")
            .unwrap_err()
            .contains("passthrough"));
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert!(LogFormat::parse("xml").is_err());
    }

    fn split(s: &str) -> Vec<String> {
        split_arguments(s).unwrap()
    }

    #[test]
    fn argument_splitting() {
        assert_eq!(
            split("-m waitress --port %HTTP_PLATFORM_PORT% wsgi:application"),
            [
                "-m",
                "waitress",
                "--port",
                "%HTTP_PLATFORM_PORT%",
                "wsgi:application"
            ]
        );
        assert_eq!(
            split(r#""C:\Program Files\app.py" --name "a \"b\"" """#),
            [r"C:\Program Files\app.py", "--name", "a \"b\"", ""]
        );
        assert!(split("   ").is_empty());
        // The port must not land inside another argument.
        assert_eq!(
            split(r#"e\\\\"f g" %HTTP_PLATFORM_PORT%"#),
            [r"e\\f g", "%HTTP_PLATFORM_PORT%"]
        );
    }

    /// Microsoft's "Parsing C command-line arguments" table.
    #[test]
    fn microsoft_examples() {
        let table: [(&str, &[&str]); 5] = [
            (r#""a b c" d e"#, &["a b c", "d", "e"]),
            (r#""ab\"c" "\\" d"#, &["ab\"c", "\\", "d"]),
            (r#"a\\\d"e f"g h"#, &[r"a\\\de fg", "h"]),
            (r#"a\\\"b c d"#, &[r#"a\"b"#, "c", "d"]),
            (r#"a\\\\"b c" d e"#, &[r"a\\b c", "d", "e"]),
        ];
        for (line, want) in table {
            assert_eq!(
                split_windows(line),
                (want.iter().map(|s| s.to_string()).collect(), None),
                "{line}"
            );
        }
        // `""` inside quotes is a literal quote and the quoted part goes on
        // (the post-2008 rule), so this one ends inside quotes.
        assert_eq!(
            split_windows(r#"a"b"" c d"#),
            (vec![r#"ab" c d"#.to_string()], Some(2))
        );
    }

    #[test]
    fn an_unclosed_quote_is_an_error() {
        assert_eq!(
            split_arguments(r#"a"b"" c d"#),
            Err(UnclosedQuote { at: 2 })
        );
        assert_eq!(split_arguments(r#"x "y"#), Err(UnclosedQuote { at: 3 }));
        assert!(split_arguments(r#"x \"y"#).is_ok());
    }

    #[test]
    fn joined_arguments_split_back() {
        let args: Vec<String> = ["a b", "c", "", r"d\", r#"e\"f"#, r"g\\h", "\"", r"x y\"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(split(&join_arguments(&args)), args);
    }
}
