//! The file driver's input: CredentialPolicy and CredentialCutover manifests
//! (and member files) from YAML on disk, checked the way the cluster would
//! check them, with errors that name `file:line:column` and the field.

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde::Deserialize;

use crate::engine::assembly::Standing;
use crate::engine::members::Realm;
use crate::engine::model::Problem;
use crate::resources::{CredentialCutover, CredentialPolicy, assemble, object_key};

/// A resource and where it was read from.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub file: PathBuf,
    /// 1-based line where its document starts.
    pub line: u64,
}

/// Everything a set of paths declares.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub policies: Vec<Located<CredentialPolicy>>,
    pub cutovers: Vec<Located<CredentialCutover>>,
    /// CSV / JSON Lines member files, imported by `apply` into the policy's realm.
    pub members: Vec<PathBuf>,
}

/// One error in the input: `file:line:column: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    pub line: u64,
    pub column: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.column {
            Some(c) => write!(
                f,
                "{}:{}:{c}: {}",
                self.file.display(),
                self.line,
                self.message
            ),
            None => write!(f, "{}:{}: {}", self.file.display(), self.line, self.message),
        }
    }
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

/// Reads every `.yaml`/`.yml` (and `.csv`/`.jsonl` member file) under the
/// paths, in name order. All errors are collected, not just the first.
pub fn load(paths: &[PathBuf]) -> Result<Manifests, Vec<InputError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_dir() {
            match std::fs::read_dir(path) {
                Ok(entries) => {
                    let mut found: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    found.sort();
                    files.extend(found.into_iter().filter(|p| p.is_file()));
                }
                Err(e) => errors.push(InputError {
                    file: path.clone(),
                    line: 0,
                    column: None,
                    message: e.to_string(),
                }),
            }
        } else {
            files.push(path.clone());
        }
    }
    let mut out = Manifests::default();
    for file in files {
        match file.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => {}
            Some("csv" | "jsonl" | "ndjson") => {
                out.members.push(file);
                continue;
            }
            _ if paths.contains(&file) => {
                errors.push(InputError {
                    file,
                    line: 0,
                    column: None,
                    message: "not a .yaml, .yml, .csv or .jsonl file".into(),
                });
                continue;
            }
            _ => continue,
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                errors.push(InputError {
                    file,
                    line: 0,
                    column: None,
                    message: e.to_string(),
                });
                continue;
            }
        };
        for (line, doc) in documents(&text) {
            if doc
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
            {
                continue;
            }
            let at = |e: serde_saphyr::Error| {
                let loc = e.location();
                let rendered = e.to_string();
                let first = rendered.lines().next().unwrap_or_default().to_owned();
                InputError {
                    file: file.clone(),
                    line: line + loc.map_or(0, |l| l.line().saturating_sub(1)),
                    column: loc.map(|l| l.column()),
                    message: first,
                }
            };
            let head: Head = match serde_saphyr::from_str(doc) {
                Ok(h) => h,
                Err(e) => {
                    errors.push(at(e));
                    continue;
                }
            };
            if head.api_version != "credshift.dev/v1alpha1" {
                errors.push(InputError {
                    file: file.clone(),
                    line,
                    column: None,
                    message: format!(
                        "apiVersion {:?}: expected credshift.dev/v1alpha1",
                        head.api_version
                    ),
                });
                continue;
            }
            let crd = match head.kind.as_str() {
                "CredentialPolicy" => Some(CredentialPolicy::crd()),
                "CredentialCutover" => Some(CredentialCutover::crd()),
                _ => None,
            };
            if let Some(crd) = crd {
                // What the API server's schema would reject, with the field's line.
                let value: serde_json::Value = match serde_saphyr::from_str(doc) {
                    Ok(v) => v,
                    Err(e) => {
                        errors.push(at(e));
                        continue;
                    }
                };
                let crd = serde_json::to_value(crd).unwrap_or_default();
                let violations = crate::resources::schema_check::check(&crd, &value);
                if !violations.is_empty() {
                    for v in violations {
                        let (l, c) = locate(doc, &v.path);
                        errors.push(InputError {
                            file: file.clone(),
                            line: line + l,
                            column: c,
                            message: format!("{}: {}", v.path, v.message),
                        });
                    }
                    continue;
                }
            }
            match head.kind.as_str() {
                "CredentialPolicy" => match serde_saphyr::from_str::<CredentialPolicy>(doc) {
                    Ok(value) => out.policies.push(Located {
                        value,
                        file: file.clone(),
                        line,
                    }),
                    Err(e) => errors.push(at(e)),
                },
                "CredentialCutover" => match serde_saphyr::from_str::<CredentialCutover>(doc) {
                    Ok(value) => out.cutovers.push(Located {
                        value,
                        file: file.clone(),
                        line,
                    }),
                    Err(e) => errors.push(at(e)),
                },
                other => errors.push(InputError {
                    file: file.clone(),
                    line,
                    column: None,
                    message: format!(
                        "kind {other:?}: expected CredentialPolicy or CredentialCutover"
                    ),
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The line (0-based within `doc`) and column of the last key of a field
/// path such as `spec.split.into[1]`; the document's first line when unknown.
fn locate(doc: &str, path: &str) -> (u64, Option<u64>) {
    let mut from = 0;
    let mut found = (0, None);
    for segment in path.split('.') {
        let key = segment.split('[').next().unwrap_or(segment);
        let hit = doc.lines().enumerate().skip(from).find_map(|(i, l)| {
            let trimmed = l.trim_start().trim_start_matches("- ");
            let col = l.len() - trimmed.len();
            (trimmed.starts_with(&format!("{key}:")) || trimmed.starts_with(&format!("{key} :")))
                .then_some((i, col))
        });
        if let Some((i, col)) = hit {
            from = i;
            found = (i as u64, Some(col as u64 + 1));
        }
    }
    found
}

/// Splits a YAML stream at `---` lines; yields (first line number, text).
fn documents(text: &str) -> Vec<(u64, &str)> {
    let mut docs = Vec::new();
    let mut start = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            docs.push((start_line, &text[start..offset]));
            start = offset + line.len();
            start_line = i as u64 + 2;
        }
        offset += line.len();
    }
    docs.push((start_line, &text[start..]));
    docs
}

/// The checked model: each policy's realm with its cutovers.
#[derive(Debug, Clone)]
pub struct Model {
    pub realms: Vec<Realm>,
}

impl Manifests {
    /// Builds and checks the engine model by the rules every driver uses
    /// ([`crate::engine::assembly`]); here anything that would take no part
    /// is an error, and every error names file, line and field.
    pub fn model(&self) -> Result<Model, Vec<InputError>> {
        let mut errors = Vec::new();
        let problem = |file: &Path, line: u64, p: Problem| InputError {
            file: file.to_owned(),
            line,
            column: None,
            message: p.to_string(),
        };
        // Files have no creation time: the same object twice is a mistake.
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.policies {
            let key = object_key(&p.value);
            if !seen.insert(key.clone()) {
                errors.push(problem(
                    &p.file,
                    p.line,
                    Problem::new(
                        "metadata.name",
                        format!("CredentialPolicy {key} is declared twice"),
                    ),
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.cutovers {
            let key = object_key(&c.value);
            if !seen.insert(key.clone()) {
                errors.push(problem(
                    &c.file,
                    c.line,
                    Problem::new(
                        "metadata.name",
                        format!("CredentialCutover {key} is declared twice"),
                    ),
                ));
            }
        }
        let policies: Vec<&CredentialPolicy> = self.policies.iter().map(|p| &p.value).collect();
        let cutovers: Vec<&CredentialCutover> = self.cutovers.iter().map(|c| &c.value).collect();
        let assembly = assemble(&policies, &cutovers);
        for p in &self.policies {
            let key = object_key(&p.value);
            match assembly.policies.get(&key) {
                Some(Standing::Invalid(problems)) => errors.extend(
                    problems
                        .iter()
                        .cloned()
                        .map(|x| problem(&p.file, p.line, x)),
                ),
                Some(Standing::RealmClaimed { owner, .. }) => {
                    errors.push(problem(
                        &p.file,
                        p.line,
                        Problem::new(
                            "spec.realm",
                            format!(
                                "realm {:?} is already claimed by CredentialPolicy {owner}; a realm belongs to one policy",
                                p.value.spec.realm
                            ),
                        ),
                    ))
                }
                _ => {}
            }
        }
        for c in &self.cutovers {
            if let Some(problems) = assembly.refused.get(&object_key(&c.value)) {
                errors.extend(
                    problems
                        .iter()
                        .cloned()
                        .map(|x| problem(&c.file, c.line, x)),
                );
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Model {
            realms: assembly.realms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_line_numbers() {
        let docs = documents("a: 1\n---\nb: 2\nc: 3\n--- \nd: 4\n");
        assert_eq!(docs.iter().map(|d| d.0).collect::<Vec<_>>(), [1, 3, 6]);
        assert_eq!(docs[1].1, "b: 2\nc: 3\n");
    }

    /// A realm belongs to one policy: a second policy for it in the files
    /// (say, one that lets the portal change the connection password) is an
    /// error at its own file (and document), naming the first.
    #[test]
    fn a_second_policy_for_a_realm_is_refused_naming_the_first() {
        let dir = tempfile::tempdir().expect("dir");
        let policy = example("policy.yaml");
        std::fs::write(dir.path().join("a.yaml"), &policy).expect("write");
        let loose = policy.replace("  name: wakwak\n", "  name: wakwak-loose\n");
        std::fs::write(dir.path().join("b.yaml"), loose).expect("write");
        let (count, text) = refusals(dir.path());
        assert_eq!(count, 1, "{text}");
        assert!(text.contains("b.yaml:1: spec.realm"), "{text}");
        assert!(
            text.contains("spec.realm") && text.contains("/wakwak;"),
            "{text}"
        );
    }

    /// How many errors loading `dir` gives, and their text, one per line.
    fn refusals(dir: &Path) -> (usize, String) {
        let errors = load(&[dir.to_path_buf()])
            .and_then(|m| m.model())
            .expect_err("refused");
        let text = errors.iter().map(ToString::to_string).collect::<Vec<_>>();
        (errors.len(), text.join("\n"))
    }

    fn example(name: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples/2018-split")
            .join(name);
        std::fs::read_to_string(path).expect("example")
    }

    /// The rule the cluster follows: of two cutovers of one policy into the
    /// same credentials, the smaller name (files have no creation time) is
    /// kept and the other is an error at its own file naming it; a second
    /// realm's policy may split into credentials of the same names.
    #[test]
    fn cutovers_follow_the_precedence_rule_and_two_policies_are_independent() {
        let dir = tempfile::tempdir().expect("dir");
        let policy = example("policy.yaml");
        let cutover = example("cutover.yaml");
        std::fs::write(dir.path().join("1-policy.yaml"), &policy).expect("write");
        let other = policy
            .replace("  name: wakwak\n", "  name: other\n")
            .replace("  realm: wakwak\n", "  realm: other\n");
        std::fs::write(dir.path().join("2-other.yaml"), other).expect("write");
        let other_split = cutover
            .replace("  name: split-login-2018\n", "  name: split-other\n")
            .replace("    name: wakwak\n", "    name: other\n");
        std::fs::write(dir.path().join("3-split-other.yaml"), other_split).expect("write");
        std::fs::write(dir.path().join("4-split.yaml"), &cutover).expect("write");
        let model = load(&[dir.path().to_path_buf()])
            .and_then(|m| m.model())
            .expect("two realms, one cutover each");
        assert_eq!(model.realms.len(), 2);
        assert!(model.realms.iter().all(|r| r.cutovers.len() == 1));

        // A second cutover of wakwak into the same targets, listed first.
        let again = cutover.replace("  name: split-login-2018\n", "  name: split-again\n");
        std::fs::write(dir.path().join("0-again.yaml"), again).expect("write");
        let (_, text) = refusals(dir.path());
        assert!(
            text.contains("4-split.yaml:")
                && text.contains("already the target of CredentialCutover default/split-again"),
            "{text}"
        );
        assert!(!text.contains("0-again.yaml"), "{text}");
    }
}
