//! Benchmark driver: packs a qcow2 into a Vagrant box with kiln's post-processor code and prints the
//! wall time. Run through `bench/package/run.sh`, which times Packer on the same disk.
//!
//! Usage: bench_package <disk.qcow2> <out.box> <libvirt|virtualbox|ova> [compression_level]

use std::path::PathBuf;
use std::time::Instant;

use kiln::artifact::ovf::OvfVersion;
use kiln::postprocessor::vagrant::{self, BoxOptions, Machine};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, disk, out, provider, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: bench_package <disk.qcow2> <out.box> <libvirt|virtualbox|ova> [level]".into(),
        );
    };
    let level = rest.first().map_or(Ok(6), |l| l.parse())?;
    let disks = [PathBuf::from(disk)];
    let out = PathBuf::from(out);
    let opts = BoxOptions {
        architecture: "amd64",
        vagrantfile_template: None,
        include: &[],
    };
    let work = out.with_extension("work");
    let start = Instant::now();
    match provider.as_str() {
        "libvirt" => vagrant::libvirt(&disks, Some("tcg"), &opts)?.write(&out, level)?,
        "virtualbox" => {
            let machine = Machine {
                name: "bench",
                cpus: 1,
                memory_mb: 512,
            };
            vagrant::virtualbox_from_qcow2(&disks, &machine, &work, &opts)?.write(&out, level)?;
        }
        "ova" => {
            let spec = kiln::artifact::ova::OvaSpec {
                name: "bench",
                cpus: 1,
                memory_mb: 512,
                mac: None,
                system_type: "vmx-07",
                version: OvfVersion::V1,
            };
            kiln::artifact::ova::export(&spec, &disks, &work, &out)?;
        }
        other => return Err(format!("unknown provider {other}").into()),
    }
    let secs = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&work);
    println!("{secs:.3}");
    Ok(())
}
