//! `credshift accounts …`: import, show, verify, set-password.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::Subcommand;
use jiff::Timestamp;

use super::{EXIT_NEGATIVE, EXIT_OK, Failure, HashArgs, StoreArgs};
use crate::engine::{Passwords, VerifyOutcome};
use crate::files::members::{self, Format, ImportOptions, ImportSummary, RowNote, Sharing};
use crate::hashing::{HashPool, Secret};
use crate::store::{Account, CheckpointPhase, Store};

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Imports members with their existing hashes from CSV or JSON Lines.
    ///
    /// CSV: a header `login_id,base_email,<credential>...`, each credential
    /// cell an existing hash (argon2, bcrypt, sha512/sha256/md5-crypt,
    /// {SSHA}…) or empty. JSON Lines: one object per line with the same
    /// fields. Re-running is a no-op; a stored password is never overwritten.
    /// Exit 1 if any row failed.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The member population to import into.
        #[arg(long)]
        realm: String,
        /// Input format; by default from the extension (.jsonl/.ndjson, else CSV).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch_size: usize,
        /// Nothing else writes to the store meanwhile (a first load, before
        /// the API and the controller start). On SQLite the import then
        /// writes batch after batch without leaving the write lock free for
        /// members' writes in between: about twice as fast.
        #[arg(long)]
        exclusive: bool,
        /// The file to import.
        file: PathBuf,
    },
    /// Shows an account and its credentials (names, when and how set; never a hash).
    Show {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        realm: String,
        login_id: String,
    },
    /// Verifies a password read from stdin. Exit 0 on match, 1 on no match, 2 on error.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        hash: HashArgs,
        #[arg(long)]
        realm: String,
        /// The credential to verify against, e.g. `login`.
        #[arg(long)]
        credential: String,
        login_id: String,
    },
    /// Sets a credential to a new password read from stdin (administrator use).
    SetPassword {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        hash: HashArgs,
        #[arg(long)]
        realm: String,
        #[arg(long)]
        credential: String,
        login_id: String,
    },
}

pub async fn run(cmd: AccountsCommand) -> Result<u8, Failure> {
    match cmd {
        AccountsCommand::Import {
            store,
            realm,
            format,
            batch_size,
            exclusive,
            file,
        } => {
            let store = store.open().await?;
            let format = format.unwrap_or_else(|| Format::from_path(&file));
            let shown = file.display().to_string();
            let summary = members::import_file(
                &store,
                &realm,
                &file,
                format,
                ImportOptions {
                    batch_size,
                    sharing: if exclusive {
                        Sharing::Exclusive
                    } else {
                        Sharing::Shared
                    },
                },
                Timestamp::now(),
                row_notes_to_stderr(&shown),
            )
            .await?;
            println!(
                "imported {}, updated {}, unchanged {}, kept as stored {}, failed {}",
                summary.imported, summary.updated, summary.unchanged, summary.kept, summary.failed
            );
            note_given_by_cutovers(&store, &realm, &summary).await?;
            if !summary.paused.is_zero() {
                eprintln!(
                    "note: waited {:.1?} in all between batches so that other writers got in \
                     (SQLite); --exclusive skips this when nothing else uses the store",
                    summary.paused
                );
            }
            Ok(if summary.failed > 0 {
                EXIT_NEGATIVE
            } else {
                EXIT_OK
            })
        }
        AccountsCommand::Show {
            store,
            realm,
            login_id,
        } => {
            let store = store.open().await?;
            let account = find(&store, &realm, &login_id).await?;
            println!("realm:       {}", account.realm);
            println!("login ID:    {}", account.login_id);
            println!("base e-mail: {}", account.base_email);
            println!("state:       {}", account.state.as_str());
            println!("created:     {}", account.created_at);
            println!();
            println!(
                "{:<16} {:<26} {:<26} {:<14} {:<8} FLAGS",
                "CREDENTIAL", "SET AT", "SET VIA", "FORMAT", "VERSION"
            );
            for c in store.credential_infos(account.id).await? {
                let flags = if c.must_change { "must-change" } else { "-" };
                println!(
                    "{:<16} {:<26} {:<26} {:<14} {:<8} {flags}",
                    c.name,
                    c.set_at.to_string(),
                    c.set_via,
                    c.format,
                    c.version
                );
            }
            Ok(EXIT_OK)
        }
        AccountsCommand::Verify {
            store,
            hash,
            realm,
            credential,
            login_id,
        } => {
            let password = read_password()?;
            let store = store.open().await?;
            let account = find(&store, &realm, &login_id).await?;
            let passwords = Passwords {
                store,
                hasher: HashPool::default(),
                params: hash.params(),
                // Without the policy, no temporary password is taken for expired.
                temporary_ttl: std::time::Duration::MAX,
            };
            match passwords
                .verify(&account, &credential, password, Timestamp::now())
                .await?
            {
                VerifyOutcome::Match {
                    must_change,
                    upgraded,
                } => {
                    let mut notes = Vec::new();
                    if upgraded {
                        notes.push("hash upgraded to argon2id");
                    }
                    if must_change {
                        notes.push("must change");
                    }
                    if notes.is_empty() {
                        println!("match");
                    } else {
                        println!("match ({})", notes.join(", "));
                    }
                    Ok(EXIT_OK)
                }
                VerifyOutcome::Mismatch => {
                    println!("no match");
                    Ok(EXIT_NEGATIVE)
                }
                VerifyOutcome::NoCredential => Err(Failure(format!(
                    "account {login_id:?} in realm {realm:?} has no credential {credential:?}"
                ))),
            }
        }
        AccountsCommand::SetPassword {
            store,
            hash,
            realm,
            credential,
            login_id,
        } => {
            crate::names::Name::parse(&credential)
                .map_err(|e| Failure(format!("--credential {e}")))?;
            let password = read_password()?;
            let store = store.open().await?;
            let account = find(&store, &realm, &login_id).await?;
            let passwords = Passwords {
                store,
                hasher: HashPool::default(),
                params: hash.params(),
                // Without the policy, no temporary password is taken for expired.
                temporary_ttl: std::time::Duration::MAX,
            };
            let version = passwords
                .set(&account, &credential, password, "admin", Timestamp::now())
                .await?;
            println!("credential {credential:?} of {login_id:?} set (version {version})");
            Ok(EXIT_OK)
        }
    }
}

async fn find(store: &Store, realm: &str, login_id: &str) -> Result<Account, Failure> {
    store
        .find_account(realm, login_id)
        .await?
        .ok_or_else(|| Failure(format!("no account {login_id:?} in realm {realm:?}")))
}

/// One line from stdin, without its line ending. Never echoed back or logged.
fn read_password() -> Result<Secret, Failure> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("password (read from stdin, end with Enter):");
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure(format!("cannot read the password from stdin: {e}")))?;
    let secret = Secret::new(line.trim_end_matches(['\n', '\r']).to_owned());
    if secret.expose().is_empty() {
        return Err(Failure("no password on stdin".into()));
    }
    if secret.expose().len() > crate::hashing::MAX_PASSWORD_BYTES {
        return Err(Failure(format!(
            "the password on stdin is longer than {} bytes",
            crate::hashing::MAX_PASSWORD_BYTES
        )));
    }
    Ok(secret)
}

/// Says which rows an import gave the targets of cutovers completed before
/// it, and from which cutovers.
/// Prints each row an import failed or kept as stored, at `file:line`.
pub(super) fn row_notes_to_stderr(shown: &str) -> impl FnMut(RowNote) + '_ {
    move |note| match note {
        RowNote::Failed(p) => eprintln!("{shown}:{}: error: {}", p.line, p.message),
        RowNote::Kept(p) => eprintln!("{shown}:{}: note: {}", p.line, p.message),
    }
}

pub(super) async fn note_given_by_cutovers(
    store: &Store,
    realm: &str,
    summary: &ImportSummary,
) -> Result<(), Failure> {
    if summary.given_by_cutovers == 0 {
        return Ok(());
    }
    let splits = store.known_splits(realm).await?;
    let done: Vec<String> = splits
        .iter()
        .filter(|s| {
            matches!(
                s.phase,
                CheckpointPhase::Completed | CheckpointPhase::Retired
            )
        })
        .map(|s| {
            let retired = if s.phase == CheckpointPhase::Retired {
                format!(", {} retired", s.source)
            } else {
                String::new()
            };
            format!(
                "{} ({} -> {}{retired})",
                s.cutover,
                s.source,
                s.targets.join(", ")
            )
        })
        .collect();
    eprintln!(
        "note: {} rows were given what cutovers completed before this import gave every member, \
         each target starting as the source: {}",
        summary.given_by_cutovers,
        done.join("; ")
    );
    Ok(())
}
