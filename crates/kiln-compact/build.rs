//! `kiln_interop`: `KILN_INTEROP=1` was set for the build. The tests against a real S3
//! API (moto's server, from PyPI) then run, and a missing moto fails them; without it
//! they are reported as ignored with the reason (`scripts/test` installs moto and sets
//! the variable).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-check-cfg=cfg(kiln_interop)");
    println!("cargo:rerun-if-env-changed=KILN_INTEROP");
    if std::env::var("KILN_INTEROP").as_deref() == Ok("1") {
        println!("cargo:rustc-cfg=kiln_interop");
    }
}
