//! boot-commands: Packer's `boot_command`, from template strings to keys pressed in the guest, for
//! every hypervisor.
//!
//! The core is pure (no I/O): [`render`] the template values, [`parse`] the grammar into
//! [`Action`]s, [`encode`] them with a [`Layout`] into [`KeyStroke`]s. A stroke names its key in
//! each of the three encodings, so every hypervisor types the same stream of key-down/key-up
//! events:
//! - QMP `input-send-event` arguments, by QEMU qcode: [`qmp_events`];
//! - RFB (VNC) `KeyEvent` messages, by X11 keysym: [`rfb_key_event`];
//! - PC-XT (set 1) scancode bytes, as VirtualBox's `VBoxManage controlvm VM keyboardputscancode`
//!   takes them: [`pcxt_scancodes`] (`e0` prefix for extended keys, break = make | 0x80), split
//!   by [`pcxt_batches`] into the calls Packer's PC-XT driver makes ([`PCXT_BATCH`] bytes each).
//!
//! A transport implements [`KeySink`] (usable as `dyn KeySink`): its errors, its default key
//! interval and its [`Batching`] (key by key, or scancode batches between waits). One loop,
//! [`type_actions`], drives any sink with Packer's [`Timing`] and a
//! [`CancellationToken`](tokio_util::sync::CancellationToken). The VNC sink lives here
//! ([`VncKeyboard`]: RFB 3.3/3.7/3.8, None or VNC-password security), since VMware types over VNC
//! too; QEMU's QMP client and keyboard live in kiln's QEMU driver, and a VirtualBox driver brings
//! a scancode sink. [`Transport`] names the two ways QEMU can type.
//!
//! ```text
//! let cmd: String = template_strings.concat();               // joined with no separator
//! let parsed = parse(&render(&cmd, &values)?)?;              // show parsed.warnings to the user
//! let timing = Timing::resolve(sink.default_key_interval(), env("PACKER_KEY_INTERVAL"),
//!                              key_iv, group_iv)?;
//! let mut serial = SerialWatch::new(&serial_log, 0);
//! type_actions(&parsed.actions, &US, &mut sink, &timing, Some(&mut serial), &cancel).await?;
//! ```
//!
//! # Grammar
//! Literal text is typed character by character (Shift is held for shifted characters). Tags, with
//! case-insensitive names: the special keys of [`SPECIAL_KEYS`] (`<enter>`, `<f5>`, `<leftCtrl>`…),
//! their hold forms `<nameOn>`/`<nameOff>`, single-character holds (`<aOn>`, `<aOff>`), `<wait>`
//! (1 s), `<waitN>` (N seconds) and `<waitDURATION>` (a positive Go duration, `<wait1m30s>`).
//! A `<` that does not start one of these is typed; an unknown `<tag>` is typed literally and
//! reported as a [`Warning`], as Packer types it. `\n` and `\t` in the text type Enter and Tab.
//!
//! # kiln extension: `<waitFor "text" [timeout]>`
//! Waits until `text` appears on the guest's serial console before typing on, for at most
//! `timeout` (a Go duration; default [`DEFAULT_WAIT_FOR_TIMEOUT`], 5 minutes), failing the build
//! otherwise. Inside the quotes, `\"` is a quote and `\\` a backslash. The console contract: QEMU
//! writes the serial console to a file (`-serial file:PATH`) and [`SerialWatch`] follows that
//! file from a byte offset; only output after the offset counts, and each match moves the offset
//! past the matched text. Packer does not have this tag: templates using it are kiln-only.

#![warn(missing_docs)]

mod encode;
mod keys;
mod parse;
mod serial;
mod template;
mod transport;
mod typing;
mod vnc;

pub use encode::{
    encode, pcxt_batches, pcxt_scancodes, qmp_events, rfb_key_event, EncodeError, InputSendEvent,
    KeyStroke, PCXT_BATCH,
};
pub use keys::{
    char_keysym, special_key, Layout, LayoutKey, Scancode, SpecialKey, SPECIAL_KEYS, US,
};
pub use parse::{
    parse, parse_duration, parse_go_duration, Action, Key, ParseError, ParseErrorKind, Parsed,
    Position, Press, Warning, DEFAULT_WAIT_FOR_TIMEOUT,
};
pub use serial::{SerialError, SerialWatch};
pub use template::{
    render, render_known, RenderError, Template, TemplateError, TemplateErrorKind, Value,
};
pub use transport::{Transport, QMP_DEFAULT_KEY_INTERVAL};
pub use typing::{type_actions, Batching, KeySink, SinkError, Timing, TimingError, TypeError};
pub use vnc::{RfbVersion, VncError, VncKeyboard, VNC_DEFAULT_KEY_INTERVAL};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn parse_and_encode(s: &str) {
        if let Ok(parsed) = parse(s) {
            for w in &parsed.warnings {
                assert!(s.is_char_boundary(w.position.offset));
            }
            if let Ok(groups) = encode(&parsed.actions, &US) {
                for batch in pcxt_batches(&groups, PCXT_BATCH) {
                    assert!(pcxt_scancodes(&batch).len() <= PCXT_BATCH);
                }
                for strokes in &groups {
                    let _ = serde_json::to_string(&qmp_events(strokes));
                    for s in strokes {
                        let _ = rfb_key_event(s);
                    }
                    let _ = pcxt_scancodes(strokes);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn parse_then_encode_never_panics_on_any_string(s in any::<String>()) {
            parse_and_encode(&s);
        }

        #[test]
        fn parse_then_encode_never_panics_on_tag_like_strings(
            s in r#"([<>"\\ .+-]|wait|For|On|Off|[a-zA-Z0-9µé]|ms|1m|enter|leftShift)*"#
        ) {
            parse_and_encode(&s);
        }

        #[test]
        fn render_never_panics(s in r"([{}. ]|HTTPIP|Name|x|é)*") {
            let values: BTreeMap<String, String> =
                [("HTTPIP".to_string(), "10.0.2.2".to_string())].into_iter().collect();
            let _ = render(&s, &values);
        }

        #[test]
        fn plain_text_round_trips_as_taps(s in "[a-zA-Z0-9 !-;=?-~]*") {
            let parsed = parse(&s).unwrap();
            prop_assert_eq!(parsed.actions.len(), s.chars().count());
        }
    }
}
