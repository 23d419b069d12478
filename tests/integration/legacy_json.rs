//! Legacy JSON templates: every one in the shared corpus converts to HCL2 that parses again,
//! and a few conversions match golden files reviewed against `packer hcl2_upgrade` (one
//! deliberate difference: `{{build_name}}` becomes `${source.name}`, the builder's name the JSON
//! meant, where Packer writes `${build.name}`, the build block's name, empty after an upgrade).

// Test helpers panic on broken fixtures, like the tests that call them.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use kiln::template::json::{to_hcl, upgrade};

use super::fmt::files_with_suffix;

fn is_legacy_template(path: &Path) -> bool {
    let src = std::fs::read_to_string(path).unwrap();
    serde_json::from_str::<serde_json::Value>(&src)
        .ok()
        .and_then(|v| v.get("builders").cloned())
        .is_some()
}

#[test]
fn corpus_legacy_templates_convert_and_reparse() {
    let corpus = corpus_or_skip!();
    let mut files = Vec::new();
    for dir in [
        "bento-legacy-json",
        "boxcutter-centos",
        "boxcutter-debian",
        "boxcutter-ubuntu",
        "boxcutter-windows",
    ] {
        files_with_suffix(&corpus.join(dir), &[".json"], &mut files);
    }
    files.retain(|f| is_legacy_template(f));
    assert!(
        files.len() > 100,
        "only {} legacy templates found",
        files.len()
    );
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        let (body, _) = to_hcl(&src, file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            body.blocks().any(|b| b.identifier() == "build"),
            "{}",
            file.display()
        );
        let text = upgrade(&src, file).unwrap();
        let reparsed: Result<hcl::Body, _> = hcl::from_str(&text);
        assert!(
            reparsed.is_ok(),
            "{}: the HCL2 text does not parse: {:?}\n{text}",
            file.display(),
            reparsed.err()
        );
        assert_eq!(
            kiln::template::format::format_source(&text).unwrap(),
            text,
            "{}: output not in canonical format",
            file.display()
        );
    }
}

#[test]
fn matches_golden_conversions() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/legacy");
    let mut inputs = Vec::new();
    files_with_suffix(&dir, &[".json"], &mut inputs);
    assert!(
        inputs.len() >= 3,
        "golden inputs missing in {}",
        dir.display()
    );
    for input in inputs {
        let golden = input.with_extension("pkr.hcl");
        let src = std::fs::read_to_string(&input).unwrap();
        let got = upgrade(&src, &input).unwrap();
        if std::env::var_os("KILN_BLESS").is_some() {
            std::fs::write(&golden, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&golden).unwrap();
        assert_eq!(
            got,
            expected,
            "{} differs from {}",
            input.display(),
            golden.display()
        );
    }
}

#[test]
fn errors_carry_the_position() {
    let err = to_hcl(
        "{\n  \"builders\": [\n    {\"type\": \"qemu\",}\n  ]\n}",
        Path::new("t.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("t.json:3:"), "{err}");
    let err = to_hcl(r#"{"builders": [{"name": "x"}]}"#, Path::new("t.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("builders[0]") && err.contains("type"), "{err}");
    let err = to_hcl(r#"{"bulders": []}"#, Path::new("t.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bulders"), "{err}");
}
