//! Floppy images kiln writes, read back by an independent FAT implementation (mtools, as
//! the guest's DOS/Windows would): names, directories, contents and the volume label.

use std::process::Command;

use kiln::artifact::floppy::{write, FloppyData, FloppyFile};

fn mtools(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (install mtools)", args[0]));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mtools_reads_the_floppy_kiln_writes() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("Enable-WinRM.ps1");
    std::fs::write(&script, "winrm quickconfig -q\r\n").unwrap();
    let img = dir.path().join("floppy.img");
    let img_s = img.to_str().unwrap();
    write(
        &img,
        "packer",
        &[
            FloppyFile {
                dest: "Autounattend.xml".into(),
                data: FloppyData::Bytes(b"<unattend/>".to_vec()),
            },
            FloppyFile {
                dest: "scripts/Enable-WinRM.ps1".into(),
                data: FloppyData::Path(script),
            },
        ],
    )
    .unwrap();
    let info = mtools(&["minfo", "-i", img_s, "::"]);
    assert!(info.contains("PACKER"), "label: {info}");
    assert!(info.contains("sectors per track: 18"), "{info}");
    let root = mtools(&["mdir", "-i", img_s, "-b", "::"]);
    assert!(
        root.contains("::/Autounattend.xml"),
        "long name kept: {root}"
    );
    assert!(root.contains("::/scripts"), "{root}");
    assert_eq!(
        mtools(&["mtype", "-i", img_s, "::/scripts/Enable-WinRM.ps1"]),
        "winrm quickconfig -q\r\n"
    );
    assert_eq!(
        mtools(&["mtype", "-i", img_s, "::/Autounattend.xml"]),
        "<unattend/>"
    );
}
