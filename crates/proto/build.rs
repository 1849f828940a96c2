//! Compiles every `.proto` under the workspace's `proto/` directory once, for all services.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut protos = Vec::new();
    collect(&root, &mut protos)?;
    protos.sort();
    // The directory too: a newly added .proto must rerun this script.
    println!("cargo:rerun-if-changed={}", root.display());
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    // A vendored protoc keeps the build offline; an explicit PROTOC still wins.
    match std::env::var_os("PROTOC") {
        Some(protoc) => config.protoc_executable(protoc),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("ecom_descriptor.bin"))
        .compile_with_config(config, &protos, &[root])?;
    Ok(())
}
