//! Encoders: turn [`Action`]s into key-down/key-up [`KeyStroke`]s for a layout, then into one of
//! three wire forms: QMP `input-send-event` events (qcodes), RFB `KeyEvent` messages (X11 keysyms)
//! or PC-XT set-1 scancode bytes (VirtualBox's `keyboardputscancode`), which [`pcxt_batches`]
//! splits into the calls Packer's PC-XT driver makes. Pure: no I/O.

use serde::Serialize;

use crate::keys::{char_keysym, Layout, Scancode, LEFT_SHIFT};
use crate::parse::{Action, Key, Press};

/// One key going down or up, with the key's name in each encoding, so every hypervisor types the
/// same stream of strokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStroke {
    /// QEMU `QKeyCode`.
    pub qcode: &'static str,
    /// X11 keysym.
    pub keysym: u32,
    /// PC-XT (set 1) make code; the break code is derived from it.
    pub scancode: Scancode,
    /// Pressed (true) or released.
    pub down: bool,
}

/// A character the layout has no key for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot type {ch:?} with the {layout} keyboard layout; remove it from boot_command or use a layout that has it")]
pub struct EncodeError {
    /// The character.
    pub ch: char,
    /// The layout's name.
    pub layout: &'static str,
}

/// Encodes a whole command: one group of strokes per action (empty for waits), in order. Checks
/// every character before returning, so nothing is typed when one cannot be.
///
/// Shifted characters are wrapped in Shift down/up, as Packer's VNC driver does, unless a Shift
/// key is already held (`<leftShiftOn>`). While Shift is held, a character's keysym is the one its
/// key produces with Shift (`d` gives `D`): VNC servers such as QEMU's treat keysyms as the
/// characters wanted and would otherwise release Shift to type a lowercase `d`.
pub fn encode(actions: &[Action], layout: &Layout) -> Result<Vec<Vec<KeyStroke>>, EncodeError> {
    let mut shifts_held = 0usize;
    actions
        .iter()
        .map(|action| {
            let group = strokes(action, layout, shifts_held > 0)?;
            if let Action::Key {
                key: Key::Special(k),
                press,
            } = action
            {
                if matches!(k.qcode, "shift" | "shift_r") {
                    match press {
                        Press::Down => shifts_held += 1,
                        Press::Up => shifts_held = shifts_held.saturating_sub(1),
                        Press::Tap => {}
                    }
                }
            }
            Ok(group)
        })
        .collect()
}

fn strokes(
    action: &Action,
    layout: &Layout,
    shift_held: bool,
) -> Result<Vec<KeyStroke>, EncodeError> {
    let Action::Key { key, press } = action else {
        return Ok(Vec::new());
    };
    let (qcode, keysym, scancode, shift) = match *key {
        Key::Special(k) => (k.qcode, k.keysym, k.scancode, false),
        Key::Char(ch) => {
            let k = layout.key_for(ch).ok_or(EncodeError {
                ch,
                layout: layout.name,
            })?;
            let shown = if shift_held && !k.shift {
                layout.shifted_char(k.qcode).unwrap_or(ch)
            } else {
                ch
            };
            (
                k.qcode,
                char_keysym(shown),
                k.scancode,
                k.shift && !shift_held,
            )
        }
    };
    let stroke = |down| KeyStroke {
        qcode,
        keysym,
        scancode,
        down,
    };
    let shift_stroke = |down| KeyStroke {
        qcode: LEFT_SHIFT.qcode,
        keysym: LEFT_SHIFT.keysym,
        scancode: LEFT_SHIFT.scancode,
        down,
    };
    let mut out = Vec::with_capacity(4);
    if shift && *press != Press::Up {
        out.push(shift_stroke(true));
    }
    match press {
        Press::Tap => out.extend([stroke(true), stroke(false)]),
        Press::Down => out.push(stroke(true)),
        Press::Up => out.push(stroke(false)),
    }
    if shift && *press != Press::Down {
        out.push(shift_stroke(false));
    }
    Ok(out)
}

/// An `InputEvent` of QMP's `input-send-event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub enum QmpInputEvent {
    /// A keyboard event.
    Key(QmpKeyEvent),
}

/// QMP `InputKeyEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QmpKeyEvent {
    /// The key.
    pub key: QmpKeyValue,
    /// Pressed or released.
    pub down: bool,
}

/// QMP `KeyValue`: kiln always names keys by qcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data", rename_all = "lowercase")]
pub enum QmpKeyValue {
    /// A `QKeyCode` name.
    Qcode(&'static str),
}

/// Arguments of QMP `input-send-event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputSendEvent {
    /// The events, applied in order.
    pub events: Vec<QmpInputEvent>,
}

/// Encodes strokes as the arguments of one QMP `input-send-event`.
pub fn qmp_events(strokes: &[KeyStroke]) -> InputSendEvent {
    InputSendEvent {
        events: strokes
            .iter()
            .map(|s| {
                QmpInputEvent::Key(QmpKeyEvent {
                    key: QmpKeyValue::Qcode(s.qcode),
                    down: s.down,
                })
            })
            .collect(),
    }
}

/// Encodes a stroke as an RFB `KeyEvent` client message (RFC 6143 §7.5.4).
pub fn rfb_key_event(stroke: &KeyStroke) -> [u8; 8] {
    let k = stroke.keysym.to_be_bytes();
    [4, u8::from(stroke.down), 0, 0, k[0], k[1], k[2], k[3]]
}

/// Encodes strokes as PC-XT (scan code set 1) bytes: an extended key's `e0` prefix, then the make
/// code for a key going down or the break code (make | 0x80) for a key going up. Shifted
/// characters are already wrapped in Left Shift make/break by [`encode`].
pub fn pcxt_scancodes(strokes: &[KeyStroke]) -> Vec<u8> {
    let mut out = Vec::with_capacity(strokes.len() * 2);
    for s in strokes {
        let [prefix, code] = s.scancode.to_be_bytes();
        if prefix != 0 {
            out.push(prefix);
        }
        out.push(if s.down { code } else { code | 0x80 });
    }
    out
}

/// Packer's batch for VirtualBox: at most 25 scancode bytes per `keyboardputscancode` call.
pub const PCXT_BATCH: usize = 25;

/// Splits key groups (one per key typed, as [`encode`] returns them; the keys between two waits)
/// into the strokes of successive sends of at most `max_bytes` PC-XT bytes each, as Packer's PC-XT
/// driver does: a key's strokes always go in one send, so a guest never sees half a key, and a send
/// takes keys while the next one fits. A single key wider than `max_bytes` (never from [`encode`]:
/// a key is at most 4 bytes) goes alone in its own send instead of failing.
pub fn pcxt_batches(groups: &[Vec<KeyStroke>], max_bytes: usize) -> Vec<Vec<KeyStroke>> {
    let mut batches: Vec<Vec<KeyStroke>> = Vec::new();
    let mut current: Vec<KeyStroke> = Vec::new();
    let mut width = 0;
    for group in groups.iter().filter(|g| !g.is_empty()) {
        let w = pcxt_scancodes(group).len();
        if !current.is_empty() && width + w > max_bytes {
            batches.push(std::mem::take(&mut current));
            width = 0;
        }
        current.extend_from_slice(group);
        width += w;
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{special_key, US};
    use crate::parse::parse;

    fn all(s: &str) -> Vec<KeyStroke> {
        encode(&parse(s).unwrap().actions, &US).unwrap().concat()
    }

    fn names(s: &str) -> Vec<(String, bool)> {
        all(s)
            .iter()
            .map(|k| (k.qcode.to_string(), k.down))
            .collect()
    }

    fn n(q: &str, down: bool) -> (String, bool) {
        (q.to_string(), down)
    }

    #[test]
    fn plain_and_shifted_characters() {
        assert_eq!(names("a"), vec![n("a", true), n("a", false)]);
        assert_eq!(
            names("A"),
            vec![
                n("shift", true),
                n("a", true),
                n("a", false),
                n("shift", false)
            ]
        );
        let ks: Vec<u32> = all("A~").iter().map(|k| k.keysym).collect();
        assert_eq!(
            ks,
            vec![0xffe1, 0x41, 0x41, 0xffe1, 0xffe1, 0x7e, 0x7e, 0xffe1]
        );
    }

    #[test]
    fn holds_and_chords() {
        assert_eq!(
            names("<leftCtrlOn>c<leftCtrlOff>"),
            vec![
                n("ctrl", true),
                n("c", true),
                n("c", false),
                n("ctrl", false)
            ]
        );
        assert_eq!(names("<AOn>"), vec![n("shift", true), n("a", true)]);
        assert_eq!(names("<AOff>"), vec![n("a", false), n("shift", false)]);
    }

    #[test]
    fn held_shift_shifts_keysyms_and_is_not_pressed_again() {
        let s = all("<leftShiftOn>d1D<leftShiftOff>d");
        let qk: Vec<(&str, u32, bool)> = s.iter().map(|k| (k.qcode, k.keysym, k.down)).collect();
        assert_eq!(
            qk,
            vec![
                ("shift", 0xffe1, true),
                ("d", 0x44, true),
                ("d", 0x44, false),
                ("1", 0x21, true),
                ("1", 0x21, false),
                ("d", 0x44, true),
                ("d", 0x44, false),
                ("shift", 0xffe1, false),
                ("d", 0x64, true),
                ("d", 0x64, false),
            ]
        );
    }

    #[test]
    fn every_special_key_encodes_both_ways() {
        for k in crate::keys::SPECIAL_KEYS {
            let s = all(&format!("<{}>", k.name));
            assert_eq!(s.len(), 2);
            assert_eq!(
                (s[0].qcode, s[0].keysym, s[0].down),
                (k.qcode, k.keysym, true)
            );
            assert!(!s[1].down);
        }
        assert_eq!(special_key("f12").map(|k| k.keysym), Some(0xffc9));
    }

    #[test]
    fn waits_have_no_strokes_and_unknown_chars_fail() {
        assert!(all("<wait>").is_empty());
        let a = parse("aé").unwrap().actions;
        let e = encode(&a, &US).unwrap_err();
        assert_eq!(e.ch, 'é');
        assert!(e.to_string().contains("en-us"));
    }

    #[test]
    fn qmp_json_shape() {
        let v = serde_json::to_value(qmp_events(&all("a"))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"events": [
                {"type": "key", "data": {"key": {"type": "qcode", "data": "a"}, "down": true}},
                {"type": "key", "data": {"key": {"type": "qcode", "data": "a"}, "down": false}},
            ]})
        );
    }

    #[test]
    fn pcxt_batches_fill_up_to_the_limit_exactly() {
        // Shift make (1 byte) and 12 plain keys (24) make exactly 25: one call; the release next.
        let groups = encode(
            &parse("<leftShiftOn>aaaaaaaaaaaa<leftShiftOff>")
                .unwrap()
                .actions,
            &US,
        )
        .unwrap();
        let calls: Vec<Vec<u8>> = pcxt_batches(&groups, PCXT_BATCH)
            .iter()
            .map(|b| pcxt_scancodes(b))
            .collect();
        let mut first = vec![0x2a];
        first.extend([0x1e, 0x9e].repeat(12));
        assert_eq!(calls, vec![first, vec![0xaa]]);
    }

    #[test]
    fn pcxt_key_wider_than_the_limit_goes_alone_whole() {
        let groups = encode(&parse("aAa").unwrap().actions, &US).unwrap();
        let calls: Vec<Vec<u8>> = pcxt_batches(&groups, 3)
            .iter()
            .map(|b| pcxt_scancodes(b))
            .collect();
        assert_eq!(
            calls,
            vec![
                vec![0x1e, 0x9e],
                vec![0x2a, 0x1e, 0x9e, 0xaa],
                vec![0x1e, 0x9e]
            ]
        );
    }

    #[test]
    fn rfb_message_bytes() {
        let s = all("<enter>");
        assert_eq!(rfb_key_event(&s[0]), [4, 1, 0, 0, 0, 0, 0xff, 0x0d]);
        assert_eq!(rfb_key_event(&s[1]), [4, 0, 0, 0, 0, 0, 0xff, 0x0d]);
    }
}
