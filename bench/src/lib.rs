//! Shared helpers for dialgate benchmarks and the `dialgate-bench` load tool.
