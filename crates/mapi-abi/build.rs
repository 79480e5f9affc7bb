//! The shared object's SONAME is libmapispool.so, the name programs link against with
//! `-lmapispool`; cargo names the file after the Rust library (libmapispool_abi.so) and
//! install.sh installs it under the SONAME.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libmapispool.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
