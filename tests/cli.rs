//! The command line as a user meets it: help, version, completions, exit
//! codes, and a README that documents every environment variable.

// A panic in a test is its failure, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::CommandFactory as _;

mod support;

use support::credshift_output as credshift;

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

/// The shipped Japanese and English recovery mails drop into the example
/// policy and pass the same checks as any policy.
#[test]
fn shipped_mail_templates_are_valid_policy_mail() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy =
        std::fs::read_to_string(root.join("examples/2018-split/policy.yaml")).expect("policy");
    let start = policy
        .find("          mail:\n")
        .expect("the example's mail block");
    let end = policy[start..]
        .find("    # Connection password")
        .map(|i| start + i)
        .expect("end of the mail block");
    for lang in ["ja", "en"] {
        let template =
            std::fs::read_to_string(root.join(format!("examples/mail-templates/{lang}.yaml")))
                .expect("template");
        let block: String = template
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("          {l}\n"))
            .collect();
        assert!(block.contains("{{temporary_password}}"), "{lang}");
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("policy.yaml"),
            format!("{}{}{}", &policy[..start], block, &policy[end..]),
        )
        .expect("write");
        let manifests = credshift::files::load(&[dir.path().to_owned()])
            .unwrap_or_else(|e| panic!("{lang}: {e:?}"));
        manifests
            .model()
            .unwrap_or_else(|e| panic!("{lang}: {e:?}"));
    }
}
