//! Fuzz the template loader: any bytes, as an HCL file, a `.pkr.json` file or a var-file, must
//! give a plan or diagnostics, never a panic. Run with `cargo fuzz run template`.

#![no_main]

use kiln::template::{load, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(dir) = tempfile::tempdir() else { return };
    for name in ["t.pkr.hcl", "t.pkr.json"] {
        let path = dir.path().join(name);
        if std::fs::write(&path, text).is_err() {
            return;
        }
        let opts = LoadOptions { path: path.clone(), cwd: dir.path().to_path_buf(), ..LoadOptions::default() };
        if let Err(e) = load(&opts) {
            let _ = e.to_string();
        }
        let _ = std::fs::remove_file(&path);
    }
    let vars = dir.path().join("v.pkrvars.hcl");
    let tpl = dir.path().join("t.pkr.hcl");
    if std::fs::write(&vars, text).is_ok() && std::fs::write(&tpl, "variable \"a\" {\n  default = 1\n}\n").is_ok() {
        let opts = LoadOptions { path: tpl, var_files: vec![vars], ..LoadOptions::default() };
        let _ = load(&opts);
    }
});
