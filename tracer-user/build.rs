//! Builds the eBPF object from `tracer-ebpf`, so a normal `cargo build`
//! produces it; it is never committed.
//!
//! This is aya-build 0.2.0's `build_ebpf` (the same cargo invocation and
//! target directory) with one difference: aya-build forwards every line of
//! the inner cargo's output as a `cargo:warning`, so a first build printed
//! screens of `warning: tracer-user@0.1.0: Compiling ...`. Here progress
//! goes to the build script's stderr (cargo shows it with `-vv`, and when
//! the build fails) while real warnings and errors, cargo's and rustc's,
//! are still shown as warnings.

use std::{
    env,
    ffi::OsString,
    fs,
    io::{BufRead as _, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{Artifact, Message, diagnostic::DiagnosticLevel};

#[path = "build/ebpf_output.rs"]
mod ebpf_output;
use ebpf_output::{Line, classify};

const PACKAGE: &str = "tracer-ebpf";

fn main() -> anyhow::Result<()> {
    // `cargo fuzz` (which sets `--cfg fuzzing`) builds the library for its
    // parsers alone: nothing loads the object there, and building it would
    // add minutes to every fresh fuzz build. An empty one stands in.
    if env::var_os("CARGO_CFG_FUZZING").is_some() {
        println!("cargo:rerun-if-changed=build.rs");
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
        fs::write(out_dir.join(PACKAGE), []).context("cannot write the stand-in eBPF object")?;
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata failed")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name == PACKAGE)
        .ok_or_else(|| anyhow!("{PACKAGE} package not found in the workspace"))?;
    let root_dir = ebpf.manifest_path.parent().context("manifest has no parent")?.to_string();
    println!("cargo:rerun-if-changed={root_dir}");

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported target endianness {other:?}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let arch = if arch.starts_with("riscv64") { "riscv64".to_string() } else { arch };

    // The eBPF target needs -Z build-std=core; on the stable toolchain that
    // takes RUSTC_BOOTSTRAP (see ../shared/TOOLCHAIN.md). rustup picks the
    // stable toolchain whatever the outer build uses.
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "stable", "cargo", "build", "--package", PACKAGE, "--bins", "--message-format=json", "--release"])
        .args(["--target", target, "-Z", "build-std=core"])
        // Kept where aya-build put it, so its cache is reused (and outside
        // the outer build's target directory, which cargo has locked).
        .arg("--target-dir")
        .arg(out_dir.join("aya-build").join("target").join(PACKAGE))
        .env("RUSTC_BOOTSTRAP", "1")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    let mut rustflags = OsString::new();
    for (i, flag) in [format!("--cfg=bpf_target_arch=\"{arch}\""), "-Cdebuginfo=2".into(), "-Clink-arg=--btf".into()].iter().enumerate() {
        if i > 0 {
            rustflags.push("\x1f");
        }
        rustflags.push(flag);
    }
    cmd.env("CARGO_ENCODED_RUSTFLAGS", rustflags);

    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().with_context(|| format!("failed to spawn {cmd:?}"))?;
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    let stderr = std::thread::spawn(move || {
        let mut in_diagnostic = false;
        for line in stderr.lines().map_while(Result::ok) {
            match classify(&line, in_diagnostic) {
                Line::Warning => {
                    in_diagnostic = true;
                    println!("cargo:warning={line}");
                }
                Line::Progress => {
                    in_diagnostic = false;
                    eprintln!("{line}");
                }
            }
        }
    });
    let mut executables = Vec::new();
    for message in Message::parse_stream(BufReader::new(child.stdout.take().expect("piped stdout"))) {
        match message.context("cargo's JSON output is malformed")? {
            Message::CompilerArtifact(Artifact { executable: Some(exe), target, .. }) => {
                executables.push((target.name, exe.into_std_path_buf()));
            }
            Message::CompilerMessage(m) => {
                let rendered = m.message.rendered.unwrap_or_default();
                let shown = matches!(m.message.level, DiagnosticLevel::Warning | DiagnosticLevel::Error | DiagnosticLevel::Ice);
                for line in rendered.lines() {
                    if shown {
                        println!("cargo:warning={line}");
                    } else {
                        eprintln!("{line}");
                    }
                }
            }
            Message::TextLine(line) => eprintln!("{line}"),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    stderr.join().map_err(|_| anyhow!("the stderr reader panicked"))?;
    if !status.success() {
        bail!("building {PACKAGE} for {target} failed ({status}); its output is above");
    }
    for (name, exe) in executables {
        let dst = out_dir.join(&name);
        fs::copy(&exe, &dst).with_context(|| format!("failed to copy {} to {}", exe.display(), dst.display()))?;
    }
    Ok(())
}
