//! Benchmark driver: hashes a file with kiln's checksum code (the same function that verifies a
//! local or cached ISO) and prints the digest and the wall time. Run through
//! `bench/checksum/run.sh`, which times `sha256sum` on the same file.
//!
//! Usage: bench_checksum <file> [md5|sha1|sha256|sha512]

use std::path::Path;
use std::time::Instant;

use kiln::download::checksum::hash_file;
use kiln::download::Algorithm;
use kiln::ui::Silent;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, rest @ ..] = args.as_slice() else {
        return Err("usage: bench_checksum <file> [md5|sha1|sha256|sha512]".into());
    };
    let name = rest.first().map_or("sha256", String::as_str);
    let algorithm = Algorithm::from_name(name).ok_or(format!("unknown algorithm {name}"))?;
    let start = Instant::now();
    let hex = hash_file(algorithm, Path::new(file), &Silent)?;
    println!("{hex} {:.3}", start.elapsed().as_secs_f64());
    Ok(())
}
