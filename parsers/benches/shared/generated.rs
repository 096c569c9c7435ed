//! The benchmarks' input: 100,000 lines of `shared/bench/gen_istio_cri.py`, generated once
//! into `target/bench-input/` when the shared folder is beside the checkout. Included by
//! path in the benchmarks of both crates (`#[path]`), so they measure the same lines.

use std::path::PathBuf;
use std::process::Command;

/// The generated file's bytes, or `None` without the generator (the caller falls back to
/// its own sample).
pub fn generated_lines() -> Option<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let generator = root.join("../shared/bench/gen_istio_cri.py");
    let file = root.join("target/bench-input/istio-100k.log");
    if !file.exists() && generator.exists() {
        std::fs::create_dir_all(file.parent()?).ok()?;
        let ok = Command::new("python3")
            .arg(&generator)
            .arg("100000")
            .arg(&file)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "running {}", generator.display());
    }
    std::fs::read(&file).ok()
}
