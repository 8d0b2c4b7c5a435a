//! `cargo xtask setup`: installs every prerequisite on a fresh Debian 12
//! machine, skipping what is already there. See ../shared/TOOLCHAIN.md for
//! why each piece is done this way.

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context, Result, anyhow, bail};

use crate::cmd::{run, step, stdout, succeeds};

/// Debian packages: QEMU and virtme-ng's needs, the scenarios' tools
/// (ipvsadm, runc, crun, containerd, iptables, busybox, curl, Go for the
/// kubelet-like prober), bpftrace (the benchmark's peer), ruby (checks the
/// Vagrantfile's syntax) and prometheus (promtool checks the alert rules).
const APT_PACKAGES: &[&str] = &[
    "qemu-system-x86", "kmod", "cpio", "busybox-static", "ipvsadm", "iproute2", "runc", "crun",
    "containerd", "iptables", "curl", "golang-go", "bpftrace", "ruby", "jq", "prometheus",
];
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The newest cargo-fuzz; it builds with rustc 1.95.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

pub fn setup(kernels: &[String]) -> Result<()> {
    apt()?;
    rust_src()?;
    bpf_linker()?;
    cargo_fuzz()?;
    virtme_ng()?;
    let packages = if kernels.is_empty() { default_kernel_packages()? } else { kernels.to_vec() };
    for pkg in packages {
        let dir = kernel(&pkg)?;
        eprintln!("    kernel ready: {}", dir.display());
    }
    // Optional: without it the suite skips its newer-runc stage.
    if let Err(e) = newer_runc() {
        eprintln!("xtask: no newer runc ({e:#}); the suite's newer-runc stage will be skipped");
    }
    step("setup complete");
    for (name, args) in [("rustc", "--version"), ("bpf-linker", "--version"), ("cargo-fuzz", "--version"), ("vng", "--version"), ("qemu-system-x86_64", "--version")] {
        let v = stdout(Command::new(name).arg(args)).unwrap_or_else(|e| format!("unavailable: {e}"));
        eprintln!("    {name}: {}", v.lines().next().unwrap_or(""));
    }
    Ok(())
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        step("apt packages already installed");
        return Ok(());
    }
    step(&format!("installing Debian packages: {}", missing.join(" ")));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

fn rust_src() -> Result<()> {
    let installed = stdout(Command::new("rustup").args(["component", "list", "--installed"]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        step("rust-src already installed");
        return Ok(());
    }
    step("installing rust-src (the eBPF target builds core from source)");
    run(Command::new("rustup").args(["component", "add", "rust-src"]))
}

/// bpf-linker must use an LLVM of rustc's own major version: build it
/// against the libLLVM that ships in rustc's sysroot.
fn bpf_linker() -> Result<()> {
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        step("bpf-linker already installed");
        return Ok(());
    }
    let sysroot = PathBuf::from(stdout(Command::new("rustc").args(["--print", "sysroot"]))?);
    let lib_dir = sysroot.join("lib");
    let llvm = fs::read_dir(&lib_dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("libLLVM") && n.ends_with(".so"))
        .ok_or_else(|| anyhow!("no libLLVM-*.so in {}", lib_dir.display()))?;
    let lib_name = llvm.trim_start_matches("lib").trim_end_matches(".so").to_string();
    // "LLVM-22-rust-1.95.0-stable" -> 22
    let major: u32 = lib_name
        .split('-')
        .nth(1)
        .and_then(|v| v.split('.').next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the LLVM version from {llvm}"))?;
    step(&format!("building bpf-linker {BPF_LINKER_VERSION} against rustc's LLVM {major}"));
    let rustflags = format!(
        "-L {lib} -l dylib={lib_name} -C link-arg=-Wl,-rpath,{lib}",
        lib = lib_dir.display()
    );
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--locked", "--version", BPF_LINKER_VERSION, "--no-default-features", "--features"])
        .arg(format!("llvm-{major},no-llvm-linking"))
        .env("RUSTFLAGS", rustflags))
}

/// cargo-fuzz for the fuzz stage of `cargo xtask test`. The stage builds
/// with the nightly toolchain beside the stable one (libFuzzer's coverage
/// instrumentation); setup does not download toolchains.
fn cargo_fuzz() -> Result<()> {
    if !succeeds(Command::new("rustup").args(["run", "nightly", "rustc", "--version"])) {
        eprintln!("    no nightly toolchain: the fuzz stage of `cargo xtask test` needs one (or --skip-fuzz)");
    }
    if succeeds(Command::new("cargo-fuzz").arg("--version")) {
        step("cargo-fuzz already installed");
        return Ok(());
    }
    step(&format!("installing cargo-fuzz {CARGO_FUZZ_VERSION}"));
    run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION]))
}

fn virtme_ng() -> Result<()> {
    if succeeds(Command::new("vng").arg("--version")) {
        step("virtme-ng already installed");
        return Ok(());
    }
    step("installing virtme-ng (boots a kernel over a read-only view of this machine)");
    run(Command::new("pip").args(["install", "--quiet", "virtme-ng"]))
}

/// The kernels the VM suite runs on: Debian 12's own (6.1), Debian 12
/// backports' 6.12 and Debian 11's 5.10.
fn default_kernel_packages() -> Result<Vec<String>> {
    let mut packages = vec![default_kernel_package()?];
    for series in ["6.12", "5.10"] {
        packages.push(other_release_kernel(series)?);
    }
    Ok(packages)
}

/// A private apt configuration that sees bullseye and bookworm-backports,
/// so the machine's own sources stay as they are.
fn other_releases_apt() -> Result<Vec<String>> {
    let dir = kernel_cache().parent().unwrap().join("apt");
    fs::create_dir_all(dir.join("lists/partial"))?;
    let list = dir.join("sources.list");
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    fs::write(
        &list,
        format!(
            "deb [signed-by={keyring}] http://deb.debian.org/debian bullseye main\n\
             deb [signed-by={keyring}] http://deb.debian.org/debian-security bullseye-security main\n\
             deb [signed-by={keyring}] http://deb.debian.org/debian bookworm-backports main\n"
        ),
    )?;
    Ok(private_apt_options(&dir, &list))
}

/// apt-get / apt-cache options that read only `list`, keeping their lists
/// in `dir`.
fn private_apt_options(dir: &std::path::Path, list: &std::path::Path) -> Vec<String> {
    let opts = [
        format!("Dir::Etc::SourceList={}", list.display()),
        "Dir::Etc::SourceParts=/dev/null".to_string(),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        "Dir::Cache::pkgcache=".to_string(),
        "Dir::Cache::srcpkgcache=".to_string(),
        "APT::Sandbox::User=root".to_string(),
    ];
    opts.iter().flat_map(|o| ["-o".to_string(), o.clone()]).collect()
}

fn newer_runc_cache() -> PathBuf {
    kernel_cache().parent().unwrap().join("runc")
}

/// The directory holding the newer runc `setup` unpacked, if it did.
pub fn newer_runc_dir() -> Option<PathBuf> {
    let bin = newer_runc_cache().join("bin");
    bin.join(".ready").exists().then_some(bin)
}

/// Debian's newest runc (sid's: Debian 12 has 1.1.5, trixie 1.1.15),
/// unpacked under the cache and never installed. It needs a newer C library
/// (glibc 2.38; Debian 12 has 2.36): sid's is unpacked beside it and the
/// binary's interpreter and library path point there (patchelf, unpacked
/// too), so that runc re-executing itself still works.
fn newer_runc() -> Result<()> {
    if newer_runc_dir().is_some() {
        step("newer runc already unpacked");
        return Ok(());
    }
    let cache = newer_runc_cache();
    let dir = cache.join("apt-sid");
    fs::create_dir_all(dir.join("lists/partial"))?;
    let list = dir.join("sources.list");
    let keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
    fs::write(&list, format!("deb [signed-by={keyring}] http://deb.debian.org/debian sid main\n"))?;
    let apt = private_apt_options(&dir, &list);
    step("downloading Debian sid's runc and C library (unpacked under the cache, not installed)");
    run(Command::new("apt-get").args(&apt).args(["update", "-qq"]))?;
    let debs = cache.join("debs");
    if debs.exists() {
        fs::remove_dir_all(&debs)?;
    }
    fs::create_dir_all(&debs)?;
    run(Command::new("apt-get").args(&apt).args(["download", "runc", "libc6"]).current_dir(&debs))?;
    run(Command::new("apt-get").args(["download", "patchelf"]).current_dir(&debs))?;
    let unpacked = cache.join("root");
    if unpacked.exists() {
        fs::remove_dir_all(&unpacked)?;
    }
    for deb in fs::read_dir(&debs)?.flatten().map(|e| e.path()) {
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    }
    let libs = unpacked.join("usr/lib/x86_64-linux-gnu");
    let bin = cache.join("bin");
    fs::create_dir_all(&bin)?;
    let runc = bin.join("runc");
    fs::copy(unpacked.join("usr/sbin/runc"), &runc)?;
    run(Command::new(unpacked.join("usr/bin/patchelf"))
        .arg("--set-interpreter")
        .arg(libs.join("ld-linux-x86-64.so.2"))
        .arg("--set-rpath")
        .arg(format!("{}:/lib/x86_64-linux-gnu", libs.display()))
        .arg(&runc))?;
    let version = stdout(Command::new(&runc).arg("--version"))?;
    eprintln!("    {}", version.lines().next().unwrap_or(""));
    fs::write(bin.join(".ready"), "")?;
    Ok(())
}

/// The newest `linux-image-<series>...-amd64` that a `linux-image-amd64`
/// of another Debian release depends on.
fn other_release_kernel(series: &str) -> Result<String> {
    let cached = kernel_cache();
    if let Ok(entries) = fs::read_dir(&cached) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(series) && e.path().join(".unpacked").exists() {
                return Ok(format!("linux-image-{name}"));
            }
        }
    }
    let apt = other_releases_apt()?;
    step(&format!("looking up Debian's {series} kernel (bullseye / bookworm-backports)"));
    run(Command::new("apt-get").args(&apt).args(["update", "-qq"]))?;
    let show = stdout(Command::new("apt-cache").args(&apt).args(["show", "linux-image-amd64"]))?;
    show.lines()
        .filter_map(|l| l.strip_prefix("Depends: "))
        .filter_map(|d| d.split_whitespace().next())
        .find(|p| p.starts_with(&format!("linux-image-{series}")))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("no linux-image-{series} kernel found in bullseye or bookworm-backports"))
}

fn default_kernel_package() -> Result<String> {
    let deps = stdout(Command::new("apt-cache").args(["depends", "linux-image-amd64"]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .find(|p| p.starts_with("linux-image-") && p.chars().nth(12).is_some_and(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("apt-cache names no kernel for linux-image-amd64 (run apt-get update)"))
}

/// The cache lives under $HOME: inside a virtme-ng guest /var, /tmp, /usr
/// and friends are blank overlays, while /root is the host's.
pub fn kernel_cache() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".cache/probe-tracer/kernels")
}

/// Downloads and unpacks a Debian kernel package; returns its directory.
pub fn kernel(package: &str) -> Result<PathBuf> {
    let release = package.trim_start_matches("linux-image-").to_string();
    let cache = kernel_cache();
    let dir = cache.join(&release);
    let marker = dir.join(".unpacked");
    if marker.exists() {
        step(&format!("kernel {release} already unpacked"));
        return Ok(dir);
    }
    fs::create_dir_all(&cache)?;
    let have_deb = |c: &PathBuf| -> Option<PathBuf> {
        fs::read_dir(c).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| {
            p.file_name().is_some_and(|n| {
                let n = n.to_string_lossy();
                n.starts_with(&format!("{package}_")) && n.ends_with(".deb")
            })
        })
    };
    let deb = match have_deb(&cache) {
        Some(deb) => deb,
        None => {
            step(&format!("downloading {package}"));
            // Debian 12's own kernels come from the machine's sources; the
            // others (bullseye, backports) through a private configuration.
            let from_own_sources = succeeds(Command::new("apt-get").args(["download", package]).current_dir(&cache));
            if !from_own_sources {
                run(Command::new("apt-get").args(other_releases_apt()?).args(["download", package]).current_dir(&cache))?;
            }
            have_deb(&cache).ok_or_else(|| anyhow!("apt-get download produced no {package} .deb"))?
        }
    };
    step(&format!("unpacking {} and indexing its modules", deb.display()));
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&dir))?;
    // Without modules.dep, modprobe in the guest finds nothing (ip_vs!).
    run(Command::new("depmod").arg("-b").arg(&dir).arg(&release))?;
    fs::write(&marker, "")?;
    Ok(dir)
}

/// Every unpacked kernel, Debian 12's own first.
pub fn cached_kernels() -> Result<Vec<String>> {
    let cache = kernel_cache();
    let mut found: Vec<String> = fs::read_dir(&cache)
        .with_context(|| format!("no kernels in {}: run cargo xtask setup", cache.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join(".unpacked").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    // Debian 12's 6.1 first (the demo's default), then newest to oldest.
    found.sort_by_key(|r| (!r.starts_with("6.1.0"), std::cmp::Reverse(version_key(r))));
    if found.is_empty() {
        bail!("no unpacked kernel in {}: run cargo xtask setup", cache.display());
    }
    Ok(found)
}

/// "6.12.95+deb12-amd64" -> [6, 12, 95] for ordering.
fn version_key(release: &str) -> Vec<u32> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The unpacked kernel to boot: `release`, else Debian 12's own.
pub fn find_kernel(release: Option<&str>) -> Result<(String, PathBuf)> {
    let cache = kernel_cache();
    let release = match release {
        Some(r) => r.to_string(),
        None => cached_kernels()?.remove(0),
    };
    let vmlinuz = cache.join(&release).join("boot").join(format!("vmlinuz-{release}"));
    if !vmlinuz.exists() {
        bail!("kernel {release} is not unpacked ({} missing): run cargo xtask setup --kernel linux-image-{release}", vmlinuz.display());
    }
    Ok((release, vmlinuz))
}
