//! Tracepoint record layouts from tracefs `format` files.
//!
//! Tracepoint fields are a stable interface by name, not by offset: fields
//! are added over kernel versions. Programs read them at offsets parsed here.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, anyhow};
use tracer_common::{NO_FIELD, SockTracepointOffsets};

const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

/// One field of a tracepoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// The parsed `format` file of one tracepoint.
#[derive(Debug, Default, Clone)]
pub struct Format {
    fields: HashMap<String, Field>,
}

impl Format {
    /// Reads `events/<category>/<name>/format` from tracefs.
    pub fn load(category: &str, name: &str) -> Result<Self> {
        let path = format_path(category, name)?;
        let text = fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self::parse(&text))
    }

    /// Parses lines like `\tfield:__u16 sport;\toffset:16;\tsize:2;\tsigned:0;`.
    pub fn parse(text: &str) -> Self {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else { continue };
            let mut parts = rest.split(';').map(str::trim);
            let Some(decl) = parts.next() else { continue };
            let mut offset = None;
            let mut size = None;
            for part in parts {
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse().ok();
                }
            }
            let (Some(offset), Some(size)) = (offset, size) else { continue };
            // The name is the last word of the C declaration without any
            // array suffix: "__u8 saddr[4]" -> "saddr",
            // "__data_loc char[] filename" -> "filename".
            if let Some(last) = decl.split_whitespace().last() {
                let name = last.split('[').next().unwrap_or(last);
                fields.insert(name.to_string(), Field { offset, size });
            }
        }
        Self { fields }
    }

    pub fn field(&self, name: &str) -> Option<Field> {
        self.fields.get(name).copied()
    }

    /// Offset of `name`, or [`NO_FIELD`] when this kernel's record lacks it.
    pub fn offset_or_missing(&self, name: &str) -> u32 {
        self.field(name).map_or(NO_FIELD, |f| f.offset)
    }

    /// Offset of a field the programs cannot do without.
    pub fn required(&self, name: &str, size: u32) -> Result<u32> {
        let f = self
            .field(name)
            .ok_or_else(|| anyhow!("tracepoint record has no field {name}"))?;
        if f.size != size {
            return Err(anyhow!("tracepoint field {name} is {} bytes, expected {size}", f.size));
        }
        Ok(f.offset)
    }

    /// Offsets of the socket fields shared by the sock/tcp tracepoints.
    pub fn sock_offsets(&self) -> Result<SockTracepointOffsets> {
        Ok(SockTracepointOffsets {
            skaddr: self.required("skaddr", 8)?,
            oldstate: self.offset_or_missing("oldstate"),
            newstate: self.offset_or_missing("newstate"),
            state: self.offset_or_missing("state"),
            sport: self.required("sport", 2)?,
            dport: self.required("dport", 2)?,
            // tcp_retransmit_skb only gained it in 5.11: without it the
            // programs read the v6 fields, which hold v4-mapped addresses.
            family: self.offset_or_missing("family"),
            protocol: self.offset_or_missing("protocol"),
            saddr: self.required("saddr", 4)?,
            daddr: self.required("daddr", 4)?,
            saddr_v6: self.offset_or_missing("saddr_v6"),
            daddr_v6: self.offset_or_missing("daddr_v6"),
        })
    }
}

fn format_path(category: &str, name: &str) -> Result<PathBuf> {
    for root in TRACEFS_ROOTS {
        let p = PathBuf::from(root).join("events").join(category).join(name).join("format");
        if p.exists() {
            return Ok(p);
        }
    }
    Err(anyhow!(
        "tracepoint {category}:{name} not found under {} (is tracefs mounted?)",
        TRACEFS_ROOTS.join(" or ")
    ))
}

/// Mounts tracefs at /sys/kernel/tracing when neither location has it (a
/// minimal host or container may not mount it); tracepoint formats and
/// attachment both need it.
pub fn ensure_mounted() -> Result<()> {
    if TRACEFS_ROOTS.iter().any(|r| Path::new(r).join("events").is_dir()) {
        return Ok(());
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(c"tracefs".as_ptr(), target.as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(anyhow!(
            "tracefs is not mounted and mounting it on /sys/kernel/tracing failed ({}); mount it with `mount -t tracefs tracefs /sys/kernel/tracing`",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

pub fn tracepoint_exists(category: &str, name: &str) -> bool {
    format_path(category, name).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Recorded from Debian 12's 6.1 kernel.
    const INET_SOCK_SET_STATE: &str = "name: inet_sock_set_state
ID: 1460
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int oldstate;\toffset:16;\tsize:4;\tsigned:1;
\tfield:int newstate;\toffset:20;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:24;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:26;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 protocol;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:32;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:36;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:56;\tsize:16;\tsigned:0;

print fmt: \"family=%s protocol=%s\"
";

    #[test]
    fn parses_recorded_format() {
        let f = Format::parse(INET_SOCK_SET_STATE);
        let off = f.sock_offsets().unwrap();
        assert_eq!(off.skaddr, 8);
        assert_eq!(off.oldstate, 16);
        assert_eq!(off.newstate, 20);
        assert_eq!(off.sport, 24);
        assert_eq!(off.saddr, 32);
        assert_eq!(off.daddr_v6, 56);
        assert_eq!(off.state, NO_FIELD);
    }

    #[test]
    fn missing_required_field_is_an_error() {
        let f = Format::parse("\tfield:int x;\toffset:8;\tsize:4;\tsigned:1;\n");
        assert!(f.sock_offsets().is_err());
        assert_eq!(f.required("x", 4).unwrap(), 8);
        assert!(f.required("x", 8).is_err());
    }
}

#[cfg(test)]
mod process_format_tests {
    use super::*;

    #[test]
    fn data_loc_and_array_fields_are_named_by_their_last_word() {
        let f = Format::parse(
            "\tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
             \tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;\n",
        );
        assert_eq!(f.field("filename").map(|x| x.offset), Some(8));
        assert_eq!(f.field("comm").map(|x| (x.offset, x.size)), Some((20, 16)));
    }
}
