//! Encoders: turn [`Action`]s into key-down/key-up [`KeyStroke`]s for a layout, then into QMP
//! `input-send-event` events (qcodes) or RFB `KeyEvent` messages (X11 keysyms). Pure: no I/O.

use serde::Serialize;

use crate::keys::{char_keysym, Layout, LEFT_SHIFT};
use crate::parse::{Action, Key, Press};

/// One key going down or up, with both the QMP and the RFB name of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyStroke {
    /// QEMU `QKeyCode`.
    pub qcode: &'static str,
    /// X11 keysym.
    pub keysym: u32,
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
    let (qcode, keysym, shift) = match *key {
        Key::Special(k) => (k.qcode, k.keysym, false),
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
            (k.qcode, char_keysym(shown), k.shift && !shift_held)
        }
    };
    let stroke = |down| KeyStroke {
        qcode,
        keysym,
        down,
    };
    let shift_stroke = |down| KeyStroke {
        qcode: LEFT_SHIFT.qcode,
        keysym: LEFT_SHIFT.keysym,
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
    fn rfb_message_bytes() {
        let s = all("<enter>");
        assert_eq!(rfb_key_event(&s[0]), [4, 1, 0, 0, 0, 0, 0xff, 0x0d]);
        assert_eq!(rfb_key_event(&s[1]), [4, 0, 0, 0, 0, 0, 0xff, 0x0d]);
    }
}
