//! Compile-time behaviour of the macros: every misuse in `tests/ui/<macro>/` must fail
//! with the message in the `.stderr` beside it, caret on the user's own token; every
//! file in `tests/ui/pass/` must compile (and run its empty `main`).
//!
//! After a deliberate change of message or span: `TRYBUILD=overwrite cargo test --test ui`,
//! then read every changed `.stderr`.

#[test]
fn ui() {
    // trybuild builds its own copy of every dependency and does not copy our
    // `[profile]`: without debug info that build is several GB smaller (CI's disk is
    // finite) and faster to link.
    std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "0");
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/saga/*.rs");
    t.compile_fail("tests/ui/saga_step/*.rs");
    t.compile_fail("tests/ui/compensate/*.rs");
    t.compile_fail("tests/ui/subscribe/*.rs");
    t.compile_fail("tests/ui/query/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
