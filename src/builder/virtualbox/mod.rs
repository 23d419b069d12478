//! The VirtualBox builders (Packer's builder id `mitchellh.virtualbox`): `virtualbox-iso`
//! creates a VM and installs from an ISO, `virtualbox-ovf` imports an OVF/OVA, `virtualbox-vm`
//! builds on a registered VM (and its snapshots). This module holds only what is VirtualBox's
//! own: the [`driver`] seam over `VBoxManage` (typed operations, the version they are rendered
//! for), the registered VM as a [`machine`] (state by polling, scancode keyboard), the
//! [`steps`] all three share (media, port forward, start, devices, export; create and disks
//! for `virtualbox-iso`), the steps of the two that start from a VM that exists
//! ([`existing`]: import, snapshots) and the guest [`additions`] (fetch, then attach or
//! upload). [`compose`] puts each builder's own steps among the shared steps of
//! `builder::steps` in Packer's order; the steps read the options all three have from
//! [`VirtualBoxCommon`].

pub mod additions;
pub mod driver;
pub mod existing;
pub mod machine;
pub mod steps;

use std::path::PathBuf;
use std::sync::Arc;

use super::steps::boot::TypeBootCommand;
use super::steps::cd::CdFiles;
use super::steps::connect::{ClearAuthorizedKeys, Connect, PublishKey};
use super::steps::output_dir::OutputDir;
use super::steps::ports::{PickPorts, PortRequest};
use super::steps::{download::Download, floppy::CreateFloppy, http::StartHttpServer};
use super::steps::{provision::Provision, shutdown::Shutdown};
use super::{RunOptions, SetupError};
use crate::communicator::keys::TemporaryKeyPair;
use crate::config::common::{
    BootConfig, CdConfig, CommConfig, FloppyConfig, HostPortConfig, HttpConfig, ShutdownConfig,
};
use crate::config::virtualbox::{
    VirtualBoxCommon, VirtualBoxIsoConfig, VirtualBoxOvfConfig, VirtualBoxVmConfig,
};
use crate::pipeline::Step;
use crate::template::PlannedBuild;
use driver::{Driver, HostDriver};

/// Packer's id for artifacts of the VirtualBox builders.
pub const BUILDER_ID: &str = "mitchellh.virtualbox";

/// The address of the host as a guest on VirtualBox's NAT network sees it.
const NAT_HOST: &str = "10.0.2.2";

/// `boot` as the shared typing step must see it to pace scancode calls as Packer's VirtualBox
/// builder does: `boot_keygroup_interval` (not `boot_key_interval`) after each
/// `keyboardputscancode` call. The step pauses `boot_key_interval` after each send, so it is
/// handed the group interval under that name.
fn scancode_timing(boot: &BootConfig) -> BootConfig {
    let mut boot = boot.clone();
    boot.boot_key_interval = boot.boot_keygroup_interval.take();
    boot
}

// The steps of a `virtualbox-iso` / `-ovf` / `-vm` build, on the host's VBoxManage.
host_source!(VirtualBoxIsoConfig, |_| HostDriver::locate(), steps_with);
host_source!(
    VirtualBoxOvfConfig,
    |_| HostDriver::locate(),
    ovf_steps_with
);
// Only an export makes an output directory.
host_source!(
    VirtualBoxVmConfig,
    |_| HostDriver::locate(),
    vm_steps_with,
    |c, build| (!c.common.skip_export)
        .then(|| c.output.output_directory(&build.source_name).into())
);

/// What a VirtualBox build is made of: the options every VirtualBox builder has, and the
/// builder's own steps, which [`compose`] puts among the shared ones.
pub struct Parts {
    /// The options the shared VirtualBox steps read.
    pub common: VirtualBoxCommon,
    /// Communicator.
    pub comm: CommConfig,
    /// Shutdown.
    pub shutdown: ShutdownConfig,
    /// HTTP server.
    pub http: HttpConfig,
    /// Boot command.
    pub boot: BootConfig,
    /// Floppy.
    pub floppy: FloppyConfig,
    /// Extra CD.
    pub cd: CdConfig,
    /// Host ports for the communicator's forward.
    pub ports: HostPortConfig,
    /// Steps that fetch the builder's input, run after the guest additions are fetched.
    pub fetch: Vec<Box<dyn Step>>,
    /// `(output directory, VM name)`, when the build makes an output directory.
    pub output: Option<(PathBuf, String)>,
    /// Steps that make the VM (create, import) or find it, before its media are attached.
    pub machine: Vec<Box<dyn Step>>,
    /// `iso_interface`, when there is a boot ISO to attach (`virtualbox-iso`).
    pub boot_iso_interface: Option<String>,
    /// Keep the boot ISO attached in the export.
    pub bundle_iso: bool,
    /// Steps after `vboxmanage_post`, before the export.
    pub before_export: Vec<Box<dyn Step>>,
}

/// The steps of a `virtualbox-iso` build of `cfg` on `driver`.
pub fn steps_with(
    build: &PlannedBuild,
    cfg: VirtualBoxIsoConfig,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let out_dir = PathBuf::from(cfg.output.output_directory(&build.source_name));
    let vm_name = cfg.output.vm_name(&build.source_name);
    let cfg = Arc::new(cfg);
    let parts = Parts {
        common: cfg.common.clone(),
        comm: cfg.comm.clone(),
        shutdown: cfg.shutdown.clone(),
        http: cfg.http.clone(),
        boot: cfg.boot.clone(),
        floppy: cfg.floppy.clone(),
        cd: cfg.cd.clone(),
        ports: cfg.ports.clone(),
        fetch: vec![Box::new(Download::new(cfg.iso.clone(), "ISO"))],
        output: Some((out_dir, vm_name)),
        machine: vec![
            Box::new(steps::CreateVm::new(cfg.clone(), driver.clone())),
            Box::new(steps::CreateDisk::new(cfg.clone(), driver.clone())),
        ],
        boot_iso_interface: Some(cfg.iso_interface.clone()),
        bundle_iso: cfg.bundle_iso,
        before_export: Vec::new(),
    };
    compose(build, run, driver, parts)
}

/// The steps of a `virtualbox-ovf` build of `cfg` on `driver`: download and verify the
/// OVF/OVA, import it, then as `virtualbox-iso` from the media on.
pub fn ovf_steps_with(
    build: &PlannedBuild,
    cfg: VirtualBoxOvfConfig,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let out_dir = PathBuf::from(cfg.output.output_directory(&build.source_name));
    let vm_name = cfg.output.vm_name(&build.source_name);
    let import = existing::ImportVm::new(
        vm_name.clone(),
        cfg.import_args(),
        cfg.common.keep_registered,
        driver.clone(),
    );
    let parts = Parts {
        fetch: vec![Box::new(Download::new(cfg.source(), "OVF/OVA"))],
        output: Some((out_dir, vm_name)),
        machine: vec![Box::new(import)],
        boot_iso_interface: None,
        bundle_iso: false,
        before_export: Vec::new(),
        common: cfg.common,
        comm: cfg.comm,
        shutdown: cfg.shutdown,
        http: cfg.http,
        boot: cfg.boot,
        floppy: cfg.floppy,
        cd: cfg.cd,
        ports: cfg.ports,
    };
    compose(build, run, driver, parts)
}

/// The steps of a `virtualbox-vm` build of `cfg` on `driver`: check the VM and restore
/// `attach_snapshot`, then as `virtualbox-iso` from the media on, taking `target_snapshot`
/// before the export. The output directory is made only when the VM is exported (Packer).
pub fn vm_steps_with(
    build: &PlannedBuild,
    cfg: VirtualBoxVmConfig,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let vm_name = cfg.output.vm_name(&build.source_name);
    let output = (!cfg.common.skip_export).then(|| {
        (
            PathBuf::from(cfg.output.output_directory(&build.source_name)),
            vm_name.clone(),
        )
    });
    let use_vm = existing::UseVm::new(
        vm_name,
        cfg.attach_snapshot().map(str::to_owned),
        cfg.target_snapshot().map(str::to_owned),
        cfg.force_delete_snapshot,
        cfg.common.keep_registered,
        driver.clone(),
    );
    let take =
        existing::TakeSnapshot::new(cfg.target_snapshot().map(str::to_owned), driver.clone());
    let parts = Parts {
        fetch: Vec::new(),
        output,
        machine: vec![Box::new(use_vm)],
        boot_iso_interface: None,
        bundle_iso: false,
        before_export: vec![Box::new(take)],
        common: cfg.common,
        comm: cfg.comm,
        shutdown: cfg.shutdown,
        http: cfg.http,
        boot: cfg.boot,
        floppy: cfg.floppy,
        cd: cfg.cd,
        ports: cfg.ports,
    };
    compose(build, run, driver, parts)
}

/// The steps of a VirtualBox build made of `parts`, on `driver`, in Packer's order.
pub fn compose(
    build: &PlannedBuild,
    run: &RunOptions,
    driver: Arc<dyn Driver>,
    parts: Parts,
) -> Result<Vec<Box<dyn Step>>, SetupError> {
    let Parts {
        common,
        comm,
        shutdown,
        http,
        boot,
        floppy,
        cd,
        ports,
        fetch,
        output,
        machine,
        boot_iso_interface,
        bundle_iso,
        before_export,
    } = parts;
    let key =
        TemporaryKeyPair::for_virtualbox_build(&comm, &format!("kiln_{}", build.source_name))?
            .map(Arc::new);
    let hint = "check the guest's screen (rdp:// address above, or headless = false), that \
                boot_command was typed as the installer expects, that the answer file was \
                served (HTTP lines above), and ssh_username/ssh_password";
    let forwarded = !(common.skip_nat_mapping() || comm.communicator == "none");
    let port_request = PortRequest {
        ssh: forwarded.then(|| ports.range()),
        vnc: None,
    };
    let boot = scancode_timing(&boot);
    let cfg = Arc::new(common);
    let shared = steps::Shared::default();
    let d = || driver.clone();
    let shutdown: Box<dyn Step> = if cfg.acpi_shutdown || cfg.disable_shutdown {
        Box::new(steps::ShutdownWithoutCommand::new(
            cfg.clone(),
            shutdown.shutdown_timeout.clamped(),
            d(),
        ))
    } else {
        Box::new(Shutdown::new(shutdown))
    };
    let mut out: Vec<Box<dyn Step>> = vec![Box::new(additions::DownloadGuestAdditions::new(
        cfg.clone(),
        d(),
        shared.clone(),
    ))];
    out.extend(fetch);
    if let Some((dir, vm_name)) = output {
        out.push(Box::new(OutputDir::new(dir, vm_name, run.force)));
    }
    out.extend([
        Box::new(CreateFloppy::new(floppy)) as Box<dyn Step>,
        Box::new(CdFiles::new(cd)),
        Box::new(StartHttpServer::new(http, NAT_HOST)),
        Box::new(PublishKey::new(key.clone())),
        Box::new(PickPorts::new(port_request)),
    ]);
    out.extend(machine);
    out.extend([
        Box::new(steps::AttachIsos::new(
            cfg.clone(),
            boot_iso_interface,
            d(),
            shared.clone(),
        )) as Box<dyn Step>,
        Box::new(steps::ConfigureVrde::new(cfg.clone(), d())),
        Box::new(steps::AttachFloppy::new(d(), shared.clone())),
        Box::new(steps::PortForward::new(
            cfg.clone(),
            comm.clone(),
            d(),
            shared.clone(),
        )),
        Box::new(steps::RunVBoxManage::new(
            cfg.vboxmanage.clone(),
            d(),
            "vboxmanage",
        )),
        Box::new(steps::StartVm::new(cfg.clone(), d())),
        Box::new(TypeBootCommand::new(
            boot,
            run.boot_transport,
            run.key_interval.clone(),
        )),
        Box::new(Connect::new(comm.clone(), key.clone(), hint)),
        Box::new(steps::UploadVersion::new(cfg.clone(), d())),
        Box::new(additions::UploadGuestAdditions::new(
            cfg.clone(),
            d(),
            shared.clone(),
        )),
        Box::new(Provision::new(
            build.provisioners.clone(),
            build.error_cleanup.clone(),
            &build.source_type,
            &build.source_name,
        )),
        Box::new(ClearAuthorizedKeys::new(&comm, key)),
        shutdown,
        Box::new(steps::PostShutdownDelay::new(
            cfg.post_shutdown_delay.clamped(),
        )),
        Box::new(steps::RemoveDevices::new(bundle_iso, d(), shared.clone())),
        Box::new(steps::RunVBoxManage::new(
            cfg.vboxmanage_post.clone(),
            d(),
            "vboxmanage_post",
        )),
    ]);
    out.extend(before_export);
    out.push(Box::new(steps::Export::new(
        cfg.clone(),
        d(),
        shared,
        &build.source_type,
        &build.source_name,
    )));
    if comm.communicator == "none" {
        // Nothing to connect to: the guest installs and powers itself off.
        out.retain(|s| s.name() != "connect");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::driver::testing::FakeDriver;
    use super::driver::Version;
    use super::*;
    use crate::pipeline::context::testing::context;
    use crate::pipeline::HttpInfo;

    /// bento's `virtualbox-iso.vm` source with `os_pkrvars/ubuntu/ubuntu-24.04-x86_64` and
    /// bento's defaults (`packer_templates/pkr-sources.pkr.hcl`, non-Windows x86_64), as the
    /// template evaluates it; only `boot_wait` is cut to zero so the test does not sleep.
    fn bento_ubuntu() -> VirtualBoxIsoConfig {
        let vboxmanage = serde_json::json!([
            ["modifyvm", "{{.Name}}", "--audio-enabled", "off"],
            ["modifyvm", "{{.Name}}", "--nat-localhostreachable1", "on"],
            ["modifyvm", "{{.Name}}", "--cableconnected1", "on"],
            ["modifyvm", "{{.Name}}", "--usb-xhci", "on"],
            ["modifyvm", "{{.Name}}", "--mouse", "usb"],
            ["modifyvm", "{{.Name}}", "--keyboard", "usb"],
            [
                "storagectl",
                "{{.Name}}",
                "--name",
                "IDE Controller",
                "--remove"
            ]
        ]);
        serde_json::from_value(serde_json::json!({
            "chipset": "ich9",
            "firmware": "efi",
            "gfx_controller": "vboxsvga",
            "gfx_vram_size": 33,
            "guest_additions_path": "VBoxGuestAdditions_{{ .Version }}.iso",
            "guest_additions_mode": "upload",
            "guest_os_type": "Ubuntu_64",
            "hard_drive_interface": "virtio",
            "iso_interface": "virtio",
            "rtc_time_base": "UTC",
            "usb": false,
            "vboxmanage": vboxmanage,
            "virtualbox_version_file": ".vbox_version",
            "boot_command": ["<wait>e<wait><down><down><down><end> autoinstall ds=nocloud-net\\;s=http://{{.HTTPIP}}:{{.HTTPPort}}/ubuntu/<wait><f10><wait>"],
            "boot_wait": "0s",
            "cpus": 2,
            "communicator": "ssh",
            "disk_size": 65536,
            "headless": true,
            "http_directory": "http",
            "iso_checksum": "file:https://releases.ubuntu.com/noble/SHA256SUMS",
            "iso_url": "https://releases.ubuntu.com/noble/ubuntu-24.04.4-live-server-amd64.iso",
            "memory": 3072,
            "output_directory": "builds/packer-ubuntu-24.04-x86_64-virtualbox",
            "shutdown_command": "echo 'vagrant' | sudo -S /sbin/halt -h -p",
            "shutdown_timeout": "15m",
            "ssh_password": "vagrant",
            "ssh_port": 22,
            "ssh_timeout": "60m",
            "ssh_username": "vagrant",
            "vm_name": "ubuntu-24.04-amd64"
        }))
        .expect("bento's values decode")
    }

    fn planned() -> PlannedBuild {
        PlannedBuild {
            name: "virtualbox-iso.vm".into(),
            source_type: "virtualbox-iso".into(),
            source_name: "vm".into(),
            build_name: String::new(),
            description: String::new(),
            config: serde_json::Value::Null,
            spans: Default::default(),
            provisioners: Vec::new(),
            error_cleanup: None,
            post_processors: Vec::new(),
        }
    }

    /// The steps that need a network, a guest or files from the internet; the golden runs the
    /// others against the fake driver, with the context those would leave.
    const NOT_RUN: [&str; 9] = [
        "download guest additions",
        "download",
        "output directory",
        "floppy",
        "cd files",
        "start HTTP server",
        "publish key",
        "connect",
        "provision",
    ];

    #[test]
    fn scancode_calls_are_paced_by_the_group_interval_as_packer_does() {
        let boot = BootConfig {
            boot_key_interval: Some("10ms".parse().unwrap()),
            boot_keygroup_interval: Some("250ms".parse().unwrap()),
            ..BootConfig::default()
        };
        let paced = scancode_timing(&boot);
        assert_eq!(paced.boot_key_interval, boot.boot_keygroup_interval);
        assert_eq!(paced.boot_keygroup_interval, None);
        // Without a group interval, the sink's default (100 ms) or PACKER_KEY_INTERVAL applies.
        let paced = scancode_timing(&BootConfig {
            boot_keygroup_interval: None,
            ..boot
        });
        assert_eq!(paced.boot_key_interval, None);
    }

    #[test]
    fn the_steps_come_in_packers_order() {
        let d = Arc::new(FakeDriver::default());
        let steps = steps_with(&planned(), bento_ubuntu(), &RunOptions::default(), d).unwrap();
        let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "download guest additions",
                "download",
                "output directory",
                "floppy",
                "cd files",
                "start HTTP server",
                "publish key",
                "pick ports",
                "create VM",
                "create disk",
                "attach ISOs",
                "configure VRDE",
                "attach floppy",
                "forward port",
                "vboxmanage",
                "start VM",
                "type boot command",
                "connect",
                "upload VirtualBox version",
                "upload guest additions",
                "provision",
                "clear authorized keys",
                "shutdown",
                "post-shutdown delay",
                "remove devices",
                "vboxmanage_post",
                "export",
            ]
        );
        assert!(NOT_RUN.iter().all(|n| names.contains(n)));
    }

    /// A build of bento's source with the context the steps in [`NOT_RUN`] would leave: the
    /// output directory, the VM name, the verified ISO, the HTTP server.
    struct Bento {
        _t: tempfile::TempDir,
        out: PathBuf,
        iso: PathBuf,
        ctx: crate::pipeline::BuildContext,
    }

    fn bento_context() -> Bento {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let iso = t.path().join("ubuntu.iso");
        std::fs::write(&iso, b"iso").unwrap();
        let iso = std::fs::canonicalize(iso).unwrap();
        let mut ctx = context(t.path());
        ctx.output_dir = Some(out.clone());
        ctx.vm_name = Some("ubuntu-24.04-amd64".into());
        ctx.iso_path = Some(iso.clone());
        ctx.http = Some(HttpInfo {
            ip: NAT_HOST.into(),
            port: 8765,
            dir: "http".into(),
        });
        Bento {
            _t: t,
            out,
            iso,
            ctx,
        }
    }

    /// Run the steps not in [`NOT_RUN`] as the pipeline does: in order until one fails, then
    /// the cleanup of every step that started, in reverse. `before` sees each step's name.
    async fn run_steps(
        steps: Vec<Box<dyn Step>>,
        ctx: &mut crate::pipeline::BuildContext,
        mut before: impl FnMut(&str),
    ) -> Result<(), String> {
        let mut ran = Vec::new();
        let mut result = Ok(());
        for mut step in steps.into_iter().filter(|s| !NOT_RUN.contains(&s.name())) {
            before(step.name());
            let r = step.run(ctx).await;
            let name = step.name();
            ran.push(step);
            if let Err(e) = r {
                result = Err(format!("{name}: {}", e.report()));
                ctx.build_failed = true;
                break;
            }
        }
        while let Some(mut step) = ran.pop() {
            step.cleanup(ctx)
                .await
                .map_err(|e| format!("cleanup of {}: {}", step.name(), crate::report::chain(&e)))?;
        }
        result
    }

    #[tokio::test]
    async fn bento_ubuntu_sends_packers_vboxmanage_sequence() {
        let Bento {
            _t,
            out,
            iso,
            mut ctx,
        } = bento_context();
        let d = Arc::new(FakeDriver::with_version(Version::V7_1));
        let steps = steps_with(
            &planned(),
            bento_ubuntu(),
            &RunOptions::default(),
            d.clone(),
        )
        .unwrap();
        run_steps(steps, &mut ctx, |name| {
            if name == "shutdown" {
                // No SSH here: the shutdown step waits for the guest to stop by itself.
                d.set_states(&["running", "poweroff"]);
            }
        })
        .await
        .unwrap();
        let got: Vec<String> = d
            .commands()
            .into_iter()
            .map(|c| {
                let c = c
                    .replace(&out.display().to_string(), "OUT")
                    .replace(&iso.display().to_string(), "ISO");
                match c.split_once("--vrdeport ") {
                    Some((head, _)) => format!("{head}--vrdeport PORT"),
                    None => c,
                }
            })
            .collect();
        let port = ctx.ssh_host_port.unwrap_or_default();
        let vm = "ubuntu-24.04-amd64";
        let nic = (1..=8)
            .map(|i| format!("--nictype{i} 82540EM"))
            .collect::<Vec<_>>()
            .join(" ");
        let expected = [
            format!("createvm --name {vm} --ostype Ubuntu_64 --register"),
            format!("modifyvm {vm} --boot1 disk --boot2 dvd --boot3 none --boot4 none"),
            format!("modifyvm {vm} --cpus 2"),
            format!("modifyvm {vm} --ioapic on"),
            format!("modifyvm {vm} --memory 3072"),
            format!("modifyvm {vm} --usb off"),
            format!("modifyvm {vm} --audio-driver none --audiocontroller ac97"),
            format!("modifyvm {vm} --mouse ps2"),
            format!("modifyvm {vm} --keyboard ps2"),
            format!("modifyvm {vm} --chipset ich9"),
            format!("modifyvm {vm} --firmware efi"),
            format!("modifyvm {vm} {nic}"),
            format!("modifyvm {vm} --graphicscontroller vboxsvga --vram 33"),
            format!("modifyvm {vm} --rtcuseutc on"),
            format!("modifyvm {vm} --accelerate3d off"),
            format!("createhd --filename OUT/{vm}.vdi --size 65536 --format VDI --variant Standard"),
            format!("storagectl {vm} --name IDE --add ide"),
            format!("storagectl {vm} --name VirtioSCSI --add VirtIO --controller VirtIO"),
            format!("storageattach {vm} --storagectl VirtioSCSI --port 0 --device 0 --type hdd --medium OUT/{vm}.vdi --nonrotational off --discard off"),
            format!("storageattach {vm} --storagectl VirtioSCSI --port 13 --device 0 --type dvddrive --medium ISO"),
            format!("modifyvm {vm} --vrdeaddress 127.0.0.1 --vrdeauthtype null --vrde on --vrdeport PORT"),
            format!("modifyvm {vm} --nic1 nat"),
            format!("modifyvm {vm} --nat-localhostreachable1 on"),
            format!("modifyvm {vm} --natpf1 packercomm,tcp,127.0.0.1,{port},,22"),
            format!("modifyvm {vm} --audio-enabled off"),
            format!("modifyvm {vm} --nat-localhostreachable1 on"),
            format!("modifyvm {vm} --cableconnected1 on"),
            format!("modifyvm {vm} --usb-xhci on"),
            format!("modifyvm {vm} --mouse usb"),
            format!("modifyvm {vm} --keyboard usb"),
            format!("storagectl {vm} --name IDE Controller --remove"),
            format!("startvm {vm} --type headless"),
            // The boot command, in Packer's calls: `e`, then the keys up to the next <wait>
            // in sends of at most 25 bytes (`:` is Shift 2a, 27, a7, Shift up aa; `<down>` and
            // `<end>` are e0-prefixed), then `<f10>`.
            format!("controlvm {vm} keyboardputscancode 12 92"),
            format!("controlvm {vm} keyboardputscancode e0 50 e0 d0 e0 50 e0 d0 e0 50 e0 d0 e0 4f e0 cf 39 b9 1e 9e 16 96 14 94"),
            format!("controlvm {vm} keyboardputscancode 18 98 17 97 31 b1 1f 9f 14 94 1e 9e 26 a6 26 a6 39 b9 20 a0 1f 9f 0d 8d"),
            format!("controlvm {vm} keyboardputscancode 31 b1 18 98 2e ae 26 a6 18 98 16 96 20 a0 0c 8c 31 b1 12 92 14 94 2b ab"),
            format!("controlvm {vm} keyboardputscancode 27 a7 1f 9f 0d 8d 23 a3 14 94 14 94 19 99 2a 27 a7 aa 35 b5 35 b5 02 82"),
            format!("controlvm {vm} keyboardputscancode 0b 8b 34 b4 0b 8b 34 b4 03 83 34 b4 03 83 2a 27 a7 aa 09 89 08 88 07 87"),
            format!("controlvm {vm} keyboardputscancode 06 86 35 b5 16 96 30 b0 16 96 31 b1 14 94 16 96 35 b5"),
            format!("controlvm {vm} keyboardputscancode 44 c4"),
            // After shutdown: the devices, the NAT rule, the export; then cleanup deletes the
            // VM (keep_registered is not set).
            format!("storageattach {vm} --storagectl VirtioSCSI --port 13 --device 0 --type dvddrive --medium none"),
            format!("modifyvm {vm} --natpf1 delete packercomm"),
            format!("export {vm} --output OUT/{vm}.ovf"),
            format!("unregistervm {vm} --delete"),
        ];
        assert_eq!(got, expected);
        assert!(ctx.machine.is_none());
        let a = ctx.artifact.clone().unwrap();
        // The disk is deleted with the VM at clean-up: the export is the artifact.
        assert_eq!(a.files, [out.join(format!("{vm}.ovf"))]);
        assert_eq!((a.facts.cpus, a.facts.memory_mib), (Some(2), Some(3072)));
        assert_eq!(a.facts.disk_format.as_deref(), Some("vdi"));
    }

    #[tokio::test]
    async fn floppy_cd_sata_disks_post_commands_and_a_kept_vm_on_6_1() {
        let Bento {
            _t,
            out,
            iso,
            mut ctx,
        } = bento_context();
        let floppy = out.with_file_name("floppy.img");
        let cd = out.with_file_name("cd.iso");
        std::fs::write(&floppy, b"fd").unwrap();
        std::fs::write(&cd, b"cd").unwrap();
        ctx.floppy_path = Some(floppy.clone());
        ctx.cd_path = Some(cd.clone());
        ctx.vm_name = Some("vm".into());
        let cfg: VirtualBoxIsoConfig = serde_json::from_value(serde_json::json!({
            "iso_url": "x.iso", "iso_checksum": "none", "communicator": "none",
            "hard_drive_interface": "sata", "iso_interface": "sata", "sata_port_count": 4,
            "disk_additional_size": [1024], "hard_drive_nonrotational": true,
            "sound": "pulse", "audio_controller": "hda", "headless": true,
            "vboxmanage_post": [["modifyvm", "{{ .Name }}", "--description", "built"]],
            "bundle_iso": true, "keep_registered": true, "skip_export": true
        }))
        .unwrap();
        let d = Arc::new(FakeDriver::with_version(Version::V6_1));
        let steps = steps_with(&planned(), cfg, &RunOptions::default(), d.clone()).unwrap();
        run_steps(steps, &mut ctx, |name| {
            if name == "shutdown" {
                d.set_states(&["running", "poweroff"]);
            }
        })
        .await
        .unwrap();
        let o = out.display().to_string();
        let got: Vec<String> = d
            .commands()
            .into_iter()
            .filter(|c| {
                !c.starts_with("modifyvm vm --")
                    || c.contains("--audio")
                    || c.contains("--description")
            })
            .map(|c| {
                c.replace(&o, "OUT")
                    .replace(&iso.display().to_string(), "ISO")
                    .replace(&cd.display().to_string(), "CD")
                    .replace(&floppy.display().to_string(), "FLOPPY")
            })
            .collect();
        assert_eq!(
            got,
            [
                "createvm --name vm --ostype Other --register",
                "modifyvm vm --audio pulse --audioin on --audioout on --audiocontroller hda",
                "createhd --filename OUT/vm-0.vdi --size 40000 --format VDI --variant Standard",
                "createhd --filename OUT/vm-1.vdi --size 1024 --format VDI --variant Standard",
                "storagectl vm --name IDE --add ide",
                "storagectl vm --name SATA --add sata --portcount 4",
                "storageattach vm --storagectl SATA --port 0 --device 0 --type hdd --medium OUT/vm-0.vdi --nonrotational on --discard off",
                "storageattach vm --storagectl SATA --port 1 --device 0 --type hdd --medium OUT/vm-1.vdi --nonrotational on --discard off",
                "storageattach vm --storagectl SATA --port 13 --device 0 --type dvddrive --medium ISO",
                "storageattach vm --storagectl SATA --port 15 --device 0 --type dvddrive --medium CD",
                "storagectl vm --name Floppy --add floppy",
                "storageattach vm --storagectl Floppy --port 0 --device 0 --type fdd --medium FLOPPY",
                // No communicator: no NAT rule. The guest powers itself off.
                "startvm vm --type headless",
                "storageattach vm --storagectl Floppy --port 0 --device 0 --medium none",
                "storagectl vm --name Floppy --remove",
                // bundle_iso keeps the boot ISO; the cd_files ISO is removed.
                "storageattach vm --storagectl SATA --port 15 --device 0 --type dvddrive --medium none",
                "modifyvm vm --description built",
                // skip_export, and keep_registered after a successful build: nothing more.
            ]
        );
        // No export: the artifact is the output directory's files, the disks.
        let a = ctx.artifact.clone().unwrap();
        assert_eq!(a.files, [out.join("vm-0.vdi"), out.join("vm-1.vdi")]);
    }

    #[tokio::test]
    async fn a_vm_that_cannot_start_is_undone_in_reverse_order() {
        let Bento { _t, mut ctx, .. } = bento_context();
        let d = Arc::new(FakeDriver::with_version(Version::V7_1));
        d.fail_on(
            "startvm",
            "VBoxManage: error: VT-x is not available (VERR_VMX_NO_VMX)",
        );
        let steps = steps_with(
            &planned(),
            bento_ubuntu(),
            &RunOptions::default(),
            d.clone(),
        )
        .unwrap();
        let e = run_steps(steps, &mut ctx, |_| {}).await.unwrap_err();
        assert!(
            e.starts_with("start VM: cannot start the VM") && e.contains("VERR_VMX_NO_VMX"),
            "{e}"
        );
        let calls = d.commands();
        let start = calls.iter().position(|c| c.starts_with("startvm")).unwrap();
        let vm = "ubuntu-24.04-amd64";
        assert_eq!(
            calls[start + 1..],
            [
                format!("storageattach {vm} --storagectl VirtioSCSI --port 13 --device 0 --type dvddrive --medium none"),
                format!("unregistervm {vm} --delete"),
            ]
        );
        assert!(ctx.machine.is_none() && ctx.artifact.is_none());
    }

    /// `tests/standins/VBoxManage` playing VirtualBox `version`, keeping its state in `dir`.
    /// The system's Python is preferred: a version manager's `python3` shim can cost more per
    /// call than the stand-in itself, and a build makes a hundred calls.
    fn standin(dir: &std::path::Path, version: &str) -> Arc<dyn Driver> {
        standin_with(dir, version, None)
    }

    /// [`standin`], injecting the faults listed in the JSON file `faults`.
    fn standin_with(
        dir: &std::path::Path,
        version: &str,
        faults: Option<&std::path::Path>,
    ) -> Arc<dyn Driver> {
        use std::os::unix::fs::PermissionsExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/standins/VBoxManage");
        let wrapper = dir.join("VBoxManage");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nPY=$(command -v /usr/bin/python3 || command -v python3)\nKILN_VBOX_STANDIN_DIR='{}' KILN_VBOX_STANDIN_VERSION='{version}' KILN_VBOX_STANDIN_FAULTS='{}' exec \"$PY\" {script} \"$@\"\n",
                dir.display(),
                faults.map(|f| f.display().to_string()).unwrap_or_default(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let retry = driver::Retry {
            tries: 2,
            delay: std::time::Duration::from_millis(10),
        };
        Arc::new(driver::HostDriver::new(wrapper, retry))
    }

    /// The stand-in's log: every call but the version check and the state polls.
    fn standin_calls(dir: &std::path::Path) -> Vec<Vec<String>> {
        std::fs::read_to_string(dir.join("calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Vec<String>>(l).unwrap())
            .filter(|c| c[0] != "showvminfo")
            .collect()
    }

    #[tokio::test]
    async fn bento_ubuntu_passes_the_vboxmanage_grammar_of_7_0_and_7_1() {
        for version in ["7.0.20r163906", "7.1.4r165100"] {
            let mut b = bento_context();
            let state = tempfile::tempdir().unwrap();
            let mut cfg = bento_ubuntu();
            // The stand-in's null guest obeys the power button; there is no SSH to shut down
            // over.
            cfg.common.acpi_shutdown = true;
            let d = standin(state.path(), version);
            let steps = steps_with(&planned(), cfg, &RunOptions::default(), d).unwrap();
            run_steps(steps, &mut b.ctx, |_| {})
                .await
                .unwrap_or_else(|e| panic!("VirtualBox {version}: {e}"));
            let calls = standin_calls(state.path());
            // The 44 commands of the golden above, with the power button for the shutdown.
            assert_eq!(calls.len(), 45, "{version}: {calls:#?}");
            assert!(calls.iter().any(|c| c[2] == "acpipowerbutton"));
            assert!(b.out.join("ubuntu-24.04-amd64.ovf").is_file());
            assert!(
                !b.out.join("ubuntu-24.04-amd64.vdi").exists(),
                "unregistervm --delete removed the disk"
            );
        }
    }

    #[tokio::test]
    async fn faults_from_the_standin_are_retried_or_reported_as_packer_does() {
        let mut b = bento_context();
        let state = tempfile::tempdir().unwrap();
        let faults = state.path().join("faults.json");
        // The VM's session is still being released when it is deleted (retried, then it
        // works); a modifyvm fails with exit status 0 and an error on stderr.
        std::fs::write(
            &faults,
            serde_json::json!([
                {"match": "unregistervm", "exit": 1, "times": 1,
                 "stderr": "VBoxManage: error: The machine is locked\nVBoxManage: error: Details: code VBOX_E_INVALID_OBJECT_STATE (0x80bb0007)"},
                {"match": "--memory", "exit": 0, "times": 1,
                 "stderr": "VBoxManage: error: Invalid RAM size"}
            ])
            .to_string(),
        )
        .unwrap();
        let d = standin_with(state.path(), "7.1.4r165100", Some(&faults));
        let mut step = steps::CreateVm::new(Arc::new(bento_ubuntu()), d);
        let e = step.run(&mut b.ctx).await.unwrap_err().report();
        assert!(
            e.contains("cannot create the VM") && e.contains("Invalid RAM size"),
            "{e}"
        );
        step.cleanup(&mut b.ctx).await.unwrap();
        let calls: Vec<String> = standin_calls(state.path())
            .iter()
            .map(|c| c.join(" "))
            .collect();
        let tail = &calls[calls.len() - 3..];
        assert_eq!(
            tail,
            [
                "modifyvm ubuntu-24.04-amd64 --memory 3072",
                "unregistervm ubuntu-24.04-amd64 --delete",
                "unregistervm ubuntu-24.04-amd64 --delete",
            ]
        );
        let registry = std::fs::read_to_string(state.path().join("vms.json")).unwrap();
        assert!(!registry.contains("ubuntu-24.04-amd64"), "{registry}");
    }

    #[tokio::test]
    async fn on_virtualbox_6_1_bentos_7_0_options_are_refused_and_the_vm_is_deleted() {
        let mut b = bento_context();
        let state = tempfile::tempdir().unwrap();
        let d = standin(state.path(), "6.1.50r161033");
        let steps = steps_with(&planned(), bento_ubuntu(), &RunOptions::default(), d).unwrap();
        let e = run_steps(steps, &mut b.ctx, |_| {}).await.unwrap_err();
        assert!(
            e.starts_with("vboxmanage: a vboxmanage command failed")
                && e.contains("Unknown option: --audio-enabled"),
            "{e}"
        );
        let calls = standin_calls(state.path());
        // 6.1 is sent --audio (not --audio-driver) and no --nat-localhostreachable1 by kiln.
        let flat: Vec<String> = calls.iter().map(|c| c.join(" ")).collect();
        assert!(flat.contains(
            &"modifyvm ubuntu-24.04-amd64 --audio none --audiocontroller ac97".to_owned()
        ));
        assert!(
            !flat.iter().any(|c| c.contains("localhostreachable")),
            "{flat:#?}"
        );
        assert_eq!(
            flat.last().unwrap(),
            "unregistervm ubuntu-24.04-amd64 --delete"
        );
    }
}
