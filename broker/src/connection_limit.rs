//! Connection slots: every accepted connection holds one of `connections_max`
//! slots and one of its address's `connections_max_per_ip` (Kafka's
//! `max.connections` and `max.connections.per.ip`, with per-address overrides)
//! for as long as it is open, so a flood of connections cannot exhaust the
//! broker's memory or file descriptors, and one host cannot take every slot.
//!
//! The gRPC and Kafka listeners draw on one pool ([`ConnectionSlots`]), each
//! through its own [`ListenerSlots`] (its gauge, refusal count and refusal
//! warnings). One pool, because what the limits protect is the process's:
//! its descriptors, and the buffers `request_memory_bytes_max` counts per
//! connection; and because Kafka counts the same way, `max.connections` and
//! `max.connections.per.ip` broker-wide across its listeners
//! (`ConnectionQuotas`). Two pools would let the broker hold twice
//! `connections_max`, and a host twice its per-address limit. (Kafka exempts
//! its inter-broker listener from `max.connections`; here followers fetch
//! over the gRPC listener that clients use, so there is none to exempt.)
//!
//! A connection that has not yet made a request holds its slot loosely: when
//! no slot is free (broker-wide, or for the new connection's address), the
//! oldest such connection is closed to make room, and only when there is none
//! is the new connection closed at once. Sockets that connect and never send a
//! byte therefore cannot lock working clients out: a client that connects,
//! handshakes and sends its request within moments keeps its slot. (Kafka has
//! no such rule; its acceptor stops accepting at `max.connections`, and idle
//! sockets hold their slots until `connections.max.idle.ms`.)
//!
//! Deadlines (see [`crate::connection::Connection`]): a connection that has
//! made no request `connection_first_request_timeout_ms` after it was
//! accepted is closed, and one with no bytes read or written for
//! `connections_max_idle_ms` (Kafka's `connections.max.idle.ms`) too.
//!
//! Invariant: the counts of open connections, broker-wide and per address,
//! never exceed their limits; a connection is counted out exactly once, when
//! it is displaced or when it closes, whichever comes first.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use futures_util::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::accept_error::AcceptErrors;
use crate::connection::Connection;
use crate::metrics::{BrokerMetrics, ConnectionCounter, Listener, OpenConnection};
use crate::refusal_log::{RefusalLog, REFUSAL_LOG_INTERVAL};

/// The limits a listener holds its connections to.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub connections_max: usize,
    pub connections_max_per_ip: usize,
    /// Per-address limits that replace `connections_max_per_ip`.
    pub connections_max_per_ip_overrides: BTreeMap<IpAddr, usize>,
    pub first_request_timeout: Duration,
    pub idle_timeout: Duration,
}

impl ConnectionLimits {
    fn per_ip_max(&self, ip: IpAddr) -> usize {
        self.connections_max_per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.connections_max_per_ip)
    }
}

/// The slot bookkeeping shared by every connection of both listeners.
#[derive(Debug)]
struct Slots {
    limits: ConnectionLimits,
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    open: usize,
    open_per_ip: HashMap<IpAddr, usize>,
    /// Connections that have made no request yet, by id: ids grow, so the
    /// first entry is the oldest, the one a new connection displaces.
    waiting: BTreeMap<u64, Arc<ConnectionShared>>,
    next_id: u64,
}

/// One connection's state, shared by its reader, its requests and the slots.
#[derive(Debug)]
pub(crate) struct ConnectionShared {
    id: u64,
    ip: IpAddr,
    slots: Arc<Slots>,
    requested: AtomicBool,
    /// Set, under the slots' lock, when the connection was counted out to
    /// make room for a newer one; its reads and writes fail from then on.
    displaced: AtomicBool,
    /// Wakes the connection's task when it is displaced.
    pub(crate) waker: AtomicWaker,
    fetches: AtomicUsize,
    /// Counts the connection open until its last holder lets go.
    _open: OpenConnection,
}

impl ConnectionShared {
    pub(crate) fn requested(&self) -> bool {
        self.requested.load(Ordering::Acquire)
    }

    pub(crate) fn displaced(&self) -> bool {
        self.displaced.load(Ordering::Acquire)
    }

    /// Called for every request: the first one makes the connection's slot
    /// its own (no newer connection displaces it from then on).
    pub(crate) fn mark_request(&self) {
        if !self.requested.swap(true, Ordering::AcqRel) {
            self.slots.lock().waiting.remove(&self.id);
        }
    }

    /// Counts the connection out when it closes, unless it was displaced.
    pub(crate) fn release(&self) {
        let mut state = self.slots.lock();
        state.waiting.remove(&self.id);
        if !self.displaced() {
            state.count_out(self.ip);
        }
    }
}

/// What every request of one connection sees in its extensions.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    shared: Arc<ConnectionShared>,
}

impl ConnectionInfo {
    pub(crate) fn new(shared: Arc<ConnectionShared>) -> Self {
        ConnectionInfo { shared }
    }

    /// The rotation of this fetch: one more than the connection's last. It
    /// rotates the order in which a fetch serves its partitions (KIP-74; Kafka
    /// keeps it in the fetch session, which a connection stands in for here).
    pub fn next_fetch_rotation(&self) -> usize {
        self.shared.fetches.fetch_add(1, Ordering::Relaxed)
    }

    /// Called for every request: the first one makes the connection's slot
    /// its own (no newer connection displaces it from then on).
    pub fn mark_request(&self) {
        self.shared.mark_request();
    }
}

impl Slots {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        // The state stays consistent under every panic point (none between
        // its updates), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a connection from `ip`, displacing a connection that has
    /// made no request if none is free; `Err` says why there is none. `open`
    /// counts it on its listener while it is open.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        open: &ConnectionCounter,
    ) -> Result<Arc<ConnectionShared>, String> {
        let per_ip_max = self.limits.per_ip_max(ip);
        let mut state = self.lock();
        if state.open_per_ip.get(&ip).copied().unwrap_or(0) >= per_ip_max
            && !state.displace_oldest(|waiting| waiting.ip == ip)
        {
            return Err(format!(
                "{per_ip_max} connections from {ip} are open (connections_max_per_ip) and all have made requests"
            ));
        }
        if state.open >= self.limits.connections_max && !state.displace_oldest(|_| true) {
            return Err(format!(
                "{} connections are open on the gRPC and Kafka listeners (connections_max) and \
                 all have made requests",
                self.limits.connections_max
            ));
        }
        state.open += 1;
        *state.open_per_ip.entry(ip).or_insert(0) += 1;
        debug_assert!(state.open <= self.limits.connections_max);
        let shared = Arc::new(ConnectionShared {
            id: state.next_id,
            ip,
            slots: Arc::clone(self),
            requested: AtomicBool::new(false),
            displaced: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            fetches: AtomicUsize::new(0),
            _open: open.open(),
        });
        state.next_id += 1;
        state.waiting.insert(shared.id, Arc::clone(&shared));
        Ok(shared)
    }
}

impl SlotState {
    fn count_out(&mut self, ip: IpAddr) {
        debug_assert!(self.open > 0, "a connection was counted out twice");
        self.open = self.open.saturating_sub(1);
        if let Some(count) = self.open_per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                self.open_per_ip.remove(&ip);
            }
        }
    }

    /// Counts out the oldest connection without a request that `matches`,
    /// and tells it to close. False if there is none.
    fn displace_oldest(&mut self, matches: impl Fn(&ConnectionShared) -> bool) -> bool {
        let Some(id) = self
            .waiting
            .iter()
            .find(|(_, waiting)| matches(waiting))
            .map(|(id, _)| *id)
        else {
            return false;
        };
        let Some(displaced) = self.waiting.remove(&id) else {
            return false;
        };
        displaced.displaced.store(true, Ordering::Release);
        self.count_out(displaced.ip);
        displaced.waker.wake();
        tracing::debug!(peer = %displaced.ip, "closed a connection that made no request to make room for a new one");
        true
    }
}

/// The broker's connection slots, one pool for both listeners (see the
/// module docs).
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    slots: Arc<Slots>,
}

impl ConnectionSlots {
    pub fn new(limits: ConnectionLimits) -> Self {
        ConnectionSlots {
            slots: Arc::new(Slots {
                limits,
                state: Mutex::new(SlotState::default()),
            }),
        }
    }

    /// What `listener` admits its connections with, counting them in its
    /// `metrics`; when `cut` turns true, every connection it admitted fails
    /// its reads and writes.
    pub fn listener(
        &self,
        listener: Listener,
        metrics: &BrokerMetrics,
        cut: watch::Receiver<bool>,
    ) -> ListenerSlots {
        ListenerSlots {
            slots: Arc::clone(&self.slots),
            listener,
            open: metrics.connections(listener),
            refusals: RefusalLog::new(REFUSAL_LOG_INTERVAL),
            cut,
        }
    }
}

/// One listener's door to the broker's connection slots.
#[derive(Debug)]
pub struct ListenerSlots {
    slots: Arc<Slots>,
    listener: Listener,
    open: ConnectionCounter,
    refusals: RefusalLog,
    cut: watch::Receiver<bool>,
}

impl ListenerSlots {
    /// The accepted `stream` as a connection holding a slot, or `None` when
    /// it gets none: then it is closed at once, counted in
    /// `weir_connections_refused_total`, and warned of at most once per
    /// `REFUSAL_LOG_INTERVAL` (`refusal_log.rs`).
    pub(crate) fn admit(&self, stream: TcpStream) -> Option<Connection> {
        // A socket without a peer address is already gone.
        let peer = stream.peer_addr().ok()?;
        match self.slots.admit(peer.ip(), &self.open) {
            Ok(shared) => Some(Connection::new(
                stream,
                shared,
                self.slots.limits.first_request_timeout,
                self.slots.limits.idle_timeout,
                self.cut.clone(),
            )),
            Err(reason) => {
                self.open.refused();
                self.refusals.warn(self.listener.as_str(), peer, &reason);
                drop(stream);
                None
            }
        }
    }
}

/// Yields the connections of `incoming` that get a slot of `listener` (see
/// [`ListenerSlots::admit`]). A failed accept is logged and paused after as
/// `accept_error.rs` says, and not passed on: tonic would try again at once.
pub fn limit<S>(incoming: S, listener: ListenerSlots) -> impl Stream<Item = io::Result<Connection>>
where
    S: Stream<Item = io::Result<TcpStream>>,
{
    let listener = Arc::new(listener);
    let accept_errors = Arc::new(AcceptErrors::new(listener.listener));
    incoming.filter_map(move |accepted| {
        let listener = Arc::clone(&listener);
        let accept_errors = Arc::clone(&accept_errors);
        async move {
            match accepted {
                Ok(stream) => {
                    accept_errors.accepted();
                    listener.admit(stream).map(Ok)
                }
                Err(error) => {
                    let pause = accept_errors.failed(&error);
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                    None
                }
            }
        }
    })
}

/// Parses Kafka's `max.connections.per.ip.overrides` form, `address:count`
/// entries separated by commas (an IPv6 address in brackets or bare; the
/// count is after the last colon). Host names are not resolved: an address
/// is what a connection is counted by.
pub fn parse_per_ip_overrides(value: &str) -> Result<BTreeMap<IpAddr, usize>, String> {
    let mut overrides = BTreeMap::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (address, count) = entry
            .rsplit_once(':')
            .ok_or_else(|| format!("entry {entry:?} is not address:count"))?;
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = address
            .parse()
            .map_err(|_| format!("{address:?} in {entry:?} is not an IP address"))?;
        let count: usize = count
            .parse()
            .map_err(|_| format!("the count in {entry:?} is not a number"))?;
        overrides.insert(ip, count);
    }
    Ok(overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(connections_max: usize, per_ip: usize) -> Arc<Slots> {
        Arc::new(Slots {
            limits: ConnectionLimits {
                connections_max,
                connections_max_per_ip: per_ip,
                connections_max_per_ip_overrides: BTreeMap::from([(
                    IpAddr::from([10, 0, 0, 9]),
                    3,
                )]),
                first_request_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(1),
            },
            state: Mutex::new(SlotState::default()),
        })
    }

    fn grpc() -> ConnectionCounter {
        BrokerMetrics::default().connections(Listener::Grpc)
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_new_connection_displaces_the_oldest_that_made_no_request() {
        let slots = slots(2, 2);
        let first = slots.admit(A, &grpc()).unwrap();
        let second = slots.admit(B, &grpc()).unwrap();
        ConnectionInfo::new(Arc::clone(&second)).mark_request();
        let third = slots.admit(B, &grpc()).unwrap();
        assert!(first.displaced() && !second.displaced() && !third.displaced());
        ConnectionInfo::new(Arc::clone(&third)).mark_request();
        // Both slots hold connections that made requests: refused.
        let refused = slots.admit(A, &grpc()).unwrap_err();
        assert!(refused.contains("connections_max"), "{refused}");
        // A displaced connection closing later is not counted out again.
        first.release();
        assert_eq!(slots.lock().open, 2);
        third.release();
        assert!(slots.admit(A, &grpc()).is_ok());
    }

    #[test]
    fn the_per_address_limit_and_its_overrides_hold() {
        let slots = slots(100, 1);
        let a = slots.admit(A, &grpc()).unwrap();
        ConnectionInfo::new(Arc::clone(&a)).mark_request();
        let refused = slots.admit(A, &grpc()).unwrap_err();
        assert!(refused.contains("from 10.0.0.1"), "{refused}");
        assert!(
            slots.admit(B, &grpc()).is_ok(),
            "another address has its own slots"
        );
        let overridden = IpAddr::from([10, 0, 0, 9]);
        for _ in 0..3 {
            let c = slots.admit(overridden, &grpc()).unwrap();
            ConnectionInfo::new(c).mark_request();
        }
        assert!(slots.admit(overridden, &grpc()).is_err());
    }

    #[test]
    fn both_listeners_draw_on_one_pool_of_slots_and_one_count_per_address() {
        let metrics = BrokerMetrics::default();
        let (grpc, kafka) = (
            metrics.connections(Listener::Grpc),
            metrics.connections(Listener::Kafka),
        );
        let slots = slots(2, 2);
        let silent_grpc = slots.admit(A, &grpc).unwrap();
        let working_kafka = slots.admit(A, &kafka).unwrap();
        working_kafka.mark_request();
        // Kafka's third connection from A makes room by displacing gRPC's silent one.
        let third = slots.admit(A, &kafka).unwrap();
        assert!(silent_grpc.displaced());
        third.mark_request();
        let refused = slots.admit(B, &grpc).unwrap_err();
        assert!(refused.contains("gRPC and Kafka listeners"), "{refused}");
        // Each listener's gauge counts its own connections until they are dropped.
        drop(silent_grpc);
        assert_eq!(metrics.open_connections(Listener::Grpc), 0);
        assert_eq!(metrics.open_connections(Listener::Kafka), 2);
        drop((working_kafka, third));
        assert_eq!(metrics.open_connections(Listener::Kafka), 0);
    }

    #[test]
    fn overrides_parse_in_kafkas_form_and_bad_entries_are_named() {
        let parsed = parse_per_ip_overrides("10.0.0.1:5, [::1]:7,::2:8").unwrap();
        assert_eq!(parsed[&IpAddr::from([10, 0, 0, 1])], 5);
        assert_eq!(parsed[&"::1".parse::<IpAddr>().unwrap()], 7);
        assert_eq!(parsed[&"::2".parse::<IpAddr>().unwrap()], 8);
        let err = parse_per_ip_overrides("host.example:5").unwrap_err();
        assert!(err.contains("host.example"), "{err}");
        let err = parse_per_ip_overrides("10.0.0.1").unwrap_err();
        assert!(err.contains("address:count"), "{err}");
    }
}
