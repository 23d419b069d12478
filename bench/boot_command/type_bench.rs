//! Times typing the 250-character printable-ASCII boot command into the boot-echo guest over QMP or
//! VNC, and checks that it arrived intact. Run by bench/boot_command/run.sh; not a test.
//!
//! Usage: type_bench qmp|vnc [KEY_INTERVAL e.g. 10ms] [REPEATS]

// A bench harness: failing loudly is the point.
#![allow(clippy::unwrap_used)]

#[path = "../../tests/integration/typing_guest.rs"]
mod support;

use std::time::Instant;

use boot_commands::{
    parse, parse_duration, type_actions, Action, KeySink, Timing, Transport, VncKeyboard, US,
};
use kiln::builder::qemu::qmp::QmpKeyboard;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let transport = match args.get(1).map(String::as_str) {
        Some("qmp") => Transport::Qmp,
        Some("vnc") => Transport::Vnc,
        _ => panic!("usage: type_bench qmp|vnc [KEY_INTERVAL] [REPEATS]"),
    };
    let interval = args
        .get(2)
        .filter(|s| !s.is_empty())
        .map(|s| parse_duration(s).expect("a duration"));
    let repeats: usize = args.get(3).map_or(1, |s| s.parse().expect("a count"));
    let timing = Timing::resolve(transport.default_key_interval(), None, interval, None).unwrap();
    let iso = support::boot_echo_iso();
    let cmd = support::printable_command();
    let actions = parse(&cmd).unwrap().actions;
    for run in 0..repeats {
        let mut guest = support::Guest::boot(&iso, false).await;
        // The clock starts when typing does, after the VNC handshake.
        let start = match transport {
            Transport::Qmp => type_all(&actions, &mut QmpKeyboard(&mut guest.qmp), &timing).await,
            Transport::Vnc => {
                let mut vnc = VncKeyboard::connect(("127.0.0.1", guest.vnc_port), None)
                    .await
                    .unwrap();
                type_all(&actions, &mut vnc, &timing).await
            }
        };
        let sent = start.elapsed();
        let typed = guest.wait_typed(cmd.len()).await;
        let echoed = start.elapsed();
        let ok = typed == cmd;
        println!(
            "transport={transport:?} interval={:?} run={run} sent_s={:.3} echoed_s={:.3} intact={ok}",
            timing.key_interval,
            sent.as_secs_f64(),
            echoed.as_secs_f64()
        );
        if !ok {
            eprintln!("got {typed:?}");
        }
    }
}

/// Types the actions and returns when typing started.
async fn type_all(actions: &[Action], sink: &mut dyn KeySink, timing: &Timing) -> Instant {
    let start = Instant::now();
    type_actions(actions, &US, sink, timing, None, &CancellationToken::new())
        .await
        .unwrap();
    start
}
