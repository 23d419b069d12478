//! Child processes that die with kiln, even when kiln is killed with SIGKILL and has no chance to
//! clean up. The kernel's parent-death signal (`PR_SET_PDEATHSIG`, set by util-linux's
//! `setpriv --pdeathsig KILL` just before it execs the real program, so kiln needs no `unsafe`)
//! is sent when the *thread* that forked the child exits, not the process. So every such child
//! is forked from one thread that lives as long as kiln ([`spawn`]); forking from a runtime
//! thread that may retire would kill the child early. Without `setpriv` on the host, children
//! are started as before (and cleaned up by kiln's own stop path). [`private_tempdir`] makes the
//! directories kiln and its children write to (QMP socket, serial log, swtpm state, CD and
//! floppy images): readable by kiln's user only, since a serial log can echo a typed secret.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use tokio::process::{Child, Command};

type Job = Box<dyn FnOnce() + Send>;

/// The long-lived thread children are forked from.
fn keeper() -> io::Result<&'static Mutex<mpsc::Sender<Job>>> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    if let Some(k) = KEEPER.get() {
        return Ok(k);
    }
    let (tx, rx) = mpsc::channel::<Job>();
    std::thread::Builder::new()
        .name("kiln-children".into())
        .spawn(move || {
            for job in rx {
                job();
            }
        })?;
    Ok(KEEPER.get_or_init(|| Mutex::new(tx)))
}

/// Whether children get the parent-death signal (see [`keep_children`]).
static DIE_WITH_KILN: AtomicBool = AtomicBool::new(true);

/// Let children started from now on outlive kiln: `-on-error=abort` (and `ask` and
/// `run-cleanup-provisioner`, which can end the same way) leave the VM running for inspection
/// after kiln exits, so it must not be tied to kiln's life.
pub fn keep_children() {
    DIE_WITH_KILN.store(false, Ordering::SeqCst);
}

/// `program` found on `PATH` (or as given, when it has a slash).
fn resolve(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// A command for `program` that will die with kiln: `setpriv --pdeathsig KILL -- program` when
/// both are installed. A program that cannot be found is left to fail at spawn, with the usual
/// "No such file or directory".
pub fn command(program: &str) -> Command {
    if !DIE_WITH_KILN.load(Ordering::SeqCst) {
        return Command::new(program);
    }
    // Looked up once: the host's tools do not move while kiln runs.
    static SETPRIV: OnceLock<Option<PathBuf>> = OnceLock::new();
    match (SETPRIV.get_or_init(|| resolve("setpriv")), resolve(program)) {
        (Some(setpriv), Some(path)) => {
            let mut c = Command::new(setpriv);
            c.arg("--pdeathsig").arg("KILL").arg("--").arg(path);
            c
        }
        _ => Command::new(program),
    }
}

/// Spawn `cmd` from the long-lived thread, within the caller's tokio runtime.
pub fn spawn(mut cmd: Command) -> io::Result<Child> {
    tracing::debug!(command = ?cmd.as_std(), "starting a process");
    let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _runtime = handle.enter();
        let _ = tx.send(cmd.spawn());
    });
    keeper()?
        .lock()
        .map_err(|_| io::Error::other("the child keeper thread is gone"))?
        .send(job)
        .map_err(|_| io::Error::other("the child keeper thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("the child keeper thread is gone"))?
}

/// A temporary directory only kiln's user can enter (0700; tempfile's default follows the
/// umask, usually 0755), removed when dropped.
pub fn private_tempdir(prefix: &str) -> io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

/// Create `path` empty with mode 0600, so a program that later opens it to write (QEMU's
/// `-serial file:`) keeps that mode instead of creating it world-readable.
pub fn private_file(path: &std::path::Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_directories_and_files_are_for_kilns_user_only() {
        use std::os::unix::fs::PermissionsExt;
        let d = private_tempdir("kiln-test").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(d.path()), 0o700);
        let f = d.path().join("serial.log");
        private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
    }

    #[tokio::test]
    async fn a_child_runs_and_reports_its_exit() {
        let mut c = command("sh");
        c.args(["-c", "exit 7"]);
        let status = spawn(c).unwrap().wait().await.unwrap();
        assert_eq!(status.code(), Some(7));
    }

    #[tokio::test]
    async fn a_missing_program_fails_at_spawn() {
        let e = spawn(command("kiln-no-such-program")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn the_child_gets_the_parent_death_signal() {
        if resolve("setpriv").is_none() {
            eprintln!("SKIPPED: setpriv is not installed");
            return;
        }
        // The child prints its own parent-death signal (field 2 of /proc/self/status has no
        // such line; `setpriv --dump` does not show it either), so read it with prctl through
        // python: PR_GET_PDEATHSIG = 2.
        let mut c = command("python3");
        c.args([
            "-c",
            "import ctypes,ctypes.util;l=ctypes.CDLL(None);v=ctypes.c_int();l.prctl(2,ctypes.byref(v));print(v.value)",
        ]);
        c.stdout(std::process::Stdio::piped());
        let out = spawn(c).unwrap().wait_with_output().await.unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "9", "SIGKILL");
    }
}
