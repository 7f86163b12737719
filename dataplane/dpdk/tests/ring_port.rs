//! The whole wrapper against a real EAL and a `net_ring` port, whose TX
//! queue feeds its RX queue. One test, because EAL initialises once per
//! process.

use std::path::PathBuf;

use pylon_dpdk::{
    launch, lcore_id, main_lcore, tsc, tsc_hz, wait_lcore, worker_lcores, Burst, Eal, Error, Mbuf,
    Mempool, Port, PortConf, Ring, RxQueue, TxQueue, DEFAULT_DATA_ROOM,
};

/// Removes the EAL runtime directory when the test ends, also when it fails:
/// DPDK leaves it behind, and each run has its own prefix.
struct RuntimeDir(PathBuf);

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Sends `b`'s mbufs through `tx` and collects what `rx` returns; never
/// panics, because it also runs on a worker lcore, where a panic aborts.
fn round_trip(tx: &mut TxQueue, rx: &mut RxQueue, b: &mut Burst) -> Burst {
    let sent = tx.tx_burst(b);
    let mut got = Burst::new();
    for _ in 0..1000 {
        rx.rx_burst(&mut got);
        if got.len() >= sent {
            break;
        }
    }
    got
}

/// A 60-byte packet filled with `fill`.
fn packet(pool: &Mempool, fill: u8) -> Option<Mbuf> {
    let mut m = Mbuf::alloc(pool)?;
    m.set_len(60).then(|| {
        m.data_mut().fill(fill);
        m
    })
}

#[test]
fn eal_mempool_ring_port_round_trip() {
    let prefix = format!("pylon-dpdk-test-{}", std::process::id());
    // Root's runtime directory; the test runs as root (EAL needs it for
    // the vdev and memory setup used here).
    let runtime = RuntimeDir(PathBuf::from("/var/run/dpdk").join(&prefix));
    let args: Vec<String> = [
        "pylon-dpdk-test",
        "--no-huge",
        "-m",
        "256",
        "--no-pci",
        "--no-telemetry",
        "--file-prefix",
        &prefix,
        // Two lcores on CPU 0: a worker to launch on, whatever the machine.
        "--lcores",
        "0@0,1@0",
        "--vdev",
        "net_ring0",
        "--log-level",
        "lib.eal:warning",
    ]
    .map(String::from)
    .to_vec();

    assert_eq!(
        Mempool::new("early", 63, 0, DEFAULT_DATA_ROOM).unwrap_err(),
        Error::EalNotRunning
    );
    assert!(worker_lcores().is_empty());
    assert_eq!(Port::count(), 0);
    let eal = Eal::init(&args).expect("EAL init");
    assert_eq!(Eal::init(&args).unwrap_err(), Error::AlreadyInitialised);
    assert_eq!(eal.runtime_dir(), runtime.0);

    assert_eq!(lcore_id(), main_lcore());
    assert_eq!(worker_lcores(), vec![1]);
    assert!(tsc_hz() > 0);
    let t0 = tsc();
    assert!(tsc() >= t0);

    let pool = Mempool::new("pylon_test", 1023, 32, DEFAULT_DATA_ROOM).expect("mempool");
    assert_eq!(pool.available(), 1023);
    assert_eq!(pool.in_use(), 0);
    match Mempool::new("pylon_test", 63, 0, DEFAULT_DATA_ROOM) {
        Err(Error::Dpdk { call, .. }) => assert_eq!(call, "rte_pktmbuf_pool_create_by_ops"),
        other => panic!("duplicate pool name accepted: {other:?}"),
    }

    // Mbuf geometry.
    let mut m = Mbuf::alloc(&pool).expect("alloc");
    assert_eq!(pool.in_use(), 1);
    assert!(m.is_contiguous());
    assert_eq!((m.data().len(), m.pkt_len()), (0, 0));
    let (head, tail) = (m.headroom(), m.tailroom());
    assert_eq!(
        usize::from(head) + usize::from(tail),
        usize::from(DEFAULT_DATA_ROOM)
    );
    assert!(m.set_len(100));
    assert_eq!(m.pkt_len(), 100);
    assert!(m.prepend(14));
    assert_eq!((m.data().len(), m.headroom()), (114, head - 14));
    assert!(m.adj(14) && m.trim(40) && m.append(4));
    assert_eq!(m.data().len(), 64);
    assert!(!m.prepend(head + 1), "beyond the headroom");
    assert!(!m.adj(65) && !m.trim(65), "beyond the data");
    assert!(!m.set_len(tail + 101), "beyond the buffer");
    assert_eq!(m.data().len(), 64, "failed calls change nothing");
    drop(m);
    assert_eq!(pool.in_use(), 0);

    // Burst bookkeeping.
    let mut b = Burst::new();
    while !b.is_full() {
        b.push(Mbuf::alloc(&pool).expect("alloc")).expect("room");
    }
    let extra = b
        .push(Mbuf::alloc(&pool).expect("alloc"))
        .expect_err("full");
    drop(extra);
    assert_eq!(pool.in_use(), 64);
    assert_eq!(b.drain().take(3).count(), 3, "partial drain");
    assert!(b.is_empty());
    assert_eq!(pool.in_use(), 0, "a dropped drain frees the rest");

    // The port.
    assert!(Port::count() >= 1);
    let port = Port::by_name("net_ring0").expect("net_ring0 exists");
    assert!(Port::by_name("net_nonexistent0").is_err());
    assert_eq!(Port::from_id(port.id()).expect("by id").id(), port.id());
    let info = port.info().expect("info");
    assert_eq!(info.driver_name, "net_ring");
    assert!(info.max_rx_queues >= 1 && info.max_tx_queues >= 1);
    assert!(
        matches!(port.start(), Err(Error::PortBusy { .. })),
        "not configured"
    );

    let conf = PortConf {
        rx_queues: 1,
        tx_queues: 1,
        rx_desc: 128,
        tx_desc: 128,
        rss: true, // the ring has no RSS: ignored
    };
    port.configure(&conf, &pool).expect("configure");
    assert!(
        matches!(port.rx_queue(0), Err(Error::PortBusy { .. })),
        "not started"
    );
    port.start().expect("start");
    assert!(port.link_up());
    assert_eq!(port.mac().expect("mac").len(), 6);
    port.set_promiscuous(true).expect("promiscuous");

    let mut rx = port.rx_queue(0).expect("rx queue");
    let mut tx = port.tx_queue(0).expect("tx queue");
    assert!(
        matches!(port.rx_queue(0), Err(Error::PortBusy { .. })),
        "one handle per queue"
    );
    assert!(matches!(port.tx_queue(1), Err(Error::InvalidArgument(_))));
    assert!(
        matches!(port.stop(), Err(Error::PortBusy { .. })),
        "queues still held"
    );

    // Round trip on this lcore.
    let mut b = Burst::new();
    for i in 0..3 {
        b.push(packet(&pool, 0xa0 + i).expect("packet"))
            .expect("room");
    }
    let mut got = round_trip(&mut tx, &mut rx, &mut b);
    assert!(b.is_empty(), "the ring took the whole burst");
    let received: Vec<Vec<u8>> = got.drain().map(|m| m.data().to_vec()).collect();
    let sent: Vec<Vec<u8>> = (0..3).map(|i| vec![0xa0 + i; 60]).collect();
    assert_eq!(received, sent);

    // Round trip on the worker lcore, with the queues moved there.
    assert!(matches!(
        launch(main_lcore(), || 0),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(launch(4000, || 0), Err(Error::InvalidArgument(_))));
    let worker_pool = pool.clone();
    // No panics in here: a panic on a worker lcore aborts the process.
    launch(1, move || {
        if lcore_id() != 1 {
            return -1;
        }
        let mut b = Burst::new();
        let Some(m) = packet(&worker_pool, 0x55) else {
            return -2;
        };
        if b.push(m).is_err() {
            return -3;
        }
        let mut got = round_trip(&mut tx, &mut rx, &mut b);
        if got.len() != 1 || !got.drain().all(|m| m.data() == [0x55; 60]) {
            return -4;
        }
        42
    })
    .expect("launch");
    assert_eq!(wait_lcore(1).expect("wait"), 42);
    assert!(wait_lcore(4000).is_err());

    let stats = port.stats().expect("stats");
    assert_eq!((stats.opackets, stats.ipackets), (4, 4));
    assert_eq!(pool.in_use(), 0, "every packet came back and was freed");

    // The queues died with the worker's closure, so the port can stop.
    port.stop().expect("stop");
    port.close().expect("close");
    drop(port);

    // Two ports wired back to back by rings: a sends to b and back.
    assert!(matches!(
        Ring::new("bad", 100),
        Err(Error::InvalidArgument(_))
    ));
    let a_to_b = Ring::new("a_to_b", 256).expect("ring");
    let b_to_a = Ring::new("b_to_a", 256).expect("ring");
    assert_eq!(a_to_b.name(), "a_to_b");
    let a = Port::from_rings("a", &[&b_to_a], &[&a_to_b]).expect("port a");
    let b = Port::from_rings("b", &[&a_to_b], &[&b_to_a]).expect("port b");
    assert!(
        matches!(
            Port::from_rings("c", &[&a_to_b], &[&Ring::new("c", 4).expect("ring")]),
            Err(Error::InvalidArgument(_))
        ),
        "a_to_b already has its consumer"
    );
    assert_eq!(Port::by_name("net_ring_a").expect("by name").id(), a.id());
    assert_eq!(b.info().expect("info").driver_name, "net_ring");
    for p in [&a, &b] {
        p.configure(&conf, &pool).expect("configure");
        p.start().expect("start");
    }
    let (mut a_tx, mut a_rx) = (a.tx_queue(0).expect("tx"), a.rx_queue(0).expect("rx"));
    let (mut b_tx, mut b_rx) = (b.tx_queue(0).expect("tx"), b.rx_queue(0).expect("rx"));
    let mut out = Burst::new();
    for i in 0..5 {
        out.push(packet(&pool, 0x10 + i).expect("packet"))
            .expect("room");
    }
    let mut at_b = round_trip(&mut a_tx, &mut b_rx, &mut out);
    assert_eq!(at_b.len(), 5);
    let mut back = Burst::new();
    for m in at_b.drain() {
        back.push(m).expect("room");
    }
    let mut at_a = round_trip(&mut b_tx, &mut a_rx, &mut back);
    let fills: Vec<u8> = at_a.drain().map(|m| m.data()[0]).collect();
    assert_eq!(fills, [0x10, 0x11, 0x12, 0x13, 0x14]);
    // Left in a ring when everything goes: freed with the ring.
    let mut stuck = Burst::new();
    stuck
        .push(packet(&pool, 0x77).expect("packet"))
        .expect("room");
    assert_eq!(a_tx.tx_burst(&mut stuck), 1);
    assert_eq!(pool.in_use(), 1);
    drop((a_tx, a_rx, b_tx, b_rx));
    for p in [&a, &b] {
        p.stop().expect("stop");
        p.close().expect("close");
    }
    drop((a, b, b_to_a));
    assert_eq!(pool.in_use(), 1, "a_to_b still has a handle");
    drop(a_to_b);
    assert_eq!(
        pool.in_use(),
        0,
        "the last handle of a ring frees its mbufs"
    );
    drop(pool);
    drop(eal);
    assert_eq!(
        Mempool::new("late", 63, 0, DEFAULT_DATA_ROOM).unwrap_err(),
        Error::EalNotRunning
    );
}
