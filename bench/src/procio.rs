//! A process's reading, from `/proc/<pid>/io`: `read_bytes` (what the kernel fetched from storage for it: page-cache
//! hits don't count) and `rchar` (everything its `read`-family system calls returned, from files and from sockets
//! read with `read`, cached or not).

/// `read_bytes` and `rchar` of a process at one instant.
#[derive(Clone, Copy, Debug, Default)]
pub struct Reads {
    pub read_bytes: u64,
    pub rchar: u64,
}

impl Reads {
    /// What was read between `earlier` and `self`.
    pub fn since(self, earlier: Reads) -> Reads {
        Reads {
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            rchar: self.rchar.saturating_sub(earlier.rchar),
        }
    }
}

pub fn reads(pid: u32) -> std::io::Result<Reads> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    let field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Reads {
        read_bytes: field("read_bytes:"),
        rchar: field("rchar:"),
    })
}
