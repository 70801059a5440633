//! The command line as a user meets it: help, version, completions, exit
//! codes, and a README that documents every environment variable.

use clap::CommandFactory as _;

fn credshift(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_credshift"))
        .args(args)
        .output()
        .expect("run credshift")
}

#[test]
fn help_version_and_usage_errors_have_the_documented_exit_codes() {
    assert_eq!(credshift(&["--help"]).status.code(), Some(0));
    let version = credshift(&["--version"]);
    assert_eq!(version.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&version.stdout).starts_with("credshift "));
    let usage = credshift(&["frobnicate"]);
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");
    let missing = credshift(&["apply"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--filename"));
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = credshift(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&out.stdout);
        for sub in ["apply", "plan", "controller", "serve", "accounts"] {
            assert!(text.contains(sub), "{shell} completion names {sub}");
        }
    }
}

/// The README's configuration reference lists every environment variable
/// that any subcommand reads.
#[test]
fn readme_documents_every_environment_variable() {
    fn collect(cmd: &clap::Command, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            if let Some(env) = arg.get_env() {
                out.push(env.to_string_lossy().into_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut vars = Vec::new();
    collect(&credshift::cli::Cli::command(), &mut vars);
    vars.push(credshift::hashing::OUTBOX_KEY_ENV.to_owned());
    vars.sort();
    vars.dedup();
    assert!(vars.len() >= 20, "{vars:?}");
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md");
    let missing: Vec<&String> = vars
        .iter()
        .filter(|v| !readme.contains(v.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md does not document {missing:?}"
    );
}
