//! Records the git commit the server is built from, for `flowlytix_build_info`. Without git
//! (a source tarball, a Docker build context without `.git`) it is `FLOWLYTIX_GIT_COMMIT`
//! from the environment, or `unknown`.

// Cargo reads a build script's instructions from its standard output.
#![allow(clippy::print_stdout)]

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FLOWLYTIX_GIT_COMMIT");
    // `sqlx::migrate!` embeds the migrations at compile time but cannot tell cargo to watch
    // them (sqlx's documented remedy): a new migration must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let commit = std::env::var("FLOWLYTIX_GIT_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=FLOWLYTIX_GIT_COMMIT={}", commit.trim());
    // Build again when HEAD moves: HEAD itself (a branch switch) and the ref it names (a
    // commit). A worktree keeps HEAD in its own git dir and the refs in the common one.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={}/HEAD", git_dir.trim());
    }
    if let (Some(common), Some(head_ref)) = (
        git(&["rev-parse", "--git-common-dir"]),
        git(&["symbolic-ref", "-q", "HEAD"]),
    ) {
        let path = format!("{}/{}", common.trim(), head_ref.trim());
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
        .filter(|s| !s.trim().is_empty())
}
