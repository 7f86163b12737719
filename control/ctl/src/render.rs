//! Text layouts of `pylonctl`: `list` and `conns` as `ipvsadm -Ln` and
//! `ipvsadm -Lnc` print them, the others as aligned tables.

use crate::proto::{
    Change, ConfigDigest, ConnsData, Counters, DiffData, DrainData, HealthData, ListData, Rates,
    ReloadData, Role, SyncData, VrrpData, WorkersData,
};
use std::fmt::Write;

/// What `list` shows besides the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListLayout {
    /// Scheduler, forwarding, weights, health, connections (`ipvsadm -Ln`).
    Plain,
    /// Counters (`ipvsadm -Ln --stats`).
    Stats,
    /// Rates (`ipvsadm -Ln --rate`).
    Rate,
}

/// ipvsadm's number column: 9 characters, large values as K, M, G, T
/// unless `exact`.
fn largenum(out: &mut String, n: u64, exact: bool) {
    let _ = match n {
        _ if exact => {
            let width = n.to_string().len().max(8) + 1;
            write!(out, "{n:>width$}")
        }
        0..=99_999_999 => write!(out, "{n:>9}"),
        100_000_000..=999_999_999 => write!(out, "{:>8}K", n / 1_000),
        1_000_000_000..=99_999_999_999 => write!(out, "{:>8}M", n / 1_000_000),
        100_000_000_000..=99_999_999_999_999 => write!(out, "{:>8}G", n / 1_000_000_000),
        _ => write!(out, "{:>8}T", n / 1_000_000_000_000),
    };
}

fn numbers(out: &mut String, label: &str, values: Option<[u64; 5]>, exact: bool) {
    let _ = write!(out, "{label:<33}");
    match values {
        Some(v) => v.iter().for_each(|&n| largenum(out, n, exact)),
        None => (0..5).for_each(|_| out.push_str("        -")),
    }
    out.push('\n');
}

fn counters(c: &Counters) -> [u64; 5] {
    [
        c.conns,
        c.in_packets,
        c.out_packets,
        c.in_bytes,
        c.out_bytes,
    ]
}

fn rates(r: &Rates) -> [u64; 5] {
    [r.cps, r.in_pps, r.out_pps, r.in_bps, r.out_bps]
}

/// `pylonctl list`; `exact` prints counters without K/M/G.
pub fn list(data: &ListData, layout: ListLayout, exact: bool) -> String {
    let mut out = format!(
        "Pylon Virtual Server (size={}, connections={})\n",
        data.table_size, data.connections
    );
    match layout {
        ListLayout::Plain => {
            out.push_str("Prot LocalAddress:Port Scheduler Flags\n");
            out.push_str(
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn  EffWeight Health\n",
            );
        }
        ListLayout::Stats => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "Prot LocalAddress:Port", "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
            );
            out.push_str("  -> RemoteAddress:Port\n");
        }
        ListLayout::Rate => {
            let _ = writeln!(
                out,
                "{:<33} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "Prot LocalAddress:Port", "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
            );
            out.push_str("  -> RemoteAddress:Port\n");
        }
    }
    for svc in &data.services {
        let label = format!("{}  {}", svc.protocol.upper(), svc.addr());
        match layout {
            ListLayout::Plain => {
                let _ = writeln!(out, "{label} {} [{}]", svc.scheduler.name(), svc.name);
            }
            ListLayout::Stats => numbers(&mut out, &label, svc.stats.as_ref().map(counters), exact),
            ListLayout::Rate => numbers(&mut out, &label, svc.rate.as_ref().map(rates), exact),
        }
        for s in &svc.servers {
            let label = format!("  -> {}", s.addr());
            match layout {
                ListLayout::Plain => {
                    let _ = writeln!(
                        out,
                        "{label:<33} {:<7} {:<6} {:<10} {:<10} {:<9} {}",
                        s.forwarding.ipvsadm(),
                        s.weight,
                        s.active,
                        s.inactive,
                        s.effective_weight,
                        s.health.name()
                    );
                }
                ListLayout::Stats => {
                    numbers(&mut out, &label, s.stats.as_ref().map(counters), exact)
                }
                ListLayout::Rate => numbers(&mut out, &label, s.rate.as_ref().map(rates), exact),
            }
        }
    }
    out
}

/// `pylonctl conns`, as `ipvsadm -Lnc`.
pub fn conns(data: &ConnsData) -> String {
    let mut out = String::from("Pylon connection entries\n");
    let _ = writeln!(
        out,
        "pro expire {:<11} {:<18} {:<18} destination",
        "state", "source", "virtual"
    );
    for c in &data.conns {
        let secs = c.expires_ms / 1000;
        let _ = writeln!(
            out,
            "{:<3} {:02}:{:02}  {:<11} {:<18} {:<18} {}",
            c.protocol.upper(),
            secs / 60,
            secs % 60,
            c.state,
            c.client.to_string(),
            c.virtual_addr.to_string(),
            c.server
        );
    }
    if data.truncated {
        let _ = writeln!(
            out,
            "({} of {} matching entries shown; --limit shows more)",
            data.conns.len(),
            data.matched
        );
    }
    out
}

/// Columns padded to their widest cell, right-aligned where `right` says;
/// no trailing spaces.
fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let w = width[c];
            if right.get(c).copied().unwrap_or(false) {
                let _ = write!(line, "{cell:>w$}");
            } else {
                let _ = write!(line, "{cell:<w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn strings<const N: usize>(cells: [&str; N]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

fn percent(share: f64) -> String {
    format!("{:.1}%", (share * 100.0).clamp(0.0, 100.0))
}

/// `pylonctl workers`: per lcore, drops by reason, per port.
pub fn workers(data: &WorkersData) -> String {
    let mut rows = vec![strings([
        "Lcore",
        "Role",
        "RxPkts",
        "TxPkts",
        "ToControl",
        "Drops",
        "Idle",
    ])];
    for w in &data.workers {
        rows.push(vec![
            w.lcore.to_string(),
            match w.role {
                Role::Worker => "worker".into(),
                Role::Control => "control".into(),
            },
            w.rx_packets.to_string(),
            w.tx_packets.to_string(),
            w.to_control.to_string(),
            w.total_drops().to_string(),
            percent(w.idle_share),
        ]);
    }
    let mut out = table(&rows, &[true, false, true, true, true, true, true]);
    out.push_str("\nDrops by reason\n");
    let mut any = false;
    for w in &data.workers {
        let nonzero: Vec<String> = w
            .drops
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect();
        if !nonzero.is_empty() {
            any = true;
            let _ = writeln!(out, "  lcore {}: {}", w.lcore, nonzero.join(" "));
        }
    }
    if !any {
        out.push_str("  none\n");
    }
    out.push('\n');
    let mut rows = vec![strings([
        "Port", "Link", "RxPkts", "TxPkts", "RxBytes", "TxBytes", "IMissed", "IErrors", "OErrors",
        "RxNoMbuf",
    ])];
    for p in &data.ports {
        rows.push(vec![
            p.name.clone(),
            if p.link_up { "up" } else { "down" }.into(),
            p.rx_packets.to_string(),
            p.tx_packets.to_string(),
            p.rx_bytes.to_string(),
            p.tx_bytes.to_string(),
            p.imissed.to_string(),
            p.ierrors.to_string(),
            p.oerrors.to_string(),
            p.rx_nombuf.to_string(),
        ]);
    }
    let mut right = vec![false, false];
    right.extend([true; 8]);
    out.push_str(&table(&rows, &right));
    out
}

/// A duration as `45s`, `3m12s`, `2h05m` or `3d04h`.
fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn ago(when: Option<u64>, now: u64) -> String {
    when.map_or_else(
        || "-".into(),
        |t| format!("{} ago", duration(now.saturating_sub(t))),
    )
}

fn or_dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

/// `pylonctl health`; `now` is the current Unix time in seconds.
pub fn health(data: &HealthData, now: u64) -> String {
    if data.servers.is_empty() {
        return "no real servers\n".into();
    }
    let mut rows = vec![strings([
        "Service", "Server", "State", "Check", "Last", "Rise", "Fall", "Changed", "Reason",
    ])];
    for h in &data.servers {
        rows.push(vec![
            h.service.clone(),
            format!("{}:{}", h.address, h.port),
            h.state.name().into(),
            or_dash(h.check.as_deref()),
            or_dash(h.last_result.as_deref()),
            h.successes.to_string(),
            h.failures.to_string(),
            ago(h.last_change, now),
            or_dash(h.reason.as_deref()),
        ]);
    }
    table(
        &rows,
        &[false, false, false, false, false, true, true, false, false],
    )
}

/// `pylonctl vrrp`; `now` is the current Unix time in seconds.
pub fn vrrp(data: &VrrpData, now: u64) -> String {
    if data.instances.is_empty() {
        return "no VRRP instances\n".into();
    }
    let mut rows = vec![strings([
        "Name", "VRID", "Port", "State", "Prio", "EffPrio", "Advert", "Preempt", "Master",
        "Changed", "Reason", "VIPs",
    ])];
    for i in &data.instances {
        rows.push(vec![
            i.name.clone(),
            i.vrid.to_string(),
            i.port.clone(),
            i.state.name().into(),
            i.priority.to_string(),
            i.effective_priority.to_string(),
            format!("{}s", f64::from(i.advert_int_ms) / 1000.0),
            if i.preempt { "yes" } else { "no" }.into(),
            i.master.map_or_else(|| "-".into(), |m| m.to_string()),
            ago(i.last_change, now),
            or_dash(i.reason.as_deref()),
            i.vips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ]);
    }
    table(
        &rows,
        &[
            false, true, false, false, true, true, true, false, false, false, false, false,
        ],
    )
}

fn digest_cells(d: Option<&ConfigDigest>) -> [String; 3] {
    d.map_or_else(
        || ["-".into(), "-".into(), "-".into()],
        |d| {
            [
                d.digest.clone(),
                d.services.to_string(),
                d.servers.to_string(),
            ]
        },
    )
}

fn in_sync(matches: Option<bool>) -> String {
    match matches {
        None => "-",
        Some(true) => "same",
        Some(false) => "differs",
    }
    .into()
}

/// `pylonctl sync`: our state, each peer's configuration against ours,
/// the counters and the drops.
pub fn sync(data: &SyncData) -> String {
    if !data.configured {
        return "connection sync is not configured (no [sync] in the configuration)\n".into();
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "session {} on {}; startup sync {}",
        data.session,
        data.listen,
        if data.startup_pending {
            "pending (VRRP held at priority 1)"
        } else {
            "done"
        }
    );
    let [digest, services, servers] = digest_cells(data.config.as_ref());
    let mut rows = vec![
        strings([
            "Peer",
            "Receiving",
            "Config",
            "Digest",
            "Services",
            "Servers",
        ]),
        vec![
            "(this appliance)".into(),
            "-".into(),
            "-".into(),
            digest,
            services,
            servers,
        ],
    ];
    for p in &data.peers {
        let [digest, services, servers] = digest_cells(p.config.as_ref());
        rows.push(vec![
            p.address.clone(),
            if p.adopted { "yes" } else { "no" }.into(),
            in_sync(p.config_in_sync),
            digest,
            services,
            servers,
        ]);
    }
    out.push_str(&table(&rows, &[false, false, false, false, true, true]));
    if data.config_in_sync == Some(false) {
        out.push_str(
            "configuration differs from a peer's: compare the services, servers and weights \
             (pylonctl list on both) before a failover\n",
        );
    }
    let counters: Vec<Vec<String>> = data
        .counters
        .iter()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect();
    out.push('\n');
    out.push_str(&table(&counters, &[false, true]));
    let drops: Vec<Vec<String>> = data
        .drops
        .iter()
        .filter(|(_, &v)| v > 0)
        .map(|(k, v)| vec![format!("dropped {k}"), v.to_string()])
        .collect();
    if !drops.is_empty() {
        out.push_str(&table(&drops, &[false, true]));
    }
    out
}

fn change_line(out: &mut String, c: &Change) {
    let _ = match (&c.old, &c.new) {
        (None, Some(new)) => writeln!(out, "+ {} = {new}", c.path),
        (Some(old), None) => writeln!(out, "- {} (was {old})", c.path),
        (Some(old), Some(new)) => writeln!(out, "~ {}: {old} -> {new}", c.path),
        (None, None) => writeln!(out, "  {}", c.path),
    };
}

/// What an add, edit or del changed.
pub fn changes(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".into();
    }
    let mut out = String::new();
    changes.iter().for_each(|c| change_line(&mut out, c));
    out
}

/// `pylonctl reload`.
pub fn reload(data: &ReloadData) -> String {
    let n = data.changes.len();
    let mut out = match n {
        0 => format!("reloaded {}: no changes\n", data.file),
        1 => format!("reloaded {}: 1 change\n", data.file),
        _ => format!("reloaded {}: {n} changes\n", data.file),
    };
    data.changes.iter().for_each(|c| change_line(&mut out, c));
    out
}

/// `pylonctl diff`: `-` only in the file, `+` only running, `~` both.
pub fn diff(data: &DiffData) -> String {
    if data.changes.is_empty() {
        return format!(
            "no drift: the running configuration matches {}\n",
            data.file
        );
    }
    let mut out = format!("--- {} (file)\n+++ running\n", data.file);
    data.changes.iter().for_each(|c| change_line(&mut out, c));
    out
}

/// The servers a drain set to weight 0, as `10.0.1.2:80 (web)`.
pub fn drained(data: &DrainData) -> String {
    data.servers
        .iter()
        .map(|s| format!("{}:{} ({})", s.address, s.port, s.service))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of the drain progress display, without a line end.
pub fn drain_progress(what: &str, active: u64, inactive: u64, elapsed_secs: f64) -> String {
    format!("draining {what}: {active} active, {inactive} inactive connections, {elapsed_secs:.1}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: u64, exact: bool) -> String {
        let mut s = String::new();
        largenum(&mut s, n, exact);
        s
    }

    #[test]
    fn large_numbers_as_ipvsadm() {
        assert_eq!(num(0, false), "        0");
        assert_eq!(num(99_999_999, false), " 99999999");
        assert_eq!(num(123_456_789, false), "  123456K");
        assert_eq!(num(12_345_678_901, false), "   12345M");
        assert_eq!(num(123_456_789_012_345, false), "     123T");
        assert_eq!(num(12_345_678_901_234, false), "   12345G");
        assert_eq!(num(123_456_789_012_345, true), " 123456789012345");
        assert_eq!(num(5, true), "        5");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(192), "3m12s");
        assert_eq!(duration(7500), "2h05m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600), "3d04h");
    }

    #[test]
    fn tables_align_without_trailing_space() {
        let t = table(
            &[strings(["a", "bb", "c"]), strings(["ccc", "d", ""])],
            &[false, true, false],
        );
        assert_eq!(t, "a    bb  c\nccc   d\n");
    }
}
