//! Fuzz the `.vmx` reader: any text must parse or give an error, never panic; what parses must
//! render back to the same bytes and parse again to the same model, and a value set on one of its
//! keys must read back while the file still parses. Run with `cargo +nightly fuzz run vmx`.

#![no_main]

use kiln::vmx::Vmx;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(vmx) = Vmx::parse(text) else {
        return;
    };
    let rendered = vmx.render();
    assert_eq!(rendered, text, "render is not byte-exact");
    assert_eq!(Vmx::parse(&rendered).ok().as_ref(), Some(&vmx));
    // Edit the first key with the whole input as its value (quotes, bars, newlines and all).
    if let Some(key) = vmx.keys().first() {
        let mut edited = vmx.clone();
        edited.set(key, text);
        let again = Vmx::parse(&edited.render()).expect("an edited file parses");
        assert_eq!(again.get(key).as_deref(), Some(text));
        assert_eq!(again.keys(), vmx.keys());
    }
});
