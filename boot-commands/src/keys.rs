//! The key tables: Packer's special key names with their QMP qcodes, X11 keysyms and PC-XT (set 1)
//! scancodes, and keyboard layouts (which key, shifted or not, types a character). Data only; the
//! parser and encoders read it.

/// A named key that is not a character: `<enter>`, `<f5>`, `<leftCtrl>`…
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialKey {
    /// The canonical Packer name as written in the docs (matched case-insensitively).
    pub name: &'static str,
    /// QEMU's `QKeyCode` for `input-send-event`.
    pub qcode: &'static str,
    /// X11 keysym sent in an RFB `KeyEvent`.
    pub keysym: u32,
    /// PC-XT (set 1) make code; see [`Scancode`].
    pub scancode: Scancode,
}

/// A PC-XT (scan code set 1) make code, as VirtualBox's `keyboardputscancode` takes: the low byte
/// is the code, and extended keys (arrows, Home, right Ctrl…) carry their `e0` prefix in the high
/// byte (`0xe04b` is Left, sent as `e0 4b`). The break code is the make code with bit 7 set.
pub type Scancode = u16;

const fn special(
    name: &'static str,
    qcode: &'static str,
    keysym: u32,
    scancode: Scancode,
) -> SpecialKey {
    SpecialKey {
        name,
        qcode,
        keysym,
        scancode,
    }
}

/// Every special key Packer accepts. `return` is `enter`; the macOS names (`Command`, `Option`) are
/// the Super and Alt keys of a PC keyboard.
pub const SPECIAL_KEYS: &[SpecialKey] = &[
    special("bs", "backspace", 0xff08, 0x0e),
    special("del", "delete", 0xffff, 0xe053),
    special("enter", "ret", 0xff0d, 0x1c),
    special("return", "ret", 0xff0d, 0x1c),
    special("esc", "esc", 0xff1b, 0x01),
    special("tab", "tab", 0xff09, 0x0f),
    special("spacebar", "spc", 0x0020, 0x39),
    special("insert", "insert", 0xff63, 0xe052),
    special("home", "home", 0xff50, 0xe047),
    special("end", "end", 0xff57, 0xe04f),
    special("pageUp", "pgup", 0xff55, 0xe049),
    special("pageDown", "pgdn", 0xff56, 0xe051),
    special("left", "left", 0xff51, 0xe04b),
    special("up", "up", 0xff52, 0xe048),
    special("right", "right", 0xff53, 0xe04d),
    special("down", "down", 0xff54, 0xe050),
    special("menu", "menu", 0xff67, 0xe05d),
    special("f1", "f1", 0xffbe, 0x3b),
    special("f2", "f2", 0xffbf, 0x3c),
    special("f3", "f3", 0xffc0, 0x3d),
    special("f4", "f4", 0xffc1, 0x3e),
    special("f5", "f5", 0xffc2, 0x3f),
    special("f6", "f6", 0xffc3, 0x40),
    special("f7", "f7", 0xffc4, 0x41),
    special("f8", "f8", 0xffc5, 0x42),
    special("f9", "f9", 0xffc6, 0x43),
    special("f10", "f10", 0xffc7, 0x44),
    special("f11", "f11", 0xffc8, 0x57),
    special("f12", "f12", 0xffc9, 0x58),
    special("leftAlt", "alt", 0xffe9, 0x38),
    special("rightAlt", "alt_r", 0xffea, 0xe038),
    special("leftCtrl", "ctrl", 0xffe3, 0x1d),
    special("rightCtrl", "ctrl_r", 0xffe4, 0xe01d),
    special("leftShift", "shift", 0xffe1, 0x2a),
    special("rightShift", "shift_r", 0xffe2, 0x36),
    special("leftSuper", "meta_l", 0xffeb, 0xe05b),
    special("rightSuper", "meta_r", 0xffec, 0xe05c),
    // The Mac names follow Packer per transport: over VNC (and so over QMP, which stands in
    // for Packer's VNC typing on QEMU) Command is Alt and Option is Meta, as Packer's VNC driver
    // sends them (checked against macOS's VNC server); as PC-XT scancodes Command is the
    // Windows key and Option is Alt, as Packer's VirtualBox driver sends them.
    special("leftCommand", "alt", 0xffe9, 0xe05b),
    special("rightCommand", "alt_r", 0xffea, 0xe05c),
    special("leftOption", "meta_l", 0xffe7, 0x38),
    special("rightOption", "meta_r", 0xffe8, 0xe038),
];

/// The key layouts use to hold Shift for a shifted character.
pub const LEFT_SHIFT: SpecialKey = special("leftShift", "shift", 0xffe1, 0x2a);

/// Looks a special key up by name, ignoring ASCII case as Packer does.
pub fn special_key(name: &str) -> Option<SpecialKey> {
    SPECIAL_KEYS
        .iter()
        .find(|k| k.name.eq_ignore_ascii_case(name))
        .copied()
}

/// How a layout types one character: the key (by qcode and scancode) and whether Shift is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutKey {
    /// QEMU `QKeyCode` of the physical key.
    pub qcode: &'static str,
    /// PC-XT (set 1) make code of the same key.
    pub scancode: Scancode,
    /// Whether Shift must be held while pressing it.
    pub shift: bool,
}

/// A keyboard layout: a table from character to key. Add a layout by adding a table.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Short name, as QEMU's `-k` option spells it.
    pub name: &'static str,
    /// `(character, qcode, PC-XT scancode, shift)` rows.
    pub table: &'static [(char, &'static str, Scancode, bool)],
}

impl Layout {
    /// The key that types `c`, or `None` when this layout cannot type it.
    pub fn key_for(&self, c: char) -> Option<LayoutKey> {
        self.table
            .iter()
            .find(|(ch, ..)| *ch == c)
            .map(|&(_, qcode, scancode, shift)| LayoutKey {
                qcode,
                scancode,
                shift,
            })
    }

    /// The character the key `qcode` types with Shift held, if the layout has one.
    pub fn shifted_char(&self, qcode: &str) -> Option<char> {
        self.table
            .iter()
            .find(|&&(_, q, _, shift)| shift && q == qcode)
            .map(|&(c, ..)| c)
    }
}

/// The US layout. `\n` and `\t` type Enter and Tab, so multi-line template strings work.
#[rustfmt::skip]
pub const US: Layout = Layout {
    name: "en-us",
    table: &[
        ('a', "a", 0x1e, false), ('b', "b", 0x30, false), ('c', "c", 0x2e, false),
        ('d', "d", 0x20, false), ('e', "e", 0x12, false), ('f', "f", 0x21, false),
        ('g', "g", 0x22, false), ('h', "h", 0x23, false), ('i', "i", 0x17, false),
        ('j', "j", 0x24, false), ('k', "k", 0x25, false), ('l', "l", 0x26, false),
        ('m', "m", 0x32, false), ('n', "n", 0x31, false), ('o', "o", 0x18, false),
        ('p', "p", 0x19, false), ('q', "q", 0x10, false), ('r', "r", 0x13, false),
        ('s', "s", 0x1f, false), ('t', "t", 0x14, false), ('u', "u", 0x16, false),
        ('v', "v", 0x2f, false), ('w', "w", 0x11, false), ('x', "x", 0x2d, false),
        ('y', "y", 0x15, false), ('z', "z", 0x2c, false), ('A', "a", 0x1e, true),
        ('B', "b", 0x30, true), ('C', "c", 0x2e, true), ('D', "d", 0x20, true),
        ('E', "e", 0x12, true), ('F', "f", 0x21, true), ('G', "g", 0x22, true),
        ('H', "h", 0x23, true), ('I', "i", 0x17, true), ('J', "j", 0x24, true),
        ('K', "k", 0x25, true), ('L', "l", 0x26, true), ('M', "m", 0x32, true),
        ('N', "n", 0x31, true), ('O', "o", 0x18, true), ('P', "p", 0x19, true),
        ('Q', "q", 0x10, true), ('R', "r", 0x13, true), ('S', "s", 0x1f, true),
        ('T', "t", 0x14, true), ('U', "u", 0x16, true), ('V', "v", 0x2f, true),
        ('W', "w", 0x11, true), ('X', "x", 0x2d, true), ('Y', "y", 0x15, true),
        ('Z', "z", 0x2c, true), ('0', "0", 0x0b, false), ('1', "1", 0x02, false),
        ('2', "2", 0x03, false), ('3', "3", 0x04, false), ('4', "4", 0x05, false),
        ('5', "5", 0x06, false), ('6', "6", 0x07, false), ('7', "7", 0x08, false),
        ('8', "8", 0x09, false), ('9', "9", 0x0a, false), (')', "0", 0x0b, true),
        ('!', "1", 0x02, true), ('@', "2", 0x03, true), ('#', "3", 0x04, true),
        ('$', "4", 0x05, true), ('%', "5", 0x06, true), ('^', "6", 0x07, true),
        ('&', "7", 0x08, true), ('*', "8", 0x09, true), ('(', "9", 0x0a, true),
        (' ', "spc", 0x39, false), ('-', "minus", 0x0c, false), ('_', "minus", 0x0c, true),
        ('=', "equal", 0x0d, false), ('+', "equal", 0x0d, true),
        ('[', "bracket_left", 0x1a, false), ('{', "bracket_left", 0x1a, true),
        (']', "bracket_right", 0x1b, false), ('}', "bracket_right", 0x1b, true),
        ('\\', "backslash", 0x2b, false), ('|', "backslash", 0x2b, true),
        (';', "semicolon", 0x27, false), (':', "semicolon", 0x27, true),
        ('\'', "apostrophe", 0x28, false), ('"', "apostrophe", 0x28, true),
        ('`', "grave_accent", 0x29, false), ('~', "grave_accent", 0x29, true),
        (',', "comma", 0x33, false), ('<', "comma", 0x33, true), ('.', "dot", 0x34, false),
        ('>', "dot", 0x34, true), ('/', "slash", 0x35, false), ('?', "slash", 0x35, true),
        ('\n', "ret", 0x1c, false), ('\t', "tab", 0x0f, false),
    ],
};

/// The X11 keysym of a character: Latin-1 characters are their own keysym, control characters
/// that have keys map to those keys, everything else uses the Unicode keysym range.
pub fn char_keysym(c: char) -> u32 {
    match c {
        '\n' => 0xff0d,
        '\t' => 0xff09,
        ' '..='~' | '\u{a0}'..='\u{ff}' => u32::from(c),
        _ => 0x0100_0000 + u32::from(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn us_layout_types_every_printable_ascii_character() {
        for b in 0x20u8..=0x7e {
            let c = char::from(b);
            assert!(US.key_for(c).is_some(), "no key for {c:?}");
        }
    }

    #[test]
    fn us_layout_has_no_duplicate_characters() {
        let mut seen = std::collections::BTreeSet::new();
        for (c, ..) in US.table {
            assert!(seen.insert(*c), "{c:?} twice");
        }
    }

    #[test]
    fn special_names_are_case_insensitive_and_unique() {
        assert_eq!(special_key("PAGEUP").map(|k| k.qcode), Some("pgup"));
        assert_eq!(special_key("leftctrl").map(|k| k.qcode), Some("ctrl"));
        assert!(special_key("f13").is_none());
        let mut seen = std::collections::BTreeSet::new();
        for k in SPECIAL_KEYS {
            assert!(seen.insert(k.name.to_ascii_lowercase()));
        }
    }

    #[test]
    fn one_scancode_per_qcode_across_all_tables() {
        // The same physical key must send the same scancode whichever table names it, so the
        // PC-XT encoder types what the QMP and VNC encoders type.
        let mut by_qcode = std::collections::BTreeMap::new();
        let rows = US.table.iter().map(|&(_, q, sc, _)| (q, sc));
        // Not the Mac names: Packer's own drivers disagree on them (see SPECIAL_KEYS).
        let specials = SPECIAL_KEYS
            .iter()
            .filter(|k| !k.name.ends_with("Command") && !k.name.ends_with("Option"))
            .map(|k| (k.qcode, k.scancode));
        for (q, sc) in rows.chain(specials) {
            assert_eq!(*by_qcode.entry(q).or_insert(sc), sc, "{q}");
        }
    }

    /// Packer's VNC driver sends Command as Alt and Option as Meta; its PC-XT driver sends
    /// Command as the Windows key and Option as Alt.
    #[test]
    fn mac_keys_are_what_packers_driver_for_each_transport_sends() {
        let k = |n| special_key(n).unwrap();
        let alt = k("leftAlt");
        let sup = k("leftSuper");
        assert_eq!(
            (k("leftCommand").keysym, k("leftCommand").qcode),
            (alt.keysym, alt.qcode)
        );
        assert_eq!(k("leftCommand").scancode, sup.scancode);
        assert_eq!(
            (k("rightCommand").keysym, k("rightCommand").scancode),
            (0xffea, k("rightSuper").scancode)
        );
        assert_eq!(
            (k("leftOption").keysym, k("leftOption").qcode),
            (0xffe7, "meta_l")
        );
        assert_eq!(k("leftOption").scancode, alt.scancode);
        assert_eq!(
            (k("rightOption").keysym, k("rightOption").scancode),
            (0xffe8, k("rightAlt").scancode)
        );
    }

    #[test]
    fn shifted_characters_by_key() {
        assert_eq!(US.shifted_char("a"), Some('A'));
        assert_eq!(US.shifted_char("2"), Some('@'));
        assert_eq!(US.shifted_char("ret"), None);
    }

    #[test]
    fn keysyms_of_characters() {
        assert_eq!(char_keysym('a'), 0x61);
        assert_eq!(char_keysym('~'), 0x7e);
        assert_eq!(char_keysym('\n'), 0xff0d);
        assert_eq!(char_keysym('é'), 0xe9);
        assert_eq!(char_keysym('€'), 0x0100_20ac);
    }
}
