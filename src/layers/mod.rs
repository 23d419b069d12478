//! The layer cache (`kiln build -cache`): the guest's disks are kept as a layer after the
//! builder's install (boot command, answer file, first boot up to a working communicator) and
//! after each provisioner. A rebuild starts from the last layer whose [`key`] still matches and
//! runs only the steps after it; the artifact and the post-processors are made as usual.
//!
//! The builder freezes its disks through [`Machine::save_layer`](crate::pipeline::Machine):
//! QEMU does it live (the guest's `sync`, then a QMP snapshot that puts a new overlay on top of
//! the running disk), so a cold build pays a copy of each step's changes and no reboot. A
//! rebuild boots the guest from the layer: what a provisioner left only in memory (a process it
//! started, files on a tmpfs) is not there, as after a reboot.
//!
//! [`LayerPlan`] is what one build decided: the keys of its layers, the layer it starts from
//! (held against `prune` for the whole build), and what it saves.

pub mod key;
pub mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::communicator::keys::TemporaryKeyPair;
use crate::pipeline::BuildContext;
use crate::template::PlannedBuild;
use store::{InUse, Layer, LayerMeta, LayerStore};

/// The private key of a temporary key pair, kept in a layer whose guest authorizes it (a
/// throwaway key that only opens that cached guest; the artifact no longer has it).
pub const SSH_KEY: &str = "ssh_key";

/// What `kiln build -cache` passes to each build.
#[derive(Debug, Clone)]
pub struct LayerSettings {
    /// The store (`<cache dir>/layers`).
    pub store: LayerStore,
    /// The template, as given on the command line (shown by `kiln cache list`).
    pub template: String,
    /// `-rebuild-from`: run this step and those after it again.
    pub rebuild_from: Option<String>,
    /// The directory relative paths in options are against (the working directory, as for
    /// the steps that read them).
    pub base: PathBuf,
}

/// Why the layer cache cannot be used for a build as asked.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A file the keys cover could not be read.
    #[error(transparent)]
    Key(#[from] key::KeyError),
    /// `-rebuild-from` names no step of the build.
    #[error("-rebuild-from={0}: the build {1} has no such step\nhint: use install, a provisioner's number (1 is the first), its name or its type")]
    UnknownStep(String, String),
    /// The store could not be read.
    #[error("cannot use the layer store {0}")]
    Store(PathBuf, #[source] std::io::Error),
}

/// The layer a build starts from.
#[derive(Debug)]
pub struct Start {
    /// Its place: 0 after the install, `i` after provisioner `i`.
    pub index: usize,
    /// The layer.
    pub layer: Layer,
    _hold: InUse,
}

/// What the layer cache decided for one build.
#[derive(Debug)]
pub struct LayerPlan {
    store: LayerStore,
    /// `keys[0]`: after the install; `keys[i]`: after provisioner `i`.
    keys: Vec<String>,
    labels: Vec<String>,
    template: String,
    build: String,
    /// The layer the build starts from, if one matches.
    pub start: Option<Start>,
    /// The temporary SSH key pair the guest of these layers authorizes, kept in each layer.
    pub temp_key: Option<Arc<TemporaryKeyPair>>,
    /// Set when a layer could not be saved: the later ones would be deltas over a state the
    /// store does not have, so none is saved after it.
    broken: AtomicBool,
}

impl LayerPlan {
    /// The plan for `build`: its keys, and the last layer the store has whose keys all match,
    /// unless `-rebuild-from` says to rerun it.
    pub fn new(settings: &LayerSettings, build: &PlannedBuild) -> Result<Self, LayerError> {
        let base = settings.base.as_path();
        let mut keys = vec![key::install_key(&build.source_type, &build.config, base)?];
        let mut labels = vec!["install".to_owned()];
        for (i, p) in build.provisioners.iter().enumerate() {
            let parent = keys.last().map_or("", String::as_str);
            keys.push(key::provisioner_key(parent, p, base)?);
            labels.push(match &p.name {
                Some(n) => format!("provisioner {} ({} {n:?})", i + 1, p.kind),
                None => format!("provisioner {} ({})", i + 1, p.kind),
            });
        }
        // The layers that may be used: all, or those before the step to rerun.
        let usable = match &settings.rebuild_from {
            None => keys.len(),
            Some(step) => rerun_index(step, build)
                .ok_or_else(|| LayerError::UnknownStep(step.clone(), build.name.clone()))?,
        };
        let store = settings.store.clone();
        let mut start = None;
        for index in (0..usable).rev() {
            let Some(layer) = store.find(&keys[index]) else {
                continue;
            };
            let chain = &keys[..=index];
            let held = store
                .hold(chain)
                .map_err(|e| LayerError::Store(store.dir().to_owned(), e))?;
            if let Some(hold) = held {
                store.record_use(chain);
                start = Some(Start {
                    index,
                    layer,
                    _hold: hold,
                });
                break;
            }
        }
        Ok(Self {
            store,
            keys,
            labels,
            template: settings.template.clone(),
            build: build.name.clone(),
            start,
            temp_key: None,
            broken: AtomicBool::new(false),
        })
    }

    /// Where the build starts from: `None` for a cold build.
    pub fn start_index(&self) -> Option<usize> {
        self.start.as_ref().map(|s| s.index)
    }

    /// The directory of the layer the build starts from.
    pub fn start_dir(&self) -> Option<&Path> {
        self.start.as_ref().map(|s| s.layer.dir.as_path())
    }

    /// What the build output says about the layers: the layer used and how old it is, or that
    /// none matched.
    pub fn describe(&self) -> String {
        match &self.start {
            Some(s) => {
                let age = s.layer.meta.age_secs();
                let rest = self.keys.len() - 1 - s.index;
                format!(
                    "Using cached layer after {}, built {} ago (layer {}); {} to run. Steps are cached by their inputs: what a script downloads or what shell-local does on the host is not checked (-rebuild-from=<step> runs a step again)",
                    self.labels[s.index],
                    human_age(age),
                    &s.layer.key[..12],
                    match rest {
                        0 => "no provisioner".to_owned(),
                        1 => "1 provisioner".to_owned(),
                        n => format!("{n} provisioners"),
                    }
                )
            }
            None => format!(
                "No cached layer matches: building from scratch and saving {} layer{}",
                self.keys.len(),
                if self.keys.len() == 1 { "" } else { "s" }
            ),
        }
    }

    /// Save the layer after step `index` (0: the install) from the running machine, unless the
    /// build started after it. A failure is a warning: the build goes on without the cache.
    pub async fn save(&self, index: usize, ctx: &BuildContext) {
        if self.start_index().is_some_and(|s| index <= s) || self.broken.load(Ordering::SeqCst) {
            return;
        }
        let began = std::time::Instant::now();
        match self.try_save(index, ctx).await {
            Ok(true) => ctx.ui.say(&format!(
                "Saved the layer after {} (layer {}, {:.1}s)",
                self.labels[index],
                &self.keys[index][..12],
                began.elapsed().as_secs_f64()
            )),
            Ok(false) => {
                // Later layers would be deltas over this build's copy, which the store lacks.
                self.broken.store(true, Ordering::SeqCst);
                ctx.ui.say(&format!(
                    "The layer after {} is in use by another build: not replaced, and no later layer is saved",
                    self.labels[index]
                ));
            }
            Err(e) => {
                self.broken.store(true, Ordering::SeqCst);
                ctx.ui.warn(&format!(
                    "cannot save the layer after {}; the build goes on without saving layers: {}",
                    self.labels[index],
                    crate::report::report(&e)
                ));
            }
        }
    }

    async fn try_save(&self, index: usize, ctx: &BuildContext) -> Result<bool, SaveError> {
        let machine = ctx.require_machine().map_err(|_| SaveError::NoMachine)?;
        // Written data the guest still holds in memory goes to its disk first.
        if let Some(comm) = &ctx.communicator {
            let mut out = crate::communicator::Captured::default();
            let status = comm
                .exec("sync", &mut out)
                .await
                .map_err(|e| SaveError::Sync(Box::new(e)))?;
            if !status.success() {
                return Err(SaveError::SyncStatus(status));
            }
        }
        let key = &self.keys[index];
        let pending = self
            .store
            .begin(key)
            .map_err(|e| SaveError::Store(self.store.dir().to_owned(), e))?;
        let parent = index.checked_sub(1).map(|p| self.keys[p].clone());
        let parent_dir = parent.as_ref().map(|p| PathBuf::from("..").join(p));
        machine
            .save_layer(pending.dir(), parent_dir.as_deref())
            .await
            .map_err(SaveError::Machine)?;
        if let Some(k) = &self.temp_key {
            let path = pending.dir().join(SSH_KEY);
            k.write_private(&path)
                .map_err(|e| SaveError::Key(Box::new(e)))?;
        }
        let meta = LayerMeta {
            parent,
            template: self.template.clone(),
            build: self.build.clone(),
            step: self.labels[index].clone(),
            created: store::unix(SystemTime::now()),
            hits: 0,
        };
        pending
            .commit(&meta)
            .map_err(|e| SaveError::Store(self.store.dir().to_owned(), e))
    }
}

/// Why a layer could not be saved.
#[derive(Debug, thiserror::Error)]
enum SaveError {
    #[error("the VM is not running")]
    NoMachine,
    #[error("cannot run sync in the guest")]
    Sync(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("sync in the guest failed ({0})")]
    SyncStatus(crate::communicator::ExitStatus),
    #[error("cannot write to {0}")]
    Store(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Machine(crate::pipeline::machine::MachineError),
    #[error("cannot keep the temporary SSH key in the layer")]
    Key(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The index of the first layer `-rebuild-from=step` makes stale: `install` → 0, a
/// provisioner's number `n` (1-based), name or type → `n`.
fn rerun_index(step: &str, build: &PlannedBuild) -> Option<usize> {
    if step == "install" {
        return Some(0);
    }
    if let Ok(n) = step.parse::<usize>() {
        return (1..=build.provisioners.len()).contains(&n).then_some(n);
    }
    let by = |f: &dyn Fn(&crate::template::PlannedStep) -> bool| {
        build.provisioners.iter().position(f).map(|i| i + 1)
    };
    by(&|p| p.name.as_deref() == Some(step)).or_else(|| by(&|p| p.kind == step))
}

/// `3h`, `2d`, `45s`: the largest unit.
pub fn human_age(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::diagnostics::SpanTable;
    use crate::template::{PlannedStep, StepMeta};
    use serde_json::json;

    fn build(dir: &Path) -> PlannedBuild {
        let step = |kind: &str, name: Option<&str>, config| PlannedStep {
            kind: kind.into(),
            name: name.map(str::to_owned),
            config,
            spans: SpanTable::default(),
            meta: StepMeta::default(),
        };
        std::fs::write(dir.join("a.sh"), "true").unwrap();
        PlannedBuild {
            name: "qemu.x".into(),
            source_type: "qemu".into(),
            source_name: "x".into(),
            build_name: String::new(),
            description: String::new(),
            config: json!({ "iso_url": "x.iso", "iso_checksum": "sha256:00" }),
            spans: SpanTable::default(),
            provisioners: vec![
                step("shell", None, json!({ "script": "a.sh" })),
                step(
                    "file",
                    Some("conf"),
                    json!({ "source": "a.sh", "destination": "/" }),
                ),
            ],
            error_cleanup: None,
            post_processors: Vec::new(),
        }
    }

    fn settings(dir: &Path, rebuild_from: Option<&str>) -> LayerSettings {
        LayerSettings {
            store: LayerStore::new(dir.join("layers")),
            template: "t.pkr.hcl".into(),
            rebuild_from: rebuild_from.map(str::to_owned),
            base: dir.to_owned(),
        }
    }

    /// Publish the layers `0..=upto` of `plan` as if a build had saved them.
    fn publish(plan: &LayerPlan, upto: usize) {
        for i in 0..=upto {
            let p = plan.store.begin(&plan.keys[i]).unwrap();
            let meta = LayerMeta {
                parent: i.checked_sub(1).map(|p| plan.keys[p].clone()),
                template: "t".into(),
                build: "qemu.x".into(),
                step: plan.labels[i].clone(),
                created: store::unix(SystemTime::now()),
                hits: 0,
            };
            p.commit(&meta).unwrap();
        }
    }

    #[test]
    fn a_rebuild_starts_from_the_last_matching_layer_unless_told_to_rerun() {
        let t = tempfile::tempdir().unwrap();
        let b = build(t.path());
        let cold = LayerPlan::new(&settings(t.path(), None), &b).unwrap();
        assert_eq!(cold.start_index(), None);
        assert!(
            cold.describe().contains("saving 3 layers"),
            "{}",
            cold.describe()
        );
        publish(&cold, 1);
        let warm = LayerPlan::new(&settings(t.path(), None), &b).unwrap();
        assert_eq!(warm.start_index(), Some(1));
        let said = warm.describe();
        assert!(
            said.contains("after provisioner 1 (shell), built 0s ago")
                && said.contains("1 provisioner to run"),
            "{said}"
        );
        for (step, start) in [
            ("install", None),
            ("1", Some(0)),
            ("conf", Some(1)),
            ("file", Some(1)),
            ("shell", Some(0)),
        ] {
            let p = LayerPlan::new(&settings(t.path(), Some(step)), &b).unwrap();
            assert_eq!(p.start_index(), start, "-rebuild-from={step}");
        }
        let e = LayerPlan::new(&settings(t.path(), Some("9")), &b).unwrap_err();
        assert!(e.to_string().contains("has no such step"), "{e}");
        // Each use counted on the layer it started from.
        assert!(warm.store.find(&warm.keys[1]).unwrap().meta.hits >= 1);
    }

    #[test]
    fn ages_read_in_their_largest_unit() {
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(3 * 3600 + 5), "3h");
        assert_eq!(human_age(2 * 86_400), "2d");
    }
}
