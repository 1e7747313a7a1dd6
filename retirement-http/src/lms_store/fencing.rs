//! Several hosts against one LMS: the shared [`LeaseTable`] (`lease_store:`) fences what the
//! LMS API cannot.
//!
//! - A claim skips learners with a live lease elsewhere, and takes each candidate's lease in
//!   the table; a candidate someone else took first is let go.
//! - The table records the state each holder is about to write. A new holder whose listing
//!   shows another state than the recorded one reads the learner again before driving it: its
//!   listing may predate the last holder's writes (the cross-process form of issue 13's stale
//!   listing).
//! - Every state write is preceded by [`LeaseTable::fence`], which refuses once the lease was
//!   taken over, revoked or ran out. The write itself follows within a request timeout, which
//!   must stay well below the lease length (the runtime renews at half of it).
//! - Operator overrides revoke the lease first, so the worker holding it stops at its next
//!   write.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use retirement_core::RetirementId;
use retirement_store::{
    ClaimRequest, Claimed, Lease, LeaseTable, Result, RetirementStore, StoreError,
};

use super::LmsStore;

/// What became of one claim candidate.
pub(super) enum Taken {
    /// Its shared lease is ours.
    Won(Box<Claimed>),
    /// Another host holds it.
    Lost,
    /// It finished (or left the pipeline) since the listing.
    Gone,
}

impl LmsStore {
    /// Learners whose lease is live in the shared table and not this worker's: a claim leaves
    /// them out.
    pub(super) async fn leased_elsewhere(
        &self,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<HashSet<i64>> {
        let Some(table) = &self.leases else {
            return Ok(HashSet::new());
        };
        Ok(table
            .live(now)
            .await?
            .into_iter()
            .filter(|lease| lease.owner != owner)
            .map(|lease| lease.retirement_id.0)
            .collect())
    }

    /// Takes the shared lease of each candidate the listing gave; returns those won, with the
    /// table's fencing number, read again where the listing may be older than the last write,
    /// and how many other hosts took (or finished) first. Candidates not won are let go of in this process
    /// too; on an error, all of them.
    pub(super) async fn take_shared(
        &self,
        candidates: Vec<Claimed>,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Claimed>, usize)> {
        let Some(table) = &self.leases else {
            return Ok((candidates, 0));
        };
        let mut won: Vec<Claimed> = Vec::with_capacity(candidates.len());
        let mut lost = 0;
        let mut rest = candidates.into_iter();
        let failed = loop {
            let Some(candidate) = rest.next() else {
                break None;
            };
            match self.take_one(table.as_ref(), candidate, request, now).await {
                Ok(Taken::Won(claimed)) => won.push(*claimed),
                // Both mean another host got there first: the queue may hold more.
                Ok(Taken::Lost | Taken::Gone) => lost += 1,
                Err(e) => break Some(e),
            }
        };
        let Some(e) = failed else {
            return Ok((won, lost));
        };
        for candidate in rest {
            self.forget_hold(candidate.lease.retirement_id, &request.owner);
        }
        for claimed in won {
            let _ = self.release_everywhere(&claimed.lease).await;
        }
        Err(e)
    }

    /// One candidate of [`Self::take_shared`].
    async fn take_one(
        &self,
        table: &dyn LeaseTable,
        candidate: Claimed,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> Result<Taken> {
        let id = candidate.lease.retirement_id;
        let taken = match table
            .acquire(id, &request.owner, candidate.lease.expires, now)
            .await
        {
            Ok(Some(taken)) => taken,
            other => {
                self.forget_hold(id, &request.owner);
                return other.map(|_| Taken::Lost);
            }
        };
        let mut claimed = Claimed {
            lease: taken.lease,
            ..candidate
        };
        let listed = claimed.retirement.current_state();
        if taken.last_state.is_none_or(|last| last == listed) {
            return Ok(Taken::Won(Box::new(claimed)));
        }
        // The listing may predate the last holder's writes: look again.
        let username = claimed.retirement.original().username.clone();
        let fresh = match self.find_by_username(&username).await {
            Ok(fresh) => fresh,
            Err(e) => {
                let _ = self.release_everywhere(&claimed.lease).await;
                return Err(e);
            }
        };
        let state = fresh.current_state().to_owned();
        let working = request.working_states.contains(&state);
        if !working && !request.resume_states.contains(&state) {
            // Finished (or moved out of the pipeline) since the listing.
            let _ = self.release_everywhere(&claimed.lease).await;
            return Ok(Taken::Gone);
        }
        if let Some(held) = self.local().held.get_mut(&id.0) {
            held.state = state;
        }
        claimed.resumes_working_state = working;
        claimed.retirement = fresh;
        Ok(Taken::Won(Box::new(claimed)))
    }

    /// Before a state write: refuses (lease lost) when this worker no longer holds the
    /// shared lease, and records the state about to be written. A write without a lease (an
    /// operator's, `retire learner`'s) is refused while any worker holds a live one.
    pub(super) async fn fence(
        &self,
        id: RetirementId,
        lease: Option<&Lease>,
        new_state: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let Some(table) = &self.leases else {
            return Ok(());
        };
        match lease {
            Some(lease) => {
                let fenced = table.fence(lease, new_state, now).await;
                if let Err(StoreError::LeaseLost { .. }) = &fenced {
                    self.forget_hold(id, &lease.owner);
                }
                fenced
            }
            None => match table.live_on(id, now).await? {
                Some(live) => Err(StoreError::Leased {
                    retirement_id: id,
                    until: live.expires.to_rfc3339(),
                }),
                None => Ok(()),
            },
        }
    }

    /// An operator override: ends the shared lease first, so its holder stops at its next
    /// write instead of writing over the operator's move.
    pub(super) async fn revoke(&self, id: RetirementId) -> Result<()> {
        match &self.leases {
            Some(table) => table.revoke(id).await,
            None => Ok(()),
        }
    }

    /// Extends the shared lease (when there is a table).
    pub(super) async fn renew_shared(&self, lease: &Lease, until: DateTime<Utc>) -> Result<()> {
        match &self.leases {
            Some(table) => table.renew(lease, until).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// Gives the lease up here and in the shared table.
    pub(super) async fn release_everywhere(&self, lease: &Lease) -> Result<()> {
        self.forget_hold(lease.retirement_id, &lease.owner);
        match &self.leases {
            Some(table) => table.release(lease).await,
            None => Ok(()),
        }
    }

    /// Drops this process's hold on `id` when `owner` has it.
    pub(super) fn forget_hold(&self, id: RetirementId, owner: &str) {
        let held = &mut self.local().held;
        if held.get(&id.0).is_some_and(|h| h.owner == owner) {
            held.remove(&id.0);
        }
    }
}
