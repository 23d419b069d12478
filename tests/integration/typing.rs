//! End-to-end typing into a real guest: the boot-echo ISO's isolinux `boot:` prompt under
//! qemu-system-x86_64 (TCG), whose serial console echoes what is typed. Checks that a 250-character
//! command holding every printable ASCII character arrives exactly, over QMP and over VNC with
//! password authentication, plus the QMP client's general commands and `<waitFor>` on a real console.
//!
//! Needs qemu-system-x86_64, xorriso and isolinux/syslinux-common (or apt-get download access).

use std::time::Duration;

use kiln::builder::qemu::qmp::{QmpError, QmpKeyboard};

use crate::typing_guest::{boot_echo_iso, printable_command, Guest};
use boot_commands::{
    parse, type_actions, SerialError, SerialWatch, Timing, Transport, TypeError, VncError,
    VncKeyboard, QMP_DEFAULT_KEY_INTERVAL, US,
};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Packer's VNC default (100 ms per event) would take over a minute for the printable command; the
/// transport, not the pace, is under test, so VNC types at the QMP default, which the guest keeps
/// up with.
fn vnc_test_timing() -> Timing {
    Timing {
        key_interval: QMP_DEFAULT_KEY_INTERVAL,
        keygroup_interval: Duration::ZERO,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printable_ascii_typed_over_qmp_arrives_exactly() {
    let mut guest = Guest::boot(&boot_echo_iso(), false).await;
    let cmd = printable_command();
    // The prompt is already there, so this <waitFor> passes at once: it exercises the tag end to end.
    let parsed = parse(&format!("<waitFor \"boot: \" 1m>{cmd}")).unwrap();
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    let timing = Timing::resolve(Transport::Qmp.default_key_interval(), None, None, None).unwrap();
    let mut serial = SerialWatch::new(&guest.serial_path, 0);
    let cancel = CancellationToken::new();
    type_actions(
        &parsed.actions,
        &US,
        &mut QmpKeyboard(&mut guest.qmp),
        &timing,
        Some(&mut serial),
        &cancel,
    )
    .await
    .unwrap();
    assert_eq!(guest.wait_typed(cmd.len()).await, cmd);

    // Text that never appears: the build fails with the text and the console file named.
    let parsed = parse("<waitFor \"kiln-never\" 1s>").unwrap();
    let e = type_actions(
        &parsed.actions,
        &US,
        &mut QmpKeyboard(&mut guest.qmp),
        &timing,
        Some(&mut serial),
        &cancel,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(e, TypeError::Serial(SerialError::Timeout { .. })),
        "{e}"
    );
    assert!(e.to_string().contains("serial.log"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn printable_ascii_typed_over_vnc_with_password_arrives_exactly() {
    let mut guest = Guest::boot(&boot_echo_iso(), true).await;
    let _: Value = guest
        .qmp
        .execute_with("change-vnc-password", &json!({"password": "kiln-pw"}))
        .await
        .unwrap();
    let addr = ("127.0.0.1", guest.vnc_port);

    let e = VncKeyboard::connect(addr, Some("wrong")).await.unwrap_err();
    assert!(matches!(e, VncError::AuthFailed(_)), "{e}");
    let e = VncKeyboard::connect(addr, None).await.unwrap_err();
    assert!(e.to_string().contains("wants a password"), "{e}");

    let mut vnc = VncKeyboard::connect(addr, Some("kiln-pw")).await.unwrap();
    let cmd = printable_command();
    let parsed = parse(&cmd).unwrap();
    let timing = vnc_test_timing();
    type_actions(
        &parsed.actions,
        &US,
        &mut vnc,
        &timing,
        None,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(guest.wait_typed(cmd.len()).await, cmd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qmp_client_runs_any_command_reports_errors_and_reads_events() {
    let mut guest = Guest::boot(&boot_echo_iso(), false).await;
    assert!(guest.qmp.version().major >= 2);
    let status: Value = guest.qmp.execute("query-status").await.unwrap();
    assert_eq!(status["status"], "running");

    let e = guest
        .qmp
        .execute::<Value>("kiln-no-such-command")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, QmpError::Command { class, .. } if class == "CommandNotFound"),
        "{e}"
    );

    let _: Value = guest.qmp.execute("system_powerdown").await.unwrap();
    let _: Value = guest.qmp.execute("quit").await.unwrap();
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), guest.qmp.next_event()).await {
            Ok(Ok(event)) => seen.push(event.event),
            Ok(Err(QmpError::Closed)) => break,
            other => panic!("unexpected {other:?} after {seen:?}"),
        }
    }
    assert!(seen.iter().any(|e| e == "SHUTDOWN"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_keys_and_modifier_holds_work_over_vnc_without_password() {
    let guest = Guest::boot(&boot_echo_iso(), false).await;
    let mut vnc = VncKeyboard::connect(("127.0.0.1", guest.vnc_port), None)
        .await
        .unwrap();
    // isolinux edits the line: Backspace deletes, Home moves to the start, Ctrl-E to the end; after
    // each edit it redraws the whole line (`ESC[1G` + prompt + line + `ESC[K`), so the last redraw
    // shows the line's state.
    let parsed =
        parse("ab<bs>c<leftShiftOn>d<leftShiftOff><left><home>e<leftCtrlOn>e<leftCtrlOff>f")
            .unwrap();
    let timing = vnc_test_timing();
    type_actions(
        &parsed.actions,
        &US,
        &mut vnc,
        &timing,
        None,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut watch = SerialWatch::new(&guest.serial_path, guest.prompt_end);
    watch
        .wait_for(
            "boot: eacD\u{1b}[K",
            Duration::from_secs(60),
            &CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {:?}", guest.typed()));
    let echoed = loop {
        let t = guest.typed();
        if t.ends_with('f') {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let last_redraw = echoed.rsplit("\u{1b}[1G").next().unwrap();
    assert!(last_redraw.starts_with("boot: eacD\u{1b}[K"), "{echoed:?}");
}
