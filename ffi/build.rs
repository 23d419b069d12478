//! Generates the VirtualBox C API bindings when the `virtualbox-ffi` feature is on. The header is
//! the SDK's `bindings/c/include/VBoxCAPI_v<major>_<minor>.h` when `VBOX_SDK_PATH` names an SDK,
//! else the copy vendored in `include/` (VirtualBox 7.1, see `include/README.md`). Nothing is
//! linked: `VBoxXPCOMC` is opened at run time and `VBoxGetCAPIFunctions` looked up in it, as the
//! SDK's C glue (`VBoxCAPIGlue.c`) does. Without the feature nothing is generated.

fn main() {
    #[cfg(feature = "virtualbox-ffi")]
    generate();
}

/// The `VBoxCAPI_v*.h` in `dir` with the highest version, and that version as VirtualBox's API
/// version number (`7_1` is 7001, what `pfnGetAPIVersion` returns for 7.1).
#[cfg(feature = "virtualbox-ffi")]
fn header_in(dir: &std::path::Path) -> Option<(std::path::PathBuf, u32)> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?;
            let (major, minor) = name
                .strip_prefix("VBoxCAPI_v")?
                .strip_suffix(".h")?
                .split_once('_')?;
            let api = major.parse::<u32>().ok()? * 1000 + minor.parse::<u32>().ok()?;
            Some((path, api))
        })
        .max_by_key(|(_, api)| *api)
}

#[cfg(feature = "virtualbox-ffi")]
fn generate() {
    use std::path::PathBuf;
    println!("cargo:rerun-if-env-changed=VBOX_SDK_PATH");
    let dir = match std::env::var_os("VBOX_SDK_PATH") {
        Some(sdk) => PathBuf::from(sdk).join("bindings/c/include"),
        None => PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
            .join("include"),
    };
    let Some((header, api)) = header_in(&dir) else {
        panic!("no VBoxCAPI_v<major>_<minor>.h in {}", dir.display());
    };
    println!("cargo:rerun-if-changed={}", header.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindgen::Builder::default()
        .header(header.display().to_string())
        // The glue's view of the interfaces: one flat `lpVtbl` per object, nsISupports'
        // QueryInterface/AddRef/Release first (without it each vtable nests nsISupports).
        .clang_arg("-DVBOX_WITH_GLUE")
        .allowlist_type("VBOXCAPI|PFNVBOXGETCAPIFUNCTIONS")
        .allowlist_type("I(VirtualBoxClient|VirtualBox|Session|Machine|Console|Keyboard)(Vtbl)?")
        .allowlist_var("VBOX_CAPI_VERSION|IVIRTUALBOXCLIENT_IID_STR")
        .allowlist_var("MachineState_.*|LockType_.*")
        .allowlist_type("MachineState|LockType")
        .layout_tests(false)
        // The API version these tables belong to, checked against the loaded library's.
        .raw_line(format!("pub const BUILT_API_VERSION: u32 = {api};"))
        .generate()
        .unwrap_or_else(|e| panic!("bindgen could not parse {}: {e}", header.display()))
        .write_to_file(out.join("bindings.rs"))
        .expect("could not write bindings.rs");
}
