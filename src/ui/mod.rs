//! What the user sees while builds run: Packer-style lines (`==> qemu.x: Creating disk` for
//! steps, `    qemu.x: …` for guest output), `-machine-readable` records
//! (`timestamp,target,type,data…` with Packer's comma escaping), optional timestamps, progress
//! bars (indicatif) only on a terminal (see [`progress`]), and redaction of every secret before anything is
//! printed. Logs go through `tracing` separately (see `cli::logging`).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use indicatif::{MultiProgress, ProgressDrawTarget};

pub mod progress;

pub use progress::{BuildProgress, Reporter, Silent};

/// How output is shaped, from the command-line flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct UiOptions {
    /// `-machine-readable`.
    pub machine_readable: bool,
    /// `-timestamp-ui`.
    pub timestamps: bool,
    /// `-color=false` turns colours off; they are also off when stdout is not a terminal.
    pub color: bool,
}

/// The shared output of one `kiln build` run. Cheap to clone.
#[derive(Clone)]
pub struct Ui {
    inner: Arc<Inner>,
}

struct Inner {
    options: UiOptions,
    secrets: RwLock<Vec<String>>,
    /// One writer at a time, so lines of parallel builds never interleave mid-line.
    out: Mutex<()>,
    bars: MultiProgress,
    terminal: bool,
}

impl Ui {
    /// A UI writing to stdout/stderr.
    pub fn new(mut options: UiOptions) -> Self {
        let terminal = std::io::stderr().is_terminal() && !options.machine_readable;
        options.color &= std::io::stdout().is_terminal() && !options.machine_readable;
        let bars = MultiProgress::with_draw_target(if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Self {
            inner: Arc::new(Inner {
                options,
                secrets: RwLock::new(Vec::new()),
                out: Mutex::new(()),
                bars,
                terminal,
            }),
        }
    }

    /// Hide `secret` in everything printed from now on. Empty strings and very short values
    /// are ignored: replacing every `a` would make output unreadable and leaks nothing.
    pub fn add_secret(&self, secret: &str) {
        if secret.trim().len() < 2 {
            return;
        }
        insert_secret(&LOG_SECRETS, secret);
        insert_secret(&self.inner.secrets, secret);
    }

    /// `text` with every secret replaced by `<sensitive>`.
    pub fn redact(&self, text: &str) -> String {
        match self.inner.secrets.read() {
            Ok(s) => crate::template::redact(text, &s),
            Err(_) => text.to_owned(),
        }
    }

    /// Output for one build, prefixed with its name.
    pub fn build(&self, name: &str) -> BuildUi {
        BuildUi {
            ui: self.clone(),
            name: Arc::from(name),
        }
    }

    /// Whether `-machine-readable` is on.
    pub fn machine_readable(&self) -> bool {
        self.inner.options.machine_readable
    }

    /// A line not tied to one build (`==> Builds finished…`).
    pub fn say(&self, text: &str) {
        self.emit(Stream::Out, "", "say", text, text);
    }

    /// An error not tied to one build, on stderr.
    pub fn error(&self, text: &str) {
        self.emit(Stream::Err, "", "error", text, text);
    }

    /// A machine-readable record `timestamp,target,kind,fields…`; nothing in human mode.
    pub fn machine(&self, target: &str, kind: &str, fields: &[&str]) {
        if !self.inner.options.machine_readable {
            return;
        }
        let fields: Vec<String> = fields.iter().map(|f| escape(&self.redact(f))).collect();
        let line = format!("{},{target},{kind},{}", unix_now(), fields.join(","));
        self.write_line(Stream::Out, &line);
    }

    fn emit(&self, stream: Stream, target: &str, kind: &str, human: &str, data: &str) {
        if self.inner.options.machine_readable {
            let data = escape(&self.redact(data));
            // Packer's machine-readable ui types are say, message and error.
            let kind = if kind == "warn" { "say" } else { kind };
            let line = format!("{},{target},ui,{kind},{data}", unix_now());
            self.write_line(Stream::Out, &line);
            return;
        }
        let mut text = self.redact(human);
        if self.inner.options.timestamps {
            text = format!(
                "{}: {text}",
                chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
            );
        }
        if self.inner.options.color {
            text = colored(stream, kind, &text);
        }
        self.write_line(stream, &text);
    }

    fn write_line(&self, stream: Stream, line: &str) {
        let _guard = self.inner.out.lock();
        // Print above the progress bars so they are not torn.
        self.inner.bars.suspend(|| match stream {
            Stream::Out => {
                let mut o = std::io::stdout().lock();
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
            Stream::Err => {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
        });
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// Output of one build: what its steps say and what its guest prints. Cheap to clone.
#[derive(Clone)]
pub struct BuildUi {
    ui: Ui,
    name: Arc<str>,
}

impl BuildUi {
    /// The build's name (`qemu.debian`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run's shared UI.
    pub fn shared(&self) -> &Ui {
        &self.ui
    }

    /// A step's headline: `==> qemu.x: Starting HTTP server on port 8123`.
    pub fn say(&self, text: &str) {
        let line = format!("==> {}: {text}", self.name);
        self.ui.emit(Stream::Out, "", "say", &line, &line);
    }

    /// Detail or guest output: `    qemu.x: text`, one line each.
    pub fn message(&self, text: &str) {
        for l in text.lines() {
            let line = format!("    {}: {l}", self.name);
            self.ui.emit(Stream::Out, "", "message", &line, &line);
        }
    }

    /// An error of this build, on stderr.
    pub fn error(&self, text: &str) {
        let line = format!("==> {}: {text}", self.name);
        self.ui.emit(Stream::Err, "", "error", &line, &line);
    }

    /// A warning that does not stop the build (yellow, so that it stands out among the
    /// green step lines).
    pub fn warn(&self, text: &str) {
        let line = format!("==> {}: Warning: {text}", self.name);
        self.ui.emit(Stream::Out, "", "warn", &line, &line);
    }

    /// A machine-readable record targeted at this build.
    pub fn machine(&self, kind: &str, fields: &[&str]) {
        self.ui.machine(&self.name, kind, fields);
    }

    /// A remote command's output printed line by line as messages (the communicator's
    /// `Output`).
    pub fn output(&self) -> LineOutput {
        LineOutput {
            ui: self.clone(),
            out: Vec::new(),
            err: Vec::new(),
        }
    }
}

/// Remote output split into lines and printed with the build's prefix. Flushes a last partial
/// line when dropped.
pub struct LineOutput {
    ui: BuildUi,
    out: Vec<u8>,
    err: Vec<u8>,
}

impl LineOutput {
    fn push(ui: &BuildUi, buf: &mut Vec<u8>, data: &[u8]) {
        buf.extend_from_slice(data);
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line);
            ui.message(text.trim_end_matches(['\n', '\r']));
        }
    }
}

impl LineOutput {
    /// A chunk of standard output.
    pub fn stdout_chunk(&mut self, data: &[u8]) {
        Self::push(&self.ui, &mut self.out, data);
    }

    /// A chunk of standard error.
    pub fn stderr_chunk(&mut self, data: &[u8]) {
        Self::push(&self.ui, &mut self.err, data);
    }
}

impl Drop for LineOutput {
    fn drop(&mut self) {
        for buf in [&self.out, &self.err] {
            if !buf.is_empty() {
                self.ui.message(&String::from_utf8_lossy(buf));
            }
        }
    }
}

/// Packer's machine-readable escaping: commas become `%!(PACKER_COMMA)`, newlines `\n`,
/// carriage returns `\r`.
pub fn escape(field: &str) -> String {
    field
        .replace(',', "%!(PACKER_COMMA)")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// Every secret any `Ui` of this process knows, for what kiln writes outside a `Ui` (the log,
/// the guest's serial console log), which must not hold secrets either.
static LOG_SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());

/// Add `secret` to `list` once, longest first, so a secret containing another is replaced
/// whole.
fn insert_secret(list: &std::sync::RwLock<Vec<String>>, secret: &str) {
    if let Ok(mut s) = list.write() {
        if !s.iter().any(|x| x == secret) {
            s.push(secret.to_owned());
            s.sort_by_key(|x| std::cmp::Reverse(x.len()));
        }
    }
}

/// `text` with every secret known to any `Ui` of this process replaced (log lines, console
/// logs).
pub fn redact_known(text: &str) -> String {
    match LOG_SECRETS.read() {
        Ok(s) if !s.is_empty() => crate::template::redact(text, &s),
        _ => text.to_owned(),
    }
}

/// `text` in its colour: errors red, step lines green, warnings yellow, details plain.
fn colored(stream: Stream, kind: &str, text: &str) -> String {
    let code = match (stream, kind) {
        (Stream::Err, _) => "31",
        (_, "warn") => "33",
        (_, "say") => "32",
        _ => return text.to_owned(),
    };
    format!("\x1b[1;{code}m{text}\x1b[0m")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Warnings (the KVM fallback's among them) stand out from the green step lines.
    #[test]
    fn warnings_are_yellow_steps_green_errors_red() {
        assert_eq!(colored(Stream::Out, "warn", "w"), "\x1b[1;33mw\x1b[0m");
        assert_eq!(colored(Stream::Out, "say", "s"), "\x1b[1;32ms\x1b[0m");
        assert_eq!(colored(Stream::Err, "error", "e"), "\x1b[1;31me\x1b[0m");
        assert_eq!(colored(Stream::Out, "message", "m"), "m");
    }

    #[test]
    fn machine_readable_escaping_matches_packer() {
        assert_eq!(escape("a,b\nc\r"), "a%!(PACKER_COMMA)b\\nc\\r");
    }

    #[test]
    fn secrets_are_redacted_longest_first() {
        let ui = Ui::new(UiOptions::default());
        ui.add_secret("hunter2");
        ui.add_secret("hunter2-long");
        ui.add_secret("x");
        assert_eq!(
            ui.redact("pw hunter2-long and hunter2, x"),
            "pw <sensitive> and <sensitive>, x"
        );
    }
}
