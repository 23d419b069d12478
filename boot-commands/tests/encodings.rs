//! One key stream, three encodings: checks the PC-XT (set 1) encoder against Packer's scancode
//! table, transcribed below as data from Packer's PC-XT driver (the table VirtualBox builds use),
//! and that QMP, VNC and PC-XT carry the same key events in the same order for a real
//! `boot_command`. Pure: no VM.

// The helpers below read fixed test data: failing loudly is the point.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use boot_commands::{
    encode, parse, pcxt_batches, pcxt_scancodes, qmp_events, render, rfb_key_event, KeyStroke,
    PCXT_BATCH, SPECIAL_KEYS, US,
};

/// Packer's special keys: lower-case name, make bytes, break bytes.
const PACKER_SPECIALS: &[(&str, &[u8], &[u8])] = &[
    ("bs", &[0x0e], &[0x8e]),
    ("del", &[0xe0, 0x53], &[0xe0, 0xd3]),
    ("down", &[0xe0, 0x50], &[0xe0, 0xd0]),
    ("end", &[0xe0, 0x4f], &[0xe0, 0xcf]),
    ("enter", &[0x1c], &[0x9c]),
    ("esc", &[0x01], &[0x81]),
    ("f1", &[0x3b], &[0xbb]),
    ("f2", &[0x3c], &[0xbc]),
    ("f3", &[0x3d], &[0xbd]),
    ("f4", &[0x3e], &[0xbe]),
    ("f5", &[0x3f], &[0xbf]),
    ("f6", &[0x40], &[0xc0]),
    ("f7", &[0x41], &[0xc1]),
    ("f8", &[0x42], &[0xc2]),
    ("f9", &[0x43], &[0xc3]),
    ("f10", &[0x44], &[0xc4]),
    ("f11", &[0x57], &[0xd7]),
    ("f12", &[0x58], &[0xd8]),
    ("home", &[0xe0, 0x47], &[0xe0, 0xc7]),
    ("insert", &[0xe0, 0x52], &[0xe0, 0xd2]),
    ("left", &[0xe0, 0x4b], &[0xe0, 0xcb]),
    ("leftalt", &[0x38], &[0xb8]),
    ("leftctrl", &[0x1d], &[0x9d]),
    ("leftshift", &[0x2a], &[0xaa]),
    ("leftsuper", &[0xe0, 0x5b], &[0xe0, 0xdb]),
    ("menu", &[0xe0, 0x5d], &[0xe0, 0xdd]),
    ("pagedown", &[0xe0, 0x51], &[0xe0, 0xd1]),
    ("pageup", &[0xe0, 0x49], &[0xe0, 0xc9]),
    ("return", &[0x1c], &[0x9c]),
    ("right", &[0xe0, 0x4d], &[0xe0, 0xcd]),
    ("rightalt", &[0xe0, 0x38], &[0xe0, 0xb8]),
    ("rightctrl", &[0xe0, 0x1d], &[0xe0, 0x9d]),
    ("rightshift", &[0x36], &[0xb6]),
    ("rightsuper", &[0xe0, 0x5c], &[0xe0, 0xdc]),
    ("spacebar", &[0x39], &[0xb9]),
    ("tab", &[0x0f], &[0x8f]),
    ("up", &[0xe0, 0x48], &[0xe0, 0xc8]),
];

/// kiln's macOS-style names, which Packer's PC-XT driver does not have: the PC keys they are.
const ALIASES: &[(&str, &str)] = &[
    ("leftcommand", "leftsuper"),
    ("rightcommand", "rightsuper"),
    ("leftoption", "leftalt"),
    ("rightoption", "rightalt"),
];

/// Packer's character index: each string's characters have consecutive make codes from the
/// given one; the second string of each pair is the same keys with Shift.
const PACKER_CHARS: &[(&str, u8)] = &[
    ("1234567890-=", 0x02),
    ("!@#$%^&*()_+", 0x02),
    ("qwertyuiop[]", 0x10),
    ("QWERTYUIOP{}", 0x10),
    ("asdfghjkl;'`", 0x1e),
    ("ASDFGHJKL:\"~", 0x1e),
    ("\\zxcvbnm,./", 0x2b),
    ("|ZXCVBNM<>?", 0x2b),
    (" ", 0x39),
];

/// Packer's characters typed with Shift (besides upper-case letters).
const PACKER_SHIFTED: &str = "~!@#$%^&*()_+{}|:\"<>?";

const LEFT_SHIFT_MAKE: u8 = 0x2a;
const LEFT_SHIFT_BREAK: u8 = 0xaa;

fn packer_special(name: &str) -> (&'static [u8], &'static [u8]) {
    let lower = name.to_ascii_lowercase();
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == lower)
        .map_or(lower.as_str(), |(_, pc)| pc);
    PACKER_SPECIALS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|&(_, make, brk)| (make, brk))
        .unwrap_or_else(|| panic!("<{name}> is not in Packer's PC-XT table"))
}

/// Packer's bytes for tapping `c`: its make and break, wrapped in Left Shift when shifted.
fn packer_char(c: char) -> Vec<u8> {
    let code = PACKER_CHARS
        .iter()
        .find_map(|(chars, first)| {
            let i = chars.chars().position(|x| x == c)?;
            Some(first + u8::try_from(i).unwrap())
        })
        .unwrap_or_else(|| panic!("{c:?} is not in Packer's PC-XT table"));
    if c.is_ascii_uppercase() || PACKER_SHIFTED.contains(c) {
        vec![LEFT_SHIFT_MAKE, code, code | 0x80, LEFT_SHIFT_BREAK]
    } else {
        vec![code, code | 0x80]
    }
}

fn strokes(cmd: &str) -> Vec<KeyStroke> {
    encode(&parse(cmd).unwrap().actions, &US).unwrap().concat()
}

fn pcxt(cmd: &str) -> Vec<u8> {
    pcxt_scancodes(&strokes(cmd))
}

#[test]
fn every_special_key_matches_packers_scancodes_tapped_held_and_released() {
    for k in SPECIAL_KEYS {
        let (make, brk) = packer_special(k.name);
        assert_eq!(
            pcxt(&format!("<{}>", k.name)),
            [make, brk].concat(),
            "<{}>",
            k.name
        );
        assert_eq!(pcxt(&format!("<{}On>", k.name)), make, "<{}On>", k.name);
        assert_eq!(pcxt(&format!("<{}Off>", k.name)), brk, "<{}Off>", k.name);
    }
    // And every key of Packer's table is one kiln accepts.
    for (name, _, _) in PACKER_SPECIALS {
        assert!(
            SPECIAL_KEYS
                .iter()
                .any(|k| k.name.eq_ignore_ascii_case(name)),
            "<{name}> missing"
        );
    }
}

#[test]
fn every_packer_character_matches_its_scancodes_with_shift_around_shifted_ones() {
    for c in PACKER_CHARS.iter().flat_map(|(chars, _)| chars.chars()) {
        assert_eq!(pcxt(&c.to_string()), packer_char(c), "{c:?}");
    }
    assert_eq!(pcxt("A"), [0x2a, 0x1e, 0x9e, 0xaa]);
    assert_eq!(pcxt("!"), [0x2a, 0x02, 0x82, 0xaa]);
    assert_eq!(pcxt("~"), [0x2a, 0x29, 0xa9, 0xaa]);
    assert_eq!(pcxt("\""), [0x2a, 0x28, 0xa8, 0xaa]);
    // Single-character holds: make only (after Shift) and break only (before Shift's release).
    assert_eq!(pcxt("<aOn>"), [0x1e]);
    assert_eq!(pcxt("<aOff>"), [0x9e]);
    assert_eq!(pcxt("<AOn>"), [0x2a, 0x1e]);
    assert_eq!(pcxt("<AOff>"), [0x9e, 0xaa]);
}

const BOOT_COMMAND: &str = "<esc><wait>install auto=true url=http://{{ .HTTPIP }}:{{ .HTTPPort }}/preseed.cfg Hello! <leftShiftOn>abc<leftShiftOff><f10><enter>";

fn rendered() -> String {
    let values: BTreeMap<String, String> = [("HTTPIP", "10.0.2.2"), ("HTTPPort", "8080")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    render(BOOT_COMMAND, &values).unwrap()
}

/// The command's keys as Packer's table says, one byte group per key typed, split at the wait.
fn packer_keys() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let special = |name| {
        let (make, brk) = packer_special(name);
        [make, brk].concat()
    };
    let before_wait = vec![special("esc")];
    let text = "install auto=true url=http://10.0.2.2:8080/preseed.cfg Hello! ";
    let mut after_wait: Vec<Vec<u8>> = text.chars().map(packer_char).collect();
    // Shift held: the letters are their plain keys, typed inside one Shift make/break.
    after_wait.push(vec![LEFT_SHIFT_MAKE]);
    after_wait.extend("abc".chars().map(packer_char));
    after_wait.push(vec![LEFT_SHIFT_BREAK]);
    after_wait.push(special("f10"));
    after_wait.push(special("enter"));
    (before_wait, after_wait)
}

/// Each event's down flag, read back from the bytes of each encoding.
fn qmp_downs(s: &[KeyStroke]) -> Vec<bool> {
    let v = serde_json::to_value(qmp_events(s)).unwrap();
    let events = v["events"].as_array().unwrap();
    events
        .iter()
        .map(|e| e["data"]["down"].as_bool().unwrap())
        .collect()
}

fn rfb_downs(s: &[KeyStroke]) -> Vec<bool> {
    s.iter().map(|k| rfb_key_event(k)[1] == 1).collect()
}

fn pcxt_downs(bytes: &[u8]) -> Vec<bool> {
    bytes
        .iter()
        .filter(|&&b| b != 0xe0)
        .map(|b| b & 0x80 == 0)
        .collect()
}

#[test]
fn boot_command_in_all_three_encodings() {
    let cmd = rendered();
    let parsed = parse(&cmd).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let groups = encode(&parsed.actions, &US).unwrap();
    let all: Vec<KeyStroke> = groups.concat();

    let (before_wait, after_wait) = packer_keys();
    let packer_stream = [before_wait.concat(), after_wait.concat()].concat();
    assert_eq!(pcxt_scancodes(&all), packer_stream);

    // One event per stroke in every encoding, presses and releases in the same order.
    let qmp = qmp_downs(&all);
    assert_eq!(qmp.len(), all.len());
    assert_eq!(rfb_downs(&all), qmp);
    assert_eq!(pcxt_downs(&packer_stream), qmp);
    let presses = qmp.iter().filter(|d| **d).count();
    assert_eq!(presses * 2, qmp.len(), "every press is released");
}

#[test]
fn boot_command_batches_are_packers_keyboardputscancode_calls() {
    let parsed = parse(&rendered()).unwrap();
    let groups = encode(&parsed.actions, &US).unwrap();
    // The keys between waits: Packer flushes its buffer at each wait.
    let wait_at = 1;
    let calls = |keys: &[Vec<KeyStroke>]| -> Vec<Vec<u8>> {
        pcxt_batches(keys, PCXT_BATCH)
            .iter()
            .map(|b| pcxt_scancodes(b))
            .collect()
    };
    let got = [calls(&groups[..wait_at]), calls(&groups[wait_at + 1..])].concat();

    // Packer's calls: whole keys, a call taking keys while the next one fits in 25 bytes.
    let (before_wait, after_wait) = packer_keys();
    let mut want = vec![before_wait.concat()];
    let mut call: Vec<u8> = Vec::new();
    for key in after_wait {
        if call.len() + key.len() > 25 {
            want.push(std::mem::take(&mut call));
        }
        call.extend(key);
    }
    want.push(call);
    assert_eq!(got, want);
    assert!(got.len() > 3, "the command spans several calls: {got:x?}");
    assert!(got.iter().all(|c| c.len() <= 25));
}
