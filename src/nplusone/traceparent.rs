//! Finding a W3C trace id (`traceparent`, plain or in a SQLCommenter comment) in a statement's text without allocating.

use memchr::memmem::Finder;
use std::sync::LazyLock;

/// Built once: building a finder per statement cost as much as the search itself.
static TRACEPARENT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"traceparent"));

/// The 128-bit trace id of the first valid `traceparent` value in `text`, or 0 when none.
/// Accepts `traceparent='00-<32 hex>-<16 hex>-<2 hex>'` and the `=`/`:`/quote variants.
pub fn trace_id(text: &[u8]) -> u128 {
    for at in TRACEPARENT.find_iter(text) {
        let rest = &text[at + b"traceparent".len()..];
        let skip = rest
            .iter()
            .take(4)
            .take_while(|c| matches!(c, b'=' | b':' | b'\'' | b'"' | b' '))
            .count();
        if let Some(id) = parse(&rest[skip..]) {
            return id;
        }
    }
    0
}

/// `vv-<32 hex trace id>-<16 hex parent id>-`: version ff and all-zero ids are invalid.
fn parse(v: &[u8]) -> Option<u128> {
    if v.len() < 53 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex(&v[..2])?;
    hex(&v[36..52])?;
    let id = hex(&v[3..35])?;
    (version != 0xff && id != 0).then_some(id)
}

fn hex(s: &[u8]) -> Option<u128> {
    let mut n: u128 = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(d);
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::trace_id;

    #[test]
    fn sqlcommenter_and_plain_forms() {
        let id = 0x4bf92f3577b34da6a3ce929d0e0e4736_u128;
        let c =
            b"select 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/";
        assert_eq!(trace_id(c), id);
        let p =
            b"/* traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 */ select 1";
        assert_eq!(trace_id(p), id);
        assert_eq!(trace_id(b"select 1"), 0);
        assert_eq!(trace_id(b"select 'traceparent'"), 0);
        // All-zero trace id and version ff are invalid.
        assert_eq!(
            trace_id(b"traceparent='00-00000000000000000000000000000000-00f067aa0ba902b7-01'"),
            0
        );
        assert_eq!(
            trace_id(b"traceparent='ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'"),
            0
        );
        // A bad first mention does not hide a good second one.
        let two = b"-- traceparent missing\nselect 1 /*traceparent='00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'*/";
        assert_eq!(trace_id(two), id);
    }
}
