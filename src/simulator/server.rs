//! The HTTP side: the accept loop, one hyper connection per socket, routing, authentication,
//! request validation and the rendering of every answer in the shape Logz.io documents.
//!
//! A request goes: admin (`/__sim/…`, answered at once, never counted) or API: route (404/405),
//! read the body with a size cap (413), authenticate (401/403), region check (400), validate the
//! create body (400), then the single locked decision in `state` (limits, 404 for an unknown sub
//! account, the fault draw, the token creation), then the latency wait, then the answer — written
//! by hyper, or spoiled on the wire through `conn` for drops and truncations.
//!
//! Every connection is its own task in a `JoinSet` owned by the accept loop: a panic ends that one
//! connection only, and stopping the loop aborts them all, slow answers included.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::conn::{FaultyStream, WireFault};
use super::faults::Fault;
use super::limits::retry_after;
use super::state::{Admission, AnswerFate, Call, ConnectionGuard, Decision, Rejection, Shared};

/// The largest request body read; a larger one is answered 413 (requests here are ~60 bytes).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The header carrying the API token.
const TOKEN_HEADER: &str = "x-api-token";

/// How long to pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";

/// The simulator's answer body type.
type Body = Full<Bytes>;

/// Accepts connections until `stop` fires (or its sender is dropped), then aborts every
/// connection task and waits for them to end.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    // Counted from the accept, so no connection is ever uncounted.
                    let open = shared.connection_opened();
                    connections.spawn(serve_connection(stream, Arc::clone(&shared), open));
                }
                Err(error) => {
                    warn!(%error, "simulator: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    warn!("simulator: a connection task panicked; the server goes on");
                }
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
    debug!("simulator: stopped");
}

/// Serves one connection with keep-alive until the client closes it or a fault ends it.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, _open: ConnectionGuard) {
    // Answers are one small write each: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let fault = Arc::new(WireFault::default());
    let io = TokioIo::new(FaultyStream::new(
        stream,
        Arc::clone(&fault),
        Arc::clone(&shared),
    ));
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        let fault = Arc::clone(&fault);
        async move { Ok::<_, Infallible>(answer(&shared, &fault, request).await) }
    });
    if let Err(error) = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await
    {
        debug!(%error, "simulator: connection ended");
    }
}

/// Answers one request.
async fn answer(shared: &Shared, fault: &WireFault, request: Request<Incoming>) -> Response<Body> {
    if let Some(what) = request.uri().path().strip_prefix("/__sim/") {
        return admin(shared, request.method(), what);
    }
    let call = read_call(shared, request).await;
    let Admission {
        decision,
        delay,
        slot,
        attempt,
    } = shared.admit(call);
    // Dropped here (the client went away while the answer waited), a create's answer stays
    // `NotWritten`.
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let withheld = decision.withholds_answer();
    let response = render(shared, fault, decision);
    // The one place a create's answer is settled: withheld by its fault now, or delivered once
    // the connection has written it in full (see `conn`).
    if let Some(attempt) = attempt {
        if withheld {
            shared.settle_answer(attempt, AnswerFate::Withheld);
        } else {
            let body = response.body().size_hint().exact().unwrap_or(0);
            fault.watch_answer(attempt, usize::try_from(body).unwrap_or(usize::MAX));
        }
    }
    // The slot is held through the latency wait, until the answer is handed to hyper.
    drop(slot);
    response
}

/// The admin endpoints: no auth, no limits, no faults, not counted.
fn admin(shared: &Shared, method: &Method, what: &str) -> Response<Body> {
    // `DELETE /__sim/tokens/ID`: the token is deleted as an admin would in the UI.
    if let Some(id) = what.strip_prefix("tokens/") {
        let Ok(id) = id.parse::<i64>() else {
            return not_found();
        };
        if method != Method::DELETE {
            return method_not_allowed("DELETE");
        }
        return if shared.delete_token(id) {
            respond(StatusCode::NO_CONTENT, JSON, Bytes::new())
        } else {
            message(
                StatusCode::NOT_FOUND,
                &format!("no live token with id {id}"),
            )
        };
    }
    let body = match what {
        "ground-truth" => serde_json::to_vec(&shared.ground_truth()),
        "deleted-tokens" => serde_json::to_vec(&shared.deleted_tokens()),
        "accounts" => serde_json::to_vec(&shared.sim_accounts()),
        "counters" => serde_json::to_vec(&shared.counters()),
        _ => return not_found(),
    };
    if method != Method::GET {
        return method_not_allowed("GET");
    }
    match body {
        Ok(body) => respond(StatusCode::OK, JSON, Bytes::from(body)),
        Err(error) => message(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

/// A route: the API call a method and path name (the client calls the same paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    CreateToken,
    TimeBasedAccounts,
    CreateAccount,
    GetAccount(i64),
    UpdateAccount(i64),
    DeleteAccount(i64),
    DetailedAccount(i64),
    AssociatedAccounts,
    WhoAmI,
}

/// The sub-account collection's path.
const ACCOUNTS_PATH: &str = "/v1/account-management/time-based-accounts";

/// Which route a method and path name.
fn route(method: &Method, path: &str) -> Result<Route, Rejection> {
    let one = |allowed: Method, allow: &'static str, which: Route| {
        if *method == allowed {
            Ok(which)
        } else {
            Err(Rejection::MethodNotAllowed(allow))
        }
    };
    if let Some(rest) = path.strip_prefix(ACCOUNTS_PATH) {
        let id = |text: &str| text.parse::<i64>().map_err(|_| Rejection::NoRoute);
        return match rest.trim_end_matches('/') {
            "" => match *method {
                Method::GET => Ok(Route::TimeBasedAccounts),
                Method::POST => Ok(Route::CreateAccount),
                _ => Err(Rejection::MethodNotAllowed("GET, POST")),
            },
            detailed if detailed.starts_with("/detailed/") => one(
                Method::GET,
                "GET",
                Route::DetailedAccount(id(&detailed["/detailed/".len()..])?),
            ),
            other => {
                let id = id(other.strip_prefix('/').unwrap_or(other))?;
                match *method {
                    Method::GET => Ok(Route::GetAccount(id)),
                    Method::PUT => Ok(Route::UpdateAccount(id)),
                    Method::DELETE => Ok(Route::DeleteAccount(id)),
                    _ => Err(Rejection::MethodNotAllowed("GET, PUT, DELETE")),
                }
            }
        };
    }
    match path {
        "/v1/api-tokens/sub-account" => one(Method::POST, "POST", Route::CreateToken),
        "/v1/associated-accounts" => one(Method::GET, "GET", Route::AssociatedAccounts),
        "/v2/whoami" => one(Method::GET, "GET", Route::WhoAmI),
        _ => Err(Rejection::NoRoute),
    }
}

/// Routes, reads, authenticates and validates a request: everything that needs no shared state.
async fn read_call(shared: &Shared, request: Request<Incoming>) -> Call {
    let which = match route(request.method(), request.uri().path()) {
        Ok(which) => which,
        Err(rejection) => return Call::Reject(rejection),
    };
    let token_matches = match request.headers().get(TOKEN_HEADER) {
        None => None,
        Some(value) if value.is_empty() => None,
        Some(value) => Some(value.as_bytes() == shared.owner_token().as_bytes()),
    };
    let request_token = match request.headers().get(TOKEN_HEADER).map(|v| v.to_str()) {
        Some(Ok(text)) if which == Route::WhoAmI && token_matches == Some(false) => {
            Some(text.to_owned())
        }
        _ => None,
    };
    // Read the body before answering anything, so the connection stays usable for the next
    // request (hyper can only keep alive a connection whose request body was consumed).
    let body = match read_body(request).await {
        Ok(body) => body,
        Err(rejection) => return Call::Reject(rejection),
    };
    let probe = match token_matches {
        None => return Call::Reject(Rejection::Unauthorized),
        // whoami answers for any valid token: another token is a probe, decided under the lock.
        Some(false) if request_token.is_some() => request_token,
        Some(false) => return Call::Reject(Rejection::Forbidden),
        Some(true) => None,
    };
    if shared.region_mismatch_message().is_some() {
        return Call::Reject(Rejection::RegionMismatch);
    }
    if let Some(token) = probe {
        return Call::WhoAmIToken { token };
    }
    match which {
        Route::CreateToken => parse_create(&body),
        Route::TimeBasedAccounts => Call::TimeBasedAccounts,
        Route::CreateAccount => match super::accounts::parse_request(&body, true) {
            Ok(request) => Call::CreateAccount(request),
            Err(message) => Call::Reject(Rejection::BadRequest(message)),
        },
        Route::UpdateAccount(id) => match super::accounts::parse_request(&body, false) {
            Ok(request) => Call::UpdateAccount(id, request),
            Err(message) => Call::Reject(Rejection::BadRequest(message)),
        },
        Route::GetAccount(id) => Call::GetAccount(id),
        Route::DetailedAccount(id) => Call::DetailedAccount(id),
        Route::DeleteAccount(id) => Call::DeleteAccount(id),
        Route::AssociatedAccounts => Call::AssociatedAccounts,
        Route::WhoAmI => Call::WhoAmI,
    }
}

/// Reads the request body, at most [`MAX_BODY_BYTES`] of it.
async fn read_body(request: Request<Incoming>) -> Result<Bytes, Rejection> {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(Rejection::PayloadTooLarge);
    }
    match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Rejection::PayloadTooLarge)
        }
        Err(error) => Err(Rejection::BadRequest(format!(
            "could not read the request body: {error}"
        ))),
    }
}

/// Validates a token-creation body: `{"name": non-empty string, "accountId": integer}`.
fn parse_create(body: &[u8]) -> Call {
    use serde_json::Value;
    let bad = |message: &str| Call::Reject(Rejection::BadRequest(message.to_owned()));
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            return Call::Reject(Rejection::BadRequest(format!(
                "Malformed request body: {error}"
            )));
        }
    };
    let Value::Object(mut object) = value else {
        return bad("Malformed request body: expected a JSON object");
    };
    let name = match object.remove("name") {
        None | Some(Value::Null) => return bad("Missing required field 'name'"),
        Some(Value::String(name)) if name.trim().is_empty() => {
            return bad("Field 'name' must not be empty");
        }
        Some(Value::String(name)) => name,
        Some(_) => return bad("Field 'name' must be a string"),
    };
    let account_id = match object.get("accountId") {
        None | Some(Value::Null) => return bad("Missing required field 'accountId'"),
        Some(value) => match value.as_i64() {
            Some(id) => id,
            None => return bad("Field 'accountId' must be an integer"),
        },
    };
    Call::Create { account_id, name }
}

/// Turns a decision into the response hyper writes, arming the wire fault where the answer is
/// to be dropped or cut.
fn render(shared: &Shared, fault: &WireFault, decision: Decision) -> Response<Body> {
    match decision {
        Decision::Limited(wait) => too_many_requests(shared, wait),
        Decision::Fault429 => {
            debug!("simulator: injected 429");
            too_many_requests(shared, Duration::from_secs(1))
        }
        Decision::Fault503 => {
            debug!("simulator: injected 503");
            message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Decision::DropBeforeCreate => {
            debug!("simulator: injected drop before create");
            fault.arm_drop();
            respond(StatusCode::OK, JSON, Bytes::new())
        }
        Decision::Created { body, fault: None } => respond(StatusCode::OK, JSON, body),
        Decision::Created {
            body,
            fault: Some(kind),
        } => {
            debug!(fault = ?kind, "simulator: injected fault after create");
            match kind {
                Fault::ErrorAfterCreate => {
                    message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                }
                Fault::DropAfterCreate => {
                    fault.arm_drop();
                    respond(StatusCode::OK, JSON, body)
                }
                Fault::TruncateAfterCreate => {
                    fault.arm_truncate(body.len() / 2);
                    respond(StatusCode::OK, JSON, body)
                }
                // The slow delay was already waited; the others never reach here.
                _ => respond(StatusCode::OK, JSON, body),
            }
        }
        Decision::Json(body) => respond(StatusCode::OK, JSON, body),
        Decision::NoContent => respond(StatusCode::NO_CONTENT, JSON, Bytes::new()),
        Decision::NoSuchAccount(id) => json_body(
            StatusCode::NOT_FOUND,
            &json!({
                "errorCode": "TimeBasedAccount/NOT_FOUND",
                "message": format!("Time based account {id} was not found"),
            }),
        ),
        Decision::IllegalAccountRequest(text) => json_body(
            StatusCode::BAD_REQUEST,
            &json!({
                "errorCode": "TimeBasedAccount/ILLEGAL_PLAN_REQUEST",
                "message": text,
                "parameters": {},
            }),
        ),
        Decision::UnknownAccount {
            account_id,
            request,
        } => json_body(
            StatusCode::NOT_FOUND,
            &json!({
                "errorCode": "SUB_ACCOUNT_NOT_FOUND",
                "message": format!("Sub account {account_id} was not found for this owner account"),
                "requestId": format!("sim-{request:012}"),
                "parameters": {},
            }),
        ),
        Decision::Reject(rejection) => match rejection {
            Rejection::BadRequest(text) => message(StatusCode::BAD_REQUEST, &text),
            Rejection::RegionMismatch => message(
                StatusCode::BAD_REQUEST,
                shared.region_mismatch_message().unwrap_or_default(),
            ),
            Rejection::Unauthorized => message(
                StatusCode::UNAUTHORIZED,
                "Unauthorized: the X-API-TOKEN header with an owner account API token is required",
            ),
            Rejection::Forbidden => json_body(
                StatusCode::FORBIDDEN,
                &json!({"code": 403, "message": "Insufficient privileges"}),
            ),
            Rejection::NoRoute => not_found(),
            Rejection::MethodNotAllowed(allow) => method_not_allowed(allow),
            Rejection::PayloadTooLarge => message(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("Request body larger than {MAX_BODY_BYTES} bytes"),
            ),
        },
    }
}

/// A response with a status, content type and body.
fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response.
fn json_body(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(status, JSON, Bytes::from(value.to_string()))
}

/// `{"message": "..."}` with a status: the documented error shape.
fn message(status: StatusCode, text: &str) -> Response<Body> {
    json_body(status, &json!({ "message": text }))
}

/// 404 for an unknown path.
fn not_found() -> Response<Body> {
    respond(
        StatusCode::NOT_FOUND,
        JSON,
        Bytes::from_static(br#"{"message":"not found"}"#),
    )
}

/// 405 with the allowed method.
fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = message(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

/// The plain-text 429 Logz.io answers, with `Retry-After` per the configured mode.
fn too_many_requests(shared: &Shared, wait: Duration) -> Response<Body> {
    let mut response = respond(
        StatusCode::TOO_MANY_REQUESTS,
        TEXT,
        Bytes::from_static(b"Too Many Requests"),
    );
    if let Some(value) = retry_after(shared.retry_after_mode(), wait) {
        response.headers_mut().insert(RETRY_AFTER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::simulator::{AnswerFate, FaultRates, SimConfig, SimHandle, Simulator};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one create on a fresh raw connection (kept open).
    async fn send_create(sim: &SimHandle, name: &str) -> TcpStream {
        let body = format!(r#"{{"name":"{name}","accountId":160343}}"#);
        let request = format!(
            "POST /v1/api-tokens/sub-account HTTP/1.1\r\nhost: sim\r\nx-api-token: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            crate::simulator::DEFAULT_OWNER_TOKEN,
            body.len()
        );
        let mut stream = TcpStream::connect(sim.addr()).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stream
    }

    /// Waits (bounded) for a condition on the simulator.
    async fn until(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The fate of the only create, once its connection has ended.
    async fn settled(sim: &SimHandle) -> (AnswerFate, Option<i64>) {
        until("every connection ended", || sim.open_connections() == 0).await;
        let attempts = sim.create_attempts();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        (attempts[0].fate, attempts[0].token_id)
    }

    async fn sim(config: SimConfig) -> Simulator {
        Simulator::start(config).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_create_answer_is_delivered_only_when_written_in_full_and_not_left_unread() {
        // Read in full, then closed: delivered.
        let s = sim(SimConfig::default()).await;
        let mut stream = send_create(&s.handle(), "read").await;
        let mut answer = Vec::new();
        while !answer.ends_with(b"}") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the answer ended early");
            answer.extend_from_slice(&chunk[..n]);
        }
        drop(stream);
        let (fate, id) = settled(&s.handle()).await;
        assert_eq!((fate, id), (AnswerFate::Delivered, Some(7000)));

        // Written in full, but the client goes away without reading it: its end resets the
        // connection, and the answer is unread.
        let s = sim(SimConfig::default()).await;
        let h = s.handle();
        let stream = send_create(&h, "unread").await;
        until("the answer is written", || {
            h.create_attempts()
                .first()
                .is_some_and(|a| a.fate == AnswerFate::Delivered)
        })
        .await;
        stream.readable().await.unwrap();
        drop(stream);
        assert_eq!(settled(&h).await, (AnswerFate::Unread, Some(7000)));

        // The client gives up while the answer waits (latency): never written.
        let s = sim(SimConfig {
            latency: Duration::from_secs(30),
            ..SimConfig::default()
        })
        .await;
        let h = s.handle();
        let stream = send_create(&h, "gone").await;
        until("the create is decided", || !h.create_attempts().is_empty()).await;
        drop(stream);
        assert_eq!(settled(&h).await, (AnswerFate::NotWritten, Some(7000)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fault_that_spoils_the_answer_withholds_it_and_a_refusal_delivers_one() {
        let one = |faults: FaultRates| SimConfig {
            faults,
            ..SimConfig::default()
        };
        for (faults, token) in [
            (
                FaultRates {
                    error_after_create: 1.0,
                    ..FaultRates::default()
                },
                Some(7000),
            ),
            (
                FaultRates {
                    drop_after_create: 1.0,
                    ..FaultRates::default()
                },
                Some(7000),
            ),
            (
                FaultRates {
                    truncate_after_create: 1.0,
                    ..FaultRates::default()
                },
                Some(7000),
            ),
            (
                FaultRates {
                    drop_before_create: 1.0,
                    ..FaultRates::default()
                },
                None,
            ),
        ] {
            let s = sim(one(faults)).await;
            let mut stream = send_create(&s.handle(), "spoiled").await;
            // Whatever comes, up to the end of the connection or the end of the 500.
            let mut answer = Vec::new();
            let mut chunk = [0u8; 1024];
            while !answer.ends_with(b"}") {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
            drop(stream);
            assert_eq!(
                settled(&s.handle()).await,
                (AnswerFate::Withheld, token),
                "{faults:?}"
            );
        }
        // A 503 is a full answer (nothing created): delivered.
        let s = sim(one(FaultRates {
            unavailable: 1.0,
            ..FaultRates::default()
        }))
        .await;
        let mut stream = send_create(&s.handle(), "refused").await;
        let mut answer = Vec::new();
        while !answer.ends_with(b"}") {
            let mut chunk = [0u8; 1024];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            answer.extend_from_slice(&chunk[..n]);
        }
        drop(stream);
        assert_eq!(settled(&s.handle()).await, (AnswerFate::Delivered, None));
    }

    fn rejected(body: &str) -> String {
        match parse_create(body.as_bytes()) {
            Call::Reject(Rejection::BadRequest(message)) => message,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            route(&Method::POST, "/v1/api-tokens/sub-account"),
            Ok(Route::CreateToken)
        );
        assert_eq!(route(&Method::GET, "/v2/whoami"), Ok(Route::WhoAmI));
        assert_eq!(
            route(&Method::GET, "/v1/api-tokens/sub-account"),
            Err(Rejection::MethodNotAllowed("POST"))
        );
        assert_eq!(route(&Method::GET, "/v2/whoami/"), Err(Rejection::NoRoute));
    }

    #[test]
    fn create_body_validation() {
        assert_eq!(
            parse_create(br#"{"name":"ci","accountId":160343}"#),
            Call::Create {
                account_id: 160_343,
                name: "ci".to_owned()
            }
        );
        assert!(rejected("nope").starts_with("Malformed request body"));
        assert!(rejected("[1]").contains("JSON object"));
        assert!(rejected(r#"{"accountId":1}"#).contains("'name'"));
        assert!(rejected(r#"{"name":7,"accountId":1}"#).contains("must be a string"));
        assert!(rejected(r#"{"name":"  ","accountId":1}"#).contains("must not be empty"));
        assert!(rejected(r#"{"name":"ci"}"#).contains("'accountId'"));
        assert!(rejected(r#"{"name":"ci","accountId":"1"}"#).contains("integer"));
        assert!(rejected(r#"{"name":"ci","accountId":1.5}"#).contains("integer"));
    }
}
