//! What `hpgate check` found: one line per check (ok, warning, failure or
//! skipped) with the fix, rendered for a person or as JSON, and the exit
//! code (0 all ok, 1 warnings only, 2 a failure).

use serde::Serialize;

/// How one check came out; the order is the severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Not run because an earlier failure makes it meaningless.
    Skipped,
    Ok,
    Warning,
    Failure,
}

impl Status {
    fn word(self) -> &'static str {
        match self {
            Status::Skipped => "skip",
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Failure => "FAILURE",
        }
    }
}

/// One result line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The check's name; docs/troubleshooting.md has a section `check-NAME`.
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Every line, in the order the checks ran.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<Line>,
}

impl Report {
    pub fn add(
        &mut self,
        check: &'static str,
        status: Status,
        message: String,
        fix: Option<String>,
    ) {
        self.checks.push(Line {
            check,
            status,
            message,
            fix,
        });
    }

    pub fn ok(&mut self, check: &'static str, message: impl Into<String>) {
        self.add(check, Status::Ok, message.into(), None);
    }

    pub fn warn(
        &mut self,
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.add(check, Status::Warning, message.into(), Some(fix.into()));
    }

    pub fn fail(
        &mut self,
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.add(check, Status::Failure, message.into(), Some(fix.into()));
    }

    pub fn skip(&mut self, check: &'static str, message: impl Into<String>) {
        self.add(check, Status::Skipped, message.into(), None);
    }

    /// True when a check of this name failed.
    pub fn failed(&self, check: &str) -> bool {
        self.checks
            .iter()
            .any(|l| l.check == check && l.status == Status::Failure)
    }

    /// 0: all ok; 1: warnings only; 2: a failure.
    pub fn exit_code(&self) -> u8 {
        match self.checks.iter().map(|l| l.status).max() {
            Some(Status::Failure) => 2,
            Some(Status::Warning) => 1,
            _ => 0,
        }
    }

    /// One line per check (`warning  port: …`), the fix and the docs
    /// section indented below it, and a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in &self.checks {
            out.push_str(&format!(
                "{:<8} {}: {}\n",
                l.status.word(),
                l.check,
                l.message
            ));
            if let Some(fix) = &l.fix {
                out.push_str(&format!("         fix: {fix}\n"));
            }
            if matches!(l.status, Status::Warning | Status::Failure) {
                out.push_str(&format!(
                    "         see: docs/troubleshooting.md#check-{}\n",
                    l.check
                ));
            }
        }
        let count = |s| self.checks.iter().filter(|l| l.status == s).count();
        out.push_str(&format!(
            "{} ok, {} warning(s), {} failure(s)\n",
            count(Status::Ok),
            count(Status::Warning),
            count(Status::Failure)
        ));
        out
    }

    /// `{"checks": [...], "exitCode": N}`.
    pub fn json(&self) -> String {
        let value = serde_json::json!({ "checks": self.checks, "exitCode": self.exit_code() });
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_follows_the_worst_line() {
        let mut r = Report::default();
        r.ok("config", "fine");
        r.skip("start", "not run");
        assert_eq!(r.exit_code(), 0);
        r.warn("port", "hmm", "do this");
        assert_eq!(r.exit_code(), 1);
        r.fail("program", "no", "chmod");
        assert_eq!(r.exit_code(), 2);
        assert!(r
            .text()
            .contains("see: docs/troubleshooting.md#check-program"));
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(v["exitCode"], 2);
        assert_eq!(v["checks"][3]["status"], "failure");
    }
}
