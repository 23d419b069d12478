//! The `.vmx` library over real files collected from public projects (`fixtures/vmx/`, origins
//! and licences in its README): every one renders back byte for byte, and edits touch only their
//! line.

use kiln::vmx::Vmx;
use std::path::{Path, PathBuf};

fn samples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/vmx")
}

fn sample(rel: &str) -> String {
    std::fs::read_to_string(samples_dir().join(rel)).unwrap()
}

/// Every `.vmx` under `fixtures/vmx/`, sorted.
fn all_samples() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for project in std::fs::read_dir(samples_dir()).unwrap() {
        let project = project.unwrap().path();
        if !project.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&project).unwrap() {
            let f = f.unwrap().path();
            if f.extension().is_some_and(|e| e == "vmx") {
                found.push(f);
            }
        }
    }
    found.sort();
    found
}

/// `(before, after)` for each line that differs; both texts must have as many lines.
fn changed_lines(before: &str, after: &str) -> Vec<(String, String)> {
    let b: Vec<_> = before.split_inclusive('\n').collect();
    let a: Vec<_> = after.split_inclusive('\n').collect();
    assert_eq!(b.len(), a.len());
    b.iter()
        .zip(&a)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect()
}

#[test]
fn every_collected_sample_round_trips_byte_for_byte() {
    let samples = all_samples();
    assert!(samples.len() >= 20, "only {} samples", samples.len());
    let (mut crlf, mut shebang, mut encoding, mut escaped) = (0, 0, 0, 0);
    for path in &samples {
        let bytes = std::fs::read(path).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        let vmx = Vmx::parse(text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(vmx.render().as_bytes(), bytes, "{}", path.display());
        assert_eq!(Vmx::parse(&vmx.render()).unwrap(), vmx);
        assert!(!vmx.keys().is_empty(), "{}", path.display());
        crlf += usize::from(text.contains("\r\n"));
        shebang += usize::from(text.starts_with("#!/usr/bin/vmware"));
        encoding += usize::from(vmx.get(".encoding").is_some());
        escaped += usize::from(text.contains("|22") || text.contains("|0A"));
    }
    // The collection keeps covering what the format has in the wild.
    assert!(crlf >= 1 && shebang >= 1 && encoding >= 1 && escaped >= 2);
}

#[test]
fn real_escaped_values_decode_and_reencode() {
    let text = sample("libvirt/annotation.vmx");
    let mut vmx = Vmx::parse(&text).unwrap();
    let annotation = vmx.get("annotation").unwrap();
    assert_eq!(
        annotation,
        "Some |text| to test the \"escaping\": ||\"\"||\"| Escaped!"
    );
    // Setting the same value writes VMware's escapes back (the `|45…` letters plainly).
    vmx.set("annotation", &annotation);
    assert_eq!(
        changed_lines(&text, &vmx.render()),
        [(
            "annotation = \"Some |7Ctext|7C to test the |22escaping|22: |7C|7C|22|22|7C|7C|22|7C |45|73|63|61|70|65|64|21\"\n".to_string(),
            "annotation = \"Some |7Ctext|7C to test the |22escaping|22: |7C|7C|22|22|7C|7C|22|7C Escaped!\"\n".to_string(),
        )]
    );
    assert_eq!(
        Vmx::parse(&vmx.render()).unwrap().get("annotation"),
        Some(annotation)
    );

    let vmx = Vmx::parse(&sample("libvirt/esx-in-the-wild-13.vmx")).unwrap();
    let long = vmx.get("annotation").unwrap();
    assert!(long.starts_with("name:Test-Mig-VM-1\nuserid:962314ba515c48388a0e95c0961709ff\n"));
    assert_eq!(long.lines().count(), 13);
    assert!(long.ends_with("package:20.6.2\n"));
}

#[test]
fn lookups_ignore_the_case_of_keys() {
    let upper = Vmx::parse(&sample("libvirt/case-insensitive-1.vmx")).unwrap();
    let lower = Vmx::parse(&sample("libvirt/case-insensitive-2.vmx")).unwrap();
    assert_eq!(upper.get("virtualHW.version").as_deref(), Some("4"));
    assert_eq!(lower.get("VirtualHW.Version").as_deref(), Some("4"));
    assert_eq!(upper.keys().len(), lower.keys().len());
    for key in lower.keys() {
        assert!(upper.get(&key).is_some(), "{key}");
    }
}

#[test]
fn edits_of_a_crlf_file_keep_every_other_byte() {
    let text = sample("virt-v2v/test-i-vmx-5.vmx");
    assert!(text.contains("\r\n"));
    let mut vmx = Vmx::parse(&text).unwrap();
    vmx.set("MEMSIZE", "4096");
    assert_eq!(
        changed_lines(&text, &vmx.render()),
        [(
            "memsize = \"2048\"\r\n".to_string(),
            "memsize = \"4096\"\r\n".to_string()
        )]
    );
    assert_eq!(vmx.get("bios.bootDelay"), None);
    vmx.set("bios.bootDelay", "5000");
    let rendered = vmx.render();
    let appended = rendered
        .strip_prefix(&text.replace("memsize = \"2048\"", "memsize = \"4096\""))
        .unwrap();
    assert_eq!(appended, "bios.bootDelay = \"5000\"\r\n");

    // Removing the network adapter keeps every other line as it was, in order.
    let mut vmx = Vmx::parse(&text).unwrap();
    let removed = vmx.remove_matching(|k| k.to_ascii_lowercase().starts_with("ethernet0."));
    let kept: String = text
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("ethernet0."))
        .collect();
    assert_eq!(
        removed,
        text.split_inclusive('\n').count() - kept.split_inclusive('\n').count()
    );
    assert!(removed >= 9);
    assert_eq!(vmx.render(), kept);
}

#[test]
fn a_shebang_first_line_and_blank_lines_survive_edits() {
    let text = sample("libvirt/gsx-in-the-wild-3.vmx");
    assert!(text.starts_with("#!/usr/bin/vmware\n"));
    let mut vmx = Vmx::parse(&text).unwrap();
    assert!(vmx.remove("uuid.action"));
    vmx.set("displayName", "Router 2");
    let rendered = vmx.render();
    assert!(rendered.starts_with("#!/usr/bin/vmware\nconfig.version = \"8\"\n"));
    assert_eq!(
        rendered.matches("\n\n").count(),
        text.matches("\n\n").count()
    );
    assert!(rendered.contains("\ndisplayName = \"Router 2\"\n"));
    assert!(!rendered.contains("uuid.action"));
}
