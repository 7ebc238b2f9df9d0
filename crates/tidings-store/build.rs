//! `sqlx::migrate!` embeds `migrations/` at compile time but cannot watch the folder;
//! this makes a new or edited migration rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
