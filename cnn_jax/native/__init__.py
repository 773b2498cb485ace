"""Native kernels that compiled JAX programs call through XLA's FFI (built on first use)."""
