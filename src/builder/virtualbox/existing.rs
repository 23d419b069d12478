//! The steps of the VirtualBox builders that start from a VM instead of creating one:
//! `virtualbox-ovf` imports an OVF/OVA ([`ImportVm`]); `virtualbox-vm` uses a registered VM as
//! it is ([`UseVm`]), restoring `attach_snapshot` first and taking `target_snapshot` after
//! shutdown ([`TakeSnapshot`]), and never deletes it. The snapshot tree is read from
//! `showvminfo --machinereadable`, which also says whether the VM exists and runs.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use super::driver::{vm_state, Driver, SnapshotAction, VBoxError, VBoxOp};
use super::machine::running;
use super::steps::delete_vm;
use crate::pipeline::{BuildContext, CleanupError, Step, StepError};

/// Import the OVF/OVA the download step fetched (`ctx.iso_path`) as the VM `vm_name`;
/// cleanup deletes it unless `keep_registered` and the build succeeded.
pub struct ImportVm {
    vm: String,
    args: Vec<String>,
    keep_registered: bool,
    driver: Arc<dyn Driver>,
    imported: bool,
}

impl ImportVm {
    /// The step importing as `vm` with the extra `import` arguments `args`.
    pub fn new(
        vm: String,
        args: Vec<String>,
        keep_registered: bool,
        driver: Arc<dyn Driver>,
    ) -> Self {
        Self {
            vm,
            args,
            keep_registered,
            driver,
            imported: false,
        }
    }
}

#[async_trait]
impl Step for ImportVm {
    fn name(&self) -> &'static str {
        "import VM"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let source = ctx.require_iso()?.to_owned();
        // An OVF names its disks relative to itself: import the file, not a link to it.
        let path: PathBuf = std::fs::canonicalize(&source)
            .map_err(|e| StepError::with(format!("cannot resolve {}", source.display()), e))?;
        ctx.ui.say(&format!("Importing VM: {}", path.display()));
        let op = VBoxOp::Import {
            path,
            vm: self.vm.clone(),
            args: self.args.clone(),
        };
        self.driver
            .run(&op)
            .await
            .map_err(|e| StepError::with("cannot import the VM", e))?;
        self.imported = true;
        ctx.vm_name = Some(self.vm.clone());
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        if !std::mem::take(&mut self.imported) {
            return Ok(());
        }
        delete_vm(self.driver.as_ref(), ctx, &self.vm, self.keep_registered).await
    }
}

/// One snapshot of a VM, from `showvminfo --machinereadable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its name.
    pub name: String,
    /// Its UUID.
    pub uuid: String,
    /// Where it sits in the tree: `""` for the root, `-1`, `-1-2`… (VirtualBox's key suffix).
    path: String,
}

impl Snapshot {
    /// Whether `self` is a direct child of `parent`.
    fn is_child_of(&self, parent: &Snapshot) -> bool {
        self.path
            .rsplit_once('-')
            .is_some_and(|(up, _)| up == parent.path)
    }
}

/// A VM's snapshots and which is current, from `showvminfo --machinereadable`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshots {
    /// Every snapshot, in the order VirtualBox lists them.
    pub all: Vec<Snapshot>,
    /// The UUID of the current snapshot.
    pub current: Option<String>,
}

impl Snapshots {
    /// Read the `SnapshotName[-N…]`, `SnapshotUUID[-N…]` and `CurrentSnapshotUUID` lines.
    pub fn parse(info: &str) -> Self {
        let mut out = Self::default();
        let mut uuids = std::collections::HashMap::new();
        for line in info.lines() {
            let Some((key, value)) = line.trim_end_matches('\r').split_once('=') else {
                continue;
            };
            let value = value.trim_matches('"').to_owned();
            if let Some(path) = key.strip_prefix("SnapshotName") {
                out.all.push(Snapshot {
                    name: value,
                    uuid: String::new(),
                    path: path.to_owned(),
                });
            } else if let Some(path) = key.strip_prefix("SnapshotUUID") {
                uuids.insert(path.to_owned(), value);
            } else if key == "CurrentSnapshotUUID" {
                out.current = Some(value);
            }
        }
        for s in &mut out.all {
            s.uuid = uuids.remove(&s.path).unwrap_or_default();
        }
        out
    }

    /// The snapshots named `name`.
    pub fn named(&self, name: &str) -> Vec<&Snapshot> {
        self.all.iter().filter(|s| s.name == name).collect()
    }

    /// The current snapshot.
    pub fn current(&self) -> Option<&Snapshot> {
        let uuid = self.current.as_deref()?;
        self.all.iter().find(|s| s.uuid == uuid)
    }

    /// The direct child of `parent` named `name`.
    fn child_named(&self, parent: &Snapshot, name: &str) -> Option<&Snapshot> {
        self.all
            .iter()
            .find(|s| s.name == name && s.is_child_of(parent))
    }
}

/// `showvminfo` of `vm`: its snapshots, once it is known to exist and to be stopped.
async fn stopped_vm(driver: &dyn Driver, vm: &str) -> Result<Snapshots, StepError> {
    let info = match driver.run(&VBoxOp::ShowVmInfo { vm: vm.to_owned() }).await {
        Ok(info) => info,
        Err(VBoxError::Failed { stderr, .. }) if stderr.contains("VBOX_E_OBJECT_NOT_FOUND") => {
            return Err(StepError::msg(format!(
                "VM {vm:?} does not exist: virtualbox-vm builds on a VM registered with VirtualBox\nhint: set vm_name to one that `VBoxManage list vms` lists"
            )));
        }
        Err(e) => {
            return Err(StepError::with(
                format!("cannot read the state of VM {vm:?}"),
                e,
            ))
        }
    };
    if let Some(state) = vm_state(&info).filter(|s| running(s)) {
        return Err(StepError::msg(format!(
            "VM {vm:?} is {state}: virtualbox-vm needs it stopped\nhint: shut it down first, e.g. `VBoxManage controlvm {vm} acpipowerbutton`"
        )));
    }
    Ok(Snapshots::parse(&info))
}

/// `virtualbox-vm`: check that `vm_name` exists and is stopped, check the snapshots as
/// Packer's `Prepare()` does, and restore `attach_snapshot`. Cleanup restores the snapshot
/// the VM was on before, unless `keep_registered` (Packer's revert); the VM itself is never
/// deleted.
pub struct UseVm {
    vm: String,
    attach: Option<String>,
    target: Option<String>,
    force_delete: bool,
    keep_registered: bool,
    driver: Arc<dyn Driver>,
    /// The UUID of the snapshot to go back to at cleanup.
    revert_to: Option<String>,
}

impl UseVm {
    /// The step for VM `vm`, restoring snapshot `attach` and checking that `target` can be
    /// taken (or, with `force_delete`, replaced).
    pub fn new(
        vm: String,
        attach: Option<String>,
        target: Option<String>,
        force_delete: bool,
        keep_registered: bool,
        driver: Arc<dyn Driver>,
    ) -> Self {
        Self {
            vm,
            attach,
            target,
            force_delete,
            keep_registered,
            driver,
            revert_to: None,
        }
    }

    /// Packer's checks of `attach_snapshot` and `target_snapshot` against the VM's tree; the
    /// snapshot to attach to (the current one without `attach_snapshot`).
    fn check<'a>(&self, tree: &'a Snapshots) -> Result<Option<&'a Snapshot>, StepError> {
        let vm = &self.vm;
        let mut base = tree.current();
        if let Some(name) = &self.attach {
            if tree.all.is_empty() {
                return Err(StepError::msg(format!(
                    "VM {vm:?} has no snapshots: cannot attach to {name:?} (attach_snapshot)"
                )));
            }
            match tree.named(name).as_slice() {
                [] => {
                    return Err(StepError::msg(format!(
                        "snapshot {name:?} does not exist on VM {vm:?} (attach_snapshot)"
                    )))
                }
                [one] => base = Some(one),
                _ => {
                    return Err(StepError::msg(format!(
                        "VM {vm:?} has several snapshots named {name:?} (attach_snapshot)"
                    )))
                }
            }
        }
        let (Some(target), Some(base)) = (&self.target, base) else {
            return Ok(base);
        };
        if *target == base.name {
            return Err(StepError::msg(format!(
                "target snapshot {target:?} cannot be the snapshot the build attaches to ({:?})",
                base.name
            )));
        }
        if tree.named(target).is_empty() {
            return Ok(Some(base));
        }
        if tree.child_named(base, target).is_none() {
            return Err(StepError::msg(format!(
                "target snapshot {target:?} already exists on VM {vm:?} and is not a direct child of {:?}",
                base.name
            )));
        }
        if !self.force_delete {
            return Err(StepError::msg(format!(
                "target snapshot {target:?} already exists as a direct child of {:?} on VM {vm:?}\nhint: set force_delete_snapshot = true to replace it",
                base.name
            )));
        }
        Ok(Some(base))
    }
}

#[async_trait]
impl Step for UseVm {
    fn name(&self) -> &'static str {
        "use VM"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let vm = self.vm.clone();
        let d = self.driver.as_ref();
        let tree = stopped_vm(d, &vm).await?;
        let base = self.check(&tree)?;
        ctx.vm_name = Some(vm.clone());
        let (Some(name), Some(base)) = (&self.attach, base) else {
            return Ok(());
        };
        ctx.ui.say(&format!(
            "Attaching snapshot {name} on virtual machine {vm}"
        ));
        let previous = tree.current.clone();
        let op = VBoxOp::Snapshot {
            vm,
            action: SnapshotAction::Restore,
            snapshot: base.name.clone(),
        };
        d.run(&op)
            .await
            .map_err(|e| StepError::with("cannot restore the snapshot", e))?;
        self.revert_to = previous;
        Ok(())
    }

    async fn cleanup(&mut self, ctx: &mut BuildContext) -> Result<(), CleanupError> {
        let Some(uuid) = self.revert_to.take() else {
            return Ok(());
        };
        if self.keep_registered {
            ctx.ui
                .say("Keeping the VM's state (keep_registered = true)");
            return Ok(());
        }
        ctx.ui.say(&format!(
            "Reverting to snapshot {uuid} on virtual machine {}",
            self.vm
        ));
        let op = VBoxOp::Snapshot {
            vm: self.vm.clone(),
            action: SnapshotAction::Restore,
            snapshot: uuid,
        };
        self.driver
            .run(&op)
            .await
            .map(drop)
            .map_err(|e| CleanupError::new("cannot restore the VM's previous snapshot", e))
    }
}

/// `virtualbox-vm`'s `target_snapshot`: after shutdown, replace a child of the current
/// snapshot with that name (checked by [`UseVm`]) and take the snapshot.
pub struct TakeSnapshot {
    target: Option<String>,
    driver: Arc<dyn Driver>,
}

impl TakeSnapshot {
    /// The step taking `target`, if set.
    pub fn new(target: Option<String>, driver: Arc<dyn Driver>) -> Self {
        Self { target, driver }
    }
}

#[async_trait]
impl Step for TakeSnapshot {
    fn name(&self) -> &'static str {
        "take snapshot"
    }

    async fn run(&mut self, ctx: &mut BuildContext) -> Result<(), StepError> {
        let Some(target) = self.target.clone() else {
            ctx.ui.say("No target snapshot defined...");
            return Ok(());
        };
        let vm = ctx.require_vm_name()?.to_owned();
        let d = self.driver.as_ref();
        let tree = stopped_vm(d, &vm).await.map_err(|e| {
            StepError::msg(format!(
                "unable to create snapshot {target:?}: {}",
                e.report()
            ))
        })?;
        ctx.ui.say(&format!(
            "Creating snapshot {target} on virtual machine {vm}"
        ));
        let old = tree
            .current()
            .and_then(|c| tree.child_named(c, &target))
            .map(|s| s.uuid.clone());
        if let Some(uuid) = old {
            let op = VBoxOp::Snapshot {
                vm: vm.clone(),
                action: SnapshotAction::Delete,
                snapshot: uuid,
            };
            d.run(&op).await.map_err(|e| {
                StepError::with(format!("cannot delete the old snapshot {target:?}"), e)
            })?;
        }
        let op = VBoxOp::Snapshot {
            vm,
            action: SnapshotAction::Take,
            snapshot: target,
        };
        d.run(&op)
            .await
            .map(drop)
            .map_err(|e| StepError::with("cannot take the snapshot", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TREE: &str = "name=\"vm\"\nVMState=\"poweroff\"\nSnapshotName=\"base\"\nSnapshotUUID=\"u0\"\nSnapshotName-1=\"clean\"\nSnapshotUUID-1=\"u1\"\nSnapshotName-1-1=\"done\"\nSnapshotUUID-1-1=\"u2\"\nSnapshotName-2=\"done\"\nSnapshotUUID-2=\"u3\"\nCurrentSnapshotName=\"base\"\nCurrentSnapshotUUID=\"u0\"\n";

    fn step(attach: Option<&str>, target: Option<&str>, force: bool) -> UseVm {
        UseVm::new(
            "vm".into(),
            attach.map(Into::into),
            target.map(Into::into),
            force,
            false,
            Arc::new(super::super::driver::testing::FakeDriver::default()),
        )
    }

    #[test]
    fn the_snapshot_tree_is_read_from_showvminfo() {
        let t = Snapshots::parse(TREE);
        assert_eq!(t.all.len(), 4);
        assert_eq!(t.current().map(|s| s.name.as_str()), Some("base"));
        let clean = t.named("clean")[0];
        assert_eq!(clean.uuid, "u1");
        assert_eq!(
            t.child_named(clean, "done").map(|s| s.uuid.as_str()),
            Some("u2")
        );
        assert!(t.child_named(t.named("base")[0], "done").is_some());
        assert_eq!(
            Snapshots::parse("VMState=\"poweroff\"\n"),
            Snapshots::default()
        );
    }

    #[test]
    fn snapshots_are_checked_as_packer_checks_them() {
        let t = Snapshots::parse(TREE);
        let err = |a, tg, f| step(a, tg, f).check(&t).unwrap_err().report();
        assert!(err(Some("gone"), None, false).contains("does not exist"));
        assert!(err(Some("done"), None, false).contains("several snapshots"));
        assert!(err(Some("clean"), Some("clean"), false).contains("cannot be the snapshot"));
        let e = err(Some("clean"), Some("done"), false);
        assert!(e.contains("force_delete_snapshot"), "{e}");
        assert!(err(Some("clean"), Some("base"), true).contains("not a direct child"));
        let ok = step(Some("clean"), Some("done"), true).check(&t).unwrap();
        assert_eq!(ok.map(|s| s.uuid.as_str()), Some("u1"));
        assert!(step(None, Some("new"), false).check(&t).is_ok());
        let none = Snapshots::default();
        assert!(step(Some("clean"), None, false)
            .check(&none)
            .unwrap_err()
            .report()
            .contains("has no snapshots"));
    }
}
