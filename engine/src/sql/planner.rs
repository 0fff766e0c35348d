//! Planning: a parsed query becomes calls of the [`StreamingDataFrame`] API (so the same
//! [`LogicalPlan`](crate::plan::LogicalPlan) nodes as a DataFrame program), or Polars
//! `LazyFrame` steps when every view it reads is static.
//!
//! The clauses go in Spark's order:
//!
//! ```text
//! FROM view | (subquery) | a JOIN b ON/USING   ─► Planned { rel, scope }
//! WHERE p                                      ─► filter(p)
//! GROUP BY keys + aggregates in SELECT/HAVING  ─► group_by(keys).agg(aggs)   (keys named
//!                                                 after the select item they equal)
//! HAVING p                                     ─► filter(p) over keys and aggregates
//! SELECT items                                 ─► select(exprs) (skipped when it would
//!                                                 change nothing)
//! DISTINCT                                     ─► drop_duplicates(all columns)
//! ORDER BY / LIMIT                             ─► sort / limit (on a stream: after an
//!                                                 aggregation in complete mode, checked at
//!                                                 start() as in Spark)
//! ```
//! A join keeps the equality conjuncts of `ON` between the two sides as keys and the rest
//! as the join condition (stream-stream: where the time range bounds the state) or as a
//! filter after an inner join with a static view; a static view on the left of an inner
//! join (or a RIGHT JOIN) is swapped to the right, the side the engine wants it on.

use std::cell::RefCell;
use std::sync::Arc;

use polars::prelude::*;
use sqlparser::ast::{
    BinaryOperator, Distinct, Expr as SqlExpr, GroupByExpr, Join, JoinConstraint, JoinOperator, LimitClause, ObjectName,
    ObjectNamePart, OrderBy, OrderByKind, OrderBySort, Query, Select, SelectItem, SelectItemQualifiedWildcardKind,
    SetExpr, Spanned, TableFactor, TableWithJoins,
};

use super::expr::{contains_aggregate, function_name, int_literal, AggState, Key, Translator};
use super::resolve::{error_at, quote, suggestions, Field, Scope};
use super::{SqlFrame, View};
use crate::api::{EngineSession, StreamingDataFrame};
use crate::operators::join::StreamJoinType;
use crate::plan::LogicalPlan;
use crate::{Result, SluiceError};

/// A relation being planned: a stream or a static lazy frame.
#[derive(Clone)]
enum Rel {
    Stream(StreamingDataFrame),
    Static(Box<LazyFrame>),
}

/// A planned relation and the names its columns answer to.
#[derive(Clone)]
struct Planned {
    rel: Rel,
    scope: Scope,
}

impl Rel {
    fn is_stream(&self) -> bool {
        matches!(self, Rel::Stream(_))
    }
    fn schema(&self) -> Result<SchemaRef> {
        match self {
            Rel::Stream(df) => df.schema(),
            Rel::Static(lf) => Ok(lf.as_ref().clone().collect_schema()?),
        }
    }
    fn filter(self, p: Expr) -> Rel {
        match self {
            Rel::Stream(df) => Rel::Stream(StreamingDataFrame::new(filter_stream(df.plan(), p), df.session().clone())),
            Rel::Static(lf) => Rel::Static(Box::new(lf.filter(p))),
        }
    }
    fn select(self, exprs: Vec<Expr>) -> Rel {
        match self {
            Rel::Stream(df) => Rel::Stream(df.select(exprs)),
            Rel::Static(lf) => Rel::Static(Box::new(lf.select(exprs))),
        }
    }
    fn aggregate(self, keys: Vec<Expr>, key_names: &[String], aggs: Vec<Expr>, node: &impl Spanned) -> Result<Rel> {
        Ok(match self {
            Rel::Stream(df) => Rel::Stream(df.group_by(keys).agg(aggs)),
            Rel::Static(lf) => {
                if keys.is_empty() {
                    return Ok(Rel::Static(Box::new(lf.select(aggs))));
                }
                if keys.iter().any(|k| crate::api::functions::session_window_spec(k).is_some()) {
                    return Err(error_at(node, "session_window over static views is not supported: group a stream by it"));
                }
                let windows: Vec<&String> = keys
                    .iter()
                    .zip(key_names)
                    .filter(|(k, _)| crate::api::functions::window_spec(k).is_some())
                    .map(|(_, n)| n)
                    .collect();
                let mut lf = lf.with_columns(keys);
                let schema = lf.collect_schema()?;
                for w in windows {
                    if matches!(schema.get(w), Some(DataType::List(_))) {
                        lf = lf.explode(
                            by_name([w.as_str()], true, false),
                            ExplodeOptions { empty_as_null: false, keep_nulls: false },
                        );
                    }
                    lf = lf.filter(col(w.as_str()).is_not_null());
                }
                let by: Vec<Expr> = key_names.iter().map(|k| col(k.as_str())).collect();
                Rel::Static(Box::new(lf.group_by_stable(by).agg(aggs)))
            }
        })
    }
    fn distinct(self) -> Result<Rel> {
        Ok(match self {
            Rel::Stream(df) => Rel::Stream(df.drop_duplicates(Vec::<String>::new())?),
            Rel::Static(lf) => Rel::Static(Box::new(lf.unique_stable(None, UniqueKeepStrategy::First))),
        })
    }
    fn sort(self, by: Vec<Expr>, descending: Vec<bool>, nulls_last: Vec<bool>, node: &impl Spanned) -> Result<Rel> {
        match self {
            Rel::Stream(df) => {
                if nulls_last != descending {
                    return Err(error_at(
                        node,
                        "NULLS FIRST / NULLS LAST on a stream: only Spark's default order (nulls first ascending, \
                         last descending) is supported",
                    ));
                }
                Ok(Rel::Stream(df.sort(by, &descending)))
            }
            Rel::Static(lf) => Ok(Rel::Static(Box::new(lf.sort_by_exprs(
                by,
                SortMultipleOptions::default()
                    .with_order_descending_multi(descending)
                    .with_nulls_last_multi(nulls_last)
                    .with_maintain_order(true),
            )))),
        }
    }
    fn limit(self, n: u64) -> Rel {
        match self {
            Rel::Stream(df) => Rel::Stream(df.limit(usize::try_from(n).unwrap_or(usize::MAX))),
            Rel::Static(lf) => Rel::Static(Box::new(lf.limit(n.min(IdxSize::MAX as u64) as IdxSize))),
        }
    }
}

/// `Filter(predicate)` over `plan`, with Spark's optimizer rule for a filter on a
/// watermarked input (`PushPredicateThroughNonJoin`): the conjuncts that do not read the
/// event-time column go below the `with_watermark`, so the watermark follows the rows
/// that pass them, as in Spark (and Spark's JSON scan then counts only those rows as
/// input).
fn filter_stream(plan: &Arc<LogicalPlan>, predicate: Expr) -> Arc<LogicalPlan> {
    if let LogicalPlan::Watermark { input, column, delay_ms } = plan.as_ref() {
        let mut parts = vec![];
        split_and(&predicate, &mut parts);
        let (down, up): (Vec<Expr>, Vec<Expr>) = parts
            .into_iter()
            .partition(|p| !polars_plan::utils::expr_to_leaf_column_names(p).iter().any(|c| c.as_str() == column));
        if let Some(down) = and_all(down) {
            let below = filter_stream(input, down);
            let wm = Arc::new(LogicalPlan::Watermark { input: below, column: column.clone(), delay_ms: *delay_ms });
            return match and_all(up) {
                Some(up) => Arc::new(LogicalPlan::Filter { input: wm, predicate: up }),
                None => wm,
            };
        }
    }
    Arc::new(LogicalPlan::Filter { input: plan.clone(), predicate })
}

fn split_and(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::BinaryExpr { left, op: Operator::And | Operator::LogicalAnd, right } => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other.clone()),
    }
}

/// Plans `query` over `session`'s views.
pub(crate) fn plan_query(session: &EngineSession, query: &Query) -> Result<SqlFrame> {
    let mut p = Planner { session, ctes: vec![] };
    let planned = p.query(query)?;
    Ok(match planned.rel {
        Rel::Stream(df) => SqlFrame::Stream(df),
        Rel::Static(lf) => SqlFrame::Static(lf.collect()?),
    })
}

struct Planner<'s> {
    session: &'s EngineSession,
    /// `WITH name AS (...)` in scope.
    ctes: Vec<(String, Planned)>,
}

/// One item of a select list.
struct Item {
    /// The expression (None for a column `*` expanded to: `field`).
    ast: Option<SqlExpr>,
    field: Option<usize>,
    name: String,
    qualifier: Option<String>,
}

fn ident_parts(e: &SqlExpr) -> Option<Vec<String>> {
    match e {
        SqlExpr::Identifier(i) => Some(vec![i.value.clone()]),
        SqlExpr::CompoundIdentifier(ids) => Some(ids.iter().map(|i| i.value.clone()).collect()),
        _ => None,
    }
}

/// Spark's name for an unaliased select item.
fn default_name(e: &SqlExpr) -> String {
    match e {
        SqlExpr::Identifier(i) => i.value.clone(),
        SqlExpr::CompoundIdentifier(ids) => ids.last().map(|i| i.value.clone()).unwrap_or_default(),
        SqlExpr::Nested(x) => default_name(x),
        SqlExpr::Function(f) => match function_name(f).as_deref() {
            Some(n @ ("window" | "session_window")) => n.to_string(),
            _ => e.to_string(),
        },
        other => other.to_string(),
    }
}

fn object_name(n: &ObjectName) -> Option<String> {
    match n.0.last()? {
        ObjectNamePart::Identifier(i) => Some(i.value.clone()),
        _ => None,
    }
}

fn conjuncts(e: &SqlExpr, out: &mut Vec<SqlExpr>) {
    match e {
        SqlExpr::BinaryOp { left, op: BinaryOperator::And, right } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        SqlExpr::Nested(x) if matches!(x.as_ref(), SqlExpr::BinaryOp { op: BinaryOperator::And, .. }) => conjuncts(x, out),
        other => out.push(other.clone()),
    }
}

fn and_all(xs: Vec<Expr>) -> Option<Expr> {
    xs.into_iter().reduce(|a, b| a.and(b))
}

impl<'s> Planner<'s> {
    fn query(&mut self, q: &Query) -> Result<Planned> {
        let ctes_before = self.ctes.len();
        if let Some(with) = &q.with {
            if with.recursive {
                return Err(error_at(q, "WITH RECURSIVE is not supported"));
            }
            for cte in &with.cte_tables {
                if !cte.alias.columns.is_empty() {
                    return Err(error_at(q, "column lists on a WITH name are not supported: alias the columns in its query"));
                }
                let p = self.query(&cte.query)?;
                let name = cte.alias.name.value.clone();
                self.ctes.push((name.clone(), Planned { rel: p.rel, scope: p.scope.requalified(Some(&name)) }));
            }
        }
        if q.fetch.is_some() || !q.locks.is_empty() || q.for_clause.is_some() || q.settings.is_some() || q.format_clause.is_some() || !q.pipe_operators.is_empty() {
            return Err(error_at(q, "this clause of the query is not supported"));
        }
        let out = match q.body.as_ref() {
            SetExpr::Select(s) => self.select(s, q.order_by.as_ref(), q.limit_clause.as_ref()),
            SetExpr::Query(inner) => {
                let p = self.query(inner)?;
                self.order_limit_outputs(p, q.order_by.as_ref(), q.limit_clause.as_ref())
            }
            SetExpr::SetOperation { op, .. } => Err(error_at(q, format!("{op} is not supported yet"))),
            _ => Err(error_at(q, "only SELECT queries are supported")),
        };
        self.ctes.truncate(ctes_before);
        out
    }

    /// ORDER BY / LIMIT over a planned relation's own columns.
    fn order_limit_outputs(&mut self, p: Planned, order: Option<&OrderBy>, limit: Option<&LimitClause>) -> Result<Planned> {
        let mut rel = p.rel;
        if let Some(ob) = order {
            let exprs = order_items(ob)?;
            let tr = Translator::new(&p.scope, rel.is_stream(), &[]);
            let (mut by, mut desc, mut nl) = (vec![], vec![], vec![]);
            for (e, d, n) in exprs {
                by.push(tr.expr(e)?);
                desc.push(d);
                nl.push(n);
            }
            rel = rel.sort(by, desc, nl, ob_span(ob))?;
        }
        if let Some(l) = limit {
            rel = rel.limit(limit_value(l)?);
        }
        Ok(Planned { rel, scope: p.scope })
    }

    fn select(&mut self, s: &Select, order: Option<&OrderBy>, limit: Option<&LimitClause>) -> Result<Planned> {
        if s.top.is_some()
            || s.into.is_some()
            || !s.lateral_views.is_empty()
            || s.prewhere.is_some()
            || !s.connect_by.is_empty()
            || !s.cluster_by.is_empty()
            || !s.distribute_by.is_empty()
            || !s.sort_by.is_empty()
            || !s.named_window.is_empty()
            || s.qualify.is_some()
            || s.value_table_mode.is_some()
            || s.exclude.is_some()
        {
            return Err(error_at(s, "this clause of SELECT is not supported"));
        }
        let distinct = match &s.distinct {
            None | Some(Distinct::All) => false,
            Some(Distinct::Distinct) => true,
            Some(_) => return Err(error_at(s, "DISTINCT ON is not supported")),
        };
        // FROM
        let input = match s.from.as_slice() {
            [] => Planned {
                rel: Rel::Static(Box::new(DataFrame::new(1, vec![Column::new("__one".into(), [1i32])])?.lazy())),
                scope: Scope::default(),
            },
            [one] => self.from(one)?,
            _ => {
                return Err(error_at(
                    s,
                    "a comma-separated FROM list (a cross join) is not supported: join the tables with JOIN ... ON",
                ))
            }
        };
        let streaming = input.rel.is_stream();
        // The select list.
        let mut items = Vec::new();
        let mut aliases: Vec<(String, SqlExpr)> = Vec::new();
        for it in &s.projection {
            match it {
                SelectItem::UnnamedExpr(e) => {
                    let qualifier = ident_parts(e).and_then(|p| input.scope.lookup(&p, e).ok().flatten().and_then(|f| f.qualifier.clone()));
                    items.push(Item { ast: Some(e.clone()), field: None, name: default_name(e), qualifier });
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    aliases.push((alias.value.clone(), expr.clone()));
                    items.push(Item { ast: Some(expr.clone()), field: None, name: alias.value.clone(), qualifier: None });
                }
                SelectItem::Wildcard(opts) | SelectItem::QualifiedWildcard(_, opts)
                    if opts.opt_exclude.is_some() || opts.opt_except.is_some() || opts.opt_replace.is_some() || opts.opt_rename.is_some() || opts.opt_ilike.is_some() =>
                {
                    return Err(error_at(s, "options after `*` are not supported"));
                }
                SelectItem::Wildcard(_) => {
                    for f in input.scope.star(None) {
                        let i = input.scope.fields.iter().position(|g| std::ptr::eq(g, f)).unwrap_or(0);
                        items.push(Item { ast: None, field: Some(i), name: f.name.clone(), qualifier: f.qualifier.clone() });
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    let q = match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n),
                        _ => None,
                    }
                    .ok_or_else(|| error_at(s, "`<expression>.*` is not supported"))?;
                    let fields = input.scope.star(Some(&q));
                    if fields.is_empty() {
                        return Err(error_at(
                            s,
                            format!("[CANNOT_RESOLVE_STAR_EXPAND] Cannot resolve {}.* given input columns {}.", quote(&q), star_names(&input.scope)),
                        ));
                    }
                    for f in fields {
                        let i = input.scope.fields.iter().position(|g| std::ptr::eq(g, f)).unwrap_or(0);
                        items.push(Item { ast: None, field: Some(i), name: f.name.clone(), qualifier: f.qualifier.clone() });
                    }
                }
                SelectItem::ExprWithAliases { .. } => return Err(error_at(s, "multiple aliases for one item are not supported")),
            }
        }
        // WHERE
        let mut rel = input.rel.clone();
        if let Some(w) = &s.selection {
            let tr = Translator::new(&input.scope, streaming, &[]);
            rel = rel.filter(tr.expr(w)?);
        }
        let group_by = match &s.group_by {
            GroupByExpr::Expressions(exprs, mods) if mods.is_empty() => exprs.clone(),
            _ => return Err(error_at(s, "GROUP BY ALL, ROLLUP, CUBE and GROUPING SETS are not supported")),
        };
        let is_agg = !group_by.is_empty()
            || items.iter().any(|i| i.ast.as_ref().is_some_and(contains_aggregate))
            || s.having.as_ref().is_some_and(contains_aggregate);
        let input = Planned { rel, scope: input.scope };
        if is_agg {
            self.aggregate_select(s, input, items, aliases, group_by, distinct, order, limit)
        } else {
            if let Some(h) = &s.having {
                return Err(error_at(h, "HAVING needs an aggregation (GROUP BY or an aggregate function)"));
            }
            self.row_select(input, items, aliases, distinct, order, limit)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn row_select(
        &mut self,
        input: Planned,
        items: Vec<Item>,
        aliases: Vec<(String, SqlExpr)>,
        distinct: bool,
        order: Option<&OrderBy>,
        limit: Option<&LimitClause>,
    ) -> Result<Planned> {
        let streaming = input.rel.is_stream();
        let tr = Translator::new(&input.scope, streaming, &aliases);
        let mut exprs = Vec::new();
        for it in &items {
            exprs.push(match (&it.ast, it.field) {
                (Some(e), _) => tr.expr(e)?.alias(it.name.as_str()),
                (None, Some(i)) => col(input.scope.fields[i].column.as_str()).alias(it.name.as_str()),
                (None, None) => return Err(SluiceError::Internal("select item without expression".into())),
            });
        }
        check_unique_names(&items)?;
        let hidden = self.order_exprs(order, &items, |e| tr.expr(e))?;
        if distinct && hidden.iter().any(|h| h.hidden.is_some()) {
            return Err(error_at(
                ob_span(order.expect("hidden columns come from ORDER BY")),
                "with SELECT DISTINCT, ORDER BY may only name columns of the select list",
            ));
        }
        let identity = hidden.iter().all(|h| h.hidden.is_none())
            && items.len() == input.scope.fields.len()
            && exprs.iter().zip(&input.scope.fields).all(|(e, f)| *e == col(f.column.as_str()).alias(f.column.as_str()));
        self.finish(input.rel, items, exprs, hidden, identity, distinct, order, limit)
    }

    #[allow(clippy::too_many_arguments)]
    fn aggregate_select(
        &mut self,
        s: &Select,
        input: Planned,
        items: Vec<Item>,
        aliases: Vec<(String, SqlExpr)>,
        group_by: Vec<SqlExpr>,
        distinct: bool,
        order: Option<&OrderBy>,
        limit: Option<&LimitClause>,
    ) -> Result<Planned> {
        let streaming = input.rel.is_stream();
        if let Some(it) = items.iter().find(|i| i.ast.is_none()) {
            return Err(error_at(
                s,
                format!("`*` (here {}) cannot be used with GROUP BY or aggregates: list the grouping columns", quote(&it.name)),
            ));
        }
        let row = Translator::new(&input.scope, streaming, &[]);
        // The row-level form of each item, where it has one (to name keys after items).
        let item_rows: Vec<Option<Expr>> =
            items.iter().map(|i| i.ast.as_ref().filter(|e| !contains_aggregate(e)).and_then(|e| row.expr(e).ok())).collect();
        let state = RefCell::new(AggState::default());
        for (ki, g) in group_by.iter().enumerate() {
            // Ordinals and select aliases (Spark's groupByOrdinal / groupByAliases).
            let g_ast = if let Some(n) = int_literal(g).filter(|_| matches!(g, SqlExpr::Value(_))) {
                let idx = usize::try_from(n).ok().filter(|i| *i >= 1 && *i <= items.len()).ok_or_else(|| {
                    error_at(g, format!("[GROUP_BY_POS_OUT_OF_RANGE] GROUP BY position {n} is not in select list (valid range is [1, {}]).", items.len()))
                })?;
                let e = items[idx - 1].ast.clone().ok_or_else(|| error_at(g, "GROUP BY position of `*`"))?;
                if contains_aggregate(&e) {
                    return Err(error_at(g, format!("[GROUP_BY_POS_AGGREGATE] GROUP BY {n} refers to an expression {e} that contains an aggregate function.")));
                }
                e
            } else if let (Some([name]), true) = (ident_parts(g).as_deref(), true) {
                match input.scope.lookup(std::slice::from_ref(name), g)? {
                    Some(_) => g.clone(),
                    None => match aliases.iter().find(|(a, _)| a.eq_ignore_ascii_case(name)) {
                        Some((_, e)) if !contains_aggregate(e) => e.clone(),
                        _ => g.clone(),
                    },
                }
            } else {
                g.clone()
            };
            let x = row.expr(&g_ast)?;
            let mut st = state.borrow_mut();
            if st.keys.iter().any(|k| k.expr == x) {
                continue; // grouping twice by one expression changes nothing
            }
            let from_item = item_rows.iter().position(|r| r.as_ref() == Some(&x)).map(|i| items[i].name.clone());
            let natural = from_item.or_else(|| match &x {
                Expr::Column(c) => Some(c.to_string()),
                _ => None,
            });
            let used_elsewhere = |n: &str| {
                st.keys.iter().any(|k| k.name.eq_ignore_ascii_case(n))
                    || items.iter().zip(&item_rows).any(|(i, r)| i.name.eq_ignore_ascii_case(n) && r.as_ref() != Some(&x))
            };
            let name = match natural {
                Some(n) if !used_elsewhere(&n) => n,
                _ => format!("__k{ki}"),
            };
            st.keys.push(Key { expr: x, name });
        }
        state.borrow_mut().reserved = items.iter().map(|i| i.name.clone()).collect();
        let tr = Translator::new(&input.scope, streaming, &aliases).with_agg(&state);
        let mut exprs = Vec::new();
        for it in &items {
            let e = it.ast.as_ref().expect("checked above");
            let direct = matches!(e, SqlExpr::Function(f) if function_name(f).is_some_and(|n| super::functions::is_aggregate(&n)));
            if direct {
                let mut st = state.borrow_mut();
                st.reserved.retain(|r| r != &it.name);
                st.preferred_name = Some(it.name.clone());
            }
            let x = tr.expr(e)?;
            state.borrow_mut().preferred_name = None;
            exprs.push(x.alias(it.name.as_str()));
        }
        check_unique_names(&items)?;
        let having = s.having.as_ref().map(|h| tr.expr(h)).transpose()?;
        let hidden = self.order_exprs(order, &items, |e| tr.expr(e))?;
        let st = state.into_inner();
        let key_names: Vec<String> = st.keys.iter().map(|k| k.name.clone()).collect();
        let keys: Vec<Expr> = st
            .keys
            .iter()
            .map(|k| if k.expr == col(k.name.as_str()) { k.expr.clone() } else { k.expr.clone().alias(k.name.as_str()) })
            .collect();
        let aggs: Vec<Expr> = st.aggs.iter().map(|(a, n)| a.clone().alias(n.as_str())).collect();
        let outputs: Vec<&str> = key_names.iter().map(String::as_str).chain(st.aggs.iter().map(|(_, n)| n.as_str())).collect();
        let mut rel = input.rel.aggregate(keys, &key_names, aggs, s)?;
        if let Some(h) = having {
            rel = rel.filter(h);
        }
        let identity = hidden.iter().all(|h| h.hidden.is_none())
            && exprs.len() == outputs.len()
            && exprs.iter().zip(&outputs).all(|(e, n)| *e == col(*n).alias(*n));
        self.finish(rel, items, exprs, hidden, identity, distinct, order, limit)
    }

    /// Resolves ORDER BY items: a select-list column (by ordinal, name or qualified name)
    /// or an expression computed as a hidden column.
    fn order_exprs(
        &self,
        order: Option<&OrderBy>,
        items: &[Item],
        translate: impl Fn(&SqlExpr) -> Result<Expr>,
    ) -> Result<Vec<OrderTarget>> {
        let Some(ob) = order else { return Ok(vec![]) };
        let mut out = Vec::new();
        for (i, (e, desc, nulls_last)) in order_items(ob)?.into_iter().enumerate() {
            let by_output = if let (Some(n), SqlExpr::Value(_)) = (int_literal(e), e) {
                let idx = usize::try_from(n).ok().filter(|i| *i >= 1 && *i <= items.len()).ok_or_else(|| {
                    error_at(e, format!("[ORDER_BY_POS_OUT_OF_RANGE] ORDER BY position {n} is not in select list (valid range is [1, {}]).", items.len()))
                })?;
                Some(idx - 1)
            } else {
                match ident_parts(e).as_deref() {
                    Some([name]) => items.iter().position(|it| it.name.eq_ignore_ascii_case(name)),
                    Some([q, name]) => items.iter().position(|it| {
                        it.name.eq_ignore_ascii_case(name) && it.qualifier.as_deref().is_some_and(|iq| iq.eq_ignore_ascii_case(q))
                    }),
                    _ => None,
                }
            };
            out.push(match by_output {
                Some(idx) => OrderTarget { column: items[idx].name.clone(), hidden: None, desc, nulls_last },
                None => {
                    let name = format!("__o{i}");
                    OrderTarget { column: name.clone(), hidden: Some(translate(e)?.alias(name.as_str())), desc, nulls_last }
                }
            });
        }
        Ok(out)
    }

    /// The select (unless `identity`), DISTINCT, ORDER BY, LIMIT, and the output scope.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &mut self,
        rel: Rel,
        items: Vec<Item>,
        mut exprs: Vec<Expr>,
        order: Vec<OrderTarget>,
        identity: bool,
        distinct: bool,
        order_by: Option<&OrderBy>,
        limit: Option<&LimitClause>,
    ) -> Result<Planned> {
        let has_hidden = order.iter().any(|o| o.hidden.is_some());
        exprs.extend(order.iter().filter_map(|o| o.hidden.clone()));
        let mut rel = if identity { rel } else { rel.select(exprs) };
        if distinct {
            rel = rel.distinct()?;
        }
        if let Some(ob) = order_by {
            let by = order.iter().map(|o| col(o.column.as_str())).collect();
            rel = rel.sort(by, order.iter().map(|o| o.desc).collect(), order.iter().map(|o| o.nulls_last).collect(), ob_span(ob))?;
        }
        if let Some(l) = limit {
            rel = rel.limit(limit_value(l)?);
        }
        if has_hidden {
            rel = rel.select(items.iter().map(|i| col(i.name.as_str())).collect());
        }
        let schema = rel.schema()?;
        let scope = Scope {
            fields: items
                .iter()
                .map(|i| Field {
                    qualifier: i.qualifier.clone(),
                    name: i.name.clone(),
                    column: i.name.clone(),
                    dtype: schema.get(i.name.as_str()).cloned().unwrap_or(DataType::Null),
                    qualified_only: false,
                })
                .collect(),
        };
        Ok(Planned { rel, scope })
    }

    fn from(&mut self, t: &TableWithJoins) -> Result<Planned> {
        let mut acc = self.table(&t.relation)?;
        for j in &t.joins {
            let right = self.table(&j.relation)?;
            acc = self.join(acc, right, j)?;
        }
        Ok(acc)
    }

    fn table(&mut self, t: &TableFactor) -> Result<Planned> {
        match t {
            TableFactor::Table { name, alias, args, with_hints, version, partitions, sample, .. } => {
                if args.is_some() || !with_hints.is_empty() || version.is_some() || !partitions.is_empty() || sample.is_some() {
                    return Err(error_at(t, "table functions, hints, versions and samples are not supported"));
                }
                let view = object_name(name).ok_or_else(|| error_at(t, "a view needs a plain name"))?;
                let qualifier = match alias {
                    Some(a) if !a.columns.is_empty() => return Err(error_at(t, "column aliases after a table alias are not supported")),
                    Some(a) => a.name.value.clone(),
                    None => view.clone(),
                };
                if let Some((_, p)) = self.ctes.iter().rev().find(|(n, _)| n.eq_ignore_ascii_case(&view)) {
                    return Ok(Planned { rel: p.rel.clone(), scope: p.scope.requalified(Some(&qualifier)) });
                }
                let rel = match self.session.view(&view) {
                    Some(View::Stream(plan)) => Rel::Stream(StreamingDataFrame::new(plan, self.session.clone())),
                    Some(View::Static(df)) => Rel::Static(Box::new(df.lazy())),
                    None => {
                        let mut names = self.session.view_names();
                        names.extend(self.ctes.iter().map(|(n, _)| n.clone()));
                        let close = suggestions(&view.to_lowercase(), names.iter().map(String::as_str));
                        let hint = if close.is_empty() {
                            "no views are registered: call create_or_replace_temp_view first".to_string()
                        } else {
                            format!("Did you mean one of the following? [{}].", close.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", "))
                        };
                        return Err(error_at(
                            t,
                            format!("[TABLE_OR_VIEW_NOT_FOUND] The table or view {} cannot be found. {hint}", quote(&view)),
                        ));
                    }
                };
                let scope = Scope::from_schema(Some(&qualifier), rel.schema()?.as_ref());
                Ok(Planned { rel, scope })
            }
            TableFactor::Derived { lateral, subquery, alias, sample, .. } => {
                if *lateral || sample.is_some() {
                    return Err(error_at(t, "LATERAL and TABLESAMPLE are not supported"));
                }
                let p = self.query(subquery)?;
                let q = match alias {
                    Some(a) if !a.columns.is_empty() => return Err(error_at(t, "column aliases after a subquery alias are not supported")),
                    Some(a) => Some(a.name.value.clone()),
                    None => None,
                };
                Ok(Planned { rel: p.rel, scope: p.scope.requalified(q.as_deref()) })
            }
            TableFactor::NestedJoin { table_with_joins, alias, .. } => {
                if alias.is_some() {
                    return Err(error_at(t, "an alias on a parenthesized join is not supported"));
                }
                self.from(table_with_joins)
            }
            _ => Err(error_at(t, "this kind of FROM item is not supported: use a view, a subquery or a join")),
        }
    }

    fn join(&mut self, left: Planned, right: Planned, j: &Join) -> Result<Planned> {
        use StreamJoinType as J;
        let (how, constraint) = match &j.join_operator {
            JoinOperator::Join(c) | JoinOperator::Inner(c) => (J::Inner, c),
            JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (J::LeftOuter, c),
            JoinOperator::Right(c) | JoinOperator::RightOuter(c) => (J::RightOuter, c),
            JoinOperator::FullOuter(c) => (J::FullOuter, c),
            JoinOperator::Semi(c) | JoinOperator::LeftSemi(c) => (J::LeftSemi, c),
            JoinOperator::CrossJoin(_) => return Err(error_at(j, "CROSS JOIN is not supported: join with ON and an equality")),
            JoinOperator::Anti(_) | JoinOperator::LeftAnti(_) => return Err(error_at(j, "LEFT ANTI JOIN is not supported yet")),
            _ => return Err(error_at(j, "this kind of join is not supported")),
        };
        let (ls, rs) = (left.rel.is_stream(), right.rel.is_stream());
        let spark_side = |s: bool| if s { "a streaming DataFrame/Dataset" } else { "a static DataFrame/Dataset" };
        // The engine wants the stream on the left of a stream-static join.
        let swapped = !ls && rs;
        let phys_how = match (ls, rs, how) {
            (false, true, J::Inner) => J::Inner,
            (false, true, J::RightOuter) => J::LeftOuter,
            (true, false, J::Inner | J::LeftOuter) => how,
            (true, true, _) | (false, false, _) => how,
            _ => {
                return Err(error_at(
                    j,
                    format!(
                        "{how} join with {} on the left and {} on the right is not supported: the static side would \
                         need its unmatched rows emitted, which a stream never allows",
                        spark_side(ls),
                        spark_side(rs)
                    ),
                ))
            }
        };
        let (pl, pr) = if swapped { (&right, &left) } else { (&left, &right) };
        let pl_schema = pl.rel.schema()?;
        let right_name = |c: &str| if pl_schema.contains(c) { format!("{c}_right") } else { c.to_string() };
        // The joined scope, in SQL order (left's fields, then right's), with physical names.
        let phys = |f: &Field, from_pr: bool| Field { column: if from_pr { right_name(&f.column) } else { f.column.clone() }, ..f.clone() };
        let mut joined = Scope::default();
        joined.fields.extend(left.scope.fields.iter().map(|f| phys(f, swapped)));
        joined.fields.extend(right.scope.fields.iter().map(|f| phys(f, !swapped)));
        let nl = left.scope.fields.len();
        // Keys (SQL-left expression, SQL-right expression) and the rest of ON.
        let mut keys: Vec<(Expr, Expr)> = vec![];
        let mut rest: Vec<SqlExpr> = vec![];
        let mut using_keys: Vec<(usize, usize)> = vec![];
        match constraint {
            JoinConstraint::On(on) => {
                let mut parts = vec![];
                conjuncts(on, &mut parts);
                // Which side each name of an expression is on: a scope of both sides with
                // each side's own physical names.
                let mut both = left.scope.clone();
                both.fields.extend(right.scope.fields.iter().cloned());
                for c in parts {
                    if let SqlExpr::BinaryOp { left: a, op: BinaryOperator::Eq, right: b } = &c {
                        let side = |e: &SqlExpr| -> Result<Option<bool>> {
                            let tr = Translator::new(&both, false, &[]);
                            let _ = tr.expr(e)?;
                            let used = tr.used.borrow();
                            Ok(if used.is_empty() {
                                None
                            } else if used.iter().all(|i| *i < nl) {
                                Some(true)
                            } else if used.iter().all(|i| *i >= nl) {
                                Some(false)
                            } else {
                                None
                            })
                        };
                        let (sa, sb) = (side(a)?, side(b)?);
                        let (le, re) = match (sa, sb) {
                            (Some(true), Some(false)) => (a, b),
                            (Some(false), Some(true)) => (b, a),
                            _ => {
                                rest.push(c.clone());
                                continue;
                            }
                        };
                        let lx = Translator::new(&left.scope, left.rel.is_stream(), &[]).expr(le)?;
                        let rx = Translator::new(&right.scope, right.rel.is_stream(), &[]).expr(re)?;
                        keys.push((lx, rx));
                    } else {
                        rest.push(c);
                    }
                }
            }
            JoinConstraint::Using(names) => {
                if matches!(how, J::RightOuter | J::FullOuter) {
                    return Err(error_at(j, "USING with RIGHT or FULL joins is not supported: write ON a.x = b.x"));
                }
                for n in names {
                    let name = object_name(n).ok_or_else(|| error_at(j, "USING needs plain column names"))?;
                    let find = |s: &Scope, side: &str| -> Result<usize> {
                        let f = s.lookup(std::slice::from_ref(&name), j)?.ok_or_else(|| {
                            error_at(
                                j,
                                format!(
                                    "[UNRESOLVED_USING_COLUMN_FOR_JOIN] USING column {} cannot be resolved on the {side} side of the join. The {side}-side columns: [{}].",
                                    quote(&name),
                                    s.fields.iter().map(|f| quote(&f.name)).collect::<Vec<_>>().join(", ")
                                ),
                            )
                        })?;
                        Ok(s.fields.iter().position(|g| std::ptr::eq(g, f)).unwrap_or(0))
                    };
                    let (li, ri) = (find(&left.scope, "left")?, find(&right.scope, "right")?);
                    keys.push((col(left.scope.fields[li].column.as_str()), col(right.scope.fields[ri].column.as_str())));
                    using_keys.push((li, ri));
                }
            }
            JoinConstraint::Natural => return Err(error_at(j, "NATURAL JOIN is not supported: name the columns with USING")),
            JoinConstraint::None | JoinConstraint::UsingAlias(..) => {
                return Err(error_at(j, "a join needs ON with an equality of the two sides, or USING"))
            }
        }
        if keys.is_empty() {
            return Err(error_at(
                j,
                "a join needs at least one equality between a column of each side in ON (e.g. a.page = b.page); \
                 joins without equality keys (cross joins) are not supported",
            ));
        }
        let (mut lon, mut ron): (Vec<Expr>, Vec<Expr>) = keys.into_iter().unzip();
        if swapped {
            std::mem::swap(&mut lon, &mut ron);
        }
        let cond = {
            let tr = Translator::new(&joined, true, &[]);
            and_all(rest.iter().map(|c| tr.expr(c)).collect::<Result<Vec<_>>>()?)
        };
        let rel = match (&pl.rel, &pr.rel) {
            (Rel::Stream(a), Rel::Stream(b)) => Rel::Stream(a.join(b, lon, ron, phys_how, cond)),
            (Rel::Stream(a), Rel::Static(b)) => {
                if cond.is_some() && phys_how != J::Inner {
                    return Err(error_at(
                        j,
                        "an outer join with a static view supports only equalities between the two sides in ON",
                    ));
                }
                let joined_rel = Rel::Stream(a.join_static(b.as_ref().clone().collect()?, lon, ron, phys_how));
                match cond {
                    Some(c) => joined_rel.filter(c),
                    None => joined_rel,
                }
            }
            (Rel::Static(a), Rel::Static(b)) => {
                if cond.is_some() && phys_how != J::Inner {
                    return Err(error_at(j, "an outer join of static views supports only equalities between the two sides in ON"));
                }
                let pjt = match phys_how {
                    J::Inner => polars::prelude::JoinType::Inner,
                    J::LeftOuter => polars::prelude::JoinType::Left,
                    J::RightOuter => polars::prelude::JoinType::Right,
                    J::FullOuter => polars::prelude::JoinType::Full,
                    J::LeftSemi => polars::prelude::JoinType::Semi,
                };
                let lf = a.as_ref().clone().join(b.as_ref().clone(), lon, ron, JoinArgs::new(pjt).with_coalesce(JoinCoalesce::KeepColumns));
                let lf = match cond {
                    Some(c) => lf.filter(c),
                    None => lf,
                };
                Rel::Static(Box::new(lf))
            }
            (Rel::Static(_), Rel::Stream(_)) => return Err(SluiceError::Internal("a static left side was not swapped".into())),
        };
        let mut scope = joined;
        if how == J::LeftSemi {
            scope.fields.truncate(nl);
        } else if !using_keys.is_empty() {
            // USING: the keys once (the left's), then the other columns of each side.
            let lk: Vec<usize> = using_keys.iter().map(|(l, _)| *l).collect();
            let rk: Vec<usize> = using_keys.iter().map(|(_, r)| nl + *r).collect();
            let mut fields: Vec<Field> = lk.iter().map(|i| scope.fields[*i].clone()).collect();
            fields.extend(scope.fields.iter().enumerate().filter(|(i, _)| *i < nl && !lk.contains(i)).map(|(_, f)| f.clone()));
            fields.extend(scope.fields.iter().enumerate().filter(|(i, _)| *i >= nl && !rk.contains(i)).map(|(_, f)| f.clone()));
            fields.extend(rk.iter().map(|i| Field { qualified_only: true, ..scope.fields[*i].clone() }));
            scope.fields = fields;
        }
        Ok(Planned { rel, scope })
    }
}

struct OrderTarget {
    column: String,
    hidden: Option<Expr>,
    desc: bool,
    nulls_last: bool,
}

fn order_items(ob: &OrderBy) -> Result<Vec<(&SqlExpr, bool, bool)>> {
    match &ob.kind {
        OrderByKind::Expressions(exprs) => exprs
            .iter()
            .map(|o| {
                if o.with_fill.is_some() {
                    return Err(error_at(&o.expr, "WITH FILL is not supported"));
                }
                let desc = match &o.options.sort {
                    None | Some(OrderBySort::Asc) => false,
                    Some(OrderBySort::Desc) => true,
                    Some(_) => return Err(error_at(&o.expr, "ORDER BY ... USING is not supported")),
                };
                // Spark: ASC puts nulls first, DESC last.
                let nulls_last = o.options.nulls_first.map(|f| !f).unwrap_or(desc);
                Ok((&o.expr, desc, nulls_last))
            })
            .collect(),
        OrderByKind::All(_) => Err(SluiceError::analysis("ORDER BY ALL is not supported")),
    }
}

fn ob_span(ob: &OrderBy) -> &SqlExpr {
    match &ob.kind {
        OrderByKind::Expressions(e) if !e.is_empty() => &e[0].expr,
        _ => &EMPTY,
    }
}

static EMPTY: SqlExpr = SqlExpr::Value(sqlparser::ast::ValueWithSpan {
    value: sqlparser::ast::Value::Null,
    span: sqlparser::tokenizer::Span::empty(),
});

fn limit_value(l: &LimitClause) -> Result<u64> {
    match l {
        LimitClause::LimitOffset { limit: Some(e), offset: None, limit_by } if limit_by.is_empty() => int_literal(e)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| error_at(e, "LIMIT needs a non-negative integer literal")),
        LimitClause::LimitOffset { limit: None, offset: None, .. } => Ok(u64::MAX),
        _ => Err(error_at(limit_span(l), "OFFSET and LIMIT BY are not supported")),
    }
}

fn limit_span(l: &LimitClause) -> &SqlExpr {
    match l {
        LimitClause::LimitOffset { limit: Some(e), .. } => e,
        LimitClause::OffsetCommaLimit { limit, .. } => limit,
        _ => &EMPTY,
    }
}

fn check_unique_names(items: &[Item]) -> Result<()> {
    for (i, it) in items.iter().enumerate() {
        if let Some(prev) = items[..i].iter().find(|p| p.name == it.name) {
            let at = it.ast.as_ref().or(prev.ast.as_ref());
            let msg = format!(
                "the result would have two columns named {}: give one of them another name with AS",
                quote(&it.name)
            );
            return Err(match at {
                Some(e) => error_at(e, msg),
                None => SluiceError::analysis(msg),
            });
        }
    }
    Ok(())
}

fn star_names(s: &Scope) -> String {
    format!("[{}]", s.star(None).iter().map(|f| quote(&f.name)).collect::<Vec<_>>().join(", "))
}
