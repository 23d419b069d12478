//! The key tables: Packer's special key names with their QMP qcodes and X11 keysyms, and keyboard
//! layouts (which key, shifted or not, types a character). Data only; the parser and encoders read it.

/// A named key that is not a character: `<enter>`, `<f5>`, `<leftCtrl>`…
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialKey {
    /// The canonical Packer name as written in the docs (matched case-insensitively).
    pub name: &'static str,
    /// QEMU's `QKeyCode` for `input-send-event`.
    pub qcode: &'static str,
    /// X11 keysym sent in an RFB `KeyEvent`.
    pub keysym: u32,
}

const fn special(name: &'static str, qcode: &'static str, keysym: u32) -> SpecialKey {
    SpecialKey {
        name,
        qcode,
        keysym,
    }
}

/// Every special key Packer accepts. `return` is `enter`; the macOS names (`Command`, `Option`) are
/// the Super and Alt keys of a PC keyboard.
pub const SPECIAL_KEYS: &[SpecialKey] = &[
    special("bs", "backspace", 0xff08),
    special("del", "delete", 0xffff),
    special("enter", "ret", 0xff0d),
    special("return", "ret", 0xff0d),
    special("esc", "esc", 0xff1b),
    special("tab", "tab", 0xff09),
    special("spacebar", "spc", 0x0020),
    special("insert", "insert", 0xff63),
    special("home", "home", 0xff50),
    special("end", "end", 0xff57),
    special("pageUp", "pgup", 0xff55),
    special("pageDown", "pgdn", 0xff56),
    special("left", "left", 0xff51),
    special("up", "up", 0xff52),
    special("right", "right", 0xff53),
    special("down", "down", 0xff54),
    special("menu", "menu", 0xff67),
    special("f1", "f1", 0xffbe),
    special("f2", "f2", 0xffbf),
    special("f3", "f3", 0xffc0),
    special("f4", "f4", 0xffc1),
    special("f5", "f5", 0xffc2),
    special("f6", "f6", 0xffc3),
    special("f7", "f7", 0xffc4),
    special("f8", "f8", 0xffc5),
    special("f9", "f9", 0xffc6),
    special("f10", "f10", 0xffc7),
    special("f11", "f11", 0xffc8),
    special("f12", "f12", 0xffc9),
    special("leftAlt", "alt", 0xffe9),
    special("rightAlt", "alt_r", 0xffea),
    special("leftCtrl", "ctrl", 0xffe3),
    special("rightCtrl", "ctrl_r", 0xffe4),
    special("leftShift", "shift", 0xffe1),
    special("rightShift", "shift_r", 0xffe2),
    special("leftSuper", "meta_l", 0xffeb),
    special("rightSuper", "meta_r", 0xffec),
    special("leftCommand", "meta_l", 0xffeb),
    special("rightCommand", "meta_r", 0xffec),
    special("leftOption", "alt", 0xffe9),
    special("rightOption", "alt_r", 0xffea),
];

/// The key layouts use to hold Shift for a shifted character.
pub const LEFT_SHIFT: SpecialKey = special("leftShift", "shift", 0xffe1);

/// Looks a special key up by name, ignoring ASCII case as Packer does.
pub fn special_key(name: &str) -> Option<SpecialKey> {
    SPECIAL_KEYS
        .iter()
        .find(|k| k.name.eq_ignore_ascii_case(name))
        .copied()
}

/// How a layout types one character: the key (by qcode) and whether Shift is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutKey {
    /// QEMU `QKeyCode` of the physical key.
    pub qcode: &'static str,
    /// Whether Shift must be held while pressing it.
    pub shift: bool,
}

/// A keyboard layout: a table from character to key. Add a layout by adding a table.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Short name, as QEMU's `-k` option spells it.
    pub name: &'static str,
    /// `(character, qcode, shift)` rows.
    pub table: &'static [(char, &'static str, bool)],
}

impl Layout {
    /// The key that types `c`, or `None` when this layout cannot type it.
    pub fn key_for(&self, c: char) -> Option<LayoutKey> {
        self.table
            .iter()
            .find(|(ch, _, _)| *ch == c)
            .map(|&(_, qcode, shift)| LayoutKey { qcode, shift })
    }

    /// The character the key `qcode` types with Shift held, if the layout has one.
    pub fn shifted_char(&self, qcode: &str) -> Option<char> {
        self.table
            .iter()
            .find(|&&(_, q, shift)| shift && q == qcode)
            .map(|&(c, _, _)| c)
    }
}

/// The US layout. `\n` and `\t` type Enter and Tab, so multi-line template strings work.
#[rustfmt::skip]
pub const US: Layout = Layout {
    name: "en-us",
    table: &[
        ('a', "a", false), ('b', "b", false), ('c', "c", false), ('d', "d", false),
        ('e', "e", false), ('f', "f", false), ('g', "g", false), ('h', "h", false),
        ('i', "i", false), ('j', "j", false), ('k', "k", false), ('l', "l", false),
        ('m', "m", false), ('n', "n", false), ('o', "o", false), ('p', "p", false),
        ('q', "q", false), ('r', "r", false), ('s', "s", false), ('t', "t", false),
        ('u', "u", false), ('v', "v", false), ('w', "w", false), ('x', "x", false),
        ('y', "y", false), ('z', "z", false),
        ('A', "a", true), ('B', "b", true), ('C', "c", true), ('D', "d", true),
        ('E', "e", true), ('F', "f", true), ('G', "g", true), ('H', "h", true),
        ('I', "i", true), ('J', "j", true), ('K', "k", true), ('L', "l", true),
        ('M', "m", true), ('N', "n", true), ('O', "o", true), ('P', "p", true),
        ('Q', "q", true), ('R', "r", true), ('S', "s", true), ('T', "t", true),
        ('U', "u", true), ('V', "v", true), ('W', "w", true), ('X', "x", true),
        ('Y', "y", true), ('Z', "z", true),
        ('0', "0", false), ('1', "1", false), ('2', "2", false), ('3', "3", false),
        ('4', "4", false), ('5', "5", false), ('6', "6", false), ('7', "7", false),
        ('8', "8", false), ('9', "9", false),
        (')', "0", true), ('!', "1", true), ('@', "2", true), ('#', "3", true),
        ('$', "4", true), ('%', "5", true), ('^', "6", true), ('&', "7", true),
        ('*', "8", true), ('(', "9", true),
        (' ', "spc", false), ('-', "minus", false), ('_', "minus", true),
        ('=', "equal", false), ('+', "equal", true), ('[', "bracket_left", false),
        ('{', "bracket_left", true), (']', "bracket_right", false), ('}', "bracket_right", true),
        ('\\', "backslash", false), ('|', "backslash", true), (';', "semicolon", false),
        (':', "semicolon", true), ('\'', "apostrophe", false), ('"', "apostrophe", true),
        ('`', "grave_accent", false), ('~', "grave_accent", true), (',', "comma", false),
        ('<', "comma", true), ('.', "dot", false), ('>', "dot", true), ('/', "slash", false),
        ('?', "slash", true), ('\n', "ret", false), ('\t', "tab", false),
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
        for (c, _, _) in US.table {
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
