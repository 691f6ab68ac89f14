//! The open connections of each client address. One address may hold
//! `server.max_connections_per_client`; past that, a connection of its that has sat
//! without a request for a while (a slow client dribbling its head, or an idle one) is
//! closed for the new one; when none has, the accept loop serves the new one only if its
//! whole request head is already there (`serve`), else answers 503. A connection
//! that is in a request, or just opened and about to send one, is never cut: many people
//! may share an address (an office, a carrier's NAT), and their requests must not be lost.
//! Trusted proxies carry everyone and have no such limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How long a connection must have been without a request before it may be closed for
/// a newer one: far longer than any client takes to send a request once connected.
const IDLE_BEFORE_CUT: Duration = Duration::from_secs(1);

/// What a connection is doing: requests in progress, and since when it has had none.
pub struct Activity {
    busy: AtomicUsize,
    /// Milliseconds from [`Clients::epoch`] to its last request's end (or its opening).
    idle_since: AtomicU64,
    epoch: Instant,
}

impl Activity {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn may_be_cut(&self) -> bool {
        let idle_for = self
            .now()
            .saturating_sub(self.idle_since.load(Ordering::Acquire));
        self.busy.load(Ordering::Acquire) == 0 && idle_for >= IDLE_BEFORE_CUT.as_millis() as u64
    }
}

/// Counts a request in progress until dropped.
pub struct Busy(Arc<Activity>);

impl Busy {
    pub fn enter(activity: &Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One open connection, as its address's list holds it.
struct Open {
    id: u64,
    activity: Arc<Activity>,
    /// Told to close the connection.
    cut: Arc<Notify>,
}

/// How many connections the listener serves, how many one address may hold, and the
/// addresses (trusted proxies) held to no such share.
#[derive(Debug, Clone)]
pub struct Shares {
    pub most: usize,
    pub per_address: usize,
    pub proxies: Vec<ipnet::IpNet>,
}

/// The open connections of each address, oldest first, and how many there are in all. A
/// connection closed for a newer one leaves the count at once (its socket closes a moment
/// later), so a client that keeps re-opening cannot crowd out everyone else.
pub struct Clients {
    open: Mutex<(HashMap<IpAddr, Vec<Open>>, usize)>,
    shares: Shares,
    next: AtomicU64,
    epoch: Instant,
}

/// What the accept loop keeps of an admitted connection.
pub type Admitted = (u64, Arc<Activity>, Arc<Notify>);

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener serves as many as it may: 503 at once.
    Full,
    /// Its address holds its share, every one of them busy or just opened.
    Share,
}

impl Clients {
    pub fn new(shares: Shares) -> Self {
        Self {
            open: Mutex::new((HashMap::new(), 0)),
            shares,
            next: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// Room for one more connection of `peer`; past its address's share, only by closing
    /// one of its connections that may be cut, unless `beyond_share` (a connection that
    /// has shown a whole request).
    pub fn admit(&self, peer: IpAddr, beyond_share: bool) -> Result<Admitted, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (map, total) = &mut *open;
        let proxy = self.shares.proxies.iter().any(|n| n.contains(&peer));
        let list = map.entry(peer).or_default();
        if !proxy && !beyond_share && list.len() >= self.shares.per_address.max(1) {
            let idle = (list.iter().position(|o| o.activity.may_be_cut())).ok_or(Refusal::Share)?;
            list.remove(idle).cut.notify_one();
            *total = total.saturating_sub(1);
        }
        if *total >= self.shares.most.max(1) {
            if list.is_empty() {
                map.remove(&peer);
            }
            return Err(Refusal::Full);
        }
        *total += 1;
        let activity = Arc::new(Activity {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            epoch: self.epoch,
        });
        activity.idle_since.store(activity.now(), Ordering::Release);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let cut = Arc::new(Notify::new());
        list.push(Open {
            id,
            activity: activity.clone(),
            cut: cut.clone(),
        });
        Ok((id, activity, cut))
    }

    /// A connection has closed.
    pub fn leave(&self, peer: IpAddr, id: u64) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let (map, total) = &mut *open;
        if let Some(list) = map.get_mut(&peer) {
            let before = list.len();
            list.retain(|o| o.id != id);
            *total = total.saturating_sub(before - list.len());
            if list.is_empty() {
                map.remove(&peer);
            }
        }
    }
}
