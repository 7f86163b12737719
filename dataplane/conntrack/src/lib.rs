//! The connection table: one lock-free table shared by every worker.
//!
//! NAT replies come back with other addresses than the request, so RSS
//! hands them to another worker than the one that created the connection;
//! a single shared table lets every worker translate them without flow
//! steering rules (see ARCHITECTURE.md). Readers never lock, never write
//! shared memory on a lookup and never wait for the writer of an entry; the
//! only writers of shared cache lines are inserts, state changes,
//! idle-time refreshes (at most once per millisecond tick) and expiry.
//!
//! # Layout and memory per connection
//!
//! - **Entries**: a preallocated array of `capacity` 32-byte entries (five
//!   atomics: client ip/port + vport, vip + rip, rport/proto/state/service/
//!   server, last-seen tick, seqlock version); two per cache line, never
//!   straddling one. **32 B per connection.**
//! - **Index**: open addressing over 64-byte buckets of 8 `u64` slots
//!   (`hash tag << 32 | entry + 1`). One slot per connection: both
//!   directions of a flow are found through the client's address, port and
//!   protocol, and the entry's VIP or real-server fields tell which leg
//!   matched. A key lives in its home bucket or, when that is full, in one
//!   of up to 15 more along a double-hashed probe sequence. Bucket count =
//!   next power of two of `capacity * 1.25 / 8`,
//!   i.e. 1.25 to 2.5 slots per connection: **10 to 20 B per connection**
//!   (16 B at capacity 2^20 and every other power of two).
//! - **Reach bytes**: one byte per bucket (0.16 to 0.31 B per connection)
//!   recording how far along their probe sequence connections homed there
//!   have spilled, so a lookup reads only the home bucket unless a spill
//!   happened.
//! - **Free list**: a Treiber stack threaded through the free entries
//!   themselves: 0 B per connection.
//!
//! In total 42.2 to 52.3 B per connection, 48.25 B at capacity 2^20
//! (48 MiB + 256 KiB); [`Table::memory_bytes`] reports the real figure.
//! Nothing is allocated after [`Table::new`].
//!
//! # Concurrency
//!
//! Entries are seqlocks: `version` is odd while an entry is free or being
//! (re)initialised and even while it is live. A reader copies the fields
//! between two version reads and discards torn copies, so a lookup never
//! returns a mix of two connections. A [`ConnRef`] remembers the version it
//! was read at; mutations through it are ignored once the entry has been
//! expired (and possibly reused). Expiry is decided by one control thread
//! calling [`Table::reclaim`] periodically; workers never pause.
//!
//! Semantics (states, transitions, timeouts, active/inactive accounting)
//! follow Linux IPVS: see [`State`], [`next_state`], [`is_active`] and
//! [`Timeouts`].

#![forbid(unsafe_code)]

mod state;
mod table;

pub use state::{initial_state, is_active, next_state, Dir, State, TcpFlags, Timeouts};
pub use table::{ConnInfo, ConnRef, Error, Full, Table, MAX_CAPACITY};
