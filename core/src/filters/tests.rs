use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::Kind;

/// containerd's filter_test.go corpus entry.
#[derive(Debug, Default)]
struct Entry {
    name: &'static str,
    other: &'static str,
    labels: Vec<(&'static str, &'static str)>,
}

impl Adaptor for Entry {
    fn field(&self, path: &[&str]) -> Option<String> {
        let non_empty = |s: &str| Some(s.to_owned()).filter(|s| !s.is_empty());
        match path {
            ["name", ..] => non_empty(self.name),
            ["other", ..] => non_empty(self.other),
            ["labels", key @ ..] => {
                let key = key.join(".");
                self.labels
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            }
            _ => None,
        }
    }
}

fn corpus() -> Vec<Entry> {
    vec![
        Entry {
            name: "foo",
            labels: vec![("foo", "true")],
            ..Entry::default()
        },
        Entry {
            name: "bar",
            ..Entry::default()
        },
        Entry {
            name: "foo",
            labels: vec![("foo", "present"), ("more complex label", "present")],
            ..Entry::default()
        },
        Entry {
            name: "bar",
            labels: vec![("bar", "true")],
            ..Entry::default()
        },
        Entry {
            name: "fooer",
            labels: vec![("more complex label with \\ and \"", "present")],
            ..Entry::default()
        },
        Entry {
            name: "fooer",
            labels: vec![("more complex label with \\ and \".post", "present")],
            ..Entry::default()
        },
        Entry {
            name: "baz",
            other: "too complex, yo",
            ..Entry::default()
        },
        Entry {
            name: "bazo",
            other: "abc",
            ..Entry::default()
        },
        Entry {
            name: "compound",
            labels: vec![("foo", "omg_asdf.asdf-qwer")],
            ..Entry::default()
        },
    ]
}

fn matching(input: &str) -> Vec<usize> {
    let filter = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    corpus()
        .iter()
        .enumerate()
        .filter(|(_, e)| filter.matches(*e))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn matches_containerd_corpus() {
    let all: Vec<usize> = (0..9).collect();
    let cases: &[(&str, &[usize])] = &[
        ("", &all),
        ("name", &all),
        ("labels.foo", &[0, 2, 8]),
        ("labels.foo,name", &[0, 2, 8]),
        ("labels.foo==true", &[0]),
        ("labels.foo==omg_asdf.asdf-qwer", &[8]),
        ("name==bar", &[1, 3]),
        ("name!=bar", &[0, 2, 4, 5, 6, 7, 8]),
        ("name==bar,labels.bar", &[3]),
        ("other==\"too complex, yo\"", &[6]),
        ("other~=[abc]+,name!=foo", &[6, 7]),
        ("other~=/[abc]+/,name!=foo", &[6, 7]),
        ("other~=/[abc]{1,2}/,name!=foo", &[6, 7]),
        ("other~=/[abc]{0,1}\"\\//,name!=foo", &[]),
        ("name==bar,labels.bar==true", &[3]),
        ("name==bar,labels.bar==wrong", &[]),
        (r#"name==foo,labels."more complex label""#, &[2]),
        (
            r#"labels."more complex label with \\ and \""==present"#,
            &[4],
        ),
        (
            r#"labels."more complex label with \\ and \"".post==present"#,
            &[5],
        ),
        ("name~=^b", &[1, 3, 6, 7]),
        ("name~=|^b.*o$|", &[7]),
        ("labels.\"foo\"", &[0, 2, 8]),
        ("name ==bar", &[1, 3]),
        ("name== bar", &[1, 3]),
        ("  name==bar", &[1, 3]),
        ("labels.foo~=\"^p\\x72\"", &[2]),
    ];
    for (input, expected) in cases {
        assert_eq!(matching(input), *expected, "{input}");
    }
}

#[test]
fn absent_fields_are_empty_for_not_equal_and_regex() {
    assert_eq!(matching("other!=abc"), [0, 1, 2, 3, 4, 5, 6, 8]);
    assert_eq!(matching("other~=^$"), [0, 1, 2, 3, 4, 5, 8]);
    assert_eq!(matching("other==\"\""), Vec::<usize>::new());
}

#[test]
fn values_may_be_empty_but_present() {
    let record = adapt_fn(|path| (path == ["labels", "x"]).then(String::new));
    assert!(parse("labels.x").unwrap().matches(&record));
    assert!(parse("labels.x==\"\"").unwrap().matches(&record));
    assert!(!parse("labels.y==\"\"").unwrap().matches(&record));
}

#[test]
fn parse_all_ors_and_defaults_to_always() {
    let filter = parse_all(["name==bar", "labels.foo==true"]).unwrap();
    let hits: Vec<usize> = corpus()
        .iter()
        .enumerate()
        .filter(|(_, e)| filter.matches(*e))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(hits, [0, 1, 3]);
    assert!(parse_all(Vec::<String>::new())
        .unwrap()
        .matches(&Entry::default()));
    assert!(parse_all([""]).unwrap().matches(&Entry::default()));
    assert!(parse_all(["name==x", ""])
        .unwrap()
        .matches(&Entry::default()));
    let owned = vec!["name==bar".to_owned()];
    assert!(parse_all(&owned).unwrap().matches(&corpus()[1]));
    let err = parse_all(["name", "name=="]).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument);
    assert!(err.message().contains("\"name==\""), "{err}");
}

#[test]
fn long_field_paths_reach_the_adaptor() {
    let path: Vec<String> = (0..12).map(|i| format!("f{i}")).collect();
    let filter = parse(&path.join(".")).unwrap();
    let want = path.clone();
    assert!(filter.matches(&adapt_fn(move |p| (p == want.as_slice()).then(String::new))));
}

/// Position and message of a parse failure.
fn failure(input: &str) -> (usize, String) {
    let err = parse(input).unwrap_err();
    assert_eq!(err.kind(), Kind::InvalidArgument, "{input}");
    let prefix = "parse error at position ";
    let rest = err
        .message()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{err}"));
    let (pos, rest) = rest.split_once(' ').unwrap();
    let rest = rest
        .strip_prefix(&format!("in {input:?}: "))
        .unwrap_or_else(|| panic!("{err}"));
    (pos.parse().unwrap(), rest.to_owned())
}

#[test]
fn reports_errors_where_containerd_does() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "labels.|foo|==omg_asdf.asdf-qwer",
            7,
            "invalid quote encountered",
        ),
        (
            r#"labels.?"more complex label with \\ and \"".post==present"#,
            7,
            "expected field or quoted",
        ),
        ("name==foo,", 10, "expected field or quoted"),
        ("labels.", 7, "expected field or quoted"),
        ("image~=,id?=?fbaq", 7, "expected value or quoted"),
        ("labels.ns/key==value", 9, "quoted literal not terminated"),
        ("labels.key==/value", 12, "quoted literal not terminated"),
        ("name==a,,", 8, "expected field or quoted"),
        ("name==a b", 7, "unexpected input: ' '"),
        ("name==\"a\"x", 9, "unexpected input: 'x'"),
        ("name ", 5, r#"expected an operator ("=="|"!="|"~=")"#),
        ("name ,id", 5, r#"expected an operator ("=="|"!="|"~=")"#),
        ("labels .foo", 7, r#"expected an operator ("=="|"!="|"~=")"#),
        ("name=a", 4, "unsupported operator \"=\""),
        ("name===a", 4, "unsupported operator \"===\""),
        ("name==/a/", 6, "invalid quote encountered"),
        ("name==", 6, "expected value or quoted"),
        ("name==.a", 6, "expected value or quoted"),
        ("   ", 3, "expected field or quoted"),
        ("a|b", 1, "quoted literal not terminated"),
        ("a|b|", 1, r#"expected an operator ("=="|"!="|"~=")"#),
        ("foo\0bar", 3, "unexpected null"),
        ("foo==\"a\0\"", 5, "unexpected null"),
        ("牛", 0, "expected field or quoted"),
        (r#"labels."\g""#, 7, "illegal escape sequence"),
        (r#"labels."\xaz""#, 7, "illegal numeric escape sequence"),
        (
            r#"labels."\777""#,
            7,
            "unquoting failed: octal escape value > 255",
        ),
        (
            r#"labels."\xff""#,
            7,
            "unquoting failed: escapes do not form valid utf-8",
        ),
    ];
    for &(input, pos, message) in cases {
        assert_eq!(failure(input), (pos, message.to_owned()), "{input}");
    }
}

#[test]
fn rejects_bad_regular_expressions_naming_them() {
    let (pos, message) = failure("name~=[");
    assert_eq!(pos, 6);
    assert!(
        message.starts_with("invalid regular expression \"[\": "),
        "{message}"
    );
    let (pos, message) = failure("a==b,name~=/(x/");
    assert_eq!(pos, 11);
    assert!(
        message.starts_with("invalid regular expression \"(x\": "),
        "{message}"
    );
    assert!(!message.contains('\n'), "{message}");
}

#[test]
fn regular_expressions_are_unicode_aware_like_go() {
    let named =
        |name: &'static str| adapt_fn(move |path| (path == ["name"]).then(|| name.to_owned()));
    assert!(parse("name~=(?i)^ÉCOLE$").unwrap().matches(&named("école")));
    assert!(parse(r"name~=^\pL+$").unwrap().matches(&named("牛")));
    assert!(parse(r"name~=^\p{Greek}+$").unwrap().matches(&named("αβγ")));
}

#[test]
fn printed_selectors_parse_back() {
    for input in [
        "name",
        "labels.\"com.example/x\"==y",
        "a.b.c!=\"x y\"",
        "name~=^b",
        "name~=^\\d+/x$",
        "labels.\"\"==\"\"",
        "labels.\"\\n\"==\"\\\"\"",
    ] {
        let filter = parse(input).unwrap();
        let printed: Vec<String> = filter.alternatives[0]
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(printed.join(","), input);
    }
}

/// A record for property tests: field paths and their values.
type Record = BTreeMap<Vec<String>, String>;

fn lookup(record: &Record) -> impl Adaptor + '_ {
    adapt_fn(move |path: &[&str]| {
        let key: Vec<String> = path.iter().map(|s| (*s).to_owned()).collect();
        record.get(&key).cloned()
    })
}

fn arb_field() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z][a-z0-9_]{0,5}", 1 => "[a-z./ \"\\\\-]{0,6}", 1 => any::<String>()]
}

fn arb_value() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9_.-]{0,6}", 1 => "[a-z ,\"/|=!~.]{0,6}", 1 => any::<String>()]
}

fn arb_selector() -> impl Strategy<Value = Selector> {
    let condition = prop_oneof![
        Just(Condition::Present),
        arb_value().prop_map(Condition::Equal),
        arb_value().prop_map(Condition::NotEqual),
        prop_oneof![
            arb_value().prop_map(|v| regex::escape(&v)),
            prop::sample::select(vec!["^a", "b$", "[ab]+", "^$", "a|b", "(?i)A", r"\d"])
                .prop_map(String::from),
        ]
        .prop_map(|pattern| Condition::Matches(Regex::new(&pattern).unwrap())),
    ];
    (prop::collection::vec(arb_field(), 1..4), condition).prop_map(|(fieldpath, condition)| {
        Selector {
            fieldpath,
            condition,
        }
    })
}

fn same_selector(a: &Selector, b: &Selector) -> bool {
    let same_condition = match (&a.condition, &b.condition) {
        (Condition::Present, Condition::Present) => true,
        (Condition::Equal(x), Condition::Equal(y))
        | (Condition::NotEqual(x), Condition::NotEqual(y)) => x == y,
        (Condition::Matches(x), Condition::Matches(y)) => x.as_str() == y.as_str(),
        _ => false,
    };
    a.fieldpath == b.fieldpath && same_condition
}

proptest! {
    #[test]
    fn parser_never_panics(input in "\\PC{0,40}") {
        if let Err(err) = parse(&input) {
            prop_assert_eq!(err.kind(), Kind::InvalidArgument);
        }
    }

    #[test]
    fn parser_never_panics_on_filter_like_input(input in r#"[a-z.,=!~"/|\\ \x00牛xu0-9]{0,30}"#) {
        if let Err(err) = parse(&input) {
            let message = err.message();
            prop_assert!(message.contains(&format!("{input:?}")), "{}", message);
        }
    }

    #[test]
    fn printed_filters_parse_back_and_match_the_same(
        selectors in prop::collection::vec(arb_selector(), 1..4),
        records in prop::collection::vec(
            prop::collection::btree_map(
                prop::collection::vec(arb_field(), 1..3),
                arb_value(),
                0..4,
            ),
            1..4,
        ),
    ) {
        let text = selectors.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let parsed = parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.alternatives.len(), 1);
        let reparsed = &parsed.alternatives[0];
        prop_assert_eq!(reparsed.len(), selectors.len());
        for (a, b) in selectors.iter().zip(reparsed) {
            prop_assert!(same_selector(a, b), "{:?} != {:?} via {:?}", a, b, text);
        }
        let original = Filter { alternatives: vec![selectors.clone()] };
        // Also try records built from the filter's own paths, which are the
        // interesting ones.
        let mut records = records;
        records.push(selectors.iter().map(|s| (s.fieldpath.clone(), "a".to_owned())).collect());
        for record in &records {
            prop_assert_eq!(parsed.matches(&lookup(record)), original.matches(&lookup(record)));
        }
    }
}
