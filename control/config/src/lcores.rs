//! The lcore ids of an EAL `--lcores` mapping.
//!
//! Grammar (DPDK EAL documentation): `ELEM[,ELEM...]` where
//! `ELEM = LCORES[@CPUS]` and `LCORES`, `CPUS` are a number, a range `a-b`
//! or a group `(SET[,SET...])` of numbers and ranges. `1@0,(2,3)@1,4-5@(0,1)`
//! runs lcores 1 to 5 on cpus 0 and 1.

use std::collections::BTreeSet;

/// Lcore ids are below DPDK's `RTE_MAX_LCORE` (128 in Debian's build).
pub(crate) const MAX_LCORE: u32 = 128;

/// The set of lcore ids that `spec` defines, or why it is malformed.
pub(crate) fn lcore_ids(spec: &str) -> Result<BTreeSet<u32>, String> {
    if spec.is_empty() {
        return Err("the mapping is empty".to_owned());
    }
    let mut ids = BTreeSet::new();
    for elem in split_top_level(spec)? {
        let (lcores, cpus) = match elem.split_once('@') {
            Some((lcores, cpus)) => (lcores, Some(cpus)),
            None => (elem, None),
        };
        for id in set(lcores)? {
            if id >= MAX_LCORE {
                return Err(format!("lcore {id} is not below {MAX_LCORE}"));
            }
            ids.insert(id);
        }
        if let Some(cpus) = cpus {
            set(cpus)?;
        }
    }
    Ok(ids)
}

/// `spec` split at the commas outside parentheses.
fn split_top_level(spec: &str) -> Result<Vec<&str>, String> {
    let mut elems = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err(format!("nested `(` at byte {i}")),
            ')' if depth == 1 => depth = 0,
            ')' => return Err(format!("unbalanced `)` at byte {i}")),
            ',' if depth == 0 => {
                elems.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced `(`".to_owned());
    }
    elems.push(&spec[start..]);
    Ok(elems)
}

/// The ids of a number, a range or a parenthesized group.
fn set(text: &str) -> Result<Vec<u32>, String> {
    let inner = match text.strip_prefix('(') {
        Some(rest) => rest
            .strip_suffix(')')
            .ok_or_else(|| format!("`{text}`: unbalanced `(`"))?,
        None => text,
    };
    let mut ids = Vec::new();
    for item in inner.split(',') {
        let (first, last) = match item.split_once('-') {
            Some((first, last)) => (number(first)?, number(last)?),
            None => {
                let id = number(item)?;
                (id, id)
            }
        };
        if first > last {
            return Err(format!("`{item}`: the range is reversed"));
        }
        ids.extend(first..=last);
    }
    Ok(ids)
}

fn number(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{text}` is not a number"));
    }
    text.parse()
        .ok()
        .filter(|&n| n < 1024)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::lcore_ids;

    fn ids(spec: &str) -> Vec<u32> {
        lcore_ids(spec).unwrap().into_iter().collect()
    }

    #[test]
    fn plain_mappings() {
        assert_eq!(ids("0@0,1@1"), [0, 1]);
        assert_eq!(ids("0@0,1@1,2@1"), [0, 1, 2]);
        assert_eq!(ids("0-3"), [0, 1, 2, 3]);
        assert_eq!(ids("0,2"), [0, 2]);
    }

    #[test]
    fn groups_and_ranges() {
        assert_eq!(ids("1@0,(2,3)@1,4-5@(0,1)"), [1, 2, 3, 4, 5]);
        assert_eq!(ids("(0-1,7)@(0-1)"), [0, 1, 7]);
    }

    #[test]
    fn malformed() {
        for bad in [
            "", "0@", "@1", "a", "0,,1", "(0,1", "0,1)", "((0))", "3-1", "0@(1", "128@0", "-1",
        ] {
            assert!(lcore_ids(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
