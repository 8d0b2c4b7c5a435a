use which::which;

/// Rebuild when bpf-linker changes (as aya's template does): the eBPF object
/// depends on the linker's LLVM.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
