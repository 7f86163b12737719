//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Sums `data` as big-endian 16-bit words (RFC 1071 §4.1; an odd
/// trailing byte is padded with zero) onto `initial`, folded to at most
/// 0xffff. Hand-written rather than a crate's: it reads 32-bit words, half
/// the additions of a 16-bit loop, which RFC 1071 §2(B) allows because
/// 2^16 = 1 in one's-complement arithmetic (the IPv4 header check on every
/// packet was about 80 instructions the 16-bit way).
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for c in &mut rest {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

/// Folds a 32-bit one's-complement accumulator into 16 bits.
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data` (RFC 1071): the complement of its sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Sum of the IPv4 pseudo-header used by TCP and UDP (RFC 793 §3.1, RFC 768).
pub fn pseudo_header(src: [u8; 4], dst: [u8; 4], proto: u8, l4_len: u16) -> u32 {
    let mut acc = sum(&src, 0);
    acc = sum(&dst, acc);
    acc + u32::from(proto) + u32::from(l4_len)
}

/// Updates checksum `hc` after a 16-bit field changed from `old` to `new`:
/// RFC 1624 §3, equation 3: `HC' = ~(~HC + ~m + m')`, which unlike
/// equation 2 never yields the wrong zero.
pub fn update16(hc: u16, old: u16, new: u16) -> u16 {
    adjust(hc, diff16(old, new))
}

/// What replacing 16-bit `old` with `new` adds to a sum (`~m + m'` of
/// RFC 1624 §3), for [`adjust`].
pub fn diff16(old: u16, new: u16) -> u32 {
    u32::from(!old) + u32::from(new)
}

/// [`diff16`] for a 32-bit field such as an IPv4 address.
pub fn diff32(old: u32, new: u32) -> u32 {
    diff16((old >> 16) as u16, (new >> 16) as u16) + diff16(old as u16, new as u16)
}

/// Updates checksum `hc` by the summed [`diff16`]/[`diff32`] of every
/// field that changed, with one fold (RFC 1624 §3, equation 3, for
/// several fields at once); `delta` is at most a few such sums.
pub fn adjust(hc: u16, delta: u32) -> u16 {
    !fold(u32::from(!hc) + delta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One's complement has two zeros; a checksum field is equally valid
    /// holding either, so compare by the sum the receiver computes.
    fn verifies(data: &[u8]) -> bool {
        fold(sum(data, 0)) == 0xffff
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 worked example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_is_zero_padded() {
        assert_eq!(fold(sum(&[0xab], 0)), 0xab00);
        assert_eq!(sum(&[0, 1, 0, 2, 0xab], 0), 0xab03);
    }

    fn bytes(words: &[u16]) -> Vec<u8> {
        words.iter().flat_map(|x| x.to_be_bytes()).collect()
    }

    /// RFC 1071's definition, one 16-bit word at a time.
    fn sum16(data: &[u8], initial: u32) -> u16 {
        let mut acc = u64::from(initial);
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    proptest! {
        /// One adjustment for an address and a port equals updating them
        /// one at a time, and recomputing.
        #[test]
        fn adjusting_several_fields_at_once(
            mut words in proptest::collection::vec(any::<u16>(), 6..20),
            addr in any::<u32>(),
            port in any::<u16>(),
        ) {
            let ck_pos = 5;
            words[ck_pos] = 0;
            words[ck_pos] = checksum(&bytes(&words));
            let (old_addr, old_port) = ((u32::from(words[0]) << 16) | u32::from(words[1]), words[2]);
            let hc = words[ck_pos];
            let once = adjust(hc, diff32(old_addr, addr) + diff16(old_port, port));
            let one_by_one = [
                ((old_addr >> 16) as u16, (addr >> 16) as u16),
                (old_addr as u16, addr as u16),
                (old_port, port),
            ]
            .iter()
            .fold(hc, |ck, &(o, n)| update16(ck, o, n));
            prop_assert_eq!(once, one_by_one);
            words[0] = (addr >> 16) as u16;
            words[1] = addr as u16;
            words[2] = port;
            words[ck_pos] = once;
            prop_assert!(verifies(&bytes(&words)));
        }

        /// Summing 32-bit words folds to the 16-bit words' sum.
        #[test]
        fn word_sums_agree(data in proptest::collection::vec(any::<u8>(), 0..80), initial in any::<u32>()) {
            let s = sum(&data, initial);
            prop_assert!(s <= 0xffff);
            prop_assert_eq!(s as u16, sum16(&data, initial));
        }

        /// Incrementally updating a 16-bit word equals recomputing.
        #[test]
        fn update16_matches_recompute(
            mut words in proptest::collection::vec(any::<u16>(), 2..64),
            idx in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            let ck_pos = 0;
            words[ck_pos] = 0;
            words[ck_pos] = checksum(&bytes(&words));
            let i = 1 + idx.index(words.len() - 1);
            let old = words[i];
            words[i] = new;
            words[ck_pos] = update16(words[ck_pos], old, new);
            prop_assert!(verifies(&bytes(&words)));
            let mut fresh = words.clone();
            fresh[ck_pos] = 0;
            let recomputed = checksum(&bytes(&fresh));
            prop_assert!(words[ck_pos] == recomputed || (words[ck_pos] ^ recomputed) == 0xffff);
        }

        /// Adjusting for a changed 32-bit field equals recomputing.
        #[test]
        fn diff32_adjusts_like_a_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 8..128),
            new in any::<u32>(),
        ) {
            data[0] = 0;
            data[1] = 0;
            let ck = checksum(&data);
            data[..2].copy_from_slice(&ck.to_be_bytes());
            let old = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
            data[2..6].copy_from_slice(&new.to_be_bytes());
            let upd = adjust(ck, diff32(old, new));
            data[..2].copy_from_slice(&upd.to_be_bytes());
            prop_assert!(verifies(&data));
        }
    }
}
