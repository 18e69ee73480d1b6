//! Thin safe wrappers over Debian's DPDK 22.11.
//!
//! Bindings come from bindgen (allowlist `rte_.*`) plus a C shim for DPDK's static inline
//! functions; every `unsafe` block carries a `// SAFETY:` note.
