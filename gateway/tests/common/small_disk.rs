//! A small tmpfs mounted for a test (the suite runs as root, as scripts/setup.sh does), unmounted on drop: a disk
//! that really fills up.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk(PathBuf);

impl SmallDisk {
    pub fn mount(at: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs")
            .success();
        assert!(ok, "mounting a {size} tmpfs needs root");
        SmallDisk(at.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}
