//! Logging set-up: `KILN_LOG` takes a tracing filter (`debug`, `kiln=trace`); Packer's
//! `PACKER_LOG=1` turns on debug logs; `PACKER_LOG_PATH` sends them to a file instead of stderr.

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
        Some(f) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
