//! Stamps the build with the commit it was built from, as `TIDINGS_COMMIT`: the
//! variable itself when set (the image build passes its `REVISION` argument, having no
//! `.git`), else `git rev-parse`, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TIDINGS_COMMIT");
    let commit = std::env::var("TIDINGS_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TIDINGS_COMMIT={}", commit.trim());
}

/// The checkout's commit, and the files whose change means a new one: `HEAD`, the
/// branch it names, the packed refs. `--git-path` says where git keeps each, which in a
/// linked worktree is not one directory (`HEAD` in the worktree's, refs in the common
/// one). A file that does not exist is not watched: cargo would rerun this script at
/// every build, and rebuild every crate that depends on this one.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut files = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    files.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    let here = std::env::current_dir().unwrap_or_default();
    for file in files {
        if let Some(path) = git(&["rev-parse", "--git-path", &file]).map(|p| here.join(p))
            && path.exists()
        {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}
