//! `sqlx::migrate!` embeds the migrations at compile time, but on stable Rust cargo does not know
//! the macro read them: a migration added or edited would be left out of the next build until
//! some source file changed. Watching the folders makes cargo rebuild when they change.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
