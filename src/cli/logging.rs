//! Logging set-up: `KILN_LOG` takes a tracing filter (`debug`, `kiln=trace`); Packer's
//! `PACKER_LOG=1` turns on debug logs; `PACKER_LOG_PATH` sends them to a file instead of stderr.
//! Every line goes through [`crate::ui::redact_known`], so secrets the UI hides are hidden in the
//! log too. The log starts with kiln's version and command, as Packer's does.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. Logging stays off unless asked for.
pub fn init() {
    let filter = match (std::env::var("KILN_LOG"), std::env::var("PACKER_LOG")) {
        (Ok(f), _) if !f.is_empty() => f,
        (_, Ok(p)) if !p.is_empty() && p != "0" => "debug".to_owned(),
        _ => return,
    };
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("debug"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let path = std::env::var_os("PACKER_LOG_PATH").filter(|p| !p.is_empty());
    let file = path.and_then(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let _ = match file {
        Some(f) => builder
            .with_writer(std::sync::Mutex::new(Redacting(f)))
            .try_init(),
        None => builder
            .with_writer(|| Redacting(std::io::stderr()))
            .try_init(),
    };
    // The command only: its flags may carry secrets (-var) before any is known to redact.
    tracing::info!(
        "kiln v{} (Packer v{} compatible), command: {}",
        env!("CARGO_PKG_VERSION"),
        crate::template::PACKER_COMPAT_VERSION,
        std::env::args().nth(1).unwrap_or_default()
    );
}

/// A log destination that redacts each formatted event before writing it (tracing's formatter
/// writes an event in one call).
struct Redacting<W>(W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = crate::ui::redact_known(&String::from_utf8_lossy(buf));
        self.0.write_all(text.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
