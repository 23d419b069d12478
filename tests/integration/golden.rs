//! What the golden tests over bento's templates share: which of bento's vars files build a
//! given source, running many builds on a few threads and reporting every failure, and
//! writing arguments as shell words.

#![allow(clippy::unwrap_used, reason = "tests may unwrap")]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Bento's corpus directory, or `None` (visibly skipped; a failure in CI).
pub fn bento() -> Option<PathBuf> {
    crate::corpus_dir().map(|d| d.join("bento"))
}

/// Bento's non-Windows x86_64 vars files that build `source_type`, sorted; prints what it
/// leaves out and why.
pub fn vars_files(bento: &Path, source_type: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(bento.join("os_pkrvars"))
        .unwrap()
        .flatten()
        .filter(|os| os.file_name() != "windows")
        .flat_map(|os| std::fs::read_dir(os.path()).unwrap().flatten())
        .map(|f| f.path())
        .filter(|p| p.to_string_lossy().ends_with("-x86_64.pkrvars.hcl"))
        .filter(|p| {
            let vars = std::fs::read_to_string(p).unwrap();
            let builds = !vars.contains("sources_enabled") || vars.contains(source_type);
            if !builds {
                eprintln!(
                    "left out {}: its sources_enabled has no {source_type}",
                    p.display()
                );
            }
            builds
        })
        .collect();
    files.sort();
    files
}

/// The vars file's name without `.pkrvars.hcl`.
pub fn stem(vars: &Path) -> String {
    vars.file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".pkrvars.hcl")
        .to_owned()
}

/// `arg` as a shell word: single-quoted when it is empty or has spaces or quotes.
pub fn quote(arg: &str) -> String {
    if arg.is_empty() || arg.contains([' ', '\'', '"', '\t']) {
        format!("'{}'", arg.replace('\'', r"'\''"))
    } else {
        arg.to_owned()
    }
}

/// Runs `check` on every case on a few threads (the builds mostly wait: boot command pauses,
/// SSH), then fails with every case that failed, named by `name`.
pub fn check_all<C: Send>(
    cases: Vec<C>,
    name: impl Fn(&C) -> String + Sync,
    check: impl Fn(&C) + Sync,
) {
    let queue = Mutex::new(cases);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop() else {
                    break;
                };
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&case)));
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: {msg}", name(&case)));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
