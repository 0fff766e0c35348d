//! Names: which column of the plan a SQL name (`channel`, `e.channel`, `*`, `c.*`) means.
//!
//! A [`Scope`] lists the columns a clause can see, each with the qualifier it answers to
//! (a view's name or alias, a subquery's alias), the name SQL shows, and the physical
//! column of the Polars frame underneath (a join renames a right-hand column whose name the
//! left side already has to `<name>_right`). Names compare case-insensitively, as in
//! Spark. An unknown name fails with Spark's `UNRESOLVED_COLUMN.WITH_SUGGESTION`, naming
//! up to five columns closest by edit distance; an ambiguous one with
//! `AMBIGUOUS_REFERENCE`.

use polars::prelude::DataType;
use sqlparser::ast::Spanned;
use sqlparser::tokenizer::Span;

use crate::SluiceError;

/// One column a clause can see.
#[derive(Debug, Clone)]
pub(crate) struct Field {
    /// The view name or alias it can be qualified with (`e` in `e.channel`).
    pub qualifier: Option<String>,
    /// The name SQL shows (and `*` outputs).
    pub name: String,
    /// The column of the frame underneath.
    pub column: String,
    /// Its type.
    pub dtype: DataType,
    /// Reachable only qualified (the right key of `JOIN ... USING`), and not in `*`.
    pub qualified_only: bool,
}

/// The columns a clause can see, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Scope {
    pub fields: Vec<Field>,
}

/// Spark's `; line L pos P` suffix (P counts from 0) for an AST node's span.
pub(crate) fn at(span: Span) -> String {
    if span.start.line == 0 {
        return String::new();
    }
    format!("; line {} pos {}", span.start.line, span.start.column.saturating_sub(1))
}

/// An analysis error at `node`'s position.
pub(crate) fn error_at(node: &impl Spanned, message: impl std::fmt::Display) -> SluiceError {
    SluiceError::analysis(format!("{message}{}", at(node.span())))
}

/// `name` in back quotes, as Spark quotes identifiers in messages.
pub(crate) fn quote(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Levenshtein distance over characters.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = cur;
        }
    }
    row[b.len()]
}

/// Up to five of `candidates` closest to `name` (edit distance, then their order).
pub(crate) fn suggestions<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut c: Vec<(usize, usize, &str)> = candidates
        .into_iter()
        .filter(|c| seen.insert(c.to_string()))
        .enumerate()
        .map(|(i, c)| (levenshtein(name, c), i, c))
        .collect();
    c.sort();
    c.into_iter().take(5).map(|(_, _, c)| c.to_string()).collect()
}

impl Scope {
    /// The fields of a view or subquery named `qualifier`.
    pub fn from_schema(qualifier: Option<&str>, schema: &polars::prelude::Schema) -> Scope {
        Scope {
            fields: schema
                .iter()
                .map(|(n, d)| Field {
                    qualifier: qualifier.map(str::to_string),
                    name: n.to_string(),
                    column: n.to_string(),
                    dtype: d.clone(),
                    qualified_only: false,
                })
                .collect(),
        }
    }

    /// The same columns, all answering to `qualifier` (a subquery's alias).
    pub fn requalified(&self, qualifier: Option<&str>) -> Scope {
        let mut s = self.clone();
        for f in &mut s.fields {
            f.qualifier = qualifier.map(str::to_string);
        }
        s
    }

    /// The field `parts` names (`[name]` or `[qualifier, name]`), or `None` when no field
    /// matches.
    ///
    /// # Errors
    /// `AMBIGUOUS_REFERENCE` when several fields match.
    pub fn lookup(&self, parts: &[String], node: &impl Spanned) -> Result<Option<&Field>, SluiceError> {
        let matches: Vec<&Field> = match parts {
            [name] => self
                .fields
                .iter()
                .filter(|f| !f.qualified_only && f.name.eq_ignore_ascii_case(name))
                .collect(),
            [q, name] => self
                .fields
                .iter()
                .filter(|f| {
                    f.name.eq_ignore_ascii_case(name) && f.qualifier.as_deref().is_some_and(|fq| fq.eq_ignore_ascii_case(q))
                })
                .collect(),
            _ => vec![],
        };
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            many => {
                // The same physical column reached twice (e.g. a USING key) is not ambiguous.
                if many.iter().all(|f| f.column == many[0].column) {
                    return Ok(Some(many[0]));
                }
                let names: Vec<String> = many
                    .iter()
                    .map(|f| match &f.qualifier {
                        Some(q) => format!("{}.{}", quote(q), quote(&f.name)),
                        None => quote(&f.name),
                    })
                    .collect();
                Err(error_at(
                    node,
                    format!(
                        "[AMBIGUOUS_REFERENCE] Reference {} is ambiguous, could be: [{}].",
                        parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join("."),
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    /// Spark's `UNRESOLVED_COLUMN.WITH_SUGGESTION` for `parts`, naming the closest
    /// columns of this scope (and `extra` names, e.g. select aliases).
    pub fn unresolved(&self, parts: &[String], node: &impl Spanned, extra: &[String]) -> SluiceError {
        let name = parts.last().map(String::as_str).unwrap_or("");
        let mut names: Vec<&str> = self.fields.iter().filter(|f| !f.qualified_only).map(|f| f.name.as_str()).collect();
        names.extend(extra.iter().map(String::as_str));
        let shown: Vec<String> = suggestions(name, names).iter().map(|s| quote(s)).collect();
        let full = parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join(".");
        if shown.is_empty() {
            return error_at(
                node,
                format!("[UNRESOLVED_COLUMN.WITHOUT_SUGGESTION] A column or function parameter with name {full} cannot be resolved."),
            );
        }
        error_at(
            node,
            format!(
                "[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column or function parameter with name {full} cannot be resolved. \
                 Did you mean one of the following? [{}].",
                shown.join(", ")
            ),
        )
    }

    /// The fields `*` (no qualifier) or `q.*` expands to.
    pub fn star(&self, qualifier: Option<&str>) -> Vec<&Field> {
        self.fields
            .iter()
            .filter(|f| !f.qualified_only)
            .filter(|f| match qualifier {
                None => true,
                Some(q) => f.qualifier.as_deref().is_some_and(|fq| fq.eq_ignore_ascii_case(q)),
            })
            .collect()
    }

    /// The polars schema of the physical columns (for type inference).
    pub fn physical_schema(&self) -> polars::prelude::Schema {
        let mut s = polars::prelude::Schema::default();
        for f in &self.fields {
            s.with_column(f.column.as_str().into(), f.dtype.clone());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_are_the_closest_names() {
        let cols = ["time", "channel", "page", "user", "isRobot", "isNew", "delta", "added", "deleted"];
        let s = suggestions("nosuch", cols);
        assert_eq!(&s[..2], ["user", "isNew"]);
        assert_eq!(s.len(), 5);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
