//! The QEMU builder's two ways of typing the boot command, QMP and VNC, and each one's default
//! key interval. Other hypervisors bring their own [`KeySink`](crate::KeySink) instead.

use std::time::Duration;

use crate::qmp::QMP_DEFAULT_KEY_INTERVAL;
use crate::vnc::VNC_DEFAULT_KEY_INTERVAL;

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
