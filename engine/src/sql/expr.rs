//! SQL expressions into Polars [`Expr`]s, with Spark's semantics: `/` is a double and
//! null for a zero divisor, integer literals are `int` (`bigint` when they need it),
//! comparisons of a timestamp with a string literal read the string as a timestamp,
//! `CAST` of a timestamp to a number gives seconds, `LIKE` is an anchored pattern,
//! three-valued `AND` / `OR` / `NOT` / `IN`.
//!
//! A [`Translator`] works in one of two contexts:
//! * per row (WHERE, SELECT without aggregation, the arguments of aggregate functions,
//!   join conditions): a name is a column of the [`Scope`];
//! * after aggregation (SELECT, HAVING and ORDER BY of a grouped query): an expression
//!   equal to a grouping key is that key's column, an aggregate call becomes a column of
//!   the aggregation ([`AggState`] collects them), anything else is built over those.

use std::cell::RefCell;

use polars::prelude::*;
use sqlparser::ast::{
    BinaryOperator, DataType as SqlType, DateTimeField, Expr as SqlExpr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, TrimWhereField, UnaryOperator, Value,
};

use super::functions;
use super::resolve::{error_at, quote, Scope};
use crate::time::interval::parse_interval_micros;
use crate::Result;

/// The µs timestamp type of the engine.
pub(crate) fn ts_type() -> DataType {
    DataType::Datetime(TimeUnit::Microseconds, None)
}

/// A grouping key: its expression over the input and the column it becomes.
#[derive(Clone)]
pub(crate) struct Key {
    pub expr: Expr,
    pub name: String,
}

/// What an aggregation computes: keys, and the aggregate expressions found so far.
#[derive(Default)]
pub(crate) struct AggState {
    pub keys: Vec<Key>,
    /// (expression over the input, output column).
    pub aggs: Vec<(Expr, String)>,
    /// The column name the next aggregate found at the top of a select item gets.
    pub preferred_name: Option<String>,
    /// Output names that an aggregate must not take.
    pub reserved: Vec<String>,
}

impl AggState {
    fn register(&mut self, e: Expr) -> Expr {
        if let Some((_, name)) = self.aggs.iter().find(|(x, _)| *x == e) {
            return col(name.as_str());
        }
        let taken = |n: &str, s: &AggState| {
            s.keys.iter().any(|k| k.name == n) || s.aggs.iter().any(|(_, a)| a == n) || s.reserved.iter().any(|r| r == n)
        };
        let name = match self.preferred_name.take() {
            Some(n) if !taken(&n, self) => n,
            _ => {
                let mut i = self.aggs.len();
                while taken(&format!("__a{i}"), self) {
                    i += 1;
                }
                format!("__a{i}")
            }
        };
        self.aggs.push((e, name.clone()));
        col(name.as_str())
    }
}

/// Translates SQL expressions over a [`Scope`] (see the module docs).
pub(crate) struct Translator<'a> {
    pub scope: &'a Scope,
    /// Whether the query reads a stream (aggregates then use the engine's incremental forms).
    pub streaming: bool,
    /// After aggregation: the keys and aggregates.
    pub agg: Option<&'a RefCell<AggState>>,
    /// Select aliases and their expressions (HAVING, ORDER BY and GROUP BY may name them).
    pub aliases: &'a [(String, SqlExpr)],
    /// The indexes of the scope's fields that names resolved to.
    pub used: RefCell<Vec<usize>>,
    depth: RefCell<usize>,
}

fn lit_i64(v: i64) -> Expr {
    lit(v)
}

impl<'a> Translator<'a> {
    pub fn new(scope: &'a Scope, streaming: bool, aliases: &'a [(String, SqlExpr)]) -> Self {
        Translator { scope, streaming, agg: None, aliases, used: RefCell::new(vec![]), depth: RefCell::new(0) }
    }

    pub fn with_agg(mut self, agg: &'a RefCell<AggState>) -> Self {
        self.agg = Some(agg);
        self
    }

    /// The same scope, per row.
    pub fn row(&self) -> Translator<'a> {
        Translator::new(self.scope, self.streaming, self.aliases)
    }

    /// The type `e` has over the scope's columns (or, after aggregation, over the keys and
    /// aggregates), if it type-checks.
    pub fn dtype(&self, e: &Expr) -> Option<DataType> {
        let lf = DataFrame::empty_with_schema(&self.scope.physical_schema()).lazy();
        let lf = match self.agg {
            Some(agg) => {
                let agg = agg.borrow();
                let keys: Vec<Expr> = agg.keys.iter().map(|k| k.expr.clone().alias(k.name.as_str())).collect();
                let aggs: Vec<Expr> = agg.aggs.iter().map(|(a, n)| a.clone().alias(n.as_str())).collect();
                if keys.is_empty() {
                    lf.select(aggs)
                } else {
                    lf.group_by(keys).agg(aggs)
                }
            }
            None => lf,
        };
        let schema = lf.select([e.clone().alias("__t")]).collect_schema().ok()?;
        schema.get("__t").cloned()
    }

    /// Translates `e`.
    ///
    /// # Errors
    /// Analysis errors naming the position: unknown names (with candidates), unknown
    /// functions, wrong arguments, aggregates where none may be.
    pub fn expr(&self, e: &SqlExpr) -> Result<Expr> {
        {
            let mut d = self.depth.borrow_mut();
            *d += 1;
            if *d > 200 {
                *d -= 1;
                return Err(error_at(e, "the expression nests too deeply"));
            }
        }
        let out = self.expr_inner(e);
        *self.depth.borrow_mut() -= 1;
        out
    }

    fn expr_inner(&self, e: &SqlExpr) -> Result<Expr> {
        if let Some(agg) = self.agg {
            // After aggregation: a grouping key's expression is its column.
            if !matches!(e, SqlExpr::Value(_)) && !contains_aggregate(e) {
                let row = self.row();
                if let Ok(x) = row.expr(e) {
                    let state = agg.borrow();
                    if let Some(k) = state.keys.iter().find(|k| k.expr == x) {
                        return Ok(col(k.name.as_str()));
                    }
                    if row.used.borrow().is_empty() {
                        return Ok(x); // no column: a constant
                    }
                }
            }
        }
        match e {
            SqlExpr::Identifier(id) => self.column(std::slice::from_ref(&id.value), e),
            SqlExpr::CompoundIdentifier(ids) => self.column(&ids.iter().map(|i| i.value.clone()).collect::<Vec<_>>(), e),
            SqlExpr::Value(v) => value(&v.value, e),
            SqlExpr::Nested(inner) => self.expr(inner),
            SqlExpr::BinaryOp { left, op, right } => self.binary(left, op, right, e),
            SqlExpr::UnaryOp { op, expr } => {
                let x = self.expr(expr)?;
                Ok(match op {
                    UnaryOperator::Not | UnaryOperator::BangNot => x.not(),
                    UnaryOperator::Minus => match expr.as_ref() {
                        SqlExpr::Value(v) => value(&negate_number(&v.value), e)?,
                        _ => lit(0i32) - x,
                    },
                    UnaryOperator::Plus => x,
                    other => return Err(error_at(e, format!("the operator {other} is not supported"))),
                })
            }
            SqlExpr::IsNull(x) => Ok(self.expr(x)?.is_null()),
            SqlExpr::IsNotNull(x) => Ok(self.expr(x)?.is_not_null()),
            SqlExpr::IsTrue(x) => Ok(self.expr(x)?.eq(lit(true)).fill_null(lit(false))),
            SqlExpr::IsNotTrue(x) => Ok(self.expr(x)?.eq(lit(true)).fill_null(lit(false)).not()),
            SqlExpr::IsFalse(x) => Ok(self.expr(x)?.eq(lit(false)).fill_null(lit(false))),
            SqlExpr::IsNotFalse(x) => Ok(self.expr(x)?.eq(lit(false)).fill_null(lit(false)).not()),
            SqlExpr::IsDistinctFrom(a, b) | SqlExpr::IsNotDistinctFrom(a, b) => {
                let (a, b) = (self.expr(a)?, self.expr(b)?);
                let same = a.clone().eq_missing(b);
                Ok(if matches!(e, SqlExpr::IsDistinctFrom(..)) { same.not() } else { same })
            }
            SqlExpr::Between { expr, negated, low, high } => {
                let x = self.expr(expr)?;
                let (lo, hi) = (self.expr(low)?, self.expr(high)?);
                let (x1, lo) = self.coerce(x.clone(), lo);
                let (x2, hi) = self.coerce(x, hi);
                let within = x1.gt_eq(lo).and(x2.lt_eq(hi));
                Ok(if *negated { within.not() } else { within })
            }
            SqlExpr::In { expr, target, negated, .. } => {
                let list = match target {
                    sqlparser::ast::InTarget::List(list) => list,
                    _ => return Err(error_at(e, "IN with a subquery is not supported: join with the subquery instead")),
                };
                let x = self.expr(expr)?;
                let mut terms = Vec::with_capacity(list.len());
                for item in list {
                    let (a, b) = self.coerce(x.clone(), self.expr(item)?);
                    terms.push(a.eq(b));
                }
                let any = balanced(terms, |a, b| a.or(b)).unwrap_or_else(|| lit(false));
                Ok(if *negated { any.not() } else { any })
            }
            SqlExpr::Like { negated, expr, pattern, escape_char, any: false } | SqlExpr::ILike { negated, expr, pattern, escape_char, any: false } => {
                let esc = match escape_char.as_deref() {
                    None => '\\',
                    Some(SqlExpr::Value(v)) => match &v.value {
                        Value::SingleQuotedString(s) if s.chars().count() == 1 => s.chars().next().unwrap_or('\\'),
                        _ => return Err(error_at(e, "the LIKE escape must be one character")),
                    },
                    Some(other) => return Err(error_at(other, "the LIKE escape must be a string literal")),
                };
                let pat = string_literal(pattern).ok_or_else(|| error_at(pattern.as_ref(), "LIKE needs a string literal pattern"))?;
                let mut re = like_to_regex(&pat, esc);
                if matches!(e, SqlExpr::ILike { .. }) {
                    re = format!("(?i){re}");
                }
                let m = self.expr(expr)?.str().contains(lit(re), true);
                Ok(if *negated { m.not() } else { m })
            }
            SqlExpr::RLike { negated, expr, pattern, .. } => {
                let m = self.expr(expr)?.str().contains(self.expr(pattern)?, true);
                Ok(if *negated { m.not() } else { m })
            }
            SqlExpr::Case { operand, conditions, else_result, .. } => {
                let op = operand.as_deref().map(|o| self.expr(o)).transpose()?;
                let otherwise = match else_result {
                    Some(x) => self.expr(x)?,
                    None => lit(NULL),
                };
                let mut acc = otherwise;
                for cw in conditions.iter().rev() {
                    let c = self.expr(&cw.condition)?;
                    let c = match &op {
                        Some(o) => {
                            let (a, b) = self.coerce(o.clone(), c);
                            a.eq(b)
                        }
                        None => c,
                    };
                    acc = when(c).then(self.expr(&cw.result)?).otherwise(acc);
                }
                Ok(acc)
            }
            SqlExpr::Cast { expr, data_type, format, .. } => {
                if format.is_some() {
                    return Err(error_at(e, "CAST ... FORMAT is not supported"));
                }
                let target = sql_type(data_type).ok_or_else(|| {
                    error_at(e, format!("[UNSUPPORTED_DATATYPE] Unsupported data type {data_type}: use string, int, bigint, double, float, boolean, timestamp or date"))
                })?;
                let x = self.expr(expr)?;
                Ok(self.cast(x, target))
            }
            SqlExpr::Interval(iv) => {
                let text = match (string_literal(&iv.value), iv.value.as_ref()) {
                    (Some(s), _) => s,
                    (None, SqlExpr::Value(v)) => match &v.value {
                        Value::Number(n, _) => n.clone(),
                        _ => return Err(error_at(e, "an INTERVAL needs a number or a string")),
                    },
                    (None, SqlExpr::UnaryOp { op: UnaryOperator::Minus, expr }) => match expr.as_ref() {
                        SqlExpr::Value(v) => match &v.value {
                            Value::Number(n, _) => format!("-{n}"),
                            _ => return Err(error_at(e, "an INTERVAL needs a number or a string")),
                        },
                        _ => return Err(error_at(e, "an INTERVAL needs a number or a string")),
                    },
                    _ => return Err(error_at(e, "an INTERVAL needs a literal value")),
                };
                if iv.last_field.is_some() {
                    return Err(error_at(e, "INTERVAL ... TO ... is not supported: write e.g. INTERVAL '1 hour 30 minutes'"));
                }
                let text = match &iv.leading_field {
                    Some(f) => format!("{text} {}", field_unit(f)),
                    None => text,
                };
                let us = parse_interval_micros(&text).map_err(|err| error_at(e, err))?;
                Ok(lit(us).cast(DataType::Duration(TimeUnit::Microseconds)))
            }
            SqlExpr::TypedString(ts) => {
                let s = match &ts.value.value {
                    Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                    _ => return Err(error_at(e, "a typed literal needs a string")),
                };
                let target = sql_type(&ts.data_type).ok_or_else(|| error_at(e, format!("unsupported type {}", ts.data_type)))?;
                typed_literal(&s, &target).ok_or_else(|| error_at(e, format!("cannot read {s:?} as {}", ts.data_type)))
            }
            SqlExpr::Substring { expr, substring_from, substring_for, .. } => {
                let s = self.expr(expr)?;
                let pos = match substring_from {
                    Some(p) => self.expr(p)?,
                    None => lit(1i32),
                };
                let len = substring_for.as_deref().map(|l| self.expr(l)).transpose()?;
                Ok(functions::substring(s, pos, len))
            }
            SqlExpr::Trim { trim_where, trim_what, expr, trim_characters } => {
                if trim_characters.is_some() {
                    return Err(error_at(e, "trim with several character sets is not supported"));
                }
                let s = self.expr(expr)?;
                let what = match trim_what {
                    Some(w) => self.expr(w)?,
                    None => lit(" "),
                };
                Ok(match trim_where {
                    Some(TrimWhereField::Leading) => s.str().strip_chars_start(what),
                    Some(TrimWhereField::Trailing) => s.str().strip_chars_end(what),
                    _ => s.str().strip_chars(what),
                })
            }
            SqlExpr::Ceil { expr, .. } => Ok(functions::ceil_floor(self.expr(expr)?, true, self)),
            SqlExpr::Floor { expr, .. } => Ok(functions::ceil_floor(self.expr(expr)?, false, self)),
            SqlExpr::Extract { field, expr, .. } => {
                let name = field_unit(field).trim_end_matches('s').to_string();
                functions::date_part(&name, self.expr(expr)?).ok_or_else(|| error_at(e, format!("EXTRACT({field}) is not supported")))
            }
            SqlExpr::Function(f) => self.function(f, e),
            SqlExpr::Wildcard(_) | SqlExpr::QualifiedWildcard(..) => Err(error_at(e, "`*` is only allowed in a select list or in count(*)")),
            SqlExpr::Exists { .. } | SqlExpr::Subquery(_) => {
                Err(error_at(e, "subquery expressions are not supported: join with the subquery in FROM instead"))
            }
            other => Err(error_at(e, format!("the expression `{other}` is not supported in Sluice's SQL"))),
        }
    }

    /// A column name: a field of the scope; after aggregation a key, or a select alias.
    fn column(&self, parts: &[String], node: &SqlExpr) -> Result<Expr> {
        if let Some(agg) = self.agg {
            // Not a key (checked before): maybe an alias of a select item.
            if let [name] = parts {
                if let Some((_, aliased)) = self.aliases.iter().find(|(a, x)| a.eq_ignore_ascii_case(name) && !refers_to(x, name)) {
                    return self.expr(aliased);
                }
            }
            // A column outside the keys and aggregates.
            let row = self.row();
            if row.expr(node).is_ok() {
                let _ = agg;
                return Err(error_at(
                    node,
                    format!(
                        "[MISSING_AGGREGATION] The non-aggregating expression {} is based on columns which are not \
                         participating in the GROUP BY clause. Add the columns or the expression to the GROUP BY, \
                         aggregate the expression, or use \"any_value({})\" if you do not care which of the values \
                         within a group is returned.",
                        parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join("."),
                        parts.join(".")
                    ),
                ));
            }
        }
        match self.scope.lookup(parts, node)? {
            Some(f) => {
                if let Some(i) = self.scope.fields.iter().position(|g| std::ptr::eq(g, f)) {
                    self.used.borrow_mut().push(i);
                }
                Ok(col(f.column.as_str()))
            }
            None => {
                // A select alias used in WHERE or GROUP BY is resolved by the planner; here
                // it is only a candidate.
                let extra: Vec<String> = self.aliases.iter().map(|(a, _)| a.clone()).collect();
                Err(self.scope.unresolved(parts, node, &extra))
            }
        }
    }

    fn binary(&self, l: &SqlExpr, op: &BinaryOperator, r: &SqlExpr, node: &SqlExpr) -> Result<Expr> {
        let (a, b) = (self.expr(l)?, self.expr(r)?);
        let cmp = |a: Expr, b: Expr| self.coerce(a, b);
        Ok(match op {
            BinaryOperator::Plus => a + b,
            BinaryOperator::Minus => a - b,
            BinaryOperator::Multiply => a * b,
            BinaryOperator::Divide => {
                let (a, b) = (a.cast(DataType::Float64), b.cast(DataType::Float64));
                when(b.clone().eq(lit(0.0))).then(lit(NULL).cast(DataType::Float64)).otherwise(a / b)
            }
            BinaryOperator::Modulo => when(b.clone().eq(lit(0i32))).then(lit(NULL)).otherwise(a % b),
            BinaryOperator::MyIntegerDivide | BinaryOperator::DuckIntegerDivide => {
                let (a, b) = (a.cast(DataType::Int64), b.cast(DataType::Int64));
                when(b.clone().eq(lit(0i64))).then(lit(NULL).cast(DataType::Int64)).otherwise(a.floor_div(b))
            }
            BinaryOperator::StringConcat => concat_str([a.cast(DataType::String), b.cast(DataType::String)], "", false),
            BinaryOperator::Eq => {
                let (a, b) = cmp(a, b);
                a.eq(b)
            }
            BinaryOperator::NotEq => {
                let (a, b) = cmp(a, b);
                a.neq(b)
            }
            BinaryOperator::Lt => {
                let (a, b) = cmp(a, b);
                a.lt(b)
            }
            BinaryOperator::LtEq => {
                let (a, b) = cmp(a, b);
                a.lt_eq(b)
            }
            BinaryOperator::Gt => {
                let (a, b) = cmp(a, b);
                a.gt(b)
            }
            BinaryOperator::GtEq => {
                let (a, b) = cmp(a, b);
                a.gt_eq(b)
            }
            BinaryOperator::Spaceship => {
                let (a, b) = cmp(a, b);
                a.eq_missing(b)
            }
            BinaryOperator::And => a.and(b),
            BinaryOperator::Or => a.or(b),
            other => return Err(error_at(node, format!("the operator {other} is not supported"))),
        })
    }

    /// Spark's implicit casts for comparisons: a string literal against a timestamp or
    /// date is read as one.
    pub fn coerce(&self, a: Expr, b: Expr) -> (Expr, Expr) {
        let string_lit = |e: &Expr| match e {
            Expr::Literal(v) => v.extract_str().map(str::to_string),
            _ => None,
        };
        if let Some(s) = string_lit(&b) {
            if let Some(t @ (DataType::Datetime(..) | DataType::Date)) = self.dtype(&a) {
                if let Some(x) = typed_literal(&s, &t) {
                    return (a, x);
                }
            }
        }
        if let Some(s) = string_lit(&a) {
            if let Some(t @ (DataType::Datetime(..) | DataType::Date)) = self.dtype(&b) {
                if let Some(x) = typed_literal(&s, &t) {
                    return (x, b);
                }
            }
        }
        (a, b)
    }

    /// Spark's `CAST`: a timestamp to a number is seconds since the epoch (and back); a
    /// string to a timestamp or date is parsed; anything that does not convert is null.
    pub fn cast(&self, x: Expr, target: DataType) -> Expr {
        let from = self.dtype(&x);
        match (&from, &target) {
            (Some(DataType::Datetime(..)), t) if t.is_integer() => {
                x.cast(ts_type()).cast(DataType::Int64).floor_div(lit_i64(1_000_000)).cast(target)
            }
            (Some(DataType::Datetime(..)), t) if t.is_float() => {
                (x.cast(ts_type()).cast(DataType::Int64).cast(DataType::Float64) / lit(1_000_000.0)).cast(target)
            }
            (Some(f), DataType::Datetime(..)) if f.is_integer() => (x.cast(DataType::Int64) * lit_i64(1_000_000)).cast(ts_type()),
            (Some(f), DataType::Datetime(..)) if f.is_float() => {
                (x.cast(DataType::Float64) * lit(1_000_000.0)).cast(DataType::Int64).cast(ts_type())
            }
            (Some(DataType::String), DataType::Datetime(..)) => functions::parse_timestamp(x, None),
            (Some(DataType::String), DataType::Date) => functions::parse_timestamp(x, None).cast(DataType::Date),
            (Some(DataType::String), DataType::Boolean) => {
                let s = x.str().strip_chars(lit(" ")).str().to_lowercase();
                let any_of = |words: &[&str]| {
                    words.iter().map(|w| s.clone().eq(lit(*w))).reduce(|a, b| a.or(b)).unwrap_or_else(|| lit(false))
                };
                when(any_of(&["true", "t", "yes", "y", "1"]))
                    .then(lit(true))
                    .when(any_of(&["false", "f", "no", "n", "0"]))
                    .then(lit(false))
                    .otherwise(lit(NULL).cast(DataType::Boolean))
            }
            (Some(DataType::String), t) if t.is_integer() => {
                // Spark reads "1.9" as 1 when casting a string to an integer.
                x.str().strip_chars(lit(" ")).cast(DataType::Float64).cast(target)
            }
            (Some(f), DataType::Boolean) if f.is_primitive_numeric() => x.neq(lit(0i32)),
            _ => x.cast(target),
        }
    }

    fn function(&self, f: &Function, node: &SqlExpr) -> Result<Expr> {
        let name = function_name(f).ok_or_else(|| error_at(node, "a function needs a plain name"))?;
        if f.over.is_some() {
            return Err(error_at(
                node,
                "Non-time-based windows are not supported on streaming DataFrames/Datasets (OVER clause); \
                 use window() or session_window() in GROUP BY",
            ));
        }
        if !f.within_group.is_empty() {
            return Err(error_at(node, "WITHIN GROUP is not supported"));
        }
        let (args, distinct) = match &f.args {
            FunctionArguments::None => (vec![], false),
            FunctionArguments::Subquery(_) => return Err(error_at(node, "a subquery as a function argument is not supported")),
            FunctionArguments::List(list) => {
                if !list.clauses.is_empty() {
                    return Err(error_at(node, format!("clauses inside {name}(...) are not supported")));
                }
                let mut args = Vec::with_capacity(list.args.len());
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(x) => args.push(x.clone()),
                        _ => return Err(error_at(node, format!("named arguments of {name} are not supported"))),
                    }
                }
                (args, matches!(list.duplicate_treatment, Some(sqlparser::ast::DuplicateTreatment::Distinct)))
            }
        };
        if functions::is_aggregate(&name) {
            if f.filter.is_some() {
                return Err(error_at(node, format!("{name}(...) FILTER (WHERE ...) is not supported: aggregate a CASE WHEN instead")));
            }
            let Some(agg) = self.agg else {
                return Err(error_at(
                    node,
                    format!(
                        "aggregate function {name}() is not allowed here (WHERE, JOIN ... ON, GROUP BY and the arguments \
                         of other aggregates are evaluated per row): filter aggregates with HAVING"
                    ),
                ));
            };
            let row = self.row();
            let e = functions::aggregate(&row, &name, &args, distinct, node)?;
            return Ok(agg.borrow_mut().register(e));
        }
        if distinct {
            return Err(error_at(node, format!("DISTINCT is only allowed in aggregate functions, not in {name}")));
        }
        functions::scalar(self, &name, &args, node)
    }

    /// The expression of a plain argument (not `*`).
    pub fn arg(&self, a: &FunctionArgExpr, node: &SqlExpr) -> Result<Expr> {
        match a {
            FunctionArgExpr::Expr(x) => self.expr(x),
            _ => Err(error_at(node, "`*` is only allowed in count(*)")),
        }
    }
}

/// The lower-case name of a function call.
pub(crate) fn function_name(f: &Function) -> Option<String> {
    match f.name.0.as_slice() {
        [sqlparser::ast::ObjectNamePart::Identifier(id)] => Some(id.value.to_lowercase()),
        _ => None,
    }
}

/// Whether `e` calls an aggregate function (outside nested subqueries).
pub(crate) fn contains_aggregate(e: &SqlExpr) -> bool {
    let any = |xs: &[&SqlExpr]| xs.iter().any(|x| contains_aggregate(x));
    match e {
        SqlExpr::Function(f) => {
            if function_name(f).is_some_and(|n| functions::is_aggregate(&n)) && f.over.is_none() {
                return true;
            }
            match &f.args {
                FunctionArguments::List(list) => list.args.iter().any(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => contains_aggregate(x),
                    _ => false,
                }),
                _ => false,
            }
        }
        SqlExpr::BinaryOp { left, right, .. } => any(&[left, right]),
        SqlExpr::UnaryOp { expr, .. }
        | SqlExpr::Nested(expr)
        | SqlExpr::IsNull(expr)
        | SqlExpr::IsNotNull(expr)
        | SqlExpr::IsTrue(expr)
        | SqlExpr::IsFalse(expr)
        | SqlExpr::IsNotTrue(expr)
        | SqlExpr::IsNotFalse(expr)
        | SqlExpr::Cast { expr, .. }
        | SqlExpr::Ceil { expr, .. }
        | SqlExpr::Floor { expr, .. }
        | SqlExpr::Extract { expr, .. } => contains_aggregate(expr),
        SqlExpr::Between { expr, low, high, .. } => any(&[expr, low, high]),
        SqlExpr::In { expr, target: sqlparser::ast::InTarget::List(list), .. } => {
            contains_aggregate(expr) || list.iter().any(contains_aggregate)
        }
        SqlExpr::Like { expr, pattern, .. } | SqlExpr::ILike { expr, pattern, .. } | SqlExpr::RLike { expr, pattern, .. } => {
            any(&[expr, pattern])
        }
        SqlExpr::Case { operand, conditions, else_result, .. } => {
            operand.as_deref().is_some_and(contains_aggregate)
                || else_result.as_deref().is_some_and(contains_aggregate)
                || conditions.iter().any(|c| contains_aggregate(&c.condition) || contains_aggregate(&c.result))
        }
        SqlExpr::Substring { expr, substring_from, substring_for, .. } => {
            contains_aggregate(expr)
                || substring_from.as_deref().is_some_and(contains_aggregate)
                || substring_for.as_deref().is_some_and(contains_aggregate)
        }
        SqlExpr::Trim { expr, trim_what, .. } => contains_aggregate(expr) || trim_what.as_deref().is_some_and(contains_aggregate),
        SqlExpr::IsDistinctFrom(a, b) | SqlExpr::IsNotDistinctFrom(a, b) => any(&[a, b]),
        _ => false,
    }
}

/// Whether `e` is (or contains) the bare name `name` (an alias defined by itself).
fn refers_to(e: &SqlExpr, name: &str) -> bool {
    match e {
        SqlExpr::Identifier(id) => id.value.eq_ignore_ascii_case(name),
        _ => e.to_string().to_lowercase().split(|c: char| !c.is_alphanumeric() && c != '_').any(|w| w == name.to_lowercase()),
    }
}

/// Folds `items` as a balanced tree (no deep recursion for long IN lists).
fn balanced(mut items: Vec<Expr>, f: impl Fn(Expr, Expr) -> Expr + Copy) -> Option<Expr> {
    while items.len() > 1 {
        let mut next = Vec::with_capacity(items.len().div_ceil(2));
        let mut it = items.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => f(a, b),
                None => a,
            });
        }
        items = next;
    }
    items.pop()
}

fn negate_number(v: &Value) -> Value {
    match v {
        Value::Number(n, l) => Value::Number(format!("-{n}"), *l),
        other => other.clone(),
    }
}

/// A literal: integers are `int` when they fit (Spark), else `bigint`; decimals are
/// doubles; `"..."` and `'...'` are strings.
pub(crate) fn value(v: &Value, node: &SqlExpr) -> Result<Expr> {
    Ok(match v {
        Value::Number(n, _) => {
            if let Ok(i) = n.parse::<i32>() {
                lit(i)
            } else if let Ok(i) = n.parse::<i64>() {
                lit(i)
            } else if let Some(i) = n.strip_suffix(['L', 'l']).and_then(|x| x.parse::<i64>().ok()) {
                lit(i)
            } else {
                let t = n.trim_end_matches(['D', 'd', 'F', 'f']).trim_end_matches("BD");
                match t.parse::<f64>() {
                    Ok(f) if f.is_finite() => lit(f),
                    _ => return Err(error_at(node, format!("cannot read the number {n}"))),
                }
            }
        }
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => lit(s.as_str()),
        Value::Boolean(b) => lit(*b),
        Value::Null => lit(NULL),
        other => return Err(error_at(node, format!("the literal {other} is not supported"))),
    })
}

/// The text of a string literal (or of an `INTERVAL '...'`).
pub(crate) fn string_literal(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        SqlExpr::Nested(x) => string_literal(x),
        SqlExpr::Interval(iv) if iv.last_field.is_none() => {
            let v = match iv.value.as_ref() {
                SqlExpr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
                    _ => return None,
                },
                _ => return None,
            };
            Some(match &iv.leading_field {
                Some(f) => format!("{v} {}", field_unit(f)),
                None => v,
            })
        }
        _ => None,
    }
}

/// An integer literal's value.
pub(crate) fn int_literal(e: &SqlExpr) -> Option<i64> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::Number(n, _) => n.parse().ok(),
            _ => None,
        },
        SqlExpr::UnaryOp { op: UnaryOperator::Minus, expr } => int_literal(expr).map(|v| -v),
        SqlExpr::Nested(x) => int_literal(x),
        _ => None,
    }
}

fn field_unit(f: &DateTimeField) -> String {
    f.to_string().to_lowercase()
}

/// `LIKE` pattern to an anchored regular expression.
pub(crate) fn like_to_regex(pattern: &str, escape: char) -> String {
    let mut re = String::from("(?s)^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            if let Some(n) = chars.next() {
                re.push_str(&regex_escape(n));
            }
            continue;
        }
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            other => re.push_str(&regex_escape(other)),
        }
    }
    re.push('$');
    re
}

fn regex_escape(c: char) -> String {
    if "\\.+*?()|[]{}^$#&-~".contains(c) {
        format!("\\{c}")
    } else {
        c.to_string()
    }
}

/// Spark's types by their SQL names.
pub(crate) fn sql_type(t: &SqlType) -> Option<DataType> {
    use SqlType as T;
    Some(match t {
        T::String(_) | T::Varchar(_) | T::Char(_) | T::Text | T::CharVarying(_) | T::Character(_) | T::CharacterVarying(_) => DataType::String,
        T::Int(_) | T::Integer(_) | T::SmallInt(_) | T::TinyInt(_) | T::Int32 | T::Int16 | T::Int8(_) => DataType::Int32,
        T::BigInt(_) | T::Int64 => DataType::Int64,
        T::Double(_) | T::DoublePrecision | T::Float64 | T::Decimal(_) | T::Numeric(_) | T::Dec(_) => DataType::Float64,
        T::Float(_) | T::Real | T::Float32 => DataType::Float32,
        T::Boolean | T::Bool => DataType::Boolean,
        T::Timestamp(_, _) | T::TimestampNtz(_) | T::Datetime(_) => ts_type(),
        T::Date => DataType::Date,
        T::Custom(name, _) => match name.to_string().to_lowercase().as_str() {
            "long" => DataType::Int64,
            "short" | "byte" => DataType::Int32,
            "timestamp_ltz" | "timestamp_ntz" => ts_type(),
            _ => return None,
        },
        _ => return None,
    })
}

/// A literal of type `t` read from `s` (timestamps as `yyyy-MM-dd[ HH:mm:ss[.SSSSSS]]`, UTC).
pub(crate) fn typed_literal(s: &str, t: &DataType) -> Option<Expr> {
    match t {
        DataType::Datetime(..) => functions::parse_timestamp_str(s).map(|us| lit(us).cast(ts_type())),
        DataType::Date => functions::parse_timestamp_str(s).map(|us| lit(us).cast(ts_type()).cast(DataType::Date)),
        DataType::String => Some(lit(s)),
        DataType::Int32 => s.trim().parse::<i32>().ok().map(lit),
        DataType::Int64 => s.trim().parse::<i64>().ok().map(lit),
        DataType::Float64 | DataType::Float32 => s.trim().parse::<f64>().ok().map(lit),
        DataType::Boolean => s.trim().parse::<bool>().ok().map(lit),
        _ => None,
    }
}
