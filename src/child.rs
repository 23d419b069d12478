//! Child processes that die with kiln, even when kiln is killed with SIGKILL and has no chance to
//! clean up. The kernel's parent-death signal (`PR_SET_PDEATHSIG`, set by util-linux's
//! `setpriv --pdeathsig KILL` just before it execs the real program, so kiln needs no `unsafe`)
//! is sent when the *thread* that forked the child exits, not the process. So every such child
//! is forked from one thread that lives as long as kiln ([`spawn`]); forking from a runtime
//! thread that may retire would kill the child early. Without `setpriv` on the host, children
//! are started as before (and cleaned up by kiln's own stop path). [`private_tempdir`] makes the
//! directories kiln and its children write to (QMP socket, serial log, swtpm state, CD and
//! floppy images, the KVM probe's disk): readable by kiln's user only, since a serial log can
//! echo a typed secret, and all under one root per kiln process whose name says which process
//! owns it (`kiln-<pid>-<start time>-…`). A killed kiln cannot remove its root, so the next
//! `kiln build` does ([`remove_stale_roots`]): a root whose owner is no longer running is
//! stale.

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

/// Every root's name starts with this.
const ROOT_PREFIX: &str = "kiln-";
/// The root of a kiln whose children may outlive it on purpose ([`keep_children`]): never
/// judged stale, since its VM may still be running and using the files.
const KEPT_PREFIX: &str = "kiln-kept-";

/// The process owning a root: its id and start time (clock ticks after boot, field 22 of
/// `/proc/<pid>/stat`), so that a later process given the same id is not taken for the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    start: u64,
}

impl Owner {
    /// Process `pid` as it runs now, or `None` when it does not (or `/proc` cannot tell).
    fn of(pid: u32) -> Option<Owner> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // Field 2, the command name, is in parentheses and may itself hold spaces and ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        let start = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(Owner { pid, start })
    }

    /// The owner a root's name records (`kiln-<pid>-<start>-<random>`).
    fn from_root_name(name: &str) -> Option<Owner> {
        let mut parts = name.strip_prefix(ROOT_PREFIX)?.splitn(3, '-');
        let pid = parts.next()?.parse().ok()?;
        let start = parts.next()?.parse().ok()?;
        parts.next().filter(|r| !r.is_empty())?;
        Some(Owner { pid, start })
    }

    fn root_prefix(self) -> String {
        format!("{ROOT_PREFIX}{}-{}-", self.pid, self.start)
    }

    fn running(self) -> bool {
        Owner::of(self.pid) == Some(self)
    }
}

/// This process's root, made at first use.
static ROOT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The directory this kiln's temporary files live in (0700), made at first use in the system
/// temporary directory.
fn root() -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut root = ROOT
        .lock()
        .map_err(|_| io::Error::other("the temporary root's lock is poisoned"))?;
    if let Some(r) = root.as_ref().filter(|r| r.is_dir()) {
        return Ok(r.clone());
    }
    let prefix = match Owner::of(std::process::id()) {
        Some(me) if DIE_WITH_KILN.load(Ordering::SeqCst) => me.root_prefix(),
        _ => KEPT_PREFIX.to_owned(),
    };
    let made = tempfile::Builder::new()
        .prefix(&prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()?
        .keep();
    *root = Some(made.clone());
    Ok(made)
}

/// Remove this process's root with whatever is left in it, at the end of a build that left
/// nothing running.
pub fn remove_root() {
    let Ok(mut root) = ROOT.lock() else { return };
    if let Some(r) = root.take() {
        if let Err(e) = std::fs::remove_dir_all(&r) {
            tracing::warn!("cannot remove {}: {e}", r.display());
        }
    }
}

/// A root an earlier kiln left behind, removed by [`remove_stale_roots`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRoot {
    /// The process id of the kiln that made it.
    pub pid: u32,
    /// The directory.
    pub path: PathBuf,
}

impl std::fmt::Display for StaleRoot {
    /// What kiln tells the user it removed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Removed stale temporary files of an earlier kiln run (pid {}): {}",
            self.pid,
            self.path.display()
        )
    }
}

/// Remove the roots in the system temporary directory whose owner no longer runs (a kiln that
/// was killed, or that crashed), and say which. Only this user's roots are looked at; nothing
/// is judged when this system has no `/proc` to tell whether a process runs.
pub fn remove_stale_roots() -> Vec<StaleRoot> {
    use std::os::unix::fs::MetadataExt;
    if Owner::of(std::process::id()).is_none() {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let uid = rustix::process::getuid().as_raw();
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let Some(owner) = entry.file_name().to_str().and_then(Owner::from_root_name) else {
            continue;
        };
        let path = entry.path();
        // Not through a symbolic link, and not another user's directory.
        let ours = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !ours || owner.running() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => removed.push(StaleRoot {
                pid: owner.pid,
                path,
            }),
            Err(e) => tracing::warn!("cannot remove the stale {}: {e}", path.display()),
        }
    }
    removed
}

/// A temporary directory only kiln's user can enter (0700; tempfile's default follows the
/// umask, usually 0755) in this kiln's root, removed when dropped.
pub fn private_tempdir(prefix: &str) -> io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(root()?)
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

    #[test]
    fn private_directories_live_in_a_root_named_after_this_process() {
        let d = private_tempdir("kiln-test").unwrap();
        let root = d.path().parent().unwrap();
        assert_eq!(root.parent().unwrap(), std::env::temp_dir());
        let name = root.file_name().unwrap().to_str().unwrap();
        let owner = Owner::from_root_name(name).unwrap();
        assert_eq!(Owner::of(std::process::id()), Some(owner));
        assert!(owner.running());
    }

    #[test]
    fn a_root_is_stale_only_when_its_owner_no_longer_runs() {
        let me = Owner::of(std::process::id()).unwrap();
        assert_eq!(
            Owner::from_root_name(&format!("{}ab12Cd", me.root_prefix())),
            Some(me)
        );
        // The same pid with another start time is another process: its root is stale.
        let reused = Owner {
            start: me.start + 1,
            ..me
        };
        assert!(!reused.running());
        // Not roots: other programs' and kiln's older directories, and kept roots.
        for name in [
            "kiln-qemuAb12",
            "kiln-12-x-ab",
            "kiln-12-34-",
            "kiln-kept-12-34-ab",
        ] {
            assert_eq!(Owner::from_root_name(name), None, "{name}");
        }
    }

    #[test]
    fn stale_roots_are_removed_and_running_ones_kept() {
        let me = Owner::of(std::process::id()).unwrap();
        let dead = Owner {
            start: me.start + 1,
            ..me
        };
        let stale = tempfile::Builder::new()
            .prefix(&dead.root_prefix())
            .tempdir()
            .unwrap()
            .keep();
        std::fs::write(stale.join("serial.log"), "x").unwrap();
        let live = private_tempdir("kiln-test").unwrap();
        let removed = remove_stale_roots();
        assert!(
            removed.contains(&StaleRoot {
                pid: me.pid,
                path: stale.clone()
            }),
            "{removed:?}"
        );
        assert!(!stale.exists());
        assert!(live.path().is_dir(), "this process's root is left alone");
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
