//! What one process knows that the LMS does not tell: usernames by id, its in-process holds,
//! and the order of its own writes and listings (to tell a listing older than its own writes).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use retirement_core::RetirementId;

use super::LmsStore;

/// What this process knows that the LMS does not tell: usernames by id, its in-process leases,
/// and when it last wrote each learner (to tell a listing older than its own writes).
#[derive(Default)]
pub(super) struct Local {
    pub(super) usernames: HashMap<i64, String>,
    /// Learners claimed through this store and not yet released or moved to an end state.
    pub(super) held: HashMap<i64, Held>,
    /// A counter that orders writes and listings in this process.
    pub(super) clock: u64,
    /// Each learner's latest write start or end, on `clock`, while a listing may predate it.
    pub(super) written: HashMap<i64, u64>,
    /// Learners with a write on its way (a count: an operator's move may overlap the driver's).
    pub(super) writing: HashMap<i64, u32>,
    /// The `clock` value at the start of each listing still on its way.
    pub(super) listings: std::collections::BTreeMap<u64, u32>,
    /// The state of each learner's last move whose answer never came (it may have landed).
    pub(super) unanswered: HashMap<i64, String>,
}

impl Local {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    pub(super) fn write_started(&mut self, id: i64) {
        let at = self.tick();
        self.written.insert(id, at);
        *self.writing.entry(id).or_default() += 1;
    }

    pub(super) fn write_ended(&mut self, id: i64) {
        let at = self.tick();
        self.written.insert(id, at);
        if let Some(n) = self.writing.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.writing.remove(&id);
            }
        }
    }

    pub(super) fn listing_started(&mut self) -> u64 {
        let at = self.tick();
        *self.listings.entry(at).or_default() += 1;
        at
    }

    /// Whether a listing that started at `started` may show `id` in a state it has left.
    pub(super) fn stale_in(&self, id: i64, started: u64) -> bool {
        self.writing.contains_key(&id) || self.written.get(&id).is_some_and(|&at| at > started)
    }

    /// Ends a listing and forgets writes that no listing still on its way can predate.
    pub(super) fn listing_ended(&mut self, started: u64) {
        if let Some(n) = self.listings.get_mut(&started) {
            *n -= 1;
            if *n == 0 {
                self.listings.remove(&started);
            }
        }
        match self.listings.keys().next().copied() {
            Some(oldest) => self.written.retain(|_, at| *at > oldest),
            None => self.written.clear(),
        }
    }
}

/// Marks a write to one learner as on its way until dropped (however the request ends).
pub(super) struct Writing<'a> {
    store: &'a LmsStore,
    id: i64,
}

impl<'a> Writing<'a> {
    pub(super) fn start(store: &'a LmsStore, id: RetirementId) -> Writing<'a> {
        store.local().write_started(id.0);
        Writing { store, id: id.0 }
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.store.local().write_ended(self.id);
    }
}

/// A listing on its way until dropped.
pub(super) struct Listing<'a> {
    store: &'a LmsStore,
    pub(super) started: u64,
}

impl<'a> Listing<'a> {
    pub(super) fn start(store: &'a LmsStore) -> Listing<'a> {
        let started = store.local().listing_started();
        Listing { store, started }
    }
}

impl Drop for Listing<'_> {
    fn drop(&mut self) {
        self.store.local().listing_ended(self.started);
    }
}

/// An in-process lease: who claimed the learner, until when, and the state last seen.
pub(super) struct Held {
    pub(super) owner: String,
    pub(super) expires: DateTime<Utc>,
    pub(super) state: String,
}
