//! `credshift plan` / `credshift apply`: the reconcile engine driven from
//! YAML files, no cluster needed, on the embedded SQLite store by default.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::accounts::{note_given_by_cutovers, row_notes_to_stderr};
use super::{EXIT_OK, Failure, StoreArgs};
use crate::engine::cutover::{Phase, advance, measure_rate, plan};
use crate::files::members::{self, Format, ImportOptions};
use crate::files::{self, InputError, Model};
use crate::store::Store;

/// Flags shared by plan and apply.
#[derive(Debug, Clone, clap::Args)]
pub struct FilesArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Manifest files or directories (CredentialPolicy, CredentialCutover;
    /// .csv/.jsonl member files are imported into the policy's realm by apply).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Pretend it is this instant (RFC 3339), for rehearsals.
    #[arg(long)]
    pub now: Option<String>,
}

/// The clock: real, or `--now` moving forward from the given instant.
fn clock(now: &Option<String>) -> Result<impl Fn() -> Timestamp + Clone, Failure> {
    let base = match now {
        Some(s) => Some(s.parse::<Timestamp>().map_err(|e| {
            Failure(format!(
                "--now {s:?} is not an RFC 3339 instant like 2018-04-18T00:00:00+09:00: {e}"
            ))
        })?),
        None => None,
    };
    let started = Instant::now();
    Ok(move || match base {
        Some(b) => b + started.elapsed(),
        None => Timestamp::now(),
    })
}

fn input_failure(errors: Vec<InputError>) -> Failure {
    Failure(format!(
        "invalid input, nothing was written:\n{}",
        errors
            .iter()
            .map(|e| format!("  {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

/// Loads and checks everything before the store is touched.
fn load(args: &FilesArgs) -> Result<(files::Manifests, Model), Failure> {
    let manifests = files::load(&args.paths).map_err(input_failure)?;
    let model = manifests.model().map_err(input_failure)?;
    if !manifests.members.is_empty() && model.realms.len() != 1 {
        return Err(Failure(format!(
            "member files ({}) need exactly one CredentialPolicy to name their realm; found {}",
            manifests
                .members
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            model.realms.len()
        )));
    }
    Ok((manifests, model))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Scheduled => "Scheduled",
        Phase::Running => "Running",
        Phase::Suspended => "Suspended",
        Phase::Completed => "Completed",
        Phase::Retired => "Completed",
    }
}

/// `credshift plan`: what would happen; writes nothing.
/// Warns of each split the store shows under way that these files do not
/// declare (its cutover was removed from them mid-backfill): `serve` keeps
/// its purposes in dual read, and only declaring it again finishes it.
/// Also warns of each purpose routed to a credential some accounts lack.
async fn warn_undeclared(store: &Store, model: &Model, now: Timestamp) -> Result<(), Failure> {
    for realm in &model.realms {
        let (with_known, remembered) = realm.clone().with_known_splits(store).await?;
        for split in remembered {
            eprintln!("warning: realm {}: {split}", realm.policy.realm);
        }
        for unheld in with_known.unheld_routes(store, now).await? {
            eprintln!("warning: realm {}: {unheld}", realm.policy.realm);
        }
    }
    Ok(())
}

pub async fn plan_cmd(args: FilesArgs) -> Result<u8, Failure> {
    let (manifests, model) = load(&args)?;
    let now = clock(&args.now)?();
    // Plan reads; it must not create or migrate a store. A SQLite file that
    // does not exist yet is an empty store.
    let missing = crate::store::sqlite_file(&args.store.url).is_some_and(|f| !f.exists());
    let store = if missing {
        None
    } else {
        Some(Store::connect_read_only(&args.store.url).await?)
    };
    let migrated = match &store {
        Some(s) => s.migrate_is_current().await?,
        None => false,
    };
    if let (Some(store), true) = (&store, migrated) {
        warn_undeclared(store, &model, now).await?;
    }
    println!(
        "{:<28} {:<14} {:<26} {:<10} {:>9} {:>9} {:>9} {:>10}",
        "CUTOVER", "POLICY", "AT", "PHASE", "IN SCOPE", "SPLIT", "TO COPY", "ETA"
    );
    for realm in &model.realms {
        for (c, _) in &realm.cutovers {
            let (in_scope, already, to_copy, phase, eta) =
                if let (Some(store), true) = (&store, migrated) {
                    // The ETA comes from one real batch, rolled back. A store at
                    // the current schema was made by credshift, so opening it for
                    // writing changes nothing in it.
                    let rw = Store::connect(&args.store.url).await?;
                    let rate = measure_rate(&rw, &realm.policy, c).await?;
                    rw.close().await;
                    let p = plan(store, &realm.policy, c, now, rate).await?;
                    (
                        p.in_scope,
                        p.already_split,
                        p.to_copy,
                        phase_name(p.phase),
                        p.eta.map(human),
                    )
                } else {
                    (0, 0, 0, if now < c.at { "Scheduled" } else { "Due" }, None)
                };
            println!(
                "{:<28} {:<14} {:<26} {:<10} {:>9} {:>9} {:>9} {:>10}",
                c.name,
                realm.policy.name,
                c.at.to_string(),
                phase,
                in_scope,
                already,
                to_copy,
                eta.unwrap_or_else(|| "-".into())
            );
        }
    }
    for file in &manifests.members {
        println!(
            "members file {} would be imported into realm {}",
            file.display(),
            model.realms[0].policy.realm
        );
    }
    Ok(EXIT_OK)
}

/// `credshift apply`: reconciles the files against the store until every
/// due cutover is complete.
pub async fn apply_cmd(args: FilesArgs) -> Result<u8, Failure> {
    let (manifests, model) = load(&args)?;
    let now = clock(&args.now)?;
    let store = args.store.open().await?;
    for file in &manifests.members {
        let realm = &model.realms[0].policy.realm;
        let shown = file.display().to_string();
        let summary = members::import_file(
            &store,
            realm,
            file,
            Format::from_path(file),
            ImportOptions::batches_of(1000),
            now(),
            row_notes_to_stderr(&shown),
        )
        .await?;
        println!(
            "members {shown}: imported {}, updated {}, unchanged {}, kept {}, failed {}",
            summary.imported, summary.updated, summary.unchanged, summary.kept, summary.failed
        );
        note_given_by_cutovers(&store, realm, &summary).await?;
    }
    let tty = std::io::stderr().is_terminal();
    let mut rows = Vec::new();
    for realm in &model.realms {
        for (c, _) in &realm.cutovers {
            let bar = tty.then(|| {
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg:28} [{bar:40}] {pos}/{len} ({percent}%) {eta}",
                    )
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_message(c.name.clone());
                bar
            });
            let last = loop {
                let adv = advance(
                    &store,
                    &realm.policy,
                    c,
                    now.clone(),
                    Duration::from_millis(500),
                )
                .await?;
                let (done, total) = adv
                    .checkpoint
                    .as_ref()
                    .map_or((0, 0), |cp| (cp.done, cp.total.max(cp.done)));
                match &bar {
                    Some(bar) => {
                        bar.set_length(total as u64);
                        bar.set_position(done as u64);
                    }
                    None if adv.batches > 0 || adv.completed => {
                        eprintln!("{}: {done}/{total} accounts split", c.name);
                    }
                    None => {}
                }
                if adv.phase != Phase::Running || adv.completed {
                    break adv;
                }
            };
            if let Some(bar) = bar {
                bar.finish();
            }
            rows.push((
                realm.policy.name.clone(),
                realm.policy.realm.clone(),
                c.clone(),
                last,
            ));
        }
    }
    // A kubectl-like status table.
    println!(
        "{:<28} {:<14} {:<26} {:<10} {:<20} {:<6}",
        "NAME", "POLICY", "AT", "PHASE", "PROGRESS", "READY"
    );
    for (policy, realm, c, adv) in &rows {
        let (done, total) = adv
            .checkpoint
            .as_ref()
            .map_or((0, 0), |cp| (cp.done, cp.total.max(cp.done)));
        let (total, done) = if adv.checkpoint.is_none() {
            store.split_counts(realm, &c.from, &c.into).await?
        } else {
            (total, done)
        };
        let percent = if total > 0 { done * 100 / total } else { 100 };
        let ready = matches!(adv.phase, Phase::Completed | Phase::Retired);
        println!(
            "{:<28} {:<14} {:<26} {:<10} {:<20} {:<6}",
            c.name,
            policy,
            c.at.to_string(),
            phase_name(adv.phase),
            format!("{done}/{total} ({percent}%)"),
            if ready { "True" } else { "False" }
        );
    }
    println!();
    println!(
        "{:<14} {:<10} {:<16} {:<16} {:<9}",
        "POLICY", "REALM", "PURPOSE", "ANSWERED BY", "MODE"
    );
    for realm in &model.realms {
        // Splits the store knows that these files do not declare route too.
        let realm = realm.clone().with_known_splits(&store).await?.0;
        let realm = realm.with_progress(&store).await?;
        for (purpose, route) in
            crate::engine::routing::effective_routing(&realm.policy, &realm.cutovers, now())
        {
            println!(
                "{:<14} {:<10} {:<16} {:<16} {:<9}",
                realm.policy.name,
                realm.policy.realm,
                purpose,
                route.answering(true),
                route.mode()
            );
        }
    }
    // What the store holds now that the due cutovers have run.
    warn_undeclared(&store, &model, now()).await?;
    Ok(EXIT_OK)
}
