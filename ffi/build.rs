//! Builds `dpdk-sys` against the system DPDK.
//!
//! 1. `pkg-config --cflags libdpdk` gives the include paths and the
//!    `-include rte_config.h -march=...` flags that DPDK's headers require
//!    (they use SSE intrinsics and take build options from `rte_config.h`), so
//!    the same flags go to both the C shim and bindgen.
//! 2. The C shim (`shim/shim.c`) is compiled first so that its static archive
//!    precedes the DPDK shared libraries on the link line; with
//!    `--as-needed` a shared library is only kept when an earlier object uses
//!    it.
//! 3. The pkg-config probe then emits the DPDK shared libraries to link.
//! 4. `librte_net_ring` is linked by name: `rte_eth_from_rings` is the ring
//!    PMD's own API, and PMD plugins are not in `pkg-config --libs` (EAL
//!    loads them from its plugin directory; the dynamic loader sees that
//!    the linked copy is the same file and does not load it twice).
//! 5. bindgen writes the bindings to `OUT_DIR`, so they always match the
//!    installed DPDK rather than a checked-in snapshot.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const LIBRARY: &str = "libdpdk";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cflags = dpdk_cflags();

    for file in ["wrapper.h", "shim/shim.h", "shim/shim.c"] {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=PKG_CONFIG");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let mut shim = cc::Build::new();
    shim.file(manifest_dir.join("shim/shim.c"))
        .include(manifest_dir.join("shim"))
        // DPDK's own headers trip -Wextra (unused parameters in inline
        // helpers); those warnings are not ours to fix.
        .extra_warnings(false);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("pylon_dpdk_shim");

    pkg_config::Config::new()
        .probe(LIBRARY)
        .unwrap_or_else(|e| {
            panic!("pkg-config could not find {LIBRARY} (install libdpdk-dev): {e}")
        });
    println!("cargo:rustc-link-lib=dylib=rte_net_ring");

    let bindings = bindgen::Builder::default()
        .header(manifest_dir.join("wrapper.h").to_string_lossy())
        .clang_args(&cflags)
        .allowlist_function("rte_.*|pylon_.*")
        .allowlist_type("rte_.*|RTE_.*")
        .allowlist_var("rte_.*|RTE_.*|PYLON_.*|RING_F_.*")
        // Packed structs that contain aligned members: bindgen cannot lay
        // them out in Rust (E0588), so they are opaque byte blobs here.
        .opaque_type("rte_arp_hdr|rte_arp_ipv4|rte_l2tpv2_.*|rte_gtp_.*")
        // Enum constants keep their C names (RTE_ETH_MQ_RX_RSS, ...).
        .prepend_enum_name(false)
        .derive_default(true)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on wrapper.h");
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("cannot write bindings.rs");
}

/// The compiler flags DPDK's headers need, straight from pkg-config (the
/// `pkg-config` crate keeps only include paths and defines, and would drop
/// `-include rte_config.h` and `-march`).
fn dpdk_cflags() -> Vec<String> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_owned());
    let output = Command::new(&pkg_config)
        .args(["--cflags", LIBRARY])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {pkg_config}: {e}"));
    assert!(
        output.status.success(),
        "{pkg_config} --cflags {LIBRARY} failed (install libdpdk-dev): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("pkg-config printed non-UTF-8 flags")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
