//! Internet checksum (RFC 1071) and its incremental update (RFC 1624).

/// Sums `data` as big-endian 16-bit words into a 32-bit accumulator
/// (RFC 1071 §4.1); an odd trailing byte is padded with zero.
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    while acc > 0xffff_ffff {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
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
    let acc = u32::from(!hc) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// [`update16`] for a 32-bit field such as an IPv4 address.
pub fn update32(hc: u16, old: u32, new: u32) -> u16 {
    let hc = update16(hc, (old >> 16) as u16, (new >> 16) as u16);
    update16(hc, old as u16, new as u16)
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
    }

    proptest! {
        /// Incrementally updating a 16-bit word equals recomputing.
        #[test]
        fn update16_matches_recompute(
            mut words in proptest::collection::vec(any::<u16>(), 2..64),
            idx in any::<prop::sample::Index>(),
            new in any::<u16>(),
        ) {
            let ck_pos = 0;
            words[ck_pos] = 0;
            let bytes = |w: &[u16]| w.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
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

        /// Incrementally updating a 32-bit field equals recomputing.
        #[test]
        fn update32_matches_recompute(
            mut data in proptest::collection::vec(any::<u8>(), 8..128),
            new in any::<u32>(),
        ) {
            data[0] = 0;
            data[1] = 0;
            let ck = checksum(&data);
            data[..2].copy_from_slice(&ck.to_be_bytes());
            let old = u32::from_be_bytes([data[2], data[3], data[4], data[5]]);
            data[2..6].copy_from_slice(&new.to_be_bytes());
            let upd = update32(ck, old, new);
            data[..2].copy_from_slice(&upd.to_be_bytes());
            prop_assert!(verifies(&data));
        }
    }
}
