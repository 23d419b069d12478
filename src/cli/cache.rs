//! `kiln cache list|import|prune`: look after the download cache (see [`crate::download::cache`]
//! for where it is and how entries are named) and the layers of `kiln build -cache` beside it
//! ([`crate::layers`]). `import` is for air-gapped machines: copy an ISO
//! in under the name the template's `iso_checksum` looks up, and `KILN_OFFLINE=1 kiln build`
//! finds it without a network.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};
use indicatif::BinaryBytes;

use crate::download::cache::ImportKey;
use crate::download::{Algorithm, Cache, Checksum, ChecksumSpec, Fetcher, Source};
use crate::layers::store::{self, LayerStore};
use crate::report::report;
use crate::ui::{Ui, UiOptions};

/// `kiln cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do with the cache.
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// The `kiln cache` commands.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List the cached inputs (file, size, last use, checksum, origin) and the layers of
    /// `kiln build -cache` (template, step, size, age, hits).
    List,
    /// Copy a local file into the cache where a template's iso_checksum finds it (for
    /// machines without a network; build with KILN_OFFLINE=1 afterwards).
    Import(ImportArgs),
    /// Remove partial downloads and unused lock files; with -older-than, also entries not
    /// used for that long.
    Prune(PruneArgs),
}

/// `kiln cache import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The template's iso_checksum (`sha256:<hex>`, a bare hex digest, or `file:<local
    /// checksum list>`), which the file must match; or just an algorithm (`sha512`) to compute.
    /// Default: the file's sha256.
    #[arg(long)]
    pub checksum: Option<String>,
    /// For a template whose iso_checksum is "none": its iso_url, which names the entry then.
    #[arg(long, conflicts_with = "checksum")]
    pub url: Option<String>,
    /// The template's iso_target_extension.
    #[arg(long, default_value = "iso")]
    pub extension: String,
    /// The file to import.
    pub file: PathBuf,
}

/// `kiln cache prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Also remove entries and layers not used for this long: `30d`, or a Go duration such
    /// as `720h`.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Then remove the least recently used layers until they take at most this much:
    /// `20G`, `500M`, or bytes.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
}

/// Runs `kiln cache …`.
pub fn run(args: &CacheArgs, machine_readable: bool) -> ExitCode {
    let cwd = std::env::current_dir().unwrap_or_default();
    let cache = Cache::from_env(&cwd);
    let ui = Ui::new(UiOptions {
        machine_readable,
        ..UiOptions::default()
    });
    let result = match &args.command {
        CacheCommand::List => list(&cache, &ui),
        CacheCommand::Import(a) => import(&cache, &ui, a, &cwd),
        CacheCommand::Prune(a) => prune(&cache, &ui, a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            ui.error(&format!("error: {}", report(e.as_ref())));
            ExitCode::FAILURE
        }
    }
}

/// The layer store beside the downloads.
fn layer_store(cache: &Cache) -> LayerStore {
    LayerStore::new(cache.dir().join("layers"))
}

fn list(cache: &Cache, ui: &Ui) -> anyhow::Result<()> {
    list_inputs(cache, ui)?;
    let store = layer_store(cache);
    let layers = store.list()?;
    if !ui.machine_readable() && !layers.is_empty() {
        ui.say(&format!("Layers {}", store.dir().display()));
    }
    for e in layers.iter().rev() {
        let m = &e.layer.meta;
        let age = m.age_secs();
        let used = store::unix(e.last_used).to_string();
        ui.machine(
            "",
            "cache-layer",
            &[
                &e.layer.key,
                &m.template,
                &m.build,
                &m.step,
                &e.size.to_string(),
                &m.created.to_string(),
                &used,
                &m.hits.to_string(),
            ],
        );
        if !ui.machine_readable() {
            ui.say(&format!(
                "{}  {}  {}  after {}  {:>10}  built {} ago  {} hit{}",
                &e.layer.key[..12.min(e.layer.key.len())],
                m.template,
                m.build,
                m.step,
                BinaryBytes(e.size).to_string(),
                crate::layers::human_age(age),
                m.hits,
                if m.hits == 1 { "" } else { "s" }
            ));
        }
    }
    Ok(())
}

fn list_inputs(cache: &Cache, ui: &Ui) -> anyhow::Result<()> {
    let entries = cache.entries()?;
    if !ui.machine_readable() {
        ui.say(&format!("Cache {}", cache.dir().display()));
        if entries.is_empty() {
            ui.say("(empty)");
        }
    }
    for e in &entries {
        let name = e
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let checksum = e.checksum.as_deref().unwrap_or("-");
        let origin = e.origin.as_deref().unwrap_or("-");
        let used = e
            .modified
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let size = e.size.to_string();
        let used_text = used.to_string();
        ui.machine(
            "",
            "cache-entry",
            &[&name, &size, checksum, &used_text, origin],
        );
        if !ui.machine_readable() {
            let when = chrono::DateTime::<chrono::Utc>::from(e.modified).format("%Y-%m-%d %H:%M");
            ui.say(&format!(
                "{name}  {:>10}  {when}  {checksum}  {origin}",
                BinaryBytes(e.size).to_string()
            ));
        }
    }
    Ok(())
}

fn import(cache: &Cache, ui: &Ui, args: &ImportArgs, cwd: &std::path::Path) -> anyhow::Result<()> {
    let key = match (&args.checksum, &args.url) {
        (_, Some(url)) => ImportKey::Url(url.clone()),
        (None, None) => ImportKey::Compute(Algorithm::Sha256),
        (Some(spec), None) => match Algorithm::from_name(spec) {
            Some(a) => ImportKey::Compute(a),
            None => ImportKey::Checksum(expected(spec, &args.file, cwd)?),
        },
    };
    let build = ui.build("cache");
    let (entry, checksum) = cache.import(&args.file, &key, &args.extension, &build.reporter())?;
    let lookup = match (&checksum, &args.url) {
        (Some(c), _) => format!("iso_checksum \"{c}\""),
        (None, Some(url)) => format!("iso_url \"{url}\" with iso_checksum \"none\""),
        (None, None) => String::new(),
    };
    let checksum_text = checksum.map(|c| c.to_string()).unwrap_or_default();
    ui.machine(
        "",
        "cache-import",
        &[&entry.display().to_string(), &checksum_text],
    );
    if !ui.machine_readable() {
        ui.say(&format!(
            "Imported {} as {}",
            args.file.display(),
            entry.display()
        ));
        ui.say(&format!(
            "Builds with {lookup} and iso_target_extension \"{}\" now find it, also with KILN_OFFLINE=1.",
            args.extension
        ));
    }
    Ok(())
}

/// The digest an import must match, from a checksum as a template writes it (a `file:` list
/// is read from disk, or fetched unless offline, and searched for the file's name).
fn expected(spec: &str, file: &std::path::Path, cwd: &std::path::Path) -> anyhow::Result<Checksum> {
    let name = Source::Local(file.to_path_buf()).file_name();
    let fetcher = Fetcher::new(Cache::new(PathBuf::new()), Fetcher::offline_from_env());
    match ChecksumSpec::parse(spec)? {
        ChecksumSpec::None => anyhow::bail!(
            "an imported file needs a checksum\nhint: for a template with iso_checksum \"none\", pass -url with its iso_url instead"
        ),
        _ => fetcher
            .resolve_checksum(spec, &name, cwd, &crate::ui::Silent)?
            .ok_or_else(|| anyhow::anyhow!("no checksum")),
    }
}

fn prune(cache: &Cache, ui: &Ui, args: &PruneArgs) -> anyhow::Result<()> {
    let layers = layer_store(cache).prune(args.older_than, args.max_size)?;
    for key in &layers.removed {
        ui.machine("", "cache-layer-removed", &[key]);
        if !ui.machine_readable() {
            ui.say(&format!("Removed layer {key}"));
        }
    }
    for key in &layers.in_use {
        ui.machine("", "cache-layer-in-use", &[key]);
        if !ui.machine_readable() {
            ui.say(&format!("Skipped layer {key} (a build is using it)"));
        }
    }
    if !ui.machine_readable() && (layers.bytes > 0 || !layers.removed.is_empty()) {
        ui.say(&format!("Freed {} of layers", BinaryBytes(layers.bytes)));
    }
    let pruned = cache.prune(args.older_than)?;
    for path in &pruned.removed {
        ui.machine("", "cache-removed", &[&path.display().to_string()]);
        if !ui.machine_readable() {
            ui.say(&format!("Removed {}", path.display()));
        }
    }
    for path in &pruned.in_use {
        ui.machine("", "cache-in-use", &[&path.display().to_string()]);
        if !ui.machine_readable() {
            ui.say(&format!("Skipped {} (a build is using it)", path.display()));
        }
    }
    if !ui.machine_readable() {
        ui.say(&format!(
            "Freed {} in {} ({} unused lock files removed)",
            BinaryBytes(pruned.bytes),
            cache.dir().display(),
            pruned.locks
        ));
    }
    Ok(())
}

/// `-max-size`: bytes, or a number with K, M, G or T (powers of 1024).
fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(SizeError(text.to_owned())),
    };
    let n: f64 = num.parse().map_err(|_| SizeError(text.to_owned()))?;
    if !(n.is_finite() && n >= 0.0) {
        return Err(SizeError(text.to_owned()));
    }
    Ok((n * (1u64 << shift) as f64) as u64)
}

/// Why `-max-size` was not understood.
#[derive(Debug, thiserror::Error)]
#[error("invalid size {0:?}: use bytes or a number with K, M, G or T (`20G`)")]
struct SizeError(String);

/// Why `--older-than` was not understood.
#[derive(Debug, thiserror::Error)]
enum AgeError {
    /// `<n>d` with something other than a number of days.
    #[error("invalid age {0:?}: use days (`30d`) or a duration such as `12h`")]
    Days(String),
    /// Not a Go duration either.
    #[error(transparent)]
    Duration(#[from] crate::template::duration::DurationError),
}

/// `30d`, or a Go duration (`720h`, `90m`).
fn parse_age(text: &str) -> Result<Duration, AgeError> {
    if let Some(days) = text.strip_suffix('d') {
        return days
            .parse::<u64>()
            .map(|d| Duration::from_secs(d * 86_400))
            .map_err(|_| AgeError::Days(text.to_owned()));
    }
    Ok(text.parse::<crate::config::weak::GoDuration>()?.clamped())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("1.5M").unwrap(), 3 << 19);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5Q").is_err());
    }

    #[test]
    fn ages_take_days_and_go_durations() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("12h").unwrap(), Duration::from_secs(12 * 3600));
        assert_eq!(parse_age("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_age("soon")
            .unwrap_err()
            .to_string()
            .starts_with("invalid duration"));
        assert!(parse_age("xd")
            .unwrap_err()
            .to_string()
            .starts_with("invalid age"));
    }
}
