//! Embeds the guest SDKs and the WIT files in the binary, so that `hostel new` and
//! `hostel build` work outside this repository.

use std::path::{Path, PathBuf};

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.')
            || name == "target"
            || name == "__pycache__"
            || name == "node_modules"
        {
            continue;
        }
        if path.is_dir() {
            collect(root, &path, out);
        } else {
            out.push(
                path.strip_prefix(root)
                    .expect("below the root")
                    .to_path_buf(),
            );
        }
    }
}

fn main() {
    // Read when the script runs, not when it is compiled: one compiled script may serve two
    // checkouts that share a target folder.
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir.parent().expect("repository root");
    let mut files = Vec::new();
    for dir in [
        "wit",
        "guest-sdk/rust",
        "guest-sdk/rust-service",
        "guest-sdk/python",
        "guest-sdk/js",
        "guest-sdk/c",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
        collect(root, &root.join(dir), &mut files);
    }
    let mut code = String::from(
        "/// Files of the guest SDKs and WIT, by path from the repository root.\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for file in &files {
        code += &format!(
            "    ({:?}, include_bytes!({:?})),\n",
            file.to_str().expect("UTF-8 path"),
            root.join(file).to_str().expect("UTF-8 path")
        );
    }
    code += "];\n";
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("sdk_files.rs");
    std::fs::write(out, code).expect("cannot write sdk_files.rs");
}
