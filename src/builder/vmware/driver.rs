//! The VMware driver seam: every call the VMware steps make to `vmrun`,
//! `vmware-vdiskmanager` or `ovftool` is a typed [`VmwareOp`], rendered to its command line
//! by [`VmwareOp::argv`] (with `-T ws|player|fusion` for `vmrun`, from the [`Product`] found).
//! [`HostDriver`] runs the host's tools, found on `PATH` and in the usual install directories;
//! the recording `testing::FakeDriver` keeps the command lines for step tests, as Packer's
//! steps run against its `DriverMock`. Without `vmware-vdiskmanager` or `ovftool`, the driver
//! does their work itself where it can (growable disks; OVF/OVA export through [`super::export`]).
//! The guest's address from VMware's DHCP leases is
//! [`super::network`]'s business, not a tool's.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// Where VMware installs its tools when they are not on `PATH`.
const INSTALL_DIRS: &[&str] = &[
    "/usr/bin",
    "/usr/local/bin",
    "/Applications/VMware Fusion.app/Contents/Library",
];

/// Which VMware product `vmrun` drives (`vmrun -T`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// Workstation (`ws`).
    Workstation,
    /// Workstation Player (`player`).
    Player,
    /// Fusion (`fusion`).
    Fusion,
}

impl Product {
    fn arg(self) -> &'static str {
        match self {
            Product::Workstation => "ws",
            Product::Player => "player",
            Product::Fusion => "fusion",
        }
    }
}

/// `vmrun stop` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// Ask the guest (through VMware Tools) to shut down.
    Soft,
    /// Power off.
    Hard,
}

/// Which tool runs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `vmrun`.
    Vmrun,
    /// `vmware-vdiskmanager`.
    VdiskManager,
    /// `ovftool`.
    OvfTool,
}

impl Tool {
    /// The program's name.
    pub fn program(self) -> &'static str {
        match self {
            Tool::Vmrun => "vmrun",
            Tool::VdiskManager => "vmware-vdiskmanager",
            Tool::OvfTool => "ovftool",
        }
    }
}

/// One call to a VMware tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmwareOp {
    /// `vmrun start <vmx> nogui|gui`.
    Start {
        /// The VM.
        vmx: PathBuf,
        /// Show the VM's window (`headless = false`).
        gui: bool,
    },
    /// `vmrun stop <vmx> soft|hard`.
    Stop {
        /// The VM.
        vmx: PathBuf,
        /// How.
        mode: StopMode,
    },
    /// `vmrun list`: the running VMs, one `.vmx` path a line after a count.
    List,
    /// `vmrun getGuestIPAddress <vmx>`: without `-wait`, which would block until VMware Tools
    /// answer, so the caller can look at the DHCP leases again between calls (as Packer does).
    GuestIp {
        /// The VM.
        vmx: PathBuf,
    },
    /// `vmrun clone <source vmx> <target vmx> full|linked [-snapshot=<name>]`: VMware copies
    /// the VM (a linked clone's disks are deltas of the source's) and writes the target's
    /// `.vmx` with its disks' new names.
    Clone {
        /// The VM cloned.
        source: PathBuf,
        /// The clone's `.vmx`.
        target: PathBuf,
        /// `linked` rather than `full`.
        linked: bool,
        /// Clone from this snapshot of the source.
        snapshot: Option<String>,
    },
    /// `vmrun snapshot <vmx> <name>`.
    Snapshot {
        /// The VM.
        vmx: PathBuf,
        /// The snapshot's name.
        name: String,
    },
    /// `vmware-vdiskmanager -c -s <size>MB -a <adapter> -t <type> <file>`.
    CreateDisk {
        /// The `.vmdk`.
        path: PathBuf,
        /// Size in MiB.
        size_mib: u64,
        /// `ide`, `buslogic` or `lsilogic`.
        adapter: String,
        /// `disk_type_id` (0–5).
        type_id: String,
    },
    /// `vmware-vdiskmanager -d <file>`.
    Defragment {
        /// The `.vmdk`.
        path: PathBuf,
    },
    /// `vmware-vdiskmanager -k <file>`.
    Shrink {
        /// The `.vmdk`.
        path: PathBuf,
    },
    /// `ovftool --lax --maxVirtualHardwareVersion=<version> --name=<name> <ovf|ova> <dir>`:
    /// VMware's import of an OVF/OVA as a VM `<dir>/<name>/<name>.vmx` (Packer's options:
    /// `--lax` takes an OVF that VMware's hardware does not quite match).
    Import {
        /// The `.ovf` or `.ova`.
        source: PathBuf,
        /// The directory ovftool makes the VM's directory in.
        target_dir: PathBuf,
        /// The VM's name.
        name: String,
        /// The newest virtual hardware version to give it.
        version: u32,
    },
    /// `ovftool <options…> <vmx> <output>`.
    Export {
        /// `ovftool_options`.
        options: Vec<String>,
        /// The VM.
        vmx: PathBuf,
        /// The `.ovf` or `.ova` to write.
        output: PathBuf,
    },
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

impl VmwareOp {
    /// The tool that runs it.
    pub fn tool(&self) -> Tool {
        match self {
            VmwareOp::Start { .. }
            | VmwareOp::Stop { .. }
            | VmwareOp::List
            | VmwareOp::GuestIp { .. }
            | VmwareOp::Clone { .. }
            | VmwareOp::Snapshot { .. } => Tool::Vmrun,
            VmwareOp::CreateDisk { .. } | VmwareOp::Defragment { .. } | VmwareOp::Shrink { .. } => {
                Tool::VdiskManager
            }
            VmwareOp::Import { .. } | VmwareOp::Export { .. } => Tool::OvfTool,
        }
    }

    /// The arguments, for `product`'s `vmrun`.
    pub fn argv(&self, product: Product) -> Vec<String> {
        let vmrun = |rest: Vec<String>| {
            let mut v = vec!["-T".to_owned(), product.arg().to_owned()];
            v.extend(rest);
            v
        };
        let s = |x: &str| x.to_owned();
        match self {
            VmwareOp::Start { vmx, gui } => vmrun(vec![
                s("start"),
                path(vmx),
                s(if *gui { "gui" } else { "nogui" }),
            ]),
            VmwareOp::Stop { vmx, mode } => vmrun(vec![
                s("stop"),
                path(vmx),
                s(match mode {
                    StopMode::Soft => "soft",
                    StopMode::Hard => "hard",
                }),
            ]),
            VmwareOp::List => vmrun(vec![s("list")]),
            VmwareOp::GuestIp { vmx } => vmrun(vec![s("getGuestIPAddress"), path(vmx)]),
            VmwareOp::Clone {
                source,
                target,
                linked,
                snapshot,
            } => {
                // vmrun's documented form is `-snapshot=<name>` (Packer passes the name as a
                // separate argument, which vmrun reads as a stray one).
                let mut v = vec![
                    s("clone"),
                    path(source),
                    path(target),
                    s(if *linked { "linked" } else { "full" }),
                ];
                v.extend(snapshot.iter().map(|n| format!("-snapshot={n}")));
                vmrun(v)
            }
            VmwareOp::Snapshot { vmx, name } => vmrun(vec![s("snapshot"), path(vmx), name.clone()]),
            VmwareOp::CreateDisk {
                path: p,
                size_mib,
                adapter,
                type_id,
            } => vec![
                s("-c"),
                s("-s"),
                format!("{size_mib}MB"),
                s("-a"),
                adapter.clone(),
                s("-t"),
                type_id.clone(),
                path(p),
            ],
            VmwareOp::Defragment { path: p } => vec![s("-d"), path(p)],
            VmwareOp::Shrink { path: p } => vec![s("-k"), path(p)],
            VmwareOp::Import {
                source,
                target_dir,
                name,
                version,
            } => vec![
                s("--lax"),
                format!("--maxVirtualHardwareVersion={version}"),
                format!("--name={name}"),
                path(source),
                path(target_dir),
            ],
            VmwareOp::Export {
                options,
                vmx,
                output,
            } => {
                let mut v = options.clone();
                v.extend([path(vmx), path(output)]);
                v
            }
        }
    }
}

/// The `.vmx` paths in `vmrun list` output (`Total running VMs: N` then one path a line).
pub fn running_vms(list: &str) -> Vec<PathBuf> {
    list.lines()
        .map(|l| l.trim_end_matches('\r').trim())
        .filter(|l| !l.is_empty() && !l.starts_with("Total running VMs"))
        .map(PathBuf::from)
        .collect()
}

/// `vmware-vdiskmanager -a` for a `disk_adapter_type`: the tool knows only `ide`, `buslogic`
/// and `lsilogic` (the VMDK header's adapter); SATA, NVMe and the other SCSI controllers are
/// the `.vmx`'s business and take an `lsilogic` disk.
pub fn vdisk_adapter(disk_adapter_type: &str) -> &'static str {
    match disk_adapter_type.to_ascii_lowercase().as_str() {
        "ide" => "ide",
        "buslogic" => "buslogic",
        _ => "lsilogic",
    }
}

/// Why a VMware tool failed.
#[derive(Debug, thiserror::Error)]
pub enum VmwareError {
    /// The tool is not installed.
    #[error("{0} was not found on PATH or in /usr/bin, /usr/local/bin or VMware Fusion's Library\nhint: install VMware Workstation, Player or Fusion, or put the tool on PATH")]
    NotFound(&'static str),
    /// The tool could not be started.
    #[error("cannot run {}", .binary.display())]
    Spawn {
        /// The tool.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The tool failed: a non-zero exit, or `Error:` in its output (vmrun reports some
    /// failures that way).
    #[error("{tool} {command} failed ({status}): {output}")]
    Failed {
        /// The program.
        tool: &'static str,
        /// The arguments, joined.
        command: String,
        /// The exit status.
        status: String,
        /// What it printed (stdout and stderr), trimmed.
        output: String,
    },
    /// kiln's own VMDK writer, used when `vmware-vdiskmanager` is missing, failed.
    #[error("cannot create {}", .path.display())]
    OwnDisk {
        /// The disk.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::artifact::vmdk::VmdkError,
    },
    /// kiln's own OVF/OVA export, used when `ovftool` is missing, failed.
    #[error(transparent)]
    Export(#[from] super::export::ExportError),
    /// An OVF/OVA source without `ovftool`.
    #[error("source_path {} is an OVF/OVA, which VMware imports with ovftool, and ovftool was not found on PATH or in VMware's install directories\nhint: install VMware's OVF Tool (4.6 or later), or import the OVF/OVA into VMware yourself and point source_path at its .vmx", .0.display())]
    ImportNeedsOvfTool(PathBuf),
    /// A disk type only `vmware-vdiskmanager` makes.
    #[error("disk_type_id = \"{0}\" needs vmware-vdiskmanager, which was not found on PATH or in VMware's install directories\nhint: install it, or use disk_type_id 0 or 1 (growable), which kiln makes itself")]
    DiskTypeNeedsVdiskManager(String),
}

/// Where VMware Workstation and Player keep the VMware Tools ISOs on Linux.
const LINUX_TOOLS_ISOS: &str = "/usr/lib/vmware/isoimages";

/// The VMware tools, as the steps call them.
#[async_trait]
pub trait Driver: Send + Sync {
    /// Run `op`; its stdout on success.
    async fn run(&self, op: &VmwareOp) -> Result<String, VmwareError>;

    /// The VMware Tools ISO the installed product ships for guests of `flavor` (`linux`,
    /// `windows`, `darwin`); it may not exist. Workstation's and Player's place on Linux
    /// unless the driver knows better.
    fn tools_iso(&self, flavor: &str) -> PathBuf {
        Path::new(LINUX_TOOLS_ISOS).join(format!("{flavor}.iso"))
    }
}

/// The host's VMware tools.
#[derive(Debug, Clone)]
pub struct HostDriver {
    vmrun: PathBuf,
    vdiskmanager: Option<PathBuf>,
    ovftool: Option<PathBuf>,
    product: Product,
}

/// The first `name` in `dirs`.
fn find(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

impl HostDriver {
    /// The tools on `PATH`, else in VMware's install directories (and `fusion_app_path`'s
    /// `Contents/Library`). `vmrun` is required; the others are looked for and their absence
    /// reported when a step needs them.
    pub fn locate(fusion_app_path: Option<&str>) -> Result<Self, VmwareError> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        // As Packer: the option, else the FUSION_APP_PATH environment variable.
        let from_env = std::env::var("FUSION_APP_PATH")
            .ok()
            .filter(|a| !a.is_empty());
        if let Some(app) = fusion_app_path.or(from_env.as_deref()) {
            dirs.push(Path::new(app).join("Contents/Library"));
        }
        dirs.extend(INSTALL_DIRS.iter().map(PathBuf::from));
        let vmrun = find("vmrun", &dirs).ok_or(VmwareError::NotFound("vmrun"))?;
        let product = if vmrun.to_string_lossy().contains("Fusion") {
            Product::Fusion
        } else if find("vmware", &dirs).is_none() && find("vmplayer", &dirs).is_some() {
            Product::Player
        } else {
            Product::Workstation
        };
        Ok(Self::new(
            vmrun,
            find("vmware-vdiskmanager", &dirs),
            find("ovftool", &dirs),
            product,
        ))
    }

    /// The driver for these tools, for `product`.
    pub fn new(
        vmrun: PathBuf,
        vdiskmanager: Option<PathBuf>,
        ovftool: Option<PathBuf>,
        product: Product,
    ) -> Self {
        Self {
            vmrun,
            vdiskmanager,
            ovftool,
            product,
        }
    }

    fn binary(&self, tool: Tool) -> Result<&Path, VmwareError> {
        match tool {
            Tool::Vmrun => Some(self.vmrun.as_path()),
            Tool::VdiskManager => self.vdiskmanager.as_deref(),
            Tool::OvfTool => self.ovftool.as_deref(),
        }
        .ok_or(VmwareError::NotFound(tool.program()))
    }
}

#[async_trait]
impl Driver for HostDriver {
    fn tools_iso(&self, flavor: &str) -> PathBuf {
        if self.product != Product::Fusion {
            return Path::new(LINUX_TOOLS_ISOS).join(format!("{flavor}.iso"));
        }
        // Fusion keeps them per host architecture in its Library, beside vmrun.
        let arch = if cfg!(target_arch = "x86_64") {
            "x86_64"
        } else {
            "arm64"
        };
        self.vmrun
            .parent()
            .unwrap_or(Path::new("."))
            .join("isoimages")
            .join(arch)
            .join(format!("{flavor}.iso"))
    }

    async fn run(&self, op: &VmwareOp) -> Result<String, VmwareError> {
        if self.vdiskmanager.is_none() {
            if let Some(done) = without_vdiskmanager(op)? {
                return Ok(done);
            }
        }
        if let (
            None,
            VmwareOp::Export {
                options,
                vmx,
                output,
            },
        ) = (&self.ovftool, op)
        {
            return Ok(super::export::without_ovftool(options, vmx, output).await?);
        }
        if let (None, VmwareOp::Import { source, .. }) = (&self.ovftool, op) {
            // Reading an OVF's hardware back into a .vmx is VMware's own mapping; kiln does
            // not guess it.
            return Err(VmwareError::ImportNeedsOvfTool(source.clone()));
        }
        let tool = op.tool();
        let binary = self.binary(tool)?.to_owned();
        let args = op.argv(self.product);
        tracing::debug!("{} {}", tool.program(), args.join(" "));
        let mut cmd = crate::child::command(&binary.display().to_string());
        // Its own process group: Ctrl-C reaches kiln, which then stops the VM with vmrun
        // instead of the call dying first.
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let spawn = |source| VmwareError::Spawn {
            binary: binary.clone(),
            source,
        };
        let child = crate::child::spawn(cmd).map_err(spawn)?;
        let out = child.wait_with_output().await.map_err(spawn)?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        let error_line = |t: &str| t.lines().any(|l| l.trim_start().starts_with("Error:"));
        if !out.status.success() || error_line(&stdout) || error_line(&stderr) {
            let output = [stdout.as_str(), stderr.as_str()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join("\n");
            return Err(VmwareError::Failed {
                tool: tool.program(),
                command: args.join(" "),
                status: out.status.to_string(),
                output,
            });
        }
        Ok(stdout)
    }
}

/// What kiln does itself when `vmware-vdiskmanager` is not installed (Player and some Linux
/// installs lack it): a growable disk (`disk_type_id` 0 or 1) is written as a monolithicSparse
/// VMDK, which VMware runs from (one file instead of type 1's 2 GB pieces); compaction is
/// skipped, since only VMware's tool knows which grains the guest freed. `None`: not a
/// vdiskmanager operation.
fn without_vdiskmanager(op: &VmwareOp) -> Result<Option<String>, VmwareError> {
    match op {
        VmwareOp::CreateDisk {
            path,
            size_mib,
            adapter,
            type_id,
        } => {
            if type_id != "0" && type_id != "1" {
                return Err(VmwareError::DiskTypeNeedsVdiskManager(type_id.clone()));
            }
            tracing::info!(
                "vmware-vdiskmanager not found: kiln writes {} itself",
                path.display()
            );
            crate::artifact::vmdk::create_sparse(path, size_mib << 20, adapter).map_err(
                |source| VmwareError::OwnDisk {
                    path: path.clone(),
                    source,
                },
            )?;
            Ok(Some(String::new()))
        }
        VmwareOp::Defragment { path } | VmwareOp::Shrink { path } => {
            tracing::warn!(
                "vmware-vdiskmanager not found: {} is not compacted",
                path.display()
            );
            Ok(Some(String::new()))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
pub mod testing {
    //! [`FakeDriver`]: records each call's command line and answers from a script.
    use std::sync::Mutex;

    use super::*;

    /// A recording driver.
    #[derive(Default)]
    pub struct FakeDriver {
        calls: Mutex<Vec<String>>,
        /// `(substring of the command line, error output)`: matching calls fail.
        fail: Mutex<Vec<(String, String)>>,
        /// What `vmrun list` answers: whether the VM still runs.
        pub running: Mutex<bool>,
    }

    impl FakeDriver {
        /// Every command line so far, as `tool args…`.
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        /// Make calls containing `pattern` fail with `output`.
        pub fn fail_on(&self, pattern: &str, output: &str) {
            if let Ok(mut f) = self.fail.lock() {
                f.push((pattern.to_owned(), output.to_owned()));
            }
        }
    }

    #[async_trait]
    impl Driver for FakeDriver {
        async fn run(&self, op: &VmwareOp) -> Result<String, VmwareError> {
            let line = format!(
                "{} {}",
                op.tool().program(),
                op.argv(Product::Workstation).join(" ")
            );
            if let Ok(mut c) = self.calls.lock() {
                c.push(line.clone());
            }
            let failure = self.fail.lock().ok().and_then(|f| {
                f.iter()
                    .find(|(p, _)| line.contains(p.as_str()))
                    .map(|(_, o)| o.clone())
            });
            if let Some(output) = failure {
                return Err(VmwareError::Failed {
                    tool: op.tool().program(),
                    command: line,
                    status: "exit status: 255".into(),
                    output,
                });
            }
            let running = self.running.lock().map(|r| *r).unwrap_or(false);
            Ok(match op {
                VmwareOp::Start { .. } => {
                    if let Ok(mut r) = self.running.lock() {
                        *r = true;
                    }
                    String::new()
                }
                VmwareOp::Stop { .. } => {
                    if let Ok(mut r) = self.running.lock() {
                        *r = false;
                    }
                    String::new()
                }
                VmwareOp::List => {
                    if running {
                        "Total running VMs: 1\n/out/vm.vmx".into()
                    } else {
                        "Total running VMs: 0".into()
                    }
                }
                VmwareOp::GuestIp { .. } => "192.168.56.10".into(),
                // What VMware writes for a clone, near enough for the steps: the source's
                // .vmx at the target.
                VmwareOp::Clone { source, target, .. } => {
                    std::fs::copy(source, target).map_err(|e| VmwareError::Failed {
                        tool: "vmrun",
                        command: line.clone(),
                        status: "exit status: 255".into(),
                        output: e.to_string(),
                    })?;
                    String::new()
                }
                _ => String::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_render_as_vmware_documents_them() {
        let vmx = PathBuf::from("/out/vm.vmx");
        let cases = [
            (
                VmwareOp::Start {
                    vmx: vmx.clone(),
                    gui: false,
                },
                Product::Workstation,
                "-T ws start /out/vm.vmx nogui",
            ),
            (
                VmwareOp::Start {
                    vmx: vmx.clone(),
                    gui: true,
                },
                Product::Fusion,
                "-T fusion start /out/vm.vmx gui",
            ),
            (
                VmwareOp::Stop {
                    vmx: vmx.clone(),
                    mode: StopMode::Hard,
                },
                Product::Player,
                "-T player stop /out/vm.vmx hard",
            ),
            (VmwareOp::List, Product::Workstation, "-T ws list"),
            (
                VmwareOp::GuestIp { vmx: vmx.clone() },
                Product::Workstation,
                "-T ws getGuestIPAddress /out/vm.vmx",
            ),
            (
                VmwareOp::Clone {
                    source: "/src/base.vmx".into(),
                    target: vmx.clone(),
                    linked: true,
                    snapshot: Some("clean install".into()),
                },
                Product::Workstation,
                "-T ws clone /src/base.vmx /out/vm.vmx linked -snapshot=clean install",
            ),
            (
                VmwareOp::Clone {
                    source: "/src/base.vmx".into(),
                    target: vmx.clone(),
                    linked: false,
                    snapshot: None,
                },
                Product::Fusion,
                "-T fusion clone /src/base.vmx /out/vm.vmx full",
            ),
            (
                VmwareOp::Snapshot {
                    vmx: vmx.clone(),
                    name: "built".into(),
                },
                Product::Workstation,
                "-T ws snapshot /out/vm.vmx built",
            ),
            (
                VmwareOp::CreateDisk {
                    path: "/out/disk.vmdk".into(),
                    size_mib: 40000,
                    adapter: "lsilogic".into(),
                    type_id: "1".into(),
                },
                Product::Workstation,
                "-c -s 40000MB -a lsilogic -t 1 /out/disk.vmdk",
            ),
            (
                VmwareOp::Defragment {
                    path: "/out/disk.vmdk".into(),
                },
                Product::Workstation,
                "-d /out/disk.vmdk",
            ),
            (
                VmwareOp::Export {
                    options: vec!["--compress=9".into()],
                    vmx,
                    output: "/out/vm.ova".into(),
                },
                Product::Workstation,
                "--compress=9 /out/vm.vmx /out/vm.ova",
            ),
            (
                VmwareOp::Import {
                    source: "/src/base.ova".into(),
                    target_dir: "/out".into(),
                    name: "vm".into(),
                    version: 21,
                },
                Product::Workstation,
                "--lax --maxVirtualHardwareVersion=21 --name=vm /src/base.ova /out",
            ),
        ];
        for (op, product, want) in cases {
            assert_eq!(op.argv(product).join(" "), want, "{op:?}");
        }
    }

    #[test]
    fn vmrun_list_names_the_running_vms() {
        let out = "Total running VMs: 2\r\n/a/one.vmx\r\n/b/two words.vmx\n";
        assert_eq!(
            running_vms(out),
            [
                PathBuf::from("/a/one.vmx"),
                PathBuf::from("/b/two words.vmx")
            ]
        );
        assert!(running_vms("Total running VMs: 0\n").is_empty());
    }

    #[test]
    fn vdiskmanager_gets_an_adapter_it_knows() {
        assert_eq!(vdisk_adapter("IDE"), "ide");
        assert_eq!(vdisk_adapter("buslogic"), "buslogic");
        assert_eq!(vdisk_adapter("nvme"), "lsilogic");
        assert_eq!(vdisk_adapter("pvscsi"), "lsilogic");
    }

    /// A script standing for `vmrun` that prints `out` and exits with `code`.
    fn script(dir: &Path, out: &str, code: i32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("vmrun");
        std::fs::write(&p, format!("#!/bin/sh\necho '{out}'\nexit {code}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[tokio::test]
    async fn an_error_line_fails_even_with_exit_status_zero() {
        let t = tempfile::tempdir().unwrap();
        let run = |out: &str, code| {
            let d = HostDriver::new(
                script(t.path(), out, code),
                None,
                None,
                Product::Workstation,
            );
            async move { d.run(&VmwareOp::List).await }
        };
        assert_eq!(
            run("Total running VMs: 0", 0).await.unwrap(),
            "Total running VMs: 0"
        );
        let e = run("Error: Unable to connect to host.", 0)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("Unable to connect to host"), "{e}");
        let e = run("something broke", 255).await.unwrap_err();
        assert!(e.to_string().contains("exit status: 255"), "{e}");
        let no_ovftool = HostDriver::new(t.path().join("vmrun"), None, None, Product::Workstation);
        let export = VmwareOp::Export {
            options: Vec::new(),
            vmx: "/o/vm.vmx".into(),
            output: "/o/vm.ovf".into(),
        };
        // Without ovftool an OVF/OVA is not imported, and the error says why.
        let import = VmwareOp::Import {
            source: "/src/base.ova".into(),
            target_dir: "/o".into(),
            name: "vm".into(),
            version: 21,
        };
        let e = no_ovftool.run(&import).await.unwrap_err().to_string();
        assert!(e.contains("/src/base.ova") && e.contains("ovftool"), "{e}");
        // Without ovftool kiln exports itself: here it finds no .vmx to read.
        let e = no_ovftool.run(&export).await.unwrap_err();
        assert!(
            matches!(
                e,
                VmwareError::Export(crate::builder::vmware::export::ExportError::ReadVmx { .. })
            ),
            "{e}"
        );
    }

    /// Without vmware-vdiskmanager, a growable disk is kiln's own sparse VMDK, compaction is
    /// skipped, and a preallocated type is refused with what to do.
    #[tokio::test]
    async fn without_vdiskmanager_kiln_makes_growable_disks_itself() {
        let t = tempfile::tempdir().unwrap();
        let d = HostDriver::new(t.path().join("vmrun"), None, None, Product::Workstation);
        let create = |type_id: &str| VmwareOp::CreateDisk {
            path: t.path().join(format!("t{type_id}.vmdk")),
            size_mib: 1024,
            adapter: "lsilogic".into(),
            type_id: type_id.into(),
        };
        d.run(&create("1")).await.unwrap();
        let info = std::fs::read(t.path().join("t1.vmdk")).unwrap();
        assert_eq!(&info[..4], b"KDMV");
        let shrink = VmwareOp::Shrink {
            path: t.path().join("t1.vmdk"),
        };
        d.run(&shrink).await.unwrap();
        let e = d.run(&create("2")).await.unwrap_err();
        assert!(
            matches!(e, VmwareError::DiskTypeNeedsVdiskManager(_)),
            "{e}"
        );
        assert!(!t.path().join("t2.vmdk").exists());
    }
}
