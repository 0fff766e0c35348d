//! A read-only HTTP endpoint over a session's running queries: ksqlDB's pull queries
//! over HTTP. Started by `.option("sluice.http.port", p)` on the writer; serves while
//! that query runs (and answers for every active query of its session).
//!
//! ```text
//! GET /queries                         [{"id", "runId", "name", "isActive", "stateBatchId"}]
//! GET /queries/<name or id>/progress   the last StreamingQueryProgress (Spark's JSON)
//! GET /queries/<name or id>/state?operator=0&store=0&key=..&<column>=..
//!                                      the operator's state as JSON rows (as
//!                                      StreamingQuery::state / state_lookup show it)
//! ```
//! A small HTTP/1.1 server on `std::net` (one connection at a time, `Connection:
//! close`), bound to 127.0.0.1. Requests are parsed by `httparse` (hyper's parser) and
//! decoded by `form_urlencoded` / `percent-encoding` (the `url` crate's), all already in
//! the build; no web framework (axum) is added for three read-only GET routes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use super::{StreamingQuery, StreamingQueryManager};
use crate::{Result, SluiceError};

/// The writer option naming the port.
pub const HTTP_PORT_OPTION: &str = "sluice.http.port";

/// Serves `manager`'s queries on 127.0.0.1:`port` (0: any free port) on a new thread
/// until `owner` stops; returns the bound port.
///
/// # Errors
/// [`SluiceError::Io`] when the port cannot be bound.
pub fn serve(manager: StreamingQueryManager, port: u16, owner: StreamingQuery) -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .map_err(|source| SluiceError::Io { path: format!("127.0.0.1:{port}"), source })?;
    let bound = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    listener
        .set_nonblocking(true)
        .map_err(|source| SluiceError::Io { path: format!("127.0.0.1:{bound}"), source })?;
    std::thread::Builder::new()
        .name(format!("sluice-http-{bound}"))
        .spawn(move || {
            while owner.is_active() {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = handle(stream, &manager, &owner);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })
        .map_err(|source| SluiceError::Io { path: "<http thread>".into(), source })?;
    Ok(bound)
}

/// The largest request head read (request line and headers), bytes.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

fn handle(mut stream: TcpStream, manager: &StreamingQueryManager, owner: &StreamingQuery) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    // The request head, parsed by httparse (hyper's parser) once it is complete.
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let request = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                break Ok((request.method.unwrap_or("").to_string(), request.path.unwrap_or("/").to_string()))
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_REQUEST_HEAD => continue,
            Ok(httparse::Status::Partial) => break Err(format!("request head over {MAX_REQUEST_HEAD} bytes")),
            Err(e) => break Err(format!("malformed HTTP request: {e}")),
        }
    };
    let (status, body) = match request {
        Err(why) => (400, error_json(&why)),
        Ok((method, _)) if method != "GET" => (405, error_json("only GET is served")),
        Ok((_, target)) => route(&target, manager, owner),
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Method Not Allowed",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

fn route(target: &str, manager: &StreamingQueryManager, owner: &StreamingQuery) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(String, String)> =
        form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let mut queries = manager.active();
    if !queries.iter().any(|q| q.run_id() == owner.run_id()) && owner.is_active() {
        queries.push(owner.clone());
    }
    match segments.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["queries"] => {
            let list: Vec<serde_json::Value> = queries
                .iter()
                .map(|q| {
                    serde_json::json!({
                        "id": q.id(), "runId": q.run_id(), "name": q.name(),
                        "isActive": q.is_active(), "stateBatchId": q.state_batch_id(),
                    })
                })
                .collect();
            (200, serde_json::Value::Array(list).to_string())
        }
        ["queries", name, what] => {
            let Some(q) = queries.iter().find(|q| q.name() == Some(*name) || q.id() == *name) else {
                return (404, error_json(&format!("no active query named {name}")));
            };
            match *what {
                "progress" => match q.last_progress() {
                    Some(p) => (200, serde_json::to_string(&p).unwrap_or_else(|e| error_json(&e.to_string()))),
                    None => (404, error_json("no batch has run yet")),
                },
                "state" => state_rows(q, &params),
                _ => (404, error_json("expected /queries/<name>/progress or /queries/<name>/state")),
            }
        }
        _ => (404, error_json("expected /queries, /queries/<name>/progress or /queries/<name>/state")),
    }
}

fn state_rows(q: &StreamingQuery, params: &[(String, String)]) -> (u16, String) {
    let number = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.parse::<usize>());
    let operator = match number("operator").unwrap_or(Ok(0)) {
        Ok(o) => o,
        Err(_) => return (400, error_json("operator must be a number")),
    };
    let store = match number("store").unwrap_or(Ok(0)) {
        Ok(s) => s,
        Err(_) => return (400, error_json("store must be a number")),
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
        Ok(lines) => (200, format!("[{}]", lines.join(","))),
        Err(e) => (400, error_json(&e.to_string())),
    }
}
