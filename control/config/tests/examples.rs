//! Every example in the workspace's `configs/` directory validates.

use std::path::Path;

use pylon_config::Config;

#[test]
fn every_example_config_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "toml") {
            if let Err(e) = Config::load(&path) {
                panic!("example does not validate: {e}");
            }
            checked.push(path);
        }
    }
    assert!(
        checked.iter().any(|path| path.ends_with("nat.toml")),
        "no configs/nat.toml among {checked:?}"
    );
}
