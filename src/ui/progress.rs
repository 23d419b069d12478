//! Progress of long tasks (downloading an ISO, hashing a local file, `qemu-img convert`,
//! compressing an artifact) through one small interface, [`Reporter`], that the code doing the
//! work calls without knowing who listens (uv's pattern). [`BuildProgress`] is the listener a
//! build uses, and it picks one of three shapes from how kiln runs:
//!
//! - on a terminal: an indicatif bar with size, speed and ETA, drawn above the build's lines;
//! - not a terminal (CI logs, pipes): a plain line when the task starts, one at most every
//!   [`PLAIN_INTERVAL`] while it runs, and a summary when it ends — never one per chunk;
//! - `-machine-readable`: nothing, as in Packer, whose machine-readable output has no progress.
//!
//! [`Silent`] listens to nothing (tests, library callers).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{BinaryBytes, HumanDuration, ProgressBar, ProgressStyle};

use super::BuildUi;

/// How often a plain (non-terminal) progress line is printed while a task runs.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// Receives the progress of one task at a time; the work calls it, the UI shows it.
pub trait Reporter: Send + Sync {
    /// A task starts: `what` says what it is ("Downloading http://…/x.iso"), `total` is its
    /// size in bytes when known, `already` how many bytes were done before (a resumed download).
    fn start(&self, _what: &str, _total: Option<u64>, _already: u64) {}
    /// `bytes` more are done.
    fn advance(&self, _bytes: u64) {}
    /// The task has reached `done` bytes (for tools that report a position, like qemu-img).
    fn set(&self, _done: u64) {}
    /// The task ended, successfully or not.
    fn finish(&self) {}
    /// Something the user should know that does not stop the build.
    fn warn(&self, _message: &str) {}
}

/// A reporter that shows nothing.
#[derive(Debug, Default)]
pub struct Silent;
impl Reporter for Silent {}

/// How a [`BuildProgress`] shows a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Bar,
    Lines,
    Nothing,
}

/// The progress of one build's tasks, shown as its [`BuildUi`] allows.
pub struct BuildProgress {
    ui: BuildUi,
    shape: Shape,
    interval: Duration,
    task: Mutex<Option<Task>>,
}

struct Task {
    what: String,
    total: Option<u64>,
    /// Bytes done before this run (not counted in the speed).
    already: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl BuildUi {
    /// A reporter showing progress for this build: a bar on a terminal, periodic lines
    /// otherwise, nothing in `-machine-readable` mode.
    pub fn reporter(&self) -> BuildProgress {
        let shape = if self.ui.machine_readable() {
            Shape::Nothing
        } else if self.ui.inner.terminal {
            Shape::Bar
        } else {
            Shape::Lines
        };
        BuildProgress {
            ui: self.clone(),
            shape,
            interval: PLAIN_INTERVAL,
            task: Mutex::new(None),
        }
    }

    fn bar(&self, what: &str, total: Option<u64>) -> ProgressBar {
        let bar = match total {
            Some(t) => ProgressBar::new(t).with_style(
                ProgressStyle::with_template(
                    "    {prefix}: {msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template(
                    "    {prefix}: {msg} {spinner} {binary_bytes} {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        let bar = self.ui.inner.bars.add(bar);
        bar.set_prefix(self.name.to_string());
        bar.set_message(what.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }
}

impl BuildProgress {
    /// Like [`BuildUi::reporter`] with plain lines at most every `interval` (for tests).
    #[cfg(test)]
    fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    fn with_task(&self, f: impl FnOnce(&mut Task)) {
        if let Ok(mut t) = self.task.lock() {
            if let Some(t) = t.as_mut() {
                f(t);
            }
        }
    }

    fn update(&self, f: impl FnOnce(&mut Task)) {
        let (shape, interval) = (self.shape, self.interval);
        self.with_task(|t| {
            f(t);
            if let Some(bar) = &t.bar {
                bar.set_position(t.done);
            } else if shape == Shape::Lines && t.last_line.elapsed() >= interval {
                t.last_line = Instant::now();
                self.ui.message(&t.status());
            }
        });
    }
}

impl Reporter for BuildProgress {
    fn start(&self, what: &str, total: Option<u64>, already: u64) {
        self.finish();
        let bar = (self.shape == Shape::Bar).then(|| {
            let bar = self.ui.bar(what, total);
            bar.set_position(already);
            bar
        });
        if self.shape == Shape::Lines {
            let size = total.map(|t| format!(" ({})", BinaryBytes(t)));
            let resumed = (already > 0).then(|| format!(", resuming at {}", BinaryBytes(already)));
            self.ui.message(&format!(
                "{what}{}{}",
                size.unwrap_or_default(),
                resumed.unwrap_or_default()
            ));
        }
        let now = Instant::now();
        if let Ok(mut t) = self.task.lock() {
            *t = Some(Task {
                what: what.to_owned(),
                total,
                already,
                done: already,
                started: now,
                last_line: now,
                bar,
            });
        }
    }

    fn advance(&self, bytes: u64) {
        self.update(|t| t.done += bytes);
    }

    fn set(&self, done: u64) {
        self.update(|t| t.done = done);
    }

    fn finish(&self) {
        let Some(task) = self.task.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        if let Some(bar) = &task.bar {
            bar.finish_and_clear();
        }
        if self.shape == Shape::Lines {
            self.ui.message(&task.summary());
        }
    }

    fn warn(&self, message: &str) {
        self.ui.warn(message);
    }
}

impl Task {
    fn speed(&self) -> Option<u64> {
        let secs = self.started.elapsed().as_secs_f64();
        let bytes = self.done.saturating_sub(self.already) as f64;
        (secs > 0.0).then(|| (bytes / secs) as u64)
    }

    /// `Downloading …: 45% of 16 MiB, 3.1 MiB/s, about 3s left`.
    fn status(&self) -> String {
        let speed = self.speed().unwrap_or(0);
        match self.total.filter(|&t| t > 0) {
            Some(total) => {
                let left = total.saturating_sub(self.done);
                let eta = (speed > 0).then(|| {
                    format!(
                        ", about {} left",
                        HumanDuration(Duration::from_secs(left / speed))
                    )
                });
                format!(
                    "{}: {}% of {}, {}/s{}",
                    self.what,
                    self.done.min(total) * 100 / total,
                    BinaryBytes(total),
                    BinaryBytes(speed),
                    eta.unwrap_or_default()
                )
            }
            None => format!(
                "{}: {}, {}/s",
                self.what,
                BinaryBytes(self.done),
                BinaryBytes(speed)
            ),
        }
    }

    /// `Downloading …: done, 16 MiB in 5s (3.1 MiB/s)`, or where it stopped.
    fn summary(&self) -> String {
        let elapsed = HumanDuration(self.started.elapsed());
        let speed = BinaryBytes(self.speed().unwrap_or(0));
        match self.total {
            Some(total) if self.done < total => format!(
                "{}: stopped at {} of {} after {elapsed}",
                self.what,
                BinaryBytes(self.done),
                BinaryBytes(total)
            ),
            _ => format!(
                "{}: done, {} in {elapsed} ({speed}/s)",
                self.what,
                BinaryBytes(self.done)
            ),
        }
    }
}

/// What a [`Recorder`] was told.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Start(String, Option<u64>, u64),
    Advance(u64),
    Set(u64),
    Finish,
    Warn(String),
}

/// Records every call, for tests of code that reports progress.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Recorder(pub Mutex<Vec<Event>>);

#[cfg(test)]
impl Recorder {
    pub(crate) fn events(&self) -> Vec<Event> {
        self.0.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Bytes done by the end: the sum of advances, or the last position set.
    pub(crate) fn done(&self) -> u64 {
        self.events().iter().fold(0, |done, e| match e {
            Event::Start(_, _, already) => *already,
            Event::Advance(n) => done + n,
            Event::Set(n) => *n,
            _ => done,
        })
    }
}

#[cfg(test)]
impl Reporter for Recorder {
    fn start(&self, what: &str, total: Option<u64>, already: u64) {
        self.push(Event::Start(what.to_owned(), total, already));
    }
    fn advance(&self, bytes: u64) {
        self.push(Event::Advance(bytes));
    }
    fn set(&self, done: u64) {
        self.push(Event::Set(done));
    }
    fn finish(&self) {
        self.push(Event::Finish);
    }
    fn warn(&self, message: &str) {
        self.push(Event::Warn(message.to_owned()));
    }
}

#[cfg(test)]
impl Recorder {
    fn push(&self, e: Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::{Ui, UiOptions};

    fn lines_reporter(interval: Duration) -> BuildProgress {
        // Tests run without a terminal on stderr, so this is the plain-lines shape.
        let p = Ui::new(UiOptions::default()).build("t").reporter();
        assert_eq!(p.shape, Shape::Lines);
        p.with_interval(interval)
    }

    #[test]
    fn plain_lines_are_throttled_and_summarised() {
        let p = lines_reporter(Duration::from_secs(3600));
        p.start("Downloading x.iso", Some(4 << 20), 1 << 20);
        for _ in 0..3 {
            p.advance(1 << 20);
        }
        // No line between start and finish within the interval: not one per chunk.
        let task = p.task.lock().unwrap();
        let t = task.as_ref().unwrap();
        assert_eq!(t.done, 4 << 20);
        assert_eq!(t.last_line, t.started);
        assert!(
            t.status()
                .starts_with("Downloading x.iso: 100% of 4.00 MiB, "),
            "{}",
            t.status()
        );
        assert!(
            t.summary()
                .starts_with("Downloading x.iso: done, 4.00 MiB in "),
            "{}",
            t.summary()
        );
    }

    #[test]
    fn a_line_is_due_once_the_interval_passed() {
        let p = lines_reporter(Duration::ZERO);
        p.start("Converting disk", Some(100), 0);
        let before = p.task.lock().unwrap().as_ref().unwrap().last_line;
        std::thread::sleep(Duration::from_millis(5));
        p.set(50);
        let task = p.task.lock().unwrap();
        let t = task.as_ref().unwrap();
        assert!(t.last_line > before);
        assert!(
            t.status().starts_with("Converting disk: 50% of 100 B"),
            "{}",
            t.status()
        );
    }

    #[test]
    fn an_unfinished_task_says_where_it_stopped() {
        let p = lines_reporter(Duration::from_secs(3600));
        p.start("Downloading y.iso", Some(3 << 20), 0);
        p.advance(1 << 20);
        let summary = p.task.lock().unwrap().as_ref().unwrap().summary();
        assert!(
            summary.starts_with("Downloading y.iso: stopped at 1.00 MiB of 3.00 MiB after "),
            "{summary}"
        );
        p.finish();
        assert!(p.task.lock().unwrap().is_none());
    }

    #[test]
    fn machine_readable_shows_no_progress() {
        let ui = Ui::new(UiOptions {
            machine_readable: true,
            ..UiOptions::default()
        });
        assert_eq!(ui.build("t").reporter().shape, Shape::Nothing);
    }
}
