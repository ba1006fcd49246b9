//! WAL positions in PostgreSQL's `pg_lsn` text form, `XXXXXXXX/XXXXXXXX`, as 64-bit integers.

/// Parses `16/B374D848` into its 64-bit position; None unless both halves are 32-bit hex.
pub fn parse(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    if hi > u64::from(u32::MAX) || lo > u64::from(u32::MAX) {
        return None;
    }
    Some(hi << 32 | lo)
}

/// The text form PostgreSQL prints, so operators can paste it into `pg_wal_lsn_diff`.
pub fn format(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        assert_eq!(parse("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse("0/0"), Some(0));
        assert_eq!(parse(" 0/3000060\n"), Some(0x300_0060));
        assert_eq!(parse("1A/FF"), Some(0x1A_0000_00FF));
        for bad in ["junk", "nope", "1/", "/1", "100000000/0", "0/100000000", ""] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        for lsn in [0, 1, 0x16_B374_D848, u64::MAX] {
            assert_eq!(parse(&format(lsn)), Some(lsn));
        }
        assert_eq!(format(0x16_B374_D848), "16/B374D848");
    }
}
