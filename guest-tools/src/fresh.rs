//! Whether a guest's build output is newer than its sources and than the SDK it was built
//! against, so that `hostel build` does nothing twice.

use crate::sdk::sdk_dir;
use crate::steps::say;
use std::path::Path;

/// The newest modification time of the guest's sources (not its build output) and of the
/// unpacked SDK (a new folder whenever the SDK or WIT changes).
fn newest_source(dir: &Path) -> Option<std::time::SystemTime> {
    fn walk(dir: &Path, newest: &mut Option<std::time::SystemTime>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "build" || name == "__pycache__" || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified()) {
                *newest = (*newest).max(Some(modified));
            }
        }
    }
    let mut newest = sdk_dir()
        .ok()
        .and_then(|sdk| std::fs::metadata(sdk).and_then(|m| m.modified()).ok());
    walk(dir, &mut newest);
    newest
}

/// Whether `out` is newer than every source of the guest in `dir` and than the SDK.
pub fn up_to_date(dir: &Path, out: &Path) -> bool {
    let built = std::fs::metadata(out).and_then(|m| m.modified()).ok();
    let fresh = built.is_some() && built >= newest_source(dir);
    if fresh {
        say(&format!("{} is up to date", out.display()));
    }
    fresh
}
