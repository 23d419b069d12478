//! The typing driver: sends parsed [`Action`]s to a [`KeySink`] (QMP or VNC) with Packer's timing,
//! sleeps for `<wait>`s, waits on the serial console for `<waitFor>`, and stops on cancellation.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::encode::{encode, EncodeError, KeyStroke};
use crate::keys::Layout;
use crate::parse::{parse_duration, Action, DEFAULT_WAIT_FOR_TIMEOUT};
use crate::qmp::QmpError;
use crate::serial::{SerialError, SerialWatch};
use crate::vnc::VncError;

/// Something that presses keys in the guest.
#[async_trait::async_trait]
pub trait KeySink: Send {
    /// Sends the strokes in order, without pausing between them.
    async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError>;
}

/// A transport failure while typing.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Over QMP.
    #[error("typing over QMP failed")]
    Qmp(#[from] QmpError),
    /// Over VNC.
    #[error("typing over VNC failed")]
    Vnc(#[from] VncError),
}

/// How the boot command is typed; each has its own default key interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QMP `input-send-event` (kiln's default for QEMU).
    Qmp,
    /// RFB key events (Packer's only way for QEMU).
    Vnc,
}

/// Pauses between key events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// After each key-down or key-up event (`boot_key_interval`).
    pub key_interval: Duration,
    /// After each key, shifted or not, and each chord part (`boot_keygroup_interval`).
    pub keygroup_interval: Duration,
}

/// Packer's VNC default: 100 ms after every key event.
pub const VNC_DEFAULT_KEY_INTERVAL: Duration = Duration::from_millis(100);

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

/// A `PACKER_KEY_INTERVAL` value that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PACKER_KEY_INTERVAL={0:?} is not a duration; use a value such as 50ms, or unset it")]
pub struct TimingError(pub String);

impl Timing {
    /// Resolves the timing as Packer does: the transport's default, overridden by the
    /// `PACKER_KEY_INTERVAL` environment value (passed in by the caller), then by
    /// `boot_key_interval`. `boot_keygroup_interval` defaults to zero.
    pub fn resolve(
        transport: Transport,
        packer_key_interval: Option<&str>,
        boot_key_interval: Option<Duration>,
        boot_keygroup_interval: Option<Duration>,
    ) -> Result<Timing, TimingError> {
        let mut key_interval = match transport {
            Transport::Qmp => QMP_DEFAULT_KEY_INTERVAL,
            Transport::Vnc => VNC_DEFAULT_KEY_INTERVAL,
        };
        if let Some(env) = packer_key_interval.filter(|v| !v.is_empty()) {
            key_interval = parse_duration(env).ok_or_else(|| TimingError(env.to_string()))?;
        }
        Ok(Timing {
            key_interval: boot_key_interval.unwrap_or(key_interval),
            keygroup_interval: boot_keygroup_interval.unwrap_or(Duration::ZERO),
        })
    }
}

/// Why typing stopped.
#[derive(Debug, thiserror::Error)]
pub enum TypeError {
    /// A character the layout cannot type (checked before any key is sent).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The transport failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// `<waitFor>` failed.
    #[error(transparent)]
    Serial(#[from] SerialError),
    /// `<waitFor>` was used without a serial console.
    #[error("boot_command uses <waitFor> but the guest has no serial console file to watch")]
    NoSerial,
    /// The build was cancelled.
    #[error("typing the boot command was cancelled")]
    Cancelled,
}

/// Types `actions` into `sink`. Every character is checked against `layout` before the first key
/// is sent, so a bad character fails the build without typing half a command.
pub async fn type_actions(
    actions: &[Action],
    layout: &Layout,
    sink: &mut dyn KeySink,
    timing: &Timing,
    mut serial: Option<&mut SerialWatch>,
    cancel: &CancellationToken,
) -> Result<(), TypeError> {
    let encoded = encode(actions, layout)?;
    for (action, group) in actions.iter().zip(&encoded) {
        if cancel.is_cancelled() {
            return Err(TypeError::Cancelled);
        }
        match action {
            Action::Key { .. } if timing.key_interval.is_zero() => sink.send(group).await?,
            Action::Key { .. } => {
                for stroke in group {
                    sink.send(std::slice::from_ref(stroke)).await?;
                    sleep(timing.key_interval, cancel).await?;
                }
            }
            Action::Wait(d) => sleep(*d, cancel).await?,
            Action::WaitFor { text, timeout } => {
                let watch = serial.as_deref_mut().ok_or(TypeError::NoSerial)?;
                watch
                    .wait_for(text, timeout.unwrap_or(DEFAULT_WAIT_FOR_TIMEOUT), cancel)
                    .await?;
            }
        }
        if matches!(action, Action::Key { .. }) {
            sleep(timing.keygroup_interval, cancel).await?;
        }
    }
    Ok(())
}

async fn sleep(d: Duration, cancel: &CancellationToken) -> Result<(), TypeError> {
    if d.is_zero() {
        return Ok(());
    }
    tokio::select! {
        () = cancel.cancelled() => Err(TypeError::Cancelled),
        () = tokio::time::sleep(d) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::US;
    use crate::parse::parse;

    #[derive(Default)]
    struct Recorder {
        batches: Vec<Vec<(&'static str, bool)>>,
    }

    #[async_trait::async_trait]
    impl KeySink for Recorder {
        async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
            self.batches
                .push(strokes.iter().map(|s| (s.qcode, s.down)).collect());
            Ok(())
        }
    }

    fn zero() -> Timing {
        Timing {
            key_interval: Duration::ZERO,
            keygroup_interval: Duration::ZERO,
        }
    }

    #[test]
    fn timing_precedence() {
        let t = Timing::resolve(Transport::Vnc, None, None, None).unwrap();
        assert_eq!(t.key_interval, VNC_DEFAULT_KEY_INTERVAL);
        let t = Timing::resolve(Transport::Qmp, None, None, None).unwrap();
        assert_eq!(t.key_interval, QMP_DEFAULT_KEY_INTERVAL);
        let t = Timing::resolve(Transport::Vnc, Some("5ms"), None, None).unwrap();
        assert_eq!(t.key_interval, Duration::from_millis(5));
        let t = Timing::resolve(
            Transport::Vnc,
            Some("5ms"),
            Some(Duration::from_millis(7)),
            None,
        )
        .unwrap();
        assert_eq!(t.key_interval, Duration::from_millis(7));
        let e = Timing::resolve(Transport::Vnc, Some("fast"), None, None).unwrap_err();
        assert!(e.to_string().contains("PACKER_KEY_INTERVAL"));
    }

    #[tokio::test]
    async fn zero_interval_sends_one_batch_per_key() {
        let actions = parse("aB").unwrap().actions;
        let mut r = Recorder::default();
        type_actions(
            &actions,
            &US,
            &mut r,
            &zero(),
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.batches.len(), 2);
        assert_eq!(r.batches[1].len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn interval_sends_one_event_at_a_time_and_waits_sleep() {
        let actions = parse("a<wait2s>b").unwrap().actions;
        let mut r = Recorder::default();
        let t = Timing {
            key_interval: Duration::from_millis(100),
            keygroup_interval: Duration::ZERO,
        };
        let start = tokio::time::Instant::now();
        type_actions(&actions, &US, &mut r, &t, None, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(r.batches.len(), 4);
        assert_eq!(start.elapsed(), Duration::from_millis(2400));
    }

    #[tokio::test]
    async fn untypable_character_fails_before_any_key() {
        let actions = parse("abc€").unwrap().actions;
        let mut r = Recorder::default();
        let e = type_actions(
            &actions,
            &US,
            &mut r,
            &zero(),
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, TypeError::Encode(_)));
        assert!(r.batches.is_empty());
    }

    #[tokio::test]
    async fn wait_for_needs_a_serial_console_and_cancel_stops() {
        let actions = parse(r#"<waitFor "x">"#).unwrap().actions;
        let mut r = Recorder::default();
        let e = type_actions(
            &actions,
            &US,
            &mut r,
            &zero(),
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, TypeError::NoSerial));
        let cancel = CancellationToken::new();
        cancel.cancel();
        let actions = parse("<wait1h>").unwrap().actions;
        let e = type_actions(&actions, &US, &mut r, &zero(), None, &cancel)
            .await
            .unwrap_err();
        assert!(matches!(e, TypeError::Cancelled));
    }
}
