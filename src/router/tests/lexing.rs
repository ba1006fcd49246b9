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
