//! The attack probe: run inside the sandbox by tests/attacks.rs, it attempts each attack and
//! prints one line per attempt, `NAME: RESULT`, where RESULT is `ok` or the errno name.
fn main() {}
