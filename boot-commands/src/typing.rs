//! The typing driver, shared by every hypervisor: sends parsed [`Action`]s to a [`KeySink`] with
//! Packer's timing, sleeps for `<wait>`s, waits on the serial console for `<waitFor>`, and stops on
//! cancellation. It knows no transport: each one (QMP, VNC, a VirtualBox driver) implements
//! [`KeySink`] with its own error type, default key interval and [`Batching`].

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::encode::{encode, pcxt_batches, EncodeError, KeyStroke};
use crate::keys::Layout;
use crate::parse::{parse_duration, Action, DEFAULT_WAIT_FOR_TIMEOUT};
use crate::serial::{SerialError, SerialWatch};

/// How a sink takes keys; [`type_actions`] paces each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Key by key (QMP, VNC): each key event sent alone with `key_interval` after it, or a key's
    /// events together when `key_interval` is zero; `keygroup_interval` after each key.
    PerKey,
    /// As Packer's PC-XT driver (VirtualBox): the keys between two waits packed by
    /// [`pcxt_batches`] into sends of at most `max_bytes` scancode bytes, with `key_interval` after
    /// each send. `keygroup_interval` is not used: Packer's VirtualBox builder passes
    /// `boot_keygroup_interval` as this interval, so a driver resolves its [`Timing`] that way.
    Scancodes {
        /// The most PC-XT bytes one send carries ([`PCXT_BATCH`](crate::PCXT_BATCH) for Packer's).
        max_bytes: usize,
    },
}

/// Something that presses keys in the guest: one per hypervisor transport. It can be used as
/// `dyn KeySink`, so a builder hands the shared typing step whichever keyboard its machine has.
#[async_trait::async_trait]
pub trait KeySink: Send {
    /// The pause after each send when neither `PACKER_KEY_INTERVAL` nor `boot_key_interval` is set.
    fn default_key_interval(&self) -> Duration;
    /// What the keys travel over, for the build's output ("Typing the boot command over QMP").
    fn name(&self) -> &'static str {
        "the keyboard"
    }
    /// How this sink takes keys.
    fn batching(&self) -> Batching {
        Batching::PerKey
    }
    /// Sends the strokes in order, without pausing between them; the transport's own error is
    /// kept whole inside the [`SinkError`].
    async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError>;
}

/// A transport's failure while typing: the sink's own error (`QmpError`, `VncError`, a
/// VirtualBox driver's…), kept with its chain.
#[derive(Debug)]
pub struct SinkError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl SinkError {
    /// Wraps a transport's error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Box::new(e))
    }
}

impl std::fmt::Display for SinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Pauses between key events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// After each send: each key-down or key-up event for [`Batching::PerKey`], each batch for
    /// [`Batching::Scancodes`] (`boot_key_interval`).
    pub key_interval: Duration,
    /// After each key, shifted or not, and each chord part (`boot_keygroup_interval`).
    pub keygroup_interval: Duration,
}

/// A `PACKER_KEY_INTERVAL` value that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PACKER_KEY_INTERVAL={0:?} is not a duration; use a value such as 50ms, or unset it")]
pub struct TimingError(pub String);

impl Timing {
    /// Resolves the timing as Packer does: the sink's default (its
    /// [`KeySink::default_key_interval`]), overridden by the `PACKER_KEY_INTERVAL` environment
    /// value (passed in by the caller), then by `boot_key_interval`. `boot_keygroup_interval`
    /// defaults to zero.
    pub fn resolve(
        default_key_interval: Duration,
        packer_key_interval: Option<&str>,
        boot_key_interval: Option<Duration>,
        boot_keygroup_interval: Option<Duration>,
    ) -> Result<Timing, TimingError> {
        let mut key_interval = default_key_interval;
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
/// is sent, so a bad character fails the build without typing half a command. The keys between
/// two waits form a run, which the sink's [`Batching`] paces.
pub async fn type_actions(
    actions: &[Action],
    layout: &Layout,
    sink: &mut dyn KeySink,
    timing: &Timing,
    mut serial: Option<&mut SerialWatch>,
    cancel: &CancellationToken,
) -> Result<(), TypeError> {
    let encoded = encode(actions, layout)?;
    let mut run_start = 0;
    for (i, action) in actions.iter().enumerate() {
        match action {
            Action::Key { .. } => continue,
            Action::Wait(d) => {
                type_keys(sink, &encoded[run_start..i], timing, cancel).await?;
                sleep(*d, cancel).await?;
            }
            Action::WaitFor { text, timeout } => {
                type_keys(sink, &encoded[run_start..i], timing, cancel).await?;
                let watch = serial.as_deref_mut().ok_or(TypeError::NoSerial)?;
                watch
                    .wait_for(text, timeout.unwrap_or(DEFAULT_WAIT_FOR_TIMEOUT), cancel)
                    .await?;
            }
        }
        run_start = i + 1;
    }
    type_keys(sink, &encoded[run_start..], timing, cancel).await
}

/// Types one run of keys (one stroke group per key) the sink's way.
async fn type_keys(
    sink: &mut dyn KeySink,
    keys: &[Vec<KeyStroke>],
    timing: &Timing,
    cancel: &CancellationToken,
) -> Result<(), TypeError> {
    match sink.batching() {
        Batching::PerKey => {
            for key in keys {
                if timing.key_interval.is_zero() {
                    send(sink, key, cancel).await?;
                } else {
                    for stroke in key {
                        send(sink, std::slice::from_ref(stroke), cancel).await?;
                        sleep(timing.key_interval, cancel).await?;
                    }
                }
                sleep(timing.keygroup_interval, cancel).await?;
            }
        }
        Batching::Scancodes { max_bytes } => {
            for batch in pcxt_batches(keys, max_bytes) {
                send(sink, &batch, cancel).await?;
                sleep(timing.key_interval, cancel).await?;
            }
        }
    }
    Ok(())
}

/// Sends unless the build was cancelled: no key goes out after cancellation.
async fn send(
    sink: &mut dyn KeySink,
    strokes: &[KeyStroke],
    cancel: &CancellationToken,
) -> Result<(), TypeError> {
    if cancel.is_cancelled() {
        return Err(TypeError::Cancelled);
    }
    Ok(sink.send(strokes).await?)
}

/// Sleeps, or fails at once when the build is (or gets) cancelled, even for a zero pause.
async fn sleep(d: Duration, cancel: &CancellationToken) -> Result<(), TypeError> {
    if cancel.is_cancelled() {
        return Err(TypeError::Cancelled);
    }
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
    use crate::encode::{pcxt_scancodes, PCXT_BATCH};
    use crate::keys::US;
    use crate::parse::parse;

    /// A sink that records what each send carried, as (qcode, down) pairs.
    #[derive(Default)]
    struct Recorder {
        batches: Vec<Vec<(&'static str, bool)>>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("recorder failed")]
    struct RecorderError;

    #[async_trait::async_trait]
    impl KeySink for Recorder {
        fn default_key_interval(&self) -> Duration {
            Duration::from_millis(40)
        }

        async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
            self.batches
                .push(strokes.iter().map(|s| (s.qcode, s.down)).collect());
            Ok(())
        }
    }

    /// A sink that types PC-XT scancodes in Packer's batches, recording each send's bytes, as a
    /// VirtualBox driver's `keyboardputscancode` calls would; it fails on the `fail_at`-th send.
    #[derive(Default)]
    struct ScancodeRecorder {
        calls: Vec<Vec<u8>>,
        fail_at: Option<usize>,
    }

    #[async_trait::async_trait]
    impl KeySink for ScancodeRecorder {
        fn default_key_interval(&self) -> Duration {
            Duration::from_millis(100)
        }
        fn batching(&self) -> Batching {
            Batching::Scancodes {
                max_bytes: PCXT_BATCH,
            }
        }

        async fn send(&mut self, strokes: &[KeyStroke]) -> Result<(), SinkError> {
            if self.fail_at == Some(self.calls.len()) {
                return Err(SinkError::new(RecorderError));
            }
            self.calls.push(pcxt_scancodes(strokes));
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
        let default = Recorder::default().default_key_interval();
        let t = Timing::resolve(default, None, None, None).unwrap();
        assert_eq!(t.key_interval, default);
        assert_eq!(t.keygroup_interval, Duration::ZERO);
        let t = Timing::resolve(default, Some(""), None, None).unwrap();
        assert_eq!(t.key_interval, default);
        let t = Timing::resolve(default, Some("5ms"), None, None).unwrap();
        assert_eq!(t.key_interval, Duration::from_millis(5));
        let t =
            Timing::resolve(default, Some("5ms"), Some(Duration::from_millis(7)), None).unwrap();
        assert_eq!(t.key_interval, Duration::from_millis(7));
        let e = Timing::resolve(default, Some("fast"), None, None).unwrap_err();
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

    async fn typed_scancodes(cmd: &str, sink: &mut ScancodeRecorder) -> Result<(), TypeError> {
        let actions = parse(cmd).unwrap().actions;
        let cancel = CancellationToken::new();
        type_actions(&actions, &US, sink, &zero(), None, &cancel).await
    }

    #[tokio::test]
    async fn scancode_sinks_get_whole_keys_in_batches_flushed_at_waits() {
        // 13 plain keys (2 bytes each) then a wait, then 2 keys: Packer sends 12 keys (24 bytes),
        // the 13th alone (it would make 26), and after the wait the rest.
        let mut sink = ScancodeRecorder::default();
        typed_scancodes("aaaaaaaaaaaaa<wait>bA", &mut sink)
            .await
            .unwrap();
        let a = [0x1e, 0x9e];
        assert_eq!(sink.calls.len(), 3, "{:x?}", sink.calls);
        assert_eq!(sink.calls[0], a.repeat(12));
        assert_eq!(sink.calls[1], a);
        assert_eq!(sink.calls[2], vec![0x30, 0xb0, 0x2a, 0x1e, 0x9e, 0xaa]);
    }

    #[tokio::test]
    async fn scancode_batches_never_split_a_key() {
        // 6 shifted keys of 4 bytes each fill 24 bytes; the 7th (4 more) goes in the next send
        // whole, not 1 byte here and 3 there.
        let mut sink = ScancodeRecorder::default();
        typed_scancodes("AAAAAAA", &mut sink).await.unwrap();
        let shifted_a = [0x2a, 0x1e, 0x9e, 0xaa];
        assert_eq!(sink.calls, vec![shifted_a.repeat(6), shifted_a.to_vec()]);
    }

    #[tokio::test]
    async fn scancode_sink_errors_stop_typing() {
        let mut sink = ScancodeRecorder {
            fail_at: Some(1),
            ..ScancodeRecorder::default()
        };
        let e = typed_scancodes("a<wait>b<wait>c", &mut sink)
            .await
            .unwrap_err();
        assert!(matches!(e, TypeError::Sink(_)), "{e}");
        assert_eq!(e.to_string(), "recorder failed");
        assert_eq!(sink.calls, vec![vec![0x1e, 0x9e]]);
    }

    #[tokio::test(start_paused = true)]
    async fn scancode_batches_pause_key_interval_after_each_send() {
        // Two sends (a run of 13 keys), a 1 s wait, one send: 3 pauses of 100 ms plus the wait.
        let actions = parse("aaaaaaaaaaaaa<wait1s>b").unwrap().actions;
        let mut sink = ScancodeRecorder::default();
        let t = Timing {
            key_interval: Duration::from_millis(100),
            keygroup_interval: Duration::from_secs(60),
        };
        let start = tokio::time::Instant::now();
        type_actions(
            &actions,
            &US,
            &mut sink,
            &t,
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(sink.calls.len(), 3);
        assert_eq!(start.elapsed(), Duration::from_millis(1300));
    }
}
