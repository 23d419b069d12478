//! `kiln fmt` against Packer: golden outputs recorded from `packer fmt`, and every HCL2 template
//! of the shared corpus formatted idempotently, changed exactly when `packer fmt -check` says so.

// Test helpers panic on broken fixtures, like the tests that call them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use kiln::template::format::format_source;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn files_with_suffix(dir: &Path, suffixes: &[&str], out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_with_suffix(&path, suffixes, out);
        } else if suffixes.iter().any(|s| path.to_string_lossy().ends_with(s)) {
            out.push(path);
        }
    }
}

#[test]
fn matches_packer_fmt_goldens() {
    let dir = repo().join("fixtures/fmt");
    let mut inputs = Vec::new();
    files_with_suffix(&dir, &[".in.hcl"], &mut inputs);
    assert!(
        inputs.len() >= 4,
        "golden inputs missing in {}",
        dir.display()
    );
    for input in inputs {
        let expected_path = PathBuf::from(input.to_string_lossy().replace(".in.hcl", ".out.hcl"));
        let src = std::fs::read_to_string(&input).unwrap();
        let expected = std::fs::read_to_string(&expected_path).unwrap();
        let got = format_source(&src).unwrap();
        assert_eq!(got, expected, "{} differs from packer fmt", input.display());
    }
}

#[test]
fn corpus_templates_change_exactly_where_packer_changes_them() {
    let corpus = corpus_or_skip!();
    let mut files = Vec::new();
    files_with_suffix(&corpus, &[".pkr.hcl", ".pkrvars.hcl"], &mut files);
    assert!(
        files.len() > 100,
        "only {} HCL2 files in the corpus",
        files.len()
    );
    let expected: Vec<String> =
        std::fs::read_to_string(repo().join("fixtures/fmt/corpus-reformatted.txt"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    let mut changed = Vec::new();
    let mut refused = Vec::new();
    for file in &files {
        let rel = file
            .strip_prefix(&corpus)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let src = std::fs::read_to_string(file).unwrap();
        let once = match format_source(&src) {
            Ok(out) => out,
            Err(e) => {
                refused.push(format!("{rel}: {e}"));
                continue;
            }
        };
        assert_eq!(format_source(&once).unwrap(), once, "{rel}: not idempotent");
        if once != src {
            changed.push(rel);
        }
    }
    changed.sort();
    assert_eq!(
        changed, expected,
        "kiln and packer fmt disagree on which files need formatting"
    );
    // Packer refuses this test fixture too: it repeats an attribute, which HCL's parser rejects.
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].contains("duplicate_required_plugins"),
        "{refused:#?}"
    );
}
