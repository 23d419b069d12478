//! The QEMU builder's two ways of typing the boot command, QMP and VNC, and each one's default
//! key interval. Other hypervisors bring their own [`KeySink`](crate::KeySink) instead.

use std::time::Duration;

use crate::vnc::VNC_DEFAULT_KEY_INTERVAL;

/// kiln's QMP default: 20 ms after each key event, five times faster than Packer's VNC pace.
///
/// Why not zero: QEMU does not pace `input-send-event` keys for the guest; its PS/2 keyboard holds
/// 16 scancode bytes and the BIOS buffer 15 keys, and keys beyond that are dropped whenever the
/// guest's vCPU, starved by a loaded host under TCG, does not drain them in time. So the safe pace
/// depends on host load, not on QEMU. Measured by typing the 250-character printable-ASCII command
/// into the boot-echo fixture's isolinux prompt (TCG, 2 cores shared with other builds;
/// `type_bench qmp INTERVAL N`), runs with the text intact, and seconds to type it:
/// - one guest at a time: 0 ms 1/3 (0.6 s), 1 ms 3/3 (2.3 s), 2 ms 8/9 (3.3 s), 5 ms 9/9 (5.8 s),
///   10 ms 6/6 (10 s);
/// - three guests typing at once: 10 ms 8/9 (11 s), 20 ms 9/9 (20–26 s), 30 ms 9/9 (30 s).
///
/// 20 ms is the smallest interval that never lost a key under that load. It is not a guarantee:
/// 1100 keys at 20 ms lost 4 once while a C++ build also ran (load average above 9 on 2 cores),
/// and arrived intact without it; set `boot_key_interval` or `PACKER_KEY_INTERVAL` on busier hosts.
pub const QMP_DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(20);

/// How QEMU's boot command is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QMP `input-send-event` (kiln's default for QEMU).
    Qmp,
    /// RFB key events (Packer's only way for QEMU).
    Vnc,
}

impl Transport {
    /// The transport's key interval when neither `PACKER_KEY_INTERVAL` nor `boot_key_interval` is
    /// set: what its sink declares as [`KeySink::DEFAULT_KEY_INTERVAL`](crate::KeySink).
    pub fn default_key_interval(self) -> Duration {
        match self {
            Transport::Qmp => QMP_DEFAULT_KEY_INTERVAL,
            Transport::Vnc => VNC_DEFAULT_KEY_INTERVAL,
        }
    }
}
