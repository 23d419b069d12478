//! What the server writes about itself: request text escaped before it is logged or reported
//! (a guest or an attacker chooses those bytes, and a raw control character such as ESC or
//! the C1 CSI `\u{9b}` would drive the user's terminal), and repeated failures logged once
//! plus a periodic count (so a flood of errors cannot fill the disk with log lines).

use std::fmt::Display;
use std::time::Duration;

/// How often a [`Throttled`] log reports how many repeats it held back.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// `text` with control characters (C0, DEL and C1) and backslashes written as Rust escapes
/// (`\n`, `\u{9b}`, `\\`), so logged request text is printable and cannot be mistaken for an
/// escape that was already there.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The levels a [`Throttled`] log is written at.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Level {
    /// Something the user should see (accept failures, the connection cap).
    Warn,
    /// Expected churn (a connection that timed out or broke off).
    Debug,
}

/// A log line that repeats: the first occurrence is written at once, the rest are counted and
/// reported as one summary line per [`SUMMARY_INTERVAL`] (see [`Throttled::flush`]).
#[derive(Debug)]
pub(crate) struct Throttled {
    what: &'static str,
    level: Level,
    /// Whether the full line was written since the last quiet interval.
    quiet: bool,
    held_back: u64,
    last: String,
}

impl Throttled {
    /// A throttled log of `what` (e.g. "accept failed") at `level`.
    pub(crate) fn new(what: &'static str, level: Level) -> Self {
        Self {
            what,
            level,
            quiet: false,
            held_back: 0,
            last: String::new(),
        }
    }

    /// One more occurrence, with its detail (an error or a client address).
    pub(crate) fn record(&mut self, detail: impl Display) {
        if self.quiet {
            self.held_back = self.held_back.saturating_add(1);
            self.last = detail.to_string();
        } else {
            self.quiet = true;
            self.emit(&format_args!("HTTP server: {}: {detail}", self.what));
        }
    }

    /// Report what was held back since the last call; called every [`SUMMARY_INTERVAL`] and
    /// at shutdown. An interval without any occurrence lets the next one be written in full.
    pub(crate) fn flush(&mut self) {
        if self.held_back == 0 {
            self.quiet = false;
            return;
        }
        let n = std::mem::take(&mut self.held_back);
        self.emit(&format_args!(
            "HTTP server: {} {n} more times (last: {})",
            self.what, self.last
        ));
    }

    fn emit(&self, line: &dyn Display) {
        // `tracing` needs the level as a constant at each call site.
        match self.level {
            Level::Warn => tracing::warn!("{line}"),
            Level::Debug => tracing::debug!("{line}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_c0_del_c1_and_backslash_only() {
        assert_eq!(
            escape("/a\u{1b}[2Jb\u{85}c\u{9b}d\u{7f}\n\\é"),
            "/a\\u{1b}[2Jb\\u{85}c\\u{9b}d\\u{7f}\\n\\\\é"
        );
        assert_eq!(escape("/preseed.cfg?x=1"), "/preseed.cfg?x=1");
    }
}
