//! Parsing: Spark SQL text into sqlparser's AST, with syntax errors as
//! [`SluiceError::Parse`] naming line and column (Spark's `PARSE_SYNTAX_ERROR`, with the
//! text and a caret under the position).
//!
//! The dialect is sqlparser's `SparkSqlDialect` with one change: an interval may carry its
//! unit inside the string (`INTERVAL '10 minutes'`), as Spark allows beside
//! `INTERVAL 10 MINUTES`.

use sqlparser::ast::{Expr, Query, Statement};
use sqlparser::dialect::{Dialect, SparkSqlDialect};
use sqlparser::parser::{Parser, ParserError};

use crate::{Result, SluiceError};

/// Spark SQL as `SparkSqlDialect` parses it, except that `INTERVAL` needs no unit after
/// its value (the unit may be inside the string).
#[derive(Debug, Default)]
pub(crate) struct SluiceDialect;

impl Dialect for SluiceDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        SparkSqlDialect.is_delimited_identifier_start(ch)
    }
    fn supports_string_literal_column_alias(&self, explicit: bool) -> bool {
        SparkSqlDialect.supports_string_literal_column_alias(explicit)
    }
    fn supports_string_literal_table_alias(&self, explicit: bool) -> bool {
        SparkSqlDialect.supports_string_literal_table_alias(explicit)
    }
    fn supports_comparison_in_between_low_bound(&self) -> bool {
        SparkSqlDialect.supports_comparison_in_between_low_bound()
    }
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        SparkSqlDialect.identifier_quote_style(identifier)
    }
    fn is_identifier_start(&self, ch: char) -> bool {
        SparkSqlDialect.is_identifier_start(ch)
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        SparkSqlDialect.is_identifier_part(ch)
    }
    fn supports_filter_during_aggregation(&self) -> bool {
        SparkSqlDialect.supports_filter_during_aggregation()
    }
    fn supports_group_by_expr(&self) -> bool {
        SparkSqlDialect.supports_group_by_expr()
    }
    fn supports_long_type_as_bigint(&self) -> bool {
        SparkSqlDialect.supports_long_type_as_bigint()
    }
    fn supports_bang_not_operator(&self) -> bool {
        SparkSqlDialect.supports_bang_not_operator()
    }
    fn supports_nested_comments(&self) -> bool {
        SparkSqlDialect.supports_nested_comments()
    }
    fn supports_struct_literal(&self) -> bool {
        SparkSqlDialect.supports_struct_literal()
    }
    fn supports_select_wildcard_except(&self) -> bool {
        SparkSqlDialect.supports_select_wildcard_except()
    }
    fn supports_cte_without_as(&self) -> bool {
        SparkSqlDialect.supports_cte_without_as()
    }
    fn require_interval_qualifier(&self) -> bool {
        false
    }
    /// Spark reads `'\\.'` as `\.` (`spark.sql.parser.escapedStringLiterals` is false).
    fn supports_string_literal_backslash_escape(&self) -> bool {
        true
    }
    fn parse_infix(&self, parser: &mut Parser, expr: &Expr, precedence: u8) -> Option<Result<Expr, ParserError>> {
        SparkSqlDialect.parse_infix(parser, expr, precedence)
    }
}

/// Parses one query (a trailing `;` is allowed).
///
/// # Errors
/// [`SluiceError::Parse`] for a syntax error, or when the text holds no query, several
/// statements, or a statement other than a query.
pub(crate) fn parse(text: &str) -> Result<Query> {
    let statements = Parser::new(&SluiceDialect)
        .with_recursion_limit(64)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| parse_error(text, &e))?;
    let mut it = statements.into_iter();
    match (it.next(), it.next()) {
        (Some(Statement::Query(q)), None) => Ok(*q),
        (None, _) => Err(syntax_error(text, 1, 1, "the text holds no query")),
        (Some(_), Some(_)) => Err(syntax_error(text, 1, 1, "one query at a time: the text holds several statements")),
        (Some(other), None) => {
            let kind = other.to_string().split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            Err(syntax_error(
                text,
                1,
                1,
                &format!("only queries (SELECT ...) run here, not `{kind}`: register views with create_or_replace_temp_view"),
            ))
        }
    }
}

/// sqlparser's message ends in " at Line: L, Column: C" when it knows the position.
fn parse_error(text: &str, e: &ParserError) -> SluiceError {
    let msg = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m.clone(),
        ParserError::RecursionLimitExceeded => "the query nests too deeply (more than 64 levels)".into(),
    };
    let (detail, line, column) = match msg.rfind(" at Line: ") {
        Some(i) => {
            let pos = &msg[i + " at Line: ".len()..];
            let mut parts = pos.split(", Column: ");
            let line = parts.next().and_then(|l| l.trim().parse::<u64>().ok()).unwrap_or(1);
            let column = parts.next().and_then(|c| c.trim().parse::<u64>().ok()).unwrap_or(1);
            (msg[..i].to_string(), line, column)
        }
        None => (msg, 1, 1),
    };
    let detail = detail.trim_start_matches("sql parser error: ").to_string();
    syntax_error(text, line, column, &detail)
}

/// A [`SluiceError::Parse`] at `line`/`column` (from 1) in Spark's shape:
/// `[PARSE_SYNTAX_ERROR] Syntax error at or near 'x': <detail> (line 1, column 1)` and the
/// text with a caret line.
pub(crate) fn syntax_error(text: &str, line: u64, column: u64, detail: &str) -> SluiceError {
    let src_line = text.lines().nth(line.saturating_sub(1) as usize).unwrap_or("");
    let start = column.saturating_sub(1) as usize;
    let near: String = src_line.chars().skip(start).take_while(|c| !c.is_whitespace()).take(40).collect();
    let near = if near.is_empty() { "end of input".to_string() } else { format!("'{near}'") };
    let width = near.chars().count().saturating_sub(2).clamp(1, 40);
    let mut quoted = String::new();
    for (i, l) in text.lines().enumerate() {
        quoted.push_str(l);
        quoted.push('\n');
        if i + 1 == line as usize {
            quoted.push_str(&" ".repeat(src_line.chars().take(start).count()));
            quoted.push_str(&"^".repeat(width));
            quoted.push('\n');
        }
    }
    SluiceError::Parse {
        message: format!(
            "[PARSE_SYNTAX_ERROR] Syntax error at or near {near}: {detail} (line {line}, column {column})\n\n== SQL ==\n{quoted}"
        ),
        line,
        column,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_syntax_error_names_line_and_column() {
        let Err(SluiceError::Parse { message, line, column }) = parse("SELECT a,\n  b FRM edits") else {
            panic!("expected a parse error")
        };
        // `b FRM` is `b AS FRM`; `edits` is where the text stops being SQL.
        assert_eq!((line, column), (2, 9), "{message}");
        assert!(message.contains("at or near 'edits'"), "{message}");
        assert!(message.contains("  b FRM edits\n        ^^^^^"), "{message}");
    }

    #[test]
    fn intervals_parse_with_the_unit_in_or_after_the_string() {
        parse("SELECT t + INTERVAL 10 MINUTES, t - interval '1 hour', INTERVAL '5' SECOND FROM x").unwrap();
    }

    #[test]
    fn only_one_query() {
        assert!(matches!(parse(""), Err(SluiceError::Parse { .. })));
        assert!(matches!(parse("SELECT 1; SELECT 2"), Err(SluiceError::Parse { .. })));
        assert!(matches!(parse("DROP TABLE x"), Err(SluiceError::Parse { .. })));
        parse("SELECT 1;").unwrap();
    }
}
