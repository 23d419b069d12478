//! Generates the VirtualBox C API bindings when the `virtualbox-ffi` feature is on and the SDK
//! (`VBOX_SDK_PATH`, containing `bindings/c/include/VBoxCAPI.h`) is present. Without the feature
//! nothing is generated and the crate is empty: kiln's default VirtualBox driver uses VBoxManage.

fn main() {
    #[cfg(feature = "virtualbox-ffi")]
    generate();
}

#[cfg(feature = "virtualbox-ffi")]
fn generate() {
    use std::path::PathBuf;
    println!("cargo:rerun-if-env-changed=VBOX_SDK_PATH");
    let sdk = std::env::var("VBOX_SDK_PATH")
        .expect("feature virtualbox-ffi needs VBOX_SDK_PATH pointing at the VirtualBox SDK");
    let header = PathBuf::from(sdk).join("bindings/c/include/VBoxCAPI.h");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindgen::Builder::default()
        .header(header.display().to_string())
        .allowlist_function("VBoxGetCAPIFunctions")
        .allowlist_type(
            "PCVBOXCAPI|VBOXCAPI|IVirtualBox.*|ISession.*|IMachine.*|IConsole.*|IKeyboard.*",
        )
        .generate()
        .expect("bindgen could not parse VBoxCAPI.h")
        .write_to_file(out.join("bindings.rs"))
        .expect("could not write bindings.rs");
}
