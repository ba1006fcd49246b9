//! Byte-level scanning for the lexer: byte classes looked up per byte, and where comments, quote continuations and digit runs end.

/// Where a `--` comment whose text starts at `body` ends: at the next CR or LF, or the end.
pub(super) fn comment_end(src: &[u8], body: usize) -> usize {
    src[body..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(src.len(), |n| body + n)
}

/// After a string constant that closed just before `at`: the position after the opening quote
/// of its continuation, if one follows. scan.l's `quotecontinue` is horizontal whitespace or
/// `--` comments, a newline (CR or LF), then any whitespace or `--` comments each ended by a
/// newline, then a quote. Block comments break it.
pub(super) fn quote_continues(src: &[u8], at: usize) -> Option<usize> {
    let byte = |i: usize| src.get(i).copied().unwrap_or(0);
    let mut i = at;
    let mut newline = false;
    loop {
        match byte(i) {
            b' ' | b'\t' | 0x0c | 0x0b => i += 1,
            b'\n' | b'\r' => {
                newline = true;
                i += 1;
            }
            b'-' if byte(i + 1) == b'-' => {
                let end = comment_end(src, i + 2);
                if end >= src.len() {
                    return None;
                }
                i = end;
            }
            b'\'' if newline => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The end of a run of digits of `radix` from `at`, with single underscores between digits
/// (`1_000`); `lead_underscore` allows one before the first digit (`0x_FF`).
pub(super) fn digits_run(src: &[u8], at: usize, radix: u32, lead_underscore: bool) -> usize {
    let digit = |b: u8| (b as char).is_digit(radix);
    let mut i = at;
    let mut seen = false;
    loop {
        match src.get(i).copied() {
            Some(b) if digit(b) => {
                seen = true;
                i += 1;
            }
            Some(b'_')
                if (seen || lead_underscore) && src.get(i + 1).is_some_and(|&b| digit(b)) =>
            {
                i += 2;
                seen = true;
            }
            _ => return i,
        }
    }
}

/// Byte classes, looked up once per byte instead of a chain of comparisons.
pub(super) const SPACE: u8 = 1;
pub(super) const IDENT_START: u8 = 2;
pub(super) const IDENT: u8 = 4;
pub(super) const OP: u8 = 8;
pub(super) const TAG: u8 = 16;
/// Letters that may open a prefixed literal (`E'`, `B'`, `X'`, `N'`, `U&'`).
pub(super) const PREFIX: u8 = 32;
/// Punctuation that is always a one-byte token.
pub(super) const SIMPLE: u8 = 64;

pub(super) static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        let mut class = 0;
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            class |= SPACE;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            class |= IDENT_START | IDENT | TAG;
        }
        if c.is_ascii_digit() {
            class |= IDENT | TAG;
        }
        if c == b'$' {
            class |= IDENT;
        }
        if matches!(
            c,
            b'+' | b'-'
                | b'*'
                | b'/'
                | b'<'
                | b'>'
                | b'='
                | b'~'
                | b'!'
                | b'@'
                | b'#'
                | b'%'
                | b'^'
                | b'&'
                | b'|'
                | b'`'
                | b'?'
        ) {
            class |= OP;
        }
        if matches!(
            c,
            b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N' | b'u' | b'U'
        ) {
            class |= PREFIX;
        }
        table[b] = class;
        b += 1;
    }
    table
}

#[inline]
pub(super) fn is(b: u8, class: u8) -> bool {
    CLASS[b as usize] & class != 0
}

pub(super) fn is_ident_start(b: u8) -> bool {
    is(b, IDENT_START)
}

pub(super) fn is_tag_char(b: u8) -> bool {
    is(b, TAG)
}

pub(super) fn is_op_char(b: u8) -> bool {
    is(b, OP)
}
