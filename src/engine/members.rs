//! What members do, by purpose and channel, following the routing of the
//! instant: verify a password, change it. The same calls serve the API,
//! the CLI and the tests, before, during and after a cutover.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use super::guesses::{Check, GuessLimit};
use super::model::{CredentialRules, Cutover, CutoverProgress, Policy, Recovery, WindowAction};
use super::passwords::{Passwords, VerifyOutcome};
use super::routing::{Route, cutover_creating, effective_routing, route_for, route_through};
use super::{EngineError, blocklist};
use crate::hashing::{HashPool, Secret};
use crate::store::{
    Account, AccountState, CheckpointPhase, CredentialWrite, Expected, FailureKey, KnownSplit,
    Store, StoreError, WriteKind,
};

/// A realm's policy and its cutovers with their progress: everything routing needs.
#[derive(Debug, Clone)]
pub struct Realm {
    pub policy: Policy,
    pub cutovers: Vec<(Cutover, CutoverProgress)>,
}

/// A purpose routed to a credential that `lacking` of the realm's
/// `accounts` do not hold, and that no cutover creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnheldRoute {
    pub purpose: String,
    pub credential: String,
    pub lacking: i64,
    pub accounts: i64,
}

impl std::fmt::Display for UnheldRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "purpose {} is routed to credential {}, which {} of {} accounts lack and no cutover creates: they are denied on it",
            self.purpose, self.credential, self.lacking, self.accounts
        )
    }
}

/// The purposes of `routing` sent straight to a credential that fewer of
/// the realm's `accounts` hold (`held`, by credential) than there are.
pub fn unheld_in(
    routing: &BTreeMap<String, Route>,
    held: &BTreeMap<String, i64>,
    accounts: i64,
) -> Vec<UnheldRoute> {
    routing
        .iter()
        .filter_map(|(purpose, route)| {
            let Route::Direct { credential } = route else {
                return None;
            };
            let lacking = accounts - held.get(credential).copied().unwrap_or(0);
            (lacking > 0).then(|| UnheldRoute {
                purpose: purpose.clone(),
                credential: credential.clone(),
                lacking,
                accounts,
            })
        })
        .collect()
}

/// A split the store knows that no cutover object declares, and how
/// routing treats it ([`Realm::remembering`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub cutover: String,
    pub phase: CheckpointPhase,
    pub source: String,
    pub at: Timestamp,
}

impl std::fmt::Display for Remembered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (c, source) = (&self.cutover, &self.source);
        match self.phase {
            CheckpointPhase::Scheduled => write!(
                f,
                "cutover {c} is scheduled in the store for {} but not declared; its purposes are answered by {source} until then, and in dual read after",
                self.at
            ),
            CheckpointPhase::Aborted => write!(
                f,
                "cutover {c} was aborted; its purposes are answered by {source} until a cutover creates their credentials again"
            ),
            _ => write!(
                f,
                "cutover {c} is under way in the store but not declared; its purposes stay in dual read (each member answers with the credential it holds) until it is declared again and completes"
            ),
        }
    }
}

/// The credential that governs a purpose for one account at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub route: Route,
    /// The credential whose hash answers a verification now.
    pub answering: String,
    /// The credential a change (and its rules) applies to now: the source
    /// before the cutover, the purpose's own credential from `at` on.
    pub governing: String,
}

impl Resolved {
    /// The route, for an account that holds the route's target or not.
    fn new(route: Route, has_target: bool) -> Resolved {
        Resolved {
            answering: route.answering(has_target).to_owned(),
            governing: route.governing().to_owned(),
            route,
        }
    }
}

/// What a verification by login ID found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginVerify {
    /// Too many failed guesses for this key this window: nothing was
    /// looked at and nothing hashed.
    Throttled,
    /// No active account by that login ID: unknown, suspended and closed
    /// look alike, and cost one hash, as a wrong password does.
    NoAccount,
    /// The account's password was checked.
    Checked(VerifyOutcome),
}

/// Why a change was refused. Each has a stable code for API callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnknownPurpose,
    /// This channel may not change the credential that governs the purpose now.
    ChannelNotAllowed {
        credential: String,
        channel: String,
    },
    WrongCurrentPassword,
    TooShort {
        min: u32,
    },
    TooLong {
        max: u32,
    },
    SameAsLoginId,
    Blocklisted,
    ReusedPassword,
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::UnknownPurpose => "unknown_purpose",
            Refusal::ChannelNotAllowed { .. } => "channel_not_allowed",
            Refusal::WrongCurrentPassword => "wrong_current_password",
            Refusal::TooShort { .. } => "too_short",
            Refusal::TooLong { .. } => "too_long",
            Refusal::SameAsLoginId => "same_as_login_id",
            Refusal::Blocklisted => "blocklisted",
            Refusal::ReusedPassword => "reused_password",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownPurpose => write!(f, "unknown purpose"),
            Refusal::ChannelNotAllowed {
                credential,
                channel,
            } => {
                write!(
                    f,
                    "the {credential} password cannot be changed through {channel}"
                )
            }
            Refusal::WrongCurrentPassword => write!(f, "the current password is wrong"),
            Refusal::TooShort { min } => {
                write!(f, "the new password must have at least {min} characters")
            }
            Refusal::TooLong { max } => {
                write!(f, "the new password must have at most {max} characters")
            }
            Refusal::SameAsLoginId => write!(f, "the new password must not be the login ID"),
            Refusal::Blocklisted => write!(f, "the new password is too common"),
            Refusal::ReusedPassword => write!(f, "the new password was used before"),
        }
    }
}

impl Realm {
    /// The same realm with the splits the store knows and no cutover of
    /// this realm declares (deleted or pruned, or declared elsewhere): each
    /// is routed as what it was, so no member is sent to a credential it
    /// does not hold. A running one stays in dual read (an account answers
    /// with the target where it has it, else with the source); a scheduled
    /// one answers with the source until its `at`, then in dual read; an
    /// aborted one answers with the source. Nothing drives them: they are
    /// suspended, and only routing reads them. Also returns them, for a
    /// warning. Completed ones are left out: every account holds their
    /// targets.
    pub fn remembering(mut self, known: &[KnownSplit]) -> (Realm, Vec<Remembered>) {
        let mut remembered = Vec::new();
        for split in known {
            let present = self.cutovers.iter().any(|(c, _)| {
                c.name == split.cutover || c.into.iter().any(|t| split.targets.contains(t))
            });
            let (at, progress) = match split.phase {
                CheckpointPhase::Running => (split.at, CutoverProgress::Running),
                CheckpointPhase::Scheduled => (split.at, CutoverProgress::NotStarted),
                // Never reached: the source answers for good.
                CheckpointPhase::Aborted => (Timestamp::MAX, CutoverProgress::NotStarted),
                CheckpointPhase::Completed | CheckpointPhase::Retired => continue,
            };
            if present {
                continue;
            }
            let cutover = Cutover {
                name: split.cutover.clone(),
                policy: self.policy.name.clone(),
                at,
                window: Duration::ZERO,
                on_window_exceeded: WindowAction::Suspend,
                from: split.source.clone(),
                into: split.targets.clone(),
                batch_size: 1,
                suspend: true,
                retain_source: Duration::MAX,
            };
            remembered.push(Remembered {
                cutover: split.cutover.clone(),
                phase: split.phase,
                source: split.source.clone(),
                at: split.at,
            });
            self.cutovers.push((cutover, progress));
        }
        (self, remembered)
    }

    /// The purposes routed straight (no cutover before them, none under
    /// way) to a credential that some accounts of the realm lack, with how
    /// many lack it: those members are denied on that purpose whatever
    /// they type. Reads the realm's routing at `now` with its progress.
    pub async fn unheld_routes(
        &self,
        store: &Store,
        now: Timestamp,
    ) -> Result<Vec<UnheldRoute>, EngineError> {
        let realm = self.with_progress(store).await?;
        let accounts = store.count_accounts(&realm.policy.realm).await?;
        let counted = store.count_credentials_by_name(&realm.policy.realm).await?;
        let held: BTreeMap<String, i64> = realm
            .policy
            .purposes
            .values()
            .map(|c| (c.clone(), counted.get(c).copied().unwrap_or(0)))
            .collect();
        let routing = effective_routing(&realm.policy, &realm.cutovers, now);
        Ok(unheld_in(&routing, &held, accounts))
    }

    /// [`Realm::remembering`] the splits the store knows for this realm.
    pub async fn with_known_splits(
        self,
        store: &Store,
    ) -> Result<(Realm, Vec<Remembered>), EngineError> {
        let known = store.known_splits(&self.policy.realm).await?;
        Ok(self.remembering(&known))
    }

    /// The same realm with each cutover's progress read from its checkpoint.
    pub async fn with_progress(&self, store: &Store) -> Result<Realm, EngineError> {
        let mut out = self.clone();
        for (c, progress) in &mut out.cutovers {
            *progress = store.checkpoint_phase(&c.name).await?.into();
        }
        Ok(out)
    }

    /// The route and credentials that govern `purpose` for `account` at `now`.
    pub async fn resolve(
        &self,
        store: &Store,
        account: &Account,
        purpose: &str,
        now: Timestamp,
    ) -> Result<Option<Resolved>, EngineError> {
        let Some(credential) = self.policy.purposes.get(purpose) else {
            return Ok(None);
        };
        let route = route_for(credential, &self.cutovers, now);
        let has_target = match &route {
            Route::DualRead { credential, .. } => {
                store.credential(account.id, credential).await?.is_some()
            }
            Route::Direct { .. } | Route::Source { .. } => true,
        };
        Ok(Some(Resolved::new(route, has_target)))
    }

    /// During a cutover: writes that give the account every other target of
    /// the purpose's cutover, copied from the source if missing, so a change
    /// or reset of one target leaves the old password on the others.
    pub(crate) fn materialise_writes(&self, resolved: &Resolved) -> Vec<CredentialWrite> {
        let Route::DualRead {
            source, cutover, ..
        } = &resolved.route
        else {
            return Vec::new();
        };
        let Some((c, _)) = self.cutovers.iter().find(|(c, _)| &c.name == cutover) else {
            return Vec::new();
        };
        c.into
            .iter()
            .filter(|t| **t != resolved.governing)
            .map(|other| CredentialWrite {
                name: other.clone(),
                hash: String::new(),
                expected: Expected::Absent,
                via: format!("cutover:{}", cutover.rsplit('/').next().unwrap_or(cutover)),
                must_change: false,
                action: "credential.materialise",
                kind: WriteKind::CopyIfMissing {
                    source: source.clone(),
                },
            })
            .collect()
    }

    /// Hashes a new secret for `credential` with that credential's parameters.
    pub(crate) async fn hash_for(
        &self,
        hasher: &HashPool,
        account: &Account,
        credential: &str,
        secret: Secret,
    ) -> Result<String, EngineError> {
        let params = self
            .rules(credential)
            .map(|r| r.hashing)
            .unwrap_or_default();
        hasher
            .hash(secret, params)
            .await
            .map_err(|source| EngineError::Hash {
                login_id: account.login_id.clone(),
                credential: credential.to_owned(),
                source,
            })
    }

    /// Spends what checking a password of `purpose` spends (one hash at the
    /// parameters of the credential a change would set), for the answers
    /// that must not tell that there is no account.
    pub async fn equal_cost(
        &self,
        hasher: &HashPool,
        purpose: &str,
        password: Secret,
        now: Timestamp,
    ) {
        let params = self
            .governing(purpose, now)
            .and_then(|c| self.rules(&c).map(|r| r.hashing))
            .unwrap_or_default();
        let _ = hasher.hash(password, params).await;
    }

    fn rules(&self, credential: &str) -> Option<&CredentialRules> {
        self.policy.credentials.get(credential)
    }

    fn passwords(&self, store: &Store, hasher: &HashPool, credential: &str) -> Passwords {
        let rules = self.rules(credential);
        Passwords {
            store: store.clone(),
            hasher: hasher.clone(),
            params: rules.map(|r| r.hashing).unwrap_or_default(),
            temporary_ttl: rules.map_or(Duration::ZERO, |r| r.temporary_ttl),
        }
    }

    /// Verifies a password for a purpose by login ID. `None`: no such purpose.
    ///
    /// The failed guesses counted for `guesses`, the account, the
    /// credentials the route may answer from and the progress of the
    /// cutover that decides the route come from one read of the store: one
    /// snapshot, so routing and the hash cannot disagree, and one round trip
    /// on the API's hottest path. Past `limit`, nothing is hashed. Counting
    /// a failure is the caller's, once it has decided the answer (see
    /// [`guesses`](super::guesses)).
    #[allow(clippy::too_many_arguments)]
    pub async fn verify(
        &self,
        store: &Store,
        hasher: &HashPool,
        login_id: &str,
        purpose: &str,
        password: Secret,
        limit: GuessLimit,
        guesses: &FailureKey<'_>,
    ) -> Result<Option<LoginVerify>, EngineError> {
        let now = guesses.now;
        let Some(credential) = self.policy.purposes.get(purpose) else {
            return Ok(None);
        };
        let creating = cutover_creating(&self.cutovers, credential).map(|(c, _)| c);
        let source = creating.map_or(credential.as_str(), |c| c.from.as_str());
        let read = store
            .verify_snapshot(
                &self.policy.realm,
                login_id,
                [credential.as_str(), source],
                creating.map(|c| c.name.as_str()),
                guesses,
            )
            .await?;
        let check = limit.check(&read.failures, now);
        if check == Check::Nothing {
            return Ok(Some(LoginVerify::Throttled));
        }
        let streak = read.failures.streak;
        let Some(snapshot) = read
            .snapshot
            .filter(|s| s.account.state == AccountState::Active)
        else {
            // Held back: an account without a ticket is not checked at all,
            // and neither is one that does not exist.
            if check == Check::TicketOnly {
                return Ok(Some(LoginVerify::Throttled));
            }
            self.equal_cost(hasher, purpose, password, now).await;
            return Ok(Some(LoginVerify::NoAccount));
        };
        let route = route_through(
            credential,
            creating.map(|c| (c, snapshot.cutover_phase.into())),
            now,
        );
        let has_target = snapshot.credentials.iter().any(|c| &c.name == credential);
        let resolved = Resolved::new(route, has_target);
        let account = snapshot.account;
        let stored = snapshot
            .credentials
            .into_iter()
            .find(|c| c.name == resolved.answering);
        let outcome = if check == Check::Both {
            self.passwords(store, hasher, &resolved.answering)
                .verify_stored(&account, &resolved.answering, stored, password.clone(), now)
                .await?
        } else {
            VerifyOutcome::Mismatch
        };
        let outcome = if outcome == VerifyOutcome::Mismatch
            && self
                .redeem(store, hasher, &account, &resolved, password, now)
                .await?
        {
            // A temporary password: the member is in, and must set a new one.
            VerifyOutcome::Match {
                must_change: true,
                upgraded: false,
            }
        } else {
            outcome
        };
        // Held back and no ticket matched: nothing was checked, nothing counts.
        if check == Check::TicketOnly && outcome == VerifyOutcome::Mismatch {
            return Ok(Some(LoginVerify::Throttled));
        }
        // A right password ends the account's streak of failures (a write
        // only when there is one).
        if matches!(outcome, VerifyOutcome::Match { .. }) && streak > 0 {
            store.end_streak(guesses.streak).await?;
        }
        Ok(Some(LoginVerify::Checked(outcome)))
    }

    /// The credential a change of `purpose` applies to at `now`. It does not
    /// depend on the account (only which credential *answers* does), so the
    /// API can refuse a channel before it looks the account up.
    pub fn governing(&self, purpose: &str, now: Timestamp) -> Option<String> {
        let credential = self.policy.purposes.get(purpose)?;
        Some(
            route_for(credential, &self.cutovers, now)
                .governing()
                .to_owned(),
        )
    }

    /// Whether `channel` may change `credential`.
    pub fn channel_may_change(&self, credential: &str, channel: &str) -> Result<(), Refusal> {
        if self
            .rules(credential)
            .is_some_and(|r| r.change_via.contains(channel))
        {
            Ok(())
        } else {
            Err(Refusal::ChannelNotAllowed {
                credential: credential.to_owned(),
                channel: channel.to_owned(),
            })
        }
    }

    /// Whether `channel` may change the password of `purpose` now, and which credential that is.
    pub fn may_change(&self, resolved: &Resolved, channel: &str) -> Result<(), Refusal> {
        let allowed = self
            .rules(&resolved.governing)
            .is_some_and(|r| r.change_via.contains(channel));
        if allowed {
            Ok(())
        } else {
            Err(Refusal::ChannelNotAllowed {
                credential: resolved.governing.clone(),
                channel: channel.to_owned(),
            })
        }
    }

    /// The recovery that applies to `purpose` now (the governing credential's).
    pub async fn recovery(
        &self,
        store: &Store,
        account: &Account,
        purpose: &str,
        now: Timestamp,
    ) -> Result<Option<(Resolved, Recovery)>, EngineError> {
        let Some(resolved) = self.resolve(store, account, purpose, now).await? else {
            return Ok(None);
        };
        let recovery = self
            .rules(&resolved.governing)
            .map_or(Recovery::None, |r| r.recovery.clone());
        Ok(Some((resolved, recovery)))
    }

    /// Changes the password of `purpose` through `channel`. The current
    /// password is checked against the credential that answers now; the new
    /// one is checked against the governing credential's rules. During a
    /// cutover, the purpose's other targets are first materialised from the
    /// source in the same transaction, so the member keeps the old password
    /// everywhere they did not change it.
    ///
    /// A write that loses a race (the backfill copied the target, or another
    /// change landed first) is retried from the start, so the current
    /// password is checked against what is stored by then.
    #[allow(clippy::too_many_arguments)]
    pub async fn change(
        &self,
        store: &Store,
        hasher: &HashPool,
        account: &Account,
        channel: &str,
        purpose: &str,
        current: Secret,
        new: Secret,
        now: Timestamp,
    ) -> Result<Result<(), Refusal>, EngineError> {
        // The rules and the hash see the password in NFKC.
        let new = new.normalized();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .change_once(
                    store,
                    hasher,
                    account,
                    channel,
                    purpose,
                    current.clone(),
                    new.clone(),
                    now,
                )
                .await
            {
                Err(EngineError::Store(StoreError::Conflict { .. })) if attempt < 5 => continue,
                other => return other,
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn change_once(
        &self,
        store: &Store,
        hasher: &HashPool,
        account: &Account,
        channel: &str,
        purpose: &str,
        current: Secret,
        new: Secret,
        now: Timestamp,
    ) -> Result<Result<(), Refusal>, EngineError> {
        let Some(resolved) = self.resolve(store, account, purpose, now).await? else {
            return Ok(Err(Refusal::UnknownPurpose));
        };
        if let Err(refusal) = self.may_change(&resolved, channel) {
            return Ok(Err(refusal));
        }
        // The version the change is made against is read before the current
        // password is checked: a change that lands in between (the member's
        // other session) makes this write conflict, and the retry checks the
        // current password against it, instead of overwriting it.
        let expected = match store.credential(account.id, &resolved.governing).await? {
            Some(c) => Expected::Version(c.version),
            None => Expected::Absent,
        };
        let current_ok = matches!(
            self.passwords(store, hasher, &resolved.answering)
                .verify(account, &resolved.answering, current, now)
                .await?,
            VerifyOutcome::Match { .. }
        );
        if !current_ok {
            return Ok(Err(Refusal::WrongCurrentPassword));
        }
        let governing = resolved.governing.clone();
        if let Err(refusal) = self
            .check_rules(store, hasher, account, &governing, &new)
            .await?
        {
            return Ok(Err(refusal));
        }
        let hash = self.hash_for(hasher, account, &governing, new).await?;
        let mut writes = self.materialise_writes(&resolved);
        writes.push(CredentialWrite {
            name: governing,
            hash,
            expected,
            via: channel.to_owned(),
            must_change: false,
            action: "credential.change",
            kind: WriteKind::Set,
        });
        store.write_credentials(account, &writes, now).await?;
        Ok(Ok(()))
    }

    async fn check_rules(
        &self,
        store: &Store,
        hasher: &HashPool,
        account: &Account,
        credential: &str,
        new: &Secret,
    ) -> Result<Result<(), Refusal>, EngineError> {
        let Some(rules) = self.rules(credential) else {
            return Ok(Ok(()));
        };
        // The most telling reason first: "that is your login ID" or "that
        // password is common" helps a member more than "too short".
        if rules.not_login_id && new.expose().eq_ignore_ascii_case(&account.login_id) {
            return Ok(Err(Refusal::SameAsLoginId));
        }
        if rules.blocklist && blocklist::contains(new.expose()) {
            return Ok(Err(Refusal::Blocklisted));
        }
        let len = new.char_len();
        if len < rules.min_length as usize {
            return Ok(Err(Refusal::TooShort {
                min: rules.min_length,
            }));
        }
        if len > rules.max_length as usize {
            return Ok(Err(Refusal::TooLong {
                max: rules.max_length,
            }));
        }
        if rules.history_depth > 0 {
            let mut previous: BTreeSet<String> = BTreeSet::new();
            if let Some(c) = store.credential(account.id, credential).await? {
                previous.insert(c.hash);
            }
            previous.extend(
                store
                    .credential_history(account.id, credential, rules.history_depth)
                    .await?,
            );
            for hash in previous {
                if hasher.verify(new.clone(), hash).await.unwrap_or(false) {
                    return Ok(Err(Refusal::ReusedPassword));
                }
            }
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::routing::effective_routing;

    fn realm(cutovers: Vec<(Cutover, CutoverProgress)>) -> Realm {
        Realm {
            policy: Policy {
                name: "isp/wakwak".into(),
                realm: "wakwak".into(),
                credentials: BTreeMap::new(),
                purposes: [("support-portal", "support"), ("mail", "mail")]
                    .into_iter()
                    .map(|(p, c)| (p.to_owned(), c.to_owned()))
                    .collect(),
            },
            cutovers,
        }
    }

    fn known(cutover: &str, phase: CheckpointPhase) -> KnownSplit {
        KnownSplit {
            cutover: cutover.into(),
            source: "login".into(),
            targets: vec!["support".into(), "connection".into()],
            at: "2018-04-18T00:00:00+09:00".parse().expect("at"),
            phase,
        }
    }

    /// Only a purpose routed straight to a credential that accounts lack is
    /// reported, with how many lack it; one in dual read falls back to its
    /// source and is not.
    #[test]
    fn purposes_routed_to_a_credential_accounts_lack_are_counted() {
        let now: Timestamp = "2018-04-18T12:00:00+09:00".parse().expect("now");
        let r = realm(Vec::new());
        let held = BTreeMap::from([("mail".to_owned(), 6), ("support".to_owned(), 2)]);
        let routing = effective_routing(&r.policy, &r.cutovers, now);
        let unheld = unheld_in(&routing, &held, 6);
        assert_eq!(unheld.len(), 1, "{unheld:?}");
        assert_eq!(
            (unheld[0].purpose.as_str(), unheld[0].lacking),
            ("support-portal", 4)
        );
        assert!(
            unheld[0].to_string().contains("4 of 6 accounts lack"),
            "{}",
            unheld[0]
        );
        let (dual, _) = r.remembering(&[known("isp/split", CheckpointPhase::Running)]);
        let routing = effective_routing(&dual.policy, &dual.cutovers, now);
        assert!(unheld_in(&routing, &held, 6).is_empty());
    }

    /// A split the store shows running, with no cutover declaring it,
    /// routes its purposes in dual read; one that completed, or one a
    /// declared cutover covers, changes nothing.
    #[test]
    fn a_running_split_without_its_cutover_keeps_dual_read() {
        let now: Timestamp = "2018-04-18T12:00:00+09:00".parse().expect("now");
        let (r, remembered) =
            realm(Vec::new()).remembering(&[known("isp/split", CheckpointPhase::Running)]);
        assert_eq!(remembered.len(), 1);
        assert_eq!(remembered[0].cutover, "isp/split");
        assert!(remembered[0].to_string().contains("dual read"));
        let routing = effective_routing(&r.policy, &r.cutovers, now);
        assert_eq!(routing["support-portal"].mode(), "DualRead");
        assert_eq!(routing["support-portal"].answering(false), "login");
        assert_eq!(routing["mail"].mode(), "Direct");
        assert!(
            r.cutovers.iter().all(|(c, _)| c.suspend),
            "nothing drives it"
        );

        let (r, remembered) =
            realm(Vec::new()).remembering(&[known("isp/split", CheckpointPhase::Completed)]);
        assert!(remembered.is_empty() && r.cutovers.is_empty());

        let declared = r
            .clone()
            .remembering(&[known("isp/split", CheckpointPhase::Running)])
            .0;
        let (again, remembered) = declared
            .clone()
            .remembering(&[known("isp/split", CheckpointPhase::Running)]);
        assert!(remembered.is_empty(), "declared: not added twice");
        assert_eq!(again.cutovers.len(), 1);
    }

    /// A split the store shows scheduled answers with its source until its
    /// `at` and in dual read after; an aborted one answers with its source
    /// for good. Either way no member is sent to a target it lacks.
    #[test]
    fn a_scheduled_or_aborted_split_without_its_cutover_answers_with_the_source() {
        let before: Timestamp = "2018-04-17T12:00:00+09:00".parse().expect("before");
        let after: Timestamp = "2018-04-18T12:00:00+09:00".parse().expect("after");
        let (r, remembered) =
            realm(Vec::new()).remembering(&[known("isp/split", CheckpointPhase::Scheduled)]);
        assert!(remembered[0].to_string().contains("scheduled in the store"));
        let routing = effective_routing(&r.policy, &r.cutovers, before);
        assert_eq!(routing["support-portal"].mode(), "Source");
        let routing = effective_routing(&r.policy, &r.cutovers, after);
        assert_eq!(routing["support-portal"].mode(), "DualRead");

        let (r, remembered) =
            realm(Vec::new()).remembering(&[known("isp/split", CheckpointPhase::Aborted)]);
        assert!(remembered[0].to_string().contains("was aborted"));
        for now in [
            before,
            after,
            "2030-01-01T00:00:00Z".parse().expect("later"),
        ] {
            let routing = effective_routing(&r.policy, &r.cutovers, now);
            assert_eq!(routing["support-portal"].mode(), "Source");
            assert_eq!(routing["support-portal"].answering(true), "login");
            assert_eq!(routing["mail"].mode(), "Direct");
        }
    }
}
