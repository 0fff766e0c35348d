//! Rows compared as multisets, for the contract suites (`source_contract.rs`,
//! `sink_contract.rs`, `operator_contract.rs`).
//!
//! A row is rendered exactly: every column by name with its value's type tag, floats at
//! full precision, every byte of binaries, structs field by field and lists element by
//! element (Polars' `Display` truncates long values and lists, so it is not used). Two
//! frames hold the same rows when each rendered row occurs as often in both, whatever
//! their order.

#![allow(dead_code)] // each suite uses a part

use std::collections::BTreeMap;

use polars::prelude::*;

/// The rendered values of `s`, one string per row.
fn cells(s: &Series) -> Vec<String> {
    match s.dtype() {
        DataType::Struct(_) => {
            let fields = s.struct_().expect("a struct column").fields_as_series();
            let rendered: Vec<(String, Vec<String>)> =
                fields.iter().map(|f| (f.name().to_string(), cells(f))).collect();
            let valid = s.is_not_null();
            (0..s.len())
                .map(|i| {
                    if !valid.get(i).unwrap_or(false) {
                        return "Null".to_string();
                    }
                    let inner: Vec<String> = rendered.iter().map(|(n, v)| format!("{n}: {}", v[i])).collect();
                    format!("{{{}}}", inner.join(", "))
                })
                .collect()
        }
        DataType::List(_) => {
            let lists = s.list().expect("a list column");
            (0..s.len())
                .map(|i| match lists.get_as_series(i) {
                    None => "Null".to_string(),
                    Some(inner) => format!("[{}]", cells(&inner).join(", ")),
                })
                .collect()
        }
        _ => (0..s.len()).map(|i| format!("{:?}", s.get(i).expect("row in range"))).collect(),
    }
}

/// Each rendered row of `df` with how often it occurs.
pub fn multiset(df: &DataFrame) -> BTreeMap<String, usize> {
    let columns: Vec<(String, Vec<String>)> =
        df.columns().iter().map(|c| (c.name().to_string(), cells(c.as_materialized_series()))).collect();
    let mut out = BTreeMap::new();
    for i in 0..df.height() {
        let row: Vec<String> = columns.iter().map(|(n, v)| format!("{n}={}", v[i])).collect();
        *out.entry(row.join(", ")).or_insert(0) += 1;
    }
    out
}

/// The rows of `frames`, all of them, as one multiset.
pub fn multiset_of<'a>(frames: impl IntoIterator<Item = &'a DataFrame>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for df in frames {
        for (row, n) in multiset(df) {
            *out.entry(row).or_insert(0) += n;
        }
    }
    out
}

/// Panics with `what` and the rows that differ (at most 10 of each side) unless `got` and
/// `want` hold the same rows as often.
#[track_caller]
pub fn assert_same(what: &str, got: &BTreeMap<String, usize>, want: &BTreeMap<String, usize>) {
    if got == want {
        return;
    }
    let diff = |a: &BTreeMap<String, usize>, b: &BTreeMap<String, usize>| -> Vec<String> {
        a.iter()
            .filter_map(|(row, n)| {
                let m = b.get(row).copied().unwrap_or(0);
                (*n > m).then(|| format!("  {}x {row}", n - m))
            })
            .take(10)
            .collect()
    };
    let count = |m: &BTreeMap<String, usize>| m.values().sum::<usize>();
    panic!(
        "{what}: {} rows, expected {}\nunexpected (or too often):\n{}\nmissing (or too rarely):\n{}",
        count(got),
        count(want),
        diff(got, want).join("\n"),
        diff(want, got).join("\n"),
    );
}

/// [`assert_same`] over two frames.
#[track_caller]
pub fn assert_same_rows(what: &str, got: &DataFrame, want: &DataFrame) {
    assert_same(what, &multiset(got), &multiset(want));
}
