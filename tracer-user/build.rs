//! Builds the eBPF object from `tracer-ebpf` with aya-build, so a normal
//! `cargo build` produces it; it is never committed.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name == "tracer-ebpf")
        .ok_or_else(|| anyhow!("tracer-ebpf package not found in the workspace"))?;
    let root_dir = ebpf.manifest_path.parent().context("manifest has no parent")?.to_string();
    // The eBPF target needs -Z build-std=core; on the stable toolchain that
    // takes RUSTC_BOOTSTRAP (see ../shared/TOOLCHAIN.md). Build scripts are
    // single-threaded, so setting the environment here is sound.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [aya_build::Package { name: "tracer-ebpf", root_dir: &root_dir, ..Default::default() }],
        aya_build::Toolchain::Custom("stable"),
    )
}
