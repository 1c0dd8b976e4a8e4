//! Test guest built with the `wasip2` crate's bindings for wasi 0.2.9.

extern crate wasip2 as wasi_bindings;

const WASI_VERSION: &str = "0.2.9";

include!("../../legacy-wasi-0-2-4/src/handler.rs");
