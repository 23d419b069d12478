//! The `vagrant` post-processor. A `.box` is a gzipped tar of `metadata.json`, a `Vagrantfile` and
//! the provider's files; each provider below decides those three things, and one writer packs them
//! (reproducibly, see [`crate::artifact::archive`], under a temporary name).
//!
//! - libvirt (what a QEMU build becomes): disks as `box_0.img`, `box_1.img`… listed under `disks`
//!   (vagrant-libvirt's v2 box format, what current Packer writes), and `libvirt.driver` from the
//!   accelerator the build used (`kvm` for KVM, `qemu` otherwise).
//! - virtualbox: from a QEMU build (`provider_override = "virtualbox"`) the qcow2 disks become
//!   streamOptimized VMDKs described by `box.ovf`; from an OVF or OVA artifact (a VirtualBox build,
//!   or `artifice`) the files are taken as they are, the OVA unpacked and the OVF renamed `box.ovf`.
//!   Either way the Vagrantfile sets `config.vm.base_mac` to the OVF's first adapter.
//! - vmware (Vagrant's `vmware_desktop`): from a QEMU build the disks become monolithicSparse VMDKs
//!   (what Workstation and Fusion run from) beside a `.vmx`; from a VMware artifact the vmx, vmdk and
//!   the rest are taken flat.
//!
//! What is not here: uploading (`vagrant-cloud`), and the cloud providers (aws, azure, …).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{render, Outcome, PostProcessContext, PostProcessError};
use crate::artifact::archive::{tar_size, ParallelGzWriter, ReproducibleTar};
use crate::artifact::ovf::{OvfDisk, OvfMachine, OvfVersion};
use crate::artifact::stream::{ensure_space, Input, WriteError};
use crate::artifact::vmdk::{self, Subformat, VmdkError};
use crate::artifact::vmx::VmxMachine;
use crate::artifact::{write_through_temp, Artifact};
use crate::config::post_processors::{OverrideError, VagrantConfig};

/// Packer's id for a box artifact.
pub const BUILDER_ID: &str = "mitchellh.post-processor.vagrant";

/// The MAC kiln gives a VirtualBox box's adapter (VirtualBox's OUI); fixed so boxes are reproducible.
const VIRTUALBOX_MAC: &str = "080027C0FFEE";

/// What every provider's box shares.
#[derive(Debug, Clone)]
pub struct BoxOptions<'a> {
    /// `architecture` (Vagrant ≥ 2.4 reads it).
    pub architecture: &'a str,
    /// The rendered `vagrantfile_template`, appended to the provider's Vagrantfile.
    pub vagrantfile_template: Option<&'a str>,
    /// `include`: extra files placed at the top of the box.
    pub include: &'a [PathBuf],
}

/// Why a box could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    #[error("the {provider} box needs qcow2 disks, but {path} is not qcow2\nhint: set format = \"qcow2\" in the qemu source")]
    NotQcow2 {
        provider: &'static str,
        path: PathBuf,
    },
    #[error("the artifact has no disk to put in the box")]
    NoDisk,
    #[error("unknown accelerator `{0}` for a libvirt box\nhint: libvirt boxes come from kvm, tcg, none or hvf builds")]
    Accelerator(String),
    #[error("{0}")]
    Layout(String),
    #[error(transparent)]
    Disk(#[from] VmdkError),
    /// Reading a file for the box or writing one failed, or the build was cancelled.
    #[error(transparent)]
    Io(#[from] WriteError),
    /// An artifice artifact says nothing of the provider.
    #[error("when the artifact comes from artifice, set provider_override to say which provider the box is for")]
    ArtificeNeedsProvider,
    /// An artifact from a builder kiln makes no boxes for.
    #[error("unknown artifact type, can't build box: {0} (kiln makes boxes from qemu, virtualbox and vmware artifacts)")]
    UnknownArtifact(String),
    /// `override.<provider>` cannot be applied.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// `vagrantfile_template` cannot be read.
    #[error("vagrantfile_template {path}")]
    Template {
        /// The template's path.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The temporary directory the box is assembled in cannot be made.
    #[error("cannot create a working directory")]
    WorkDir(#[source] std::io::Error),
}

/// A box's contents before packing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxContents {
    pub metadata: String,
    pub vagrantfile: String,
    /// (name in the box, file on disk), in box order.
    pub files: Vec<(String, PathBuf)>,
}

/// Packer's provider name for an artifact, from the builder that made it.
pub fn provider_for(builder_id: &str) -> Option<&'static str> {
    Some(match builder_id {
        "transcend.qemu" => "libvirt",
        "mitchellh.virtualbox" => "virtualbox",
        // The VMware plugin's artifacts: v1 (`mitchellh.vmware`) and v2 (`vmware.desktop`).
        "mitchellh.vmware" | "mitchellh.vmware-esx" | "vmware.desktop" => "vmware",
        _ => return None,
    })
}

/// The host architecture under Go's names, Packer's default `architecture`.
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "i386",
        "powerpc64" => "ppc64",
        other => other,
    }
}

/// The libvirt box of a QEMU build whose `disks` (boot disk first) ran with `accelerator`
/// (`kvm`, `tcg`, `none`, `hvf`; `None` when unknown, e.g. after `artifice`: vagrant-libvirt's
/// default, kvm).
pub fn libvirt(
    disks: &[PathBuf],
    accelerator: Option<&str>,
    opts: &BoxOptions<'_>,
) -> Result<BoxContents, VagrantError> {
    check_qcow2("libvirt", disks)?;
    let driver = match accelerator {
        None | Some("kvm") => "kvm",
        Some("tcg" | "none" | "hvf" | "qemu") => "qemu",
        Some(other) => return Err(VagrantError::Accelerator(other.to_string())),
    };
    let listed: Vec<_> = (0..disks.len())
        .map(|i| json!({ "path": format!("box_{i}.img"), "format": "qcow2" }))
        .collect();
    let metadata =
        json!({ "provider": "libvirt", "architecture": opts.architecture, "disks": listed });
    let vagrantfile = format!(
        "# Made by kiln for the libvirt provider.\nVagrant.configure(\"2\") do |config|\n  config.vm.provider :libvirt do |libvirt|\n    libvirt.driver = \"{driver}\"\n  end\nend\n"
    );
    let files = disks
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("box_{i}.img"), d.clone()))
        .collect();
    finish(metadata, vagrantfile, files, opts)
}

/// The machine a QEMU build's box describes, for providers that need a machine description.
#[derive(Debug, Clone)]
pub struct Machine<'a> {
    pub name: &'a str,
    pub cpus: u32,
    pub memory_mb: u64,
}

/// The virtualbox box of a QEMU build: converts `disks` to streamOptimized VMDKs in `work_dir`
/// (stopping when `cancel` is cancelled).
pub fn virtualbox_from_qcow2(
    disks: &[PathBuf],
    machine: &Machine<'_>,
    work_dir: &Path,
    opts: &BoxOptions<'_>,
    cancel: &CancellationToken,
) -> Result<BoxContents, VagrantError> {
    check_qcow2("virtualbox", disks)?;
    let converted = convert_disks(
        disks,
        machine.name,
        work_dir,
        Subformat::StreamOptimized,
        cancel,
    )?;
    let ovf = OvfMachine {
        name: machine.name.to_string(),
        cpus: machine.cpus,
        memory_mb: machine.memory_mb,
        disks: converted.iter().map(|(d, _)| d.clone()).collect(),
        mac: Some(VIRTUALBOX_MAC.to_string()),
        system_type: "virtualbox-2.2".to_string(),
        details: Default::default(),
    };
    let ovf_path = work_dir.join("box.ovf");
    std::fs::write(&ovf_path, ovf.descriptor(OvfVersion::V1))
        .map_err(|source| write_err(&ovf_path, source))?;
    let mut files = vec![("box.ovf".to_string(), ovf_path)];
    files.extend(converted.into_iter().map(|(d, p)| (d.file_name, p)));
    virtualbox_box(VIRTUALBOX_MAC, files, opts)
}

/// The virtualbox box of an artifact that is already an OVF (with its disks) or an OVA: the OVA
/// is unpacked into `work_dir` (stopping when `cancel` is cancelled), the one OVF becomes
/// `box.ovf`, the rest keep their names.
pub fn virtualbox_from_files(
    artifact_files: &[PathBuf],
    work_dir: &Path,
    opts: &BoxOptions<'_>,
    cancel: &CancellationToken,
) -> Result<BoxContents, VagrantError> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for path in artifact_files {
        if has_extension(path, "ova") {
            files.extend(unpack_ova(path, work_dir, cancel)?);
        } else {
            files.push((base_name(path)?, path.clone()));
        }
    }
    let ovfs: Vec<usize> = (0..files.len())
        .filter(|&i| has_extension(Path::new(&files[i].0), "ovf"))
        .collect();
    let ovf_index = match ovfs.as_slice() {
        [one] => *one,
        [] => {
            return Err(VagrantError::Layout(
                "the virtualbox box needs an OVF, but the artifact has none\nhint: a QEMU build makes one by itself; otherwise give artifice the .ovf (or .ova) and its disks".into(),
            ))
        }
        _ => {
            return Err(VagrantError::Layout(
                "the artifact has more than one OVF; a virtualbox box holds one machine".into(),
            ))
        }
    };
    let mut ovf_entry = files.remove(ovf_index);
    let text =
        std::fs::read_to_string(&ovf_entry.1).map_err(|source| read_err(&ovf_entry.1, source))?;
    let mac = base_mac(&text).ok_or_else(|| {
        VagrantError::Layout(format!(
            "cannot find the first network adapter's MAC address in {}\nhint: Vagrant sets config.vm.base_mac from it; export the VM with a network adapter",
            ovf_entry.1.display()
        ))
    })?;
    ovf_entry.0 = "box.ovf".into();
    files.insert(0, ovf_entry);
    check_unique(&files)?;
    virtualbox_box(&mac, files, opts)
}

fn virtualbox_box(
    mac: &str,
    files: Vec<(String, PathBuf)>,
    opts: &BoxOptions<'_>,
) -> Result<BoxContents, VagrantError> {
    let metadata = json!({ "provider": "virtualbox", "architecture": opts.architecture });
    let vagrantfile = format!(
        "# Made by kiln for the virtualbox provider.\nVagrant.configure(\"2\") do |config|\n  config.vm.base_mac = \"{mac}\"\nend\n"
    );
    finish(metadata, vagrantfile, files, opts)
}

/// The MAC Vagrant's VirtualBox provider needs: VirtualBox's own `<Adapter slot="0" …
/// MACAddress="…">` when the OVF was exported by VirtualBox, else the first Ethernet item's
/// `rasd:Address` (how kiln's and other tools' OVFs carry it).
pub fn base_mac(ovf: &str) -> Option<String> {
    let attr = regex::Regex::new(
        r#"(?s)<(?:vbox:)?Adapter\s[^>]*?slot="0"[^>]*?MACAddress="([0-9A-Fa-f:]+)""#,
    )
    .ok()?;
    if let Some(c) = attr.captures(ovf) {
        return Some(c[1].replace(':', ""));
    }
    let item =
        regex::Regex::new(r"(?s)<(?:Item|EthernetPortItem)>(.*?)</(?:Item|EthernetPortItem)>")
            .ok()?;
    let address = regex::Regex::new(
        r"<(?:rasd|epasd):Address>([0-9A-Fa-f:]{12,17})</(?:rasd|epasd):Address>",
    )
    .ok()?;
    let ethernet = regex::Regex::new(r"<(?:rasd|epasd):ResourceType>10</").ok()?;
    let nic = item
        .captures_iter(ovf)
        .map(|c| c[1].to_string())
        .find(|body| ethernet.is_match(body))?;
    address.captures(&nic).map(|c| c[1].replace(':', ""))
}

/// The vmware_desktop box of a QEMU build: monolithicSparse VMDKs and a `.vmx` in `work_dir`
/// (stopping when `cancel` is cancelled).
pub fn vmware_from_qcow2(
    disks: &[PathBuf],
    machine: &Machine<'_>,
    work_dir: &Path,
    opts: &BoxOptions<'_>,
    cancel: &CancellationToken,
) -> Result<BoxContents, VagrantError> {
    check_qcow2("vmware", disks)?;
    let converted = convert_disks(
        disks,
        machine.name,
        work_dir,
        Subformat::MonolithicSparse,
        cancel,
    )?;
    let vmx = VmxMachine {
        name: machine.name.to_string(),
        cpus: machine.cpus,
        memory_mb: machine.memory_mb,
        disks: converted.iter().map(|(d, _)| d.file_name.clone()).collect(),
    };
    let vmx_name = format!("{}.vmx", machine.name);
    let vmx_path = work_dir.join(&vmx_name);
    std::fs::write(&vmx_path, vmx.render()).map_err(|source| write_err(&vmx_path, source))?;
    let mut files = vec![(vmx_name, vmx_path)];
    files.extend(converted.into_iter().map(|(d, p)| (d.file_name, p)));
    vmware_box(files, opts)
}

/// The vmware_desktop box of a VMware artifact (vmx, vmdk, nvram, …), files taken flat.
pub fn vmware_from_files(
    artifact_files: &[PathBuf],
    opts: &BoxOptions<'_>,
) -> Result<BoxContents, VagrantError> {
    let files = artifact_files
        .iter()
        .map(|p| Ok((base_name(p)?, p.clone())))
        .collect::<Result<Vec<_>, VagrantError>>()?;
    if !files
        .iter()
        .any(|(n, _)| has_extension(Path::new(n), "vmx"))
    {
        return Err(VagrantError::Layout(
            "the vmware box needs a .vmx, but the artifact has none\nhint: a QEMU build makes one by itself; otherwise give artifice the .vmx and its disks".into(),
        ));
    }
    check_unique(&files)?;
    vmware_box(files, opts)
}

fn vmware_box(
    files: Vec<(String, PathBuf)>,
    opts: &BoxOptions<'_>,
) -> Result<BoxContents, VagrantError> {
    let metadata = json!({ "provider": "vmware_desktop", "architecture": opts.architecture });
    // The vmx says everything; like Packer, the provider part of the Vagrantfile is empty.
    let vagrantfile = "# Made by kiln for the vmware_desktop provider.\n".to_string();
    finish(metadata, vagrantfile, files, opts)
}

fn convert_disks(
    disks: &[PathBuf],
    name: &str,
    work_dir: &Path,
    subformat: Subformat,
    cancel: &CancellationToken,
) -> Result<Vec<(OvfDisk, PathBuf)>, VagrantError> {
    std::fs::create_dir_all(work_dir).map_err(|source| write_err(work_dir, source))?;
    disks
        .iter()
        .enumerate()
        .map(|(i, disk)| {
            let file_name = format!("{name}-disk{:03}.vmdk", i + 1);
            let path = work_dir.join(&file_name);
            let info = vmdk::convert(disk, &path, "lsilogic", subformat, cancel)?;
            Ok((
                OvfDisk {
                    file_name,
                    file_size: info.file_size,
                    capacity: info.capacity,
                },
                path,
            ))
        })
        .collect()
}

fn finish(
    metadata: serde_json::Value,
    mut vagrantfile: String,
    mut files: Vec<(String, PathBuf)>,
    opts: &BoxOptions<'_>,
) -> Result<BoxContents, VagrantError> {
    if let Some(template) = opts.vagrantfile_template {
        vagrantfile.push('\n');
        vagrantfile.push_str(template);
        if !template.ends_with('\n') {
            vagrantfile.push('\n');
        }
    }
    let mut metadata = format!("{metadata:#}\n");
    for extra in opts.include {
        let name = base_name(extra)?;
        match name.as_str() {
            // As in Packer, an included metadata.json is the box's metadata, and the generated
            // Vagrantfile wins over an included one.
            "metadata.json" => {
                metadata =
                    std::fs::read_to_string(extra).map_err(|source| read_err(extra, source))?;
            }
            "Vagrantfile" => {}
            _ => files.push((name, extra.clone())),
        }
    }
    check_unique(&files)?;
    Ok(BoxContents {
        metadata,
        vagrantfile,
        files,
    })
}

impl BoxContents {
    /// Packs the box into `output` (through `<output>.tmp`): gzip at `level` 1–9, or a plain tar
    /// at 0, as Packer does. A plain tar's size is known, so it is refused up front when the
    /// filesystem has less free space. Stops within one read of `cancel` being cancelled; whatever
    /// stops it, nothing is left at `output` or its temporary name.
    pub fn write(
        &self,
        output: &Path,
        level: u32,
        cancel: &CancellationToken,
    ) -> Result<(), VagrantError> {
        if level == 0 {
            ensure_space(output, self.tar_size())?;
        }
        write_through_temp(output, |tmp| self.write_archive(tmp, level, cancel), |e| e)
            .map_err(|e| WriteError::from_io(e, output).into())
    }

    fn write_archive(
        &self,
        tmp: &Path,
        level: u32,
        cancel: &CancellationToken,
    ) -> std::io::Result<()> {
        let file = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
        let mut file = if level == 0 {
            self.write_tar(file, cancel)?
        } else {
            self.write_tar(ParallelGzWriter::new(file, level, 0), cancel)?
                .finish()?
        };
        // No fsync, as for every archive (see `write_through_temp`).
        file.flush()
    }

    fn write_tar<W: Write>(&self, out: W, cancel: &CancellationToken) -> std::io::Result<W> {
        let mut tar = ReproducibleTar::new(out);
        tar.append_bytes("metadata.json", self.metadata.as_bytes())?;
        tar.append_bytes("Vagrantfile", self.vagrantfile.as_bytes())?;
        for (name, path) in &self.files {
            tar.append_file(name, path, cancel)?;
        }
        tar.finish()
    }

    /// The size of the box as a plain tar (files that cannot be read count as empty; the write
    /// says why they cannot).
    fn tar_size(&self) -> u64 {
        let files = self
            .files
            .iter()
            .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()));
        tar_size(
            [self.metadata.len() as u64, self.vagrantfile.len() as u64]
                .into_iter()
                .chain(files),
        )
    }
}

/// The `vagrant` post-processor: picks the provider, applies its `override`, makes the box.
pub(super) async fn run(
    c: &VagrantConfig,
    input: &Artifact,
    ctx: &PostProcessContext<'_>,
) -> Result<Outcome, PostProcessError> {
    let provider = match c.provider_override.as_deref() {
        Some("vmware_desktop") => "vmware".to_string(),
        Some(p) => p.to_string(),
        None => match provider_for(&input.builder_id) {
            Some(p) => p.to_string(),
            None if input.builder_id == super::artifice::BUILDER_ID => {
                return Err(VagrantError::ArtificeNeedsProvider.into())
            }
            None => return Err(VagrantError::UnknownArtifact(input.builder_id.clone()).into()),
        },
    };
    let c = c.for_provider(&provider).map_err(VagrantError::Override)?;
    let arch = c
        .architecture
        .clone()
        .unwrap_or_else(|| host_architecture().to_string());
    let values = [
        ("Provider", provider.as_str()),
        ("Architecture", arch.as_str()),
    ];
    let output = render(&c.output, input, &values);
    // An empty template (a variable left at "") means none, as in Packer.
    let template = match c.vagrantfile_template.as_ref().filter(|t| !t.is_empty()) {
        Some(p) => {
            ctx.ui.message(&format!("Using custom Vagrantfile: {p}"));
            let text = std::fs::read_to_string(p).map_err(|source| VagrantError::Template {
                path: p.clone(),
                source,
            })?;
            Some(render(&text, input, &values).display().to_string())
        }
        None => None,
    };
    let include: Vec<PathBuf> = c.include.iter().map(PathBuf::from).collect();
    ctx.ui.say(&format!(
        "Creating a Vagrant box for the {provider} provider: {}",
        output.display()
    ));
    let level = c.level();
    let (input2, out2, provider2) = (input.clone(), output.clone(), provider.clone());
    let cancel = ctx.cancel.clone();
    tokio::task::spawn_blocking(move || {
        let opts = BoxOptions {
            architecture: &arch,
            vagrantfile_template: template.as_deref(),
            include: &include,
        };
        let work = crate::child::private_tempdir("kiln-vagrant").map_err(VagrantError::WorkDir)?;
        let contents = contents_for(&provider2, &input2, work.path(), &opts, &cancel)?;
        contents.write(&out2, level, &cancel)
    })
    .await??;
    let shown = if provider == "vmware" {
        "vmware_desktop"
    } else {
        provider.as_str()
    };
    Ok(Outcome {
        artifact: Artifact {
            builder_id: BUILDER_ID.into(),
            id: provider.clone(),
            description: format!("'{shown}' provider box: {}", output.display()),
            files: vec![output],
            facts: Default::default(),
            ..input.clone()
        },
        keep_default: false,
        force_keep: true,
    })
}

/// The box for `provider` from whatever `input` holds: QEMU disks are converted, other
/// artifacts are taken as the provider's files.
fn contents_for(
    provider: &str,
    input: &Artifact,
    work: &Path,
    opts: &BoxOptions<'_>,
    cancel: &CancellationToken,
) -> Result<BoxContents, VagrantError> {
    let from_qemu = input.builder_id == "transcend.qemu";
    let disks: Vec<PathBuf> = input
        .files
        .iter()
        .filter(|f| !(from_qemu && f.file_name().is_some_and(|n| n == "efivars.fd")))
        .cloned()
        .collect();
    let facts = &input.facts;
    let name = facts
        .disk_name
        .as_ref()
        .map(|n| n.trim_end_matches(".qcow2").to_string())
        .unwrap_or_else(|| input.build_name.clone());
    // Packer's defaults for a machine that says nothing: 1 CPU, 512 MiB.
    let machine = Machine {
        name: &name,
        cpus: facts.cpus.unwrap_or(1),
        memory_mb: facts.memory_mib.unwrap_or(512),
    };
    let all_qcow2 = !disks.is_empty() && disks.iter().all(|d| is_qcow2(d).unwrap_or(false));
    match provider {
        "libvirt" => {
            // Packer's libvirt box: domain type kvm under KVM, qemu otherwise.
            let domain = facts
                .accelerator
                .as_deref()
                .map(|a| if a == "kvm" { "kvm" } else { "qemu" });
            libvirt(&disks, domain, opts)
        }
        "virtualbox" if all_qcow2 => virtualbox_from_qcow2(&disks, &machine, work, opts, cancel),
        "virtualbox" => virtualbox_from_files(&input.files, work, opts, cancel),
        "vmware" if all_qcow2 => vmware_from_qcow2(&disks, &machine, work, opts, cancel),
        "vmware" => vmware_from_files(&input.files, opts),
        other => Err(VagrantError::Layout(format!(
            "kiln cannot make {other} boxes yet: it makes libvirt, virtualbox and vmware boxes"
        ))),
    }
}

fn unpack_ova(
    ova: &Path,
    work_dir: &Path,
    cancel: &CancellationToken,
) -> Result<Vec<(String, PathBuf)>, VagrantError> {
    let dir = work_dir.join("ova");
    std::fs::create_dir_all(&dir).map_err(|source| write_err(&dir, source))?;
    // Every read of the OVA goes through one Input: the unpacking stops when cancelled, and a
    // failed read names the OVA while a failed write names the file unpacked.
    let file = Input::open(ova, cancel).map_err(|e| WriteError::from_read(e, ova))?;
    let mut archive = tar::Archive::new(file);
    let mut out = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| WriteError::from_read(e, ova))?
    {
        let mut entry = entry.map_err(|e| WriteError::from_read(e, ova))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        // Only the base name is used, so no entry can write outside the work directory.
        let name = entry
            .path()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .ok_or_else(|| {
                VagrantError::Layout(format!(
                    "{} has an entry without a file name",
                    ova.display()
                ))
            })?;
        let path = dir.join(&name);
        let mut target = File::create(&path).map_err(|source| write_err(&path, source))?;
        std::io::copy(&mut entry, &mut target).map_err(|e| WriteError::from_io(e, &path))?;
        out.push((name, path));
    }
    Ok(out)
}

fn base_name(path: &Path) -> Result<String, VagrantError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| VagrantError::Layout(format!("{} has no file name", path.display())))
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(ext))
}

fn check_unique(files: &[(String, PathBuf)]) -> Result<(), VagrantError> {
    let mut seen = std::collections::BTreeSet::new();
    for (name, _) in files {
        if !seen.insert(name.as_str()) {
            return Err(VagrantError::Layout(format!(
                "two files would be {name} in the box; rename one of them"
            )));
        }
    }
    Ok(())
}

fn check_qcow2(provider: &'static str, disks: &[PathBuf]) -> Result<(), VagrantError> {
    if disks.is_empty() {
        return Err(VagrantError::NoDisk);
    }
    for disk in disks {
        if !is_qcow2(disk).map_err(|source| read_err(disk, source))? {
            return Err(VagrantError::NotQcow2 {
                provider,
                path: disk.clone(),
            });
        }
    }
    Ok(())
}

fn read_err(path: &Path, source: std::io::Error) -> VagrantError {
    WriteError::Read {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

fn write_err(path: &Path, source: std::io::Error) -> VagrantError {
    WriteError::Write {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// qcow2 files start with `QFI\xfb`.
fn is_qcow2(path: &Path) -> std::io::Result<bool> {
    let mut magic = [0u8; 4];
    let mut file = File::open(path)?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(&magic == b"QFI\xfb"),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::stream::testing::{cancel_once_exists, noise, Tmpfs};

    const OPTS: BoxOptions<'static> = BoxOptions {
        architecture: "amd64",
        vagrantfile_template: None,
        include: &[],
    };

    fn qcow2_stub(dir: &Path) -> PathBuf {
        let path = dir.join("d.qcow2");
        std::fs::write(&path, b"QFI\xfb rest of a header").unwrap();
        path
    }

    #[test]
    fn driver_follows_the_accelerator() {
        let dir = tempfile::tempdir().unwrap();
        let disks = [qcow2_stub(dir.path())];
        let kvm = libvirt(&disks, Some("kvm"), &OPTS).unwrap();
        assert!(kvm.vagrantfile.contains("libvirt.driver = \"kvm\""));
        let tcg = libvirt(&disks, Some("tcg"), &OPTS).unwrap();
        assert!(tcg.vagrantfile.contains("libvirt.driver = \"qemu\""));
        let unknown = libvirt(&disks, None, &OPTS).unwrap();
        assert!(unknown.vagrantfile.contains("libvirt.driver = \"kvm\""));
        let err = libvirt(&disks, Some("whpx"), &OPTS)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown accelerator `whpx`"), "{err}");
    }

    #[test]
    fn refuses_raw_disks() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        std::fs::write(&raw, vec![0u8; 4096]).unwrap();
        let err = libvirt(std::slice::from_ref(&raw), Some("tcg"), &OPTS)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "the libvirt box needs qcow2 disks, but {} is not qcow2",
                raw.display()
            )),
            "{err}"
        );
        assert!(matches!(
            libvirt(&[], Some("tcg"), &OPTS),
            Err(VagrantError::NoDisk)
        ));
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let contents = BoxContents {
            metadata: "{}".into(),
            vagrantfile: String::new(),
            files: vec![("box_0.img".into(), dir.path().join("vanished.img"))],
        };
        let out = dir.path().join("x.box");
        assert!(contents.write(&out, 6, &CancellationToken::new()).is_err());
        assert!(!out.exists());
        assert!(!dir.path().join("x.box.tmp").exists());
    }

    /// Issue 13: on a full disk the error names the box being written and the OS's reason (not
    /// the disk being read); a plain tar box, whose size is known, is refused before writing
    /// with both sizes; nothing is left behind.
    #[test]
    fn a_full_disk_names_the_box_not_its_input() {
        let Some(fs) = Tmpfs::mount() else { return };
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        std::fs::write(&disk, noise(6 << 20)).unwrap();
        let contents = BoxContents {
            metadata: "{}".into(),
            vagrantfile: String::new(),
            files: vec![("box_0.img".into(), disk)],
        };
        let out = fs.path().join("x.box");
        let never = CancellationToken::new();
        let err = contents.write(&out, 6, &never).unwrap_err();
        assert_eq!(
            crate::report::report(&err),
            format!(
                "cannot write {}: No space left on device (os error 28)",
                out.display()
            )
        );
        assert_eq!(fs.listing(), Vec::<PathBuf>::new());
        let err = contents.write(&out, 0, &never).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "not enough free space to write {}: it needs 6.0 MiB, but 4.0 MiB is free",
                out.display()
            )),
            "{err}"
        );
        assert_eq!(fs.listing(), Vec::<PathBuf>::new());
    }

    /// Issue 13: Ctrl-C while a large box is written stops the write, leaves neither the box nor
    /// its temporary file, and the post-processors report the build as cancelled, once.
    #[tokio::test(flavor = "multi_thread")]
    async fn ctrl_c_during_a_box_write_cancels_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        let mut file = File::create(&disk).unwrap();
        file.write_all(b"QFI\xfb").unwrap();
        // 300 MB, nearly all hole: long to pack, nothing on disk.
        file.set_len(300 << 20).unwrap();
        let output = dir.path().join("x.box");
        let ctx = crate::pipeline::context::testing::context(dir.path());
        let artifact = Artifact {
            builder_id: "transcend.qemu".into(),
            build_name: "x".into(),
            builder_type: "qemu".into(),
            files: vec![disk],
            ..Artifact::default()
        };
        let step = crate::template::PlannedStep {
            kind: "vagrant".into(),
            name: None,
            config: json!({ "output": output.display().to_string() }),
            spans: Default::default(),
            meta: Default::default(),
        };
        let pctx = PostProcessContext {
            ui: &ctx.ui,
            cancel: &ctx.cancel,
            template_dir: dir.path(),
            force: false,
        };
        let canceller = cancel_once_exists(dir.path().join("x.box.tmp"), ctx.cancel.clone());
        let err = super::super::run_chains(&[vec![step]], artifact, &pctx)
            .await
            .unwrap_err();
        canceller.join().unwrap();
        assert!(err.is_cancelled(), "{err:?}");
        assert_eq!(
            crate::template::redact(&crate::report::report(&err), &[]),
            "post-processor vagrant failed: cancelled"
        );
        assert!(!output.exists());
        assert!(!dir.path().join("x.box.tmp").exists());
    }

    /// Both generations of Packer's VMware plugin name their artifacts differently; a box is
    /// made from either.
    #[test]
    fn both_vmware_artifact_ids_make_vmware_boxes() {
        assert_eq!(provider_for("mitchellh.vmware"), Some("vmware"));
        assert_eq!(provider_for("vmware.desktop"), Some("vmware"));
        assert_eq!(provider_for("mitchellh.virtualbox"), Some("virtualbox"));
        assert_eq!(provider_for("unknown.builder"), None);
    }

    #[test]
    fn base_mac_from_virtualbox_and_from_plain_ovf() {
        let vbox = r#"<vbox:Machine><Hardware><Network><Adapter slot="0" enabled="true" MACAddress="0800271A2B3C" type="82540EM"/></Network></Hardware></vbox:Machine>"#;
        assert_eq!(base_mac(vbox).as_deref(), Some("0800271A2B3C"));
        let plain = "<Item>\n<rasd:Address>0</rasd:Address><rasd:ResourceType>20</rasd:ResourceType></Item>\n<Item>\n<rasd:Address>08:00:27:aa:bb:cc</rasd:Address>\n<rasd:ResourceType>10</rasd:ResourceType>\n</Item>";
        assert_eq!(base_mac(plain).as_deref(), Some("080027aabbcc"));
        assert_eq!(base_mac("<Envelope/>"), None);
    }

    #[test]
    fn includes_land_in_the_box_and_clashes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disks = [qcow2_stub(dir.path())];
        let readme = dir.path().join("README.md");
        let meta = dir.path().join("metadata.json");
        std::fs::write(&readme, "hi").unwrap();
        std::fs::write(&meta, "{\"provider\":\"libvirt\"}\n").unwrap();
        let include = [readme.clone(), meta];
        let opts = BoxOptions {
            include: &include,
            ..OPTS
        };
        let c = libvirt(&disks, None, &opts).unwrap();
        assert_eq!(c.metadata, "{\"provider\":\"libvirt\"}\n");
        assert_eq!(c.files.last().unwrap(), &("README.md".to_string(), readme));
        let clash = dir.path().join("box_0.img");
        std::fs::write(&clash, "x").unwrap();
        let include = [clash];
        let opts = BoxOptions {
            include: &include,
            ..OPTS
        };
        let err = libvirt(&disks, None, &opts).unwrap_err().to_string();
        assert!(err.starts_with("two files would be box_0.img"), "{err}");
    }
}
