//! A simple Query's literals as the values a loop binds: its text is its parameters.

use super::flow::{value_hash, Values, MAX_PARAMS};

/// The literals of a simple Query's text, hashed as their text would come back in a text-format
/// result: quoted strings (without the quotes) and numbers; `$n`, identifiers and comments are
/// skipped. Escapes inside strings are rare in a loop's keys: such a string is left out.
pub fn literals(text: &[u8]) -> Values {
    let mut out = Values::default();
    let mut i = 0;
    while i < text.len() && (out.len as usize) < MAX_PARAMS {
        let c = text[i];
        match c {
            b'\'' => {
                let start = i + 1;
                let mut j = start;
                let mut escaped = false;
                loop {
                    match text.get(j) {
                        None => return out,
                        Some(b'\'') if text.get(j + 1) == Some(&b'\'') => {
                            escaped = true;
                            j += 2;
                        }
                        Some(b'\'') => break,
                        Some(_) => j += 1,
                    }
                }
                let prefixed = i > 0 && (text[i - 1] == b'E' || text[i - 1] == b'e');
                if !escaped && !prefixed {
                    out.push(value_hash(&text[start..j]));
                }
                i = j + 1;
            }
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += 1;
                }
                i += 1;
            }
            b'-' if text.get(i + 1) == Some(&b'-') => {
                while i < text.len() && text[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if text.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < text.len() && !(text[i] == b'*' && text[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b'0'..=b'9' => {
                let start = i;
                while i < text.len() && (text[i].is_ascii_digit() || text[i] == b'.') {
                    i += 1;
                }
                out.push(value_hash(&text[start..i]));
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 => {
                while i < text.len()
                    && (text[i].is_ascii_alphanumeric()
                        || text[i] == b'_'
                        || text[i] == b'$'
                        || text[i] >= 0x80)
                {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_query_literals() {
        let v = literals(b"SELECT * FROM t1 WHERE a = 'x''y' AND b = 'k' AND c = 42 -- 7\n AND d = $1 /* 'no' */ AND \"c2\" = 3.5\0");
        let want: Vec<u32> = ["k", "42", "3.5"]
            .iter()
            .map(|s| value_hash(s.as_bytes()))
            .collect();
        assert_eq!(v.as_slice(), &want[..]);
    }
}
