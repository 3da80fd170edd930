//! README's "Using sbx from Rust", word for word between the markers: `cargo test` compiles
//! it, and tests/recipes.rs checks that README still shows this text. Not run by the tests
//! (it would run a sandbox as the test runner, who may be root).

#[rustfmt::skip] // README's alignment, kept
fn main() -> Result<(), Box<dyn std::error::Error>> {
    // README begin
    use sbx::Sandbox;

    let finished = Sandbox::new()?
        .profile("ci")?                      // any built-in, user profile or path; repeatable
        .ro_bind("/usr/share", None)         // bind, ro_bind, tmpfs, overlay, env, network...
        .limit("wall_time", "10m")?          // any [limits] key
        .run(["make", "-j2"])?;              // blocks this thread; returns when the command ends
    println!("exit {} ({:?})", finished.exit_code, finished.status.reason);
    let report = serde_json::to_string(&finished.status)?; // the --json-status document
    // README end
    println!("{report}");
    Ok(())
}
