//! Where the kernel's direct map and `struct page` array start, so that the
//! programs can read a page fragment's bytes (a probe's response status
//! line). KASLR moves both bases; the kernel then keeps them in the
//! variables `page_offset_base` and `vmemmap_base`, which `/proc/kallsyms`
//! names on kernels built with all symbols. A kernel without them and
//! without KASLR has x86-64's fixed bases.

use std::fs;

/// Where the programs find the bases: the variables' addresses (read at
/// run time), or the values themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectMap {
    Variables { page_offset_base_at: u64, vmemmap_base_at: u64 },
    Fixed { page_offset_base: u64, vmemmap_base: u64 },
}

/// x86-64's bases without KASLR (Documentation/arch/x86/x86_64/mm.rst),
/// for 4- and 5-level page tables.
const FIXED_4_LEVEL: (u64, u64) = (0xffff_8880_0000_0000, 0xffff_ea00_0000_0000);
const FIXED_5_LEVEL: (u64, u64) = (0xff11_0000_0000_0000, 0xffd4_0000_0000_0000);
/// `_text` where KASLR did not move the kernel.
const UNRANDOMIZED_TEXT: u64 = 0xffff_ffff_8100_0000;

/// From `/proc/kallsyms` and `/proc/cpuinfo`; `Err` says why fragments
/// cannot be read here.
pub fn direct_map() -> Result<DirectMap, String> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(format!("reading page fragments is implemented for x86-64, not {}", std::env::consts::ARCH));
    }
    let kallsyms = fs::read_to_string("/proc/kallsyms").map_err(|e| format!("cannot read /proc/kallsyms: {e}"))?;
    let la57 = fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| cpu_has_flag(&c, "la57"));
    from_kallsyms(&kallsyms, la57)
}

pub fn from_kallsyms(kallsyms: &str, la57: bool) -> Result<DirectMap, String> {
    let (mut page_offset_base_at, mut vmemmap_base_at, mut text) = (0, 0, None);
    for line in kallsyms.lines() {
        let mut parts = line.split_whitespace();
        let (Some(addr), Some(_), Some(name)) = (parts.next(), parts.next(), parts.next()) else { continue };
        let Ok(addr) = u64::from_str_radix(addr, 16) else { continue };
        match name {
            "page_offset_base" => page_offset_base_at = addr,
            "vmemmap_base" => vmemmap_base_at = addr,
            "_text" => text = Some(addr),
            _ => {}
        }
    }
    if text == Some(0) {
        return Err("/proc/kallsyms hides addresses (kernel.kptr_restrict)".into());
    }
    if page_offset_base_at != 0 && vmemmap_base_at != 0 {
        return Ok(DirectMap::Variables { page_offset_base_at, vmemmap_base_at });
    }
    if text == Some(UNRANDOMIZED_TEXT) {
        let (page_offset_base, vmemmap_base) = if la57 { FIXED_5_LEVEL } else { FIXED_4_LEVEL };
        return Ok(DirectMap::Fixed { page_offset_base, vmemmap_base });
    }
    Err("the kernel is randomized (KASLR) and /proc/kallsyms does not name page_offset_base and vmemmap_base".into())
}

fn cpu_has_flag(cpuinfo: &str, flag: &str) -> bool {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == flag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bases_come_from_their_variables_when_kallsyms_names_them() {
        let k = "ffffffffa3000000 T _text\nffffffffa5a1b2c8 D page_offset_base\nffffffffa5a1b2c0 D vmemmap_base\n";
        assert_eq!(
            from_kallsyms(k, false),
            Ok(DirectMap::Variables { page_offset_base_at: 0xffffffffa5a1b2c8, vmemmap_base_at: 0xffffffffa5a1b2c0 })
        );
    }

    #[test]
    fn an_unrandomized_kernel_without_the_variables_has_the_fixed_bases() {
        let k = "ffffffff81000000 T _stext\nffffffff81000000 T _text\n";
        assert_eq!(
            from_kallsyms(k, false),
            Ok(DirectMap::Fixed { page_offset_base: 0xffff888000000000, vmemmap_base: 0xffffea0000000000 })
        );
        assert!(matches!(from_kallsyms(k, true), Ok(DirectMap::Fixed { page_offset_base: 0xff11000000000000, .. })));
    }

    #[test]
    fn a_randomized_kernel_without_the_variables_or_hidden_addresses_says_why() {
        assert!(from_kallsyms("ffffffffa3000000 T _text\n", false).unwrap_err().contains("KASLR"));
        assert!(from_kallsyms("0000000000000000 T _text\n", false).unwrap_err().contains("kptr_restrict"));
    }
}
