//! Build script: finds DPDK with pkg-config, compiles the C shim, generates bindings.
//!
//! * cflags and libraries come from `pkg-config libdpdk` only (never hard-coded: Debian's
//!   libdpdk.pc carries `-include rte_config.h` and the `-march` DPDK was built for).
//! * Debian builds DPDK as shared libraries and loads every driver (net_ring, net_null,
//!   net_af_packet, net_tap, net_pcap, PCI PMDs, mempool_ring, bus_vdev) at `rte_eal_init` time
//!   from its plugin directory, `pkg-config --variable=pmddir`-less but compiled into librte_eal
//!   as `RTE_EAL_PMD_PATH` (/usr/lib/<triple>/dpdk/pmds-23.0). So `--vdev=net_ring0` works with
//!   the plain shared link and no `-d` argument. The one driver library we link directly is
//!   `rte_net_ring`, for its public `rte_eth_from_rings` (two ports wired back to back); glibc
//!   recognises the plugin copy as the same object, so it is not initialised twice.
//! * When libdpdk is absent the crate still builds, without the `dpdk` cfg: every DPDK module is
//!   compiled out and the integration tests print why they skip.
use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(dpdk)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=shim/shim.h");
    println!("cargo:rerun-if-changed=shim/shim.c");
    println!("cargo:rerun-if-env-changed=DIALGATE_NO_DPDK");

    if env::var_os("DIALGATE_NO_DPDK").is_some() {
        println!("cargo:warning=DIALGATE_NO_DPDK set: building dialgate-ffi without DPDK");
        return;
    }
    // Probe without emitting link lines yet: the static shim must come before the shared DPDK
    // libraries on the link line (Debian's libdpdk.pc links with --as-needed).
    if let Err(e) = pkg_config::Config::new().atleast_version("22.11").cargo_metadata(false).probe("libdpdk") {
        println!("cargo:warning=libdpdk not found by pkg-config ({e}); building without DPDK");
        return;
    }
    let cflags = pkg_config_output(&["--cflags", "libdpdk"]);

    // 1. The shim (DPDK's static inline functions made linkable).
    let mut cc = cc::Build::new();
    cc.file("shim/shim.c").include("shim").warnings(false);
    for f in &cflags {
        cc.flag(f);
    }
    cc.compile("dialgate_shim");

    // 2. DPDK's own libraries, as pkg-config lists them, then rte_net_ring for
    //    rte_eth_from_rings (only if this DPDK ships that driver).
    pkg_config::Config::new().atleast_version("22.11").probe("libdpdk").expect("libdpdk probed a moment ago");
    let static_libs = pkg_config_output(&["--static", "--libs", "libdpdk"]);
    if static_libs.iter().any(|l| l.contains("rte_net_ring")) {
        println!("cargo:rustc-link-lib=dylib=rte_net_ring");
        println!("cargo:rustc-cfg=dpdk_net_ring");
    }
    println!("cargo::rustc-check-cfg=cfg(dpdk_net_ring)");

    // 3. Bindings for the exported (non-inline) functions we call; types follow recursively.
    let functions = [
        "rte_eal_init",
        "rte_eal_cleanup",
        "rte_eal_remote_launch",
        "rte_eal_wait_lcore",
        "rte_eal_get_lcore_state",
        "rte_lcore_count",
        "rte_get_main_lcore",
        "rte_get_next_lcore",
        "rte_lcore_is_enabled",
        "rte_lcore_to_socket_id",
        "rte_socket_id",
        "rte_strerror",
        "rte_pktmbuf_pool_create",
        "rte_pktmbuf_free_bulk",
        "rte_mempool_free",
        "rte_mempool_avail_count",
        "rte_mempool_in_use_count",
        "rte_eth_dev_count_avail",
        "rte_eth_dev_get_port_by_name",
        "rte_eth_dev_is_valid_port",
        "rte_eth_dev_info_get",
        "rte_eth_dev_configure",
        "rte_eth_dev_adjust_nb_rx_tx_desc",
        "rte_eth_rx_queue_setup",
        "rte_eth_tx_queue_setup",
        "rte_eth_dev_start",
        "rte_eth_dev_stop",
        "rte_eth_dev_close",
        "rte_eth_dev_socket_id",
        "rte_eth_macaddr_get",
        "rte_eth_promiscuous_enable",
        "rte_eth_promiscuous_disable",
        "rte_eth_promiscuous_get",
        "rte_eth_stats_get",
        "rte_eth_stats_reset",
        "rte_eth_link_get_nowait",
        "rte_eth_from_rings",
        "rte_ring_create",
        "rte_ring_free",
        "rte_ring_lookup",
    ];
    let mut builder = bindgen::Builder::default()
        .header("shim/shim.h")
        .clang_args(&cflags)
        .clang_arg("-Ishim")
        .allowlist_function("dg_.*")
        .allowlist_type("rte_eth_conf|rte_eth_dev_info|rte_eth_stats|rte_eth_link|rte_ether_addr")
        .allowlist_type("rte_eth_rxconf|rte_eth_txconf|rte_lcore_state_t")
        .allowlist_var("RTE_ETH_RSS_.*|RTE_ETH_MQ_.*|RTE_MBUF_DEFAULT_BUF_SIZE|RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RING_F_.*|RTE_MAX_LCORE|RTE_MAX_ETHPORTS|SOCKET_ID_ANY|LCORE_ID_ANY")
        // Hot-path structs are only ever handled through pointers and the shim's accessors.
        .opaque_type("rte_mbuf|rte_mempool|rte_ring|rte_memzone")
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in functions {
        builder = builder.allowlist_function(f);
    }
    let bindings = builder.generate().expect("bindgen over shim/shim.h");
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
    println!("cargo:rustc-cfg=dpdk");
    // Dependents' build scripts read this as DEP_DPDK_AVAILABLE to set their own `dpdk` cfg.
    println!("cargo:available=1");
}

/// Runs pkg-config (honouring `$PKG_CONFIG`) and splits its output into arguments.
fn pkg_config_output(args: &[&str]) -> Vec<String> {
    let exe = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let out = Command::new(exe).args(args).output().expect("run pkg-config");
    assert!(out.status.success(), "pkg-config {args:?} failed");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect()
}
