//! The cheap lexer: shapes equal across literal values, different across identifiers and operators.

use super::super::shape::{has_literal, leading_keywords, normalize, shape};
use super::super::Keyword;

fn same(a: &str, b: &str) {
    assert_eq!(
        shape(a).hash,
        shape(b).hash,
        "{a:?} and {b:?} should share a shape"
    );
}

fn differ(a: &str, b: &str) {
    assert_ne!(
        shape(a).hash,
        shape(b).hash,
        "{a:?} and {b:?} should not share a shape"
    );
}

#[test]
fn literals_whitespace_and_comments_do_not_change_the_shape() {
    same(
        "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
    );
    same(
        "SELECT * FROM t WHERE a = 'x'",
        "SELECT * FROM t WHERE a = 'it''s'",
    );
    same(
        "SELECT * FROM t WHERE a = 1.5e10",
        "SELECT * FROM t WHERE a = .5",
    );
    same(
        "SELECT * FROM t WHERE a = 0x1F",
        "SELECT * FROM t WHERE a = 1_000_000",
    );
    same("SELECT E'a\\'b'", "SELECT 'plain'");
    same("SELECT $$a$$", "SELECT $body$ it's $$ nested $body$");
    same("SELECT U&'\\0041'", "SELECT B'1010'");
    same("SELECT X'FF'", "SELECT N'x'");
    same("SELECT  a\n\tFROM t", "SELECT a FROM t");
    same("SELECT a /* c */ FROM t -- x", "SELECT a FROM t");
    same(
        "SELECT a /* nested /* c */ still */ FROM t",
        "SELECT a FROM t",
    );
    same("SELECT a FROM T", "select A from t");
    same("SELECT a=-1", "SELECT a = - 1");
}

#[test]
fn identifiers_operators_and_structure_change_the_shape() {
    differ("SELECT a FROM t", "SELECT a FROM u");
    differ("SELECT a FROM t", "SELECT b FROM t");
    differ("SELECT a FROM t", "SELECT a FROM \"T\"");
    differ("SELECT \"a\" FROM t", "SELECT a FROM t");
    differ("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a > 1");
    differ(
        "SELECT * FROM t WHERE a = 1",
        "SELECT * FROM t WHERE a <> 1",
    );
    differ(
        "SELECT * FROM t WHERE a = $1",
        "SELECT * FROM t WHERE a = $2",
    );
    differ(
        "SELECT * FROM t WHERE a = $1",
        "SELECT * FROM t WHERE a = 1",
    );
    differ("SELECT a::int", "SELECT a::text");
    differ("SELECT 1", "SELECT 1, 2");
    differ("SELECT 1; SELECT 2", "SELECT 1, 2");
    differ("SELECT ab", "SELECT a b");
    differ("SELECT 1e5", "SELECT 1 e5");
    differ("SELECT E'x'", "SELECT E 'x'");
    differ("SELECT * FROM t FOR UPDATE", "SELECT * FROM t");
    differ("SELECT a FROM t", "SELECT a FROM t /* pgsplit:primary */");
    differ("SELECT 'a'", "SELECT 'a' /* pgsplit:primary */");
    differ("SELECT \"é\"", "SELECT \"è\"");
    // The server rejects unterminated quoting; it must not borrow a valid text's analysis.
    differ("SELECT 'abc", "SELECT 'abc'");
    differ("SELECT E'abc", "SELECT E'abc'");
    differ("SELECT $q$abc", "SELECT $q$abc$q$");
    differ("SELECT \"abc", "SELECT \"abc\"");
    differ("SELECT 1 /* open", "SELECT 1 /* closed */");
    differ("SELECT é FROM t", "SELECT è FROM t");
}

#[test]
fn quoting_keeps_keywords_and_semicolons_inside_literals() {
    // Everything inside these literals must be masked, not read as SQL.
    same("SELECT 'a; DELETE FROM t'", "SELECT 1");
    same("SELECT $x$ '; DROP TABLE t; -- $x$", "SELECT 1");
    same("SELECT E'\\' ; DELETE FROM t'", "SELECT 1");
    same("SELECT 'a''; DELETE FROM t; --'", "SELECT 1");
    same("SELECT U&'d\\0061t\\+000061'", "SELECT 1");
    assert_eq!(shape("SELECT 'a; b'; SELECT \"c;d\"").statements, 2);
    assert_eq!(shape("SELECT $$;$$").statements, 1);
    assert_eq!(shape("SELECT 1 -- ; not a statement").statements, 1);
    assert_eq!(shape("  ;; SELECT 1;; ").statements, 1);
    assert_eq!(shape("").statements, 0);
    // An unterminated literal runs to the end.
    assert_eq!(shape("SELECT 'abc; DELETE FROM t").literals, 1);
    assert_eq!(shape("SELECT $q$ abc").literals, 1);
    assert_eq!(shape("SELECT /* never closed").statements, 1);
    // `$1` is a parameter, `a$1` an identifier, `$` alone punctuation.
    assert_eq!(shape("SELECT $1, a$1, $").literals, 0);
}

#[test]
fn hint_only_in_comments() {
    assert!(shape("/* pgsplit:primary */ SELECT 1").primary_hint);
    assert!(shape("SELECT 1 -- pgsplit:primary").primary_hint);
    assert!(shape("SELECT 1 /* route: PgSplit:Primary please */").primary_hint);
    assert!(shape("SELECT 1 /* a /* pgsplit:primary */ b */").primary_hint);
    assert!(!shape("SELECT '/* pgsplit:primary */'").primary_hint);
    assert!(!shape("SELECT $$ -- pgsplit:primary $$").primary_hint);
    assert!(!shape("SELECT \"pgsplit:primary\"").primary_hint);
    assert!(!shape("SELECT 1 /* pgsplit:replica */").primary_hint);
}

#[test]
fn first_keyword() {
    assert_eq!(shape("SELECT 1").first_keyword, Keyword::Select);
    assert_eq!(
        shape("  /* c */ ((select 1))").first_keyword,
        Keyword::Select
    );
    assert_eq!(
        shape("with x as (select 1) select 1").first_keyword,
        Keyword::With
    );
    assert_eq!(shape("BEGIN").first_keyword, Keyword::Begin);
    assert_eq!(shape("set x = 1").first_keyword, Keyword::Set);
    assert_eq!(shape("vacuum").first_keyword, Keyword::Other);
    assert_eq!(shape("").first_keyword, Keyword::None);
    assert_eq!(shape("'x'").first_keyword, Keyword::None);
    assert_eq!(
        leading_keywords("BEGIN; SELECT 1; (SELECT 2); COMMIT"),
        vec![
            Keyword::Begin,
            Keyword::Select,
            Keyword::Select,
            Keyword::Commit
        ]
    );
}

#[test]
fn normal_form_has_no_literals() {
    assert_eq!(
        normalize("SELECT * FROM t WHERE a = 'secret' AND b = $1 AND c = 42 /* x */"),
        "SELECT * FROM t WHERE a = $2 AND b = $1 AND c = $3"
    );
    assert_eq!(normalize("SELECT E'a\\'b',\n  $$x$$"), "SELECT $1, $2");
    assert_eq!(normalize("SET x TO 'y'"), "SET x TO $1");
    // Placeholders never fuse with a neighbour that quoting kept apart.
    assert_eq!(normalize("SELECT a'b'"), "SELECT a $1");
    assert_eq!(normalize("SELECT 'a'1, $2'b'"), "SELECT $3 $4, $2 $5");
    assert!(!has_literal(&normalize(
        "SELECT U&'x' || B'1' || X'1' || 1.5 || 'it''s'"
    )));
    assert!(has_literal("SELECT 'x'"));
    assert!(!has_literal("SELECT $1, \"x\", x"));
}

#[test]
fn hostile_text_never_panics_and_never_leaks_literals() {
    const PIECES: &[&str] = &[
        "'",
        "\"",
        "$",
        "$$",
        "$a$",
        "$1",
        "E'",
        "e'\\",
        "U&'",
        "u&\"",
        "B'",
        "--",
        "/*",
        "*/",
        "\\",
        ";",
        "SELECT",
        " FROM t",
        " ",
        "\n",
        "1",
        ".5",
        "1e",
        "0x",
        "x",
        "é",
        "(",
        ")",
        "+-",
        "=-",
        "::",
        "pgsplit:primary",
        "\0",
        "FOR UPDATE",
        "SET x = ",
        "BEGIN",
        "nextval(",
        "WITH a AS (",
        "DELETE FROM t",
        ",",
    ];
    let router = super::router();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for round in 0..5_000 {
        let mut sql = String::new();
        for _ in 0..(round % 24) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            sql.push_str(PIECES[(state % PIECES.len() as u64) as usize]);
        }
        let s = shape(&sql);
        assert!(s.statements as usize <= sql.len());
        assert!(!has_literal(&normalize(&sql)), "{sql:?}");
        if round % 5 == 0 {
            let a = router.analyze(&sql);
            assert!(!has_literal(&a.normalized), "{sql:?} -> {:?}", a.normalized);
        }
    }
}

#[test]
fn carriage_return_ends_a_line_comment() {
    // PostgreSQL's scanner ends `--` at CR as well as LF: what follows is SQL.
    differ(
        "SELECT id FROM t WHERE id = 1 --\rFOR UPDATE",
        "SELECT id FROM t WHERE id = 1",
    );
    same(
        "SELECT id FROM t WHERE id = 1 --\rFOR UPDATE",
        "SELECT id FROM t WHERE id = 2 FOR UPDATE",
    );
    differ("SELECT 3 --\r, nextval('s')", "SELECT 3");
    assert_eq!(
        shape("SELECT 2 --\r; UPDATE t SET v = v WHERE id = 1").statements,
        2
    );
    assert!(!shape("SELECT 1 -- x\rpgsplit:primary").primary_hint);
}

#[test]
fn string_constants_continue_across_newlines() {
    // `'a'\n'b'` is one constant; on one line, or across a block comment, it is two.
    same("SELECT 'a'\n'b'", "SELECT 'ab'");
    same("SELECT 'a' -- c\n  'b'", "SELECT 1");
    same("SELECT E'a\\''\r\n'b'", "SELECT 1");
    same("SELECT B'1'\n\n'0'", "SELECT 1");
    differ("SELECT 'a' 'b'", "SELECT 'ab'");
    differ("SELECT 'a' /* c */\n'b'", "SELECT 'ab'");
    differ("SELECT 'a'\n/* c */ 'b'", "SELECT 'ab'");
    // Bit and hex strings end at their first quote: `X''''` is two constants.
    same("SELECT X'1''2'", "SELECT 1 2");
    same("SELECT b''''", "SELECT 1 2");
    differ("SELECT X'1''2'", "SELECT X'12'");
    same("SELECT X'1'\n'2'", "SELECT X'12'");
    // The continuation keeps E'' escaping: `\'` does not end it.
    same("SELECT E'x'\n'\\' FOR UPDATE --'", "SELECT 1");
}

#[test]
fn text_the_scanner_rejects_never_shares_a_valid_shape() {
    differ("SELECT 1abc", "SELECT 1 abc");
    differ("SELECT 0x1g", "SELECT 0x1 g");
    differ("SELECT 1_", "SELECT 1");
    differ("SELECT 1e+", "SELECT 1e+1");
    differ("SELECT $1a", "SELECT $1 a");
    differ("SELECT \"\"", "SELECT \"a\"");
    same(
        "SELECT 1_000 + 0x_FF + 0b1 + 1.5e-3 + .5 + 1.",
        "SELECT 1+2+3+4+5+6",
    );
    same(
        "SELECT a::int, b..c, x := 1",
        "SELECT a :: int, b .. c, x := 1",
    );
    differ("SELECT a::int", "SELECT a: :int");
    differ("SELECT x := 1", "SELECT x : = 1");
}

#[test]
fn where_the_scanner_fails_is_part_of_the_shape() {
    // lexer_diff's first finding: with one flag for the whole text, a second rejection later
    // on made `1abel` (an error) and `1 abel` (valid) share a shape. PostgreSQL 18 reads `$1a`
    // as `$1` and `a`, earlier versions reject it; either way it is flagged where it is.
    differ("SELECT 1abel, $1a", "SELECT 1 abel, $1a");
    differ("SELECT 'a' \"\", 1x", "SELECT 'a' \"b\", 1x");
    same("SELECT 1abel, $1a", "SELECT 2ABEL , $1A");
    differ("SELECT $1a /* open", "SELECT $1a");
    // An identifier starting inside the number runs past it: `0` + `_0$`, `0` + `x1$`.
    differ("SELECT 0_0$", "SELECT 0_0 $");
    differ("SELECT 0x1$", "SELECT 0x1 $");
    differ("SELECT 0b12", "SELECT 0b1 2");
    differ("SELECT 1e5$", "SELECT 1e5 $");
    differ("SELECT 1.5_0$", "SELECT 1.5_0 $");
    same("SELECT 10$", "SELECT 7 $");
    same("SELECT 1e-5$", "SELECT 7 $");
    // A rejection earlier on does not stop a string's continuation across a newline.
    differ("SELECT 1x, 'a'\n'b'", "SELECT 1x, 'a' 'b'");
}

#[test]
fn standard_conforming_strings_off_takes_backslash_escapes() {
    use super::super::shape::{escape_form, shape_with};
    use super::super::Strings;
    let off = |sql: &str| shape_with(sql, Strings::Backslash).hash;
    // Off: `\'` does not end the string, so FOR UPDATE is inside it.
    let hidden = "SELECT 'a\\' FOR UPDATE --'";
    assert_eq!(off(hidden), off("SELECT 'a\\' and more'"));
    assert_ne!(off(hidden), shape(hidden).hash);
    // On: the same text ends the string at the second quote.
    assert_eq!(shape(hidden).hash, shape("SELECT 'a\\' FOR UPDATE").hash);
    // Texts without a backslash read alike and share the cache.
    assert_eq!(off("SELECT 'a'"), shape("SELECT 'a'").hash);
    assert_eq!(
        escape_form("SELECT 'a\\'b', x'1', N'\\''"),
        "SELECT  E'a\\'b', x'1',  NCHAR E'\\''"
    );
}
