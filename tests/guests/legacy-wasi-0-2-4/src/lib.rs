//! Test guest built with the `wasi` crate's bindings for wasi 0.2.4.

extern crate wasi as wasi_bindings;

const WASI_VERSION: &str = "0.2.4";

include!("handler.rs");
