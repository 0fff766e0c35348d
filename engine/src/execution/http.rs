//! A read-only HTTP endpoint over a session's running queries: ksqlDB's pull queries
//! over HTTP. Started by `.option("sluice.http.port", p)` on the writer (or by `sluice
//! serve`); serves while that query runs (and answers for every active query of its
//! session).
//!
//! ```text
//! GET /queries                         [{"id", "runId", "name", "isActive", "stateBatchId"}]
//! GET /queries/<name or id>/progress   the last StreamingQueryProgress (Spark's JSON)
//! GET /queries/<name or id>/state?operator=0&store=0&key=..&<column>=..
//!                                      the operator's state as JSON rows (as
//!                                      StreamingQuery::state / state_lookup show it)
//! ```
//! Every answer is `application/json`; errors are `{"error": ".."}` with 400 (a bad
//! `operator` / `store` number, an unknown key column), 404 (an unknown route or query, no
//! progress yet) or 405 (a method other than GET).
//!
//! An [axum](https://docs.rs/axum) router over hyper's HTTP/1.1 server, on a
//! current-thread tokio runtime of its own on a dedicated thread (state reads run on
//! that runtime's blocking pool), bound to 127.0.0.1. Each response carries
//! `Connection: close` (as a bare `std::net` client that reads to the end expects). When
//! the owning query stops, the server shuts down gracefully: it stops accepting, lets the
//! requests in flight finish, and closes the port.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::{StreamingQuery, StreamingQueryManager};
use crate::{Result, SluiceError};

/// The writer option naming the port (Sluice's own; Spark has no such option).
pub const HTTP_PORT_OPTION: &str = "sluice.http.port";

/// How often the server checks whether its owning query is still active.
const OWNER_POLL: Duration = Duration::from_millis(20);

/// Serves `manager`'s queries on 127.0.0.1:`port` (0: any free port) on a new thread
/// until `owner` stops; returns the bound port.
///
/// # Errors
/// [`SluiceError::Io`] when the runtime cannot be built, the port cannot be bound or the
/// server thread cannot be spawned.
pub fn serve(manager: StreamingQueryManager, port: u16, owner: StreamingQuery) -> Result<u16> {
    let addr = format!("127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name("sluice-http")
        .build()
        .map_err(|source| SluiceError::Io { path: "<http runtime>".into(), source })?;
    // Bound here, on the caller's thread, so that a taken port is an error of `start`.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| SluiceError::Io { path: addr.clone(), source })?;
    let bound = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    let listener = {
        let _entered = runtime.enter();
        tokio::net::TcpListener::from_std(listener).map_err(|source| SluiceError::Io { path: addr.clone(), source })?
    };
    let shared = Shared { manager, owner: owner.clone() };
    let app = Router::new()
        .route("/queries", get(list_queries).fallback(not_get))
        .route("/queries/{name}/progress", get(progress).fallback(not_get))
        .route("/queries/{name}/state", get(state).fallback(not_get))
        .fallback(not_found)
        .layer(axum::middleware::map_response(close_connection))
        .with_state(shared);
    std::thread::Builder::new()
        .name(format!("sluice-http-{bound}"))
        .spawn(move || {
            runtime.block_on(async move {
                let stopped = async move {
                    while owner.is_active() {
                        tokio::time::sleep(OWNER_POLL).await;
                    }
                };
                // An accept or connection error ends the endpoint, never the query.
                let _ = axum::serve(listener, app).with_graceful_shutdown(stopped).await;
            });
        })
        .map_err(|source| SluiceError::Io { path: "<http thread>".into(), source })?;
    Ok(bound)
}

/// What every handler reads: the session's queries and the query owning the endpoint.
#[derive(Clone)]
struct Shared {
    manager: StreamingQueryManager,
    owner: StreamingQuery,
}

impl Shared {
    /// The session's active queries, and the owner while it runs should the manager not
    /// list it.
    fn queries(&self) -> Vec<StreamingQuery> {
        let mut queries = self.manager.active();
        if !queries.iter().any(|q| q.run_id() == self.owner.run_id()) && self.owner.is_active() {
            queries.push(self.owner.clone());
        }
        queries
    }

    /// The active query named (or with id) `name`.
    fn find(&self, name: &str) -> Option<StreamingQuery> {
        self.queries().into_iter().find(|q| q.name() == Some(name) || q.id() == name)
    }
}

/// The 404 answer for a query name that no active query has.
fn no_query(name: &str) -> Response {
    json(StatusCode::NOT_FOUND, error_json(&format!("no active query named {name}")))
}

/// A JSON answer with `status`.
fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

async fn close_connection(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

async fn not_found() -> Response {
    json(StatusCode::NOT_FOUND, error_json("expected /queries, /queries/<name>/progress or /queries/<name>/state"))
}

async fn not_get() -> Response {
    json(StatusCode::METHOD_NOT_ALLOWED, error_json("only GET is served"))
}

async fn list_queries(State(shared): State<Shared>) -> Response {
    let list: Vec<serde_json::Value> = shared
        .queries()
        .iter()
        .map(|q| {
            serde_json::json!({
                "id": q.id(), "runId": q.run_id(), "name": q.name(),
                "isActive": q.is_active(), "stateBatchId": q.state_batch_id(),
            })
        })
        .collect();
    json(StatusCode::OK, serde_json::Value::Array(list).to_string())
}

async fn progress(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let Some(q) = shared.find(&name) else {
        return no_query(&name);
    };
    match q.last_progress() {
        Some(p) => match serde_json::to_string(&p) {
            Ok(body) => json(StatusCode::OK, body),
            Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, error_json(&e.to_string())),
        },
        None => json(StatusCode::NOT_FOUND, error_json("no batch has run yet")),
    }
}

async fn state(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let Some(q) = shared.find(&name) else {
        return no_query(&name);
    };
    // Reading a state version is file I/O and a Polars computation: off the runtime's
    // single thread, so that other requests and the shutdown poll go on meanwhile.
    match tokio::task::spawn_blocking(move || state_rows(&q, &params)).await {
        Ok((status, body)) => json(status, body),
        Err(e) => json(StatusCode::INTERNAL_SERVER_ERROR, error_json(&e.to_string())),
    }
}

fn state_rows(q: &StreamingQuery, params: &[(String, String)]) -> (StatusCode, String) {
    let number = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.parse::<usize>());
    let operator = match number("operator").unwrap_or(Ok(0)) {
        Ok(o) => o,
        Err(_) => return (StatusCode::BAD_REQUEST, error_json("operator must be a number")),
    };
    let store = match number("store").unwrap_or(Ok(0)) {
        Ok(s) => s,
        Err(_) => return (StatusCode::BAD_REQUEST, error_json("store must be a number")),
    };
    let key: Vec<(String, String)> =
        params.iter().filter(|(k, _)| k != "operator" && k != "store").cloned().collect();
    let rows = q.state_store(operator, store).and_then(|shown| {
        if key.is_empty() {
            return Ok(shown);
        }
        let live = q.state_key_columns(operator, store)?;
        crate::state::view::lookup(&shown, &live, &key)
    });
    match rows.and_then(|df| crate::operators::late::rows_as_json(&df)) {
        Ok(lines) => (StatusCode::OK, format!("[{}]", lines.join(","))),
        Err(e) => (StatusCode::BAD_REQUEST, error_json(&e.to_string())),
    }
}
