//! The built-in Logz.io API simulator, observed from outside: through a real HTTP client
//! (reqwest) for answers, and through raw sockets where the bytes on the wire are the point
//! (dropped connections, truncated bodies, keep-alive).
//!
//! No test sleeps to wait for something: each waits on a condition with a deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::HashSet;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use logzio_tokens::simulator::{
    BackgroundSimulator, Counters, FaultRates, RegionMismatch, RetryAfterMode, SimConfig,
    SimConfigError, SimHandle, Simulator, SubAccount,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OWNER_TOKEN: &str = "sim-owner-token";
const CREATE: &str = "/v1/api-tokens/sub-account";

/// A reqwest client for plain-http loopback calls (no proxy; TLS provider installed because the
/// crate builds reqwest without one).
fn client(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .unwrap()
}

fn default_client() -> reqwest::Client {
    client(Duration::from_secs(10))
}

async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).await.unwrap()
}

/// An answer, read in full.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    retry_after: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {:?}", self.text))
    }
}

async fn read_answer(response: reqwest::Response) -> Answer {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let status = response.status();
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let text = response.text().await.unwrap();
    Answer {
        status,
        content_type,
        retry_after,
        text,
    }
}

/// A request with an optional token and optional raw body.
async fn call(
    client: &reqwest::Client,
    sim: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Answer {
    let mut request = client.request(method, format!("{sim}{path}"));
    if let Some(token) = token {
        request = request.header("X-API-TOKEN", token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    read_answer(request.send().await.unwrap()).await
}

/// A create request with the owner token and this JSON body, ready to send.
fn create_request(client: &reqwest::Client, sim: &str, body: &Value) -> reqwest::RequestBuilder {
    client
        .post(format!("{sim}{CREATE}"))
        .header("X-API-TOKEN", OWNER_TOKEN)
        .header("content-type", "application/json")
        .body(body.to_string())
}

async fn get(client: &reqwest::Client, sim: &str, path: &str) -> Answer {
    call(
        client,
        sim,
        reqwest::Method::GET,
        path,
        Some(OWNER_TOKEN),
        None,
    )
    .await
}

async fn create(client: &reqwest::Client, sim: &str, account_id: i64, name: &str) -> Answer {
    let body = json!({"name": name, "accountId": account_id}).to_string();
    call(
        client,
        sim,
        reqwest::Method::POST,
        CREATE,
        Some(OWNER_TOKEN),
        Some(body),
    )
    .await
}

/// Waits until `condition` holds, failing the test at the deadline.
async fn wait_until(what: &str, deadline: Duration, mut condition: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !condition() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A raw create request, one connection's worth.
fn raw_create(account_id: i64, name: &str, connection: &str) -> String {
    let body = json!({"name": name, "accountId": account_id}).to_string();
    format!(
        "POST {CREATE} HTTP/1.1\r\nHost: sim\r\nX-API-TOKEN: {OWNER_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `request` on a new connection and returns every byte received until the server ends
/// the connection (by FIN or by reset).
async fn raw_exchange(addr: SocketAddr, request: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("the server should end the connection");
    received
}

/// Splits a raw answer into its head (status line and headers) and body.
fn split_answer(raw: &[u8]) -> (String, Vec<u8>) {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    (
        String::from_utf8(raw[..end].to_vec()).unwrap(),
        raw[end + 4..].to_vec(),
    )
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .expect("a content-length header")
}

/// Reads exactly one answer from a kept-alive connection.
async fn read_one_answer(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "connection closed inside the head: {raw:?}");
        raw.push(byte[0]);
    }
    let (head, _) = split_answer(&raw);
    let mut body = vec![0u8; content_length(&head)];
    stream.read_exact(&mut body).await.unwrap();
    (head, body)
}

fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        && parts[2].starts_with('4')
        && parts[3].starts_with(['8', '9', 'a', 'b'])
}

#[tokio::test]
async fn created_token_is_answered_and_recorded_in_ground_truth() {
    let sim = start(SimConfig::default()).await;
    let answer = create(&default_client(), &sim.url(), 160_343, "ci").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "application/json");
    let body = answer.json();
    let keys: HashSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, HashSet::from(["id", "name", "token", "createdAt"]));

    let truth = sim.ground_truth();
    assert_eq!(truth.len(), 1);
    let token = &truth[0];
    assert_eq!(body["id"], token.id);
    assert_eq!(body["token"], token.token.as_str());
    assert_eq!(body["name"], "ci");
    assert_eq!((token.account_id, token.name.as_str()), (160_343, "ci"));
    // serde_json's default float parsing may be one ulp off the exact value: compare loosely.
    assert!((body["createdAt"].as_f64().unwrap() - token.created_at).abs() < 1e-3);
    assert!(is_uuid_v4(&token.token), "{}", token.token);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - token.created_at).abs() < 60.0);
    assert!(
        !format!("{token:?}").contains(&token.token),
        "Debug redacts"
    );

    let counters = sim.counters();
    assert_eq!((counters.requests, counters.created), (1, 1));

    // Ids increase, secrets differ.
    let second = create(&default_client(), &sim.url(), 160_348, "ci")
        .await
        .json();
    assert_eq!(second["id"], token.id + 1);
    assert_ne!(second["token"], body["token"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn error_answers_have_the_documented_shapes() {
    let sim = start(SimConfig::default()).await;
    let url = sim.url();
    let client = default_client();
    let post = |token: Option<&'static str>, body: &str| {
        call(
            &client,
            &url,
            reqwest::Method::POST,
            CREATE,
            token,
            Some(body.to_owned()),
        )
    };
    let valid = r#"{"name":"ci","accountId":160343}"#;

    let missing = post(None, valid).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(missing.json()["message"].is_string());

    let wrong = post(Some("not-the-owner"), valid).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(
        wrong.json(),
        json!({"code": 403, "message": "Insufficient privileges"})
    );

    for bad in [
        "not json",
        "[]",
        r#"{"accountId":160343}"#,
        r#"{"name":7,"accountId":160343}"#,
        r#"{"name":"","accountId":160343}"#,
        r#"{"name":"ci"}"#,
        r#"{"name":"ci","accountId":"160343"}"#,
        r#"{"name":"ci","accountId":160343.5}"#,
    ] {
        let answer = post(Some(OWNER_TOKEN), bad).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        let body = answer.json();
        assert_eq!(body.as_object().unwrap().len(), 1, "{bad}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty(), "{bad}");
    }

    for account in [999_999, 100_000] {
        let body = format!(r#"{{"name":"ci","accountId":{account}}}"#);
        let answer = post(Some(OWNER_TOKEN), &body).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        let body = answer.json();
        assert!(body["errorCode"].is_string(), "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains(&account.to_string())
        );
        assert!(body["requestId"].is_string(), "{body}");
        assert_eq!(body["parameters"], json!({}));
    }

    let no_route = get(&client, &url, "/v1/nothing-here").await;
    assert_eq!(no_route.status, StatusCode::NOT_FOUND);
    assert_eq!(no_route.json(), json!({"message": "not found"}));

    let wrong_method = get(&client, &url, CREATE).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);

    let huge = format!(
        r#"{{"name":"{}","accountId":160343}}"#,
        "x".repeat(100 * 1024)
    );
    let too_large = post(Some(OWNER_TOKEN), &huge).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);

    assert!(sim.ground_truth().is_empty());
    let counters = sim.counters();
    assert_eq!(
        counters,
        Counters {
            requests: 15,
            bad_request_400: 8,
            unauthorized_401: 1,
            forbidden_403: 1,
            not_found_404: 3,
            method_not_allowed_405: 1,
            payload_too_large_413: 1,
            max_in_flight_seen: 1,
            ..Counters::default()
        }
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn region_mismatch_answers_every_authenticated_call() {
    let sim = start(SimConfig {
        region_mismatch: Some(RegionMismatch {
            account_region: "eu".to_owned(),
            server_region: "us".to_owned(),
        }),
        ..SimConfig::default()
    })
    .await;
    let url = sim.url();
    let client = default_client();
    let expected = json!({"message": "Account region eu differs from current server region us"});
    let answers = [
        create(&client, &url, 160_343, "ci").await,
        get(&client, &url, "/v2/whoami").await,
        get(&client, &url, "/v1/account-management/time-based-accounts").await,
        get(&client, &url, "/v1/associated-accounts").await,
    ];
    for answer in answers {
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(answer.json(), expected);
    }
    // Authentication still comes first.
    let anonymous = call(
        &client,
        &url,
        reqwest::Method::GET,
        "/v2/whoami",
        None,
        None,
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    // The admin side is not part of the played region.
    let admin = get(&client, &url, "/__sim/ground-truth").await;
    assert_eq!((admin.status, admin.json()), (StatusCode::OK, json!([])));
    assert!(sim.ground_truth().is_empty());
    assert_eq!(sim.counters().bad_request_400, 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn created_at_comes_both_as_integer_and_as_decimal() {
    let sim = start(SimConfig::default()).await;
    let client = default_client();
    let (mut integers, mut decimals) = (0, 0);
    for i in 0..40 {
        let answer = create(&client, &sim.url(), 160_345, &format!("t{i}")).await;
        let created_at = &answer.json()["createdAt"];
        if created_at.is_u64() {
            integers += 1;
        } else {
            assert!(created_at.is_f64(), "{created_at}");
            // The decimal form carries its fraction digits: `1621858311.000000000` style.
            let raw = answer.text.split("\"createdAt\":").nth(1).unwrap();
            let fraction = raw.trim_end_matches('}').split('.').nth(1).unwrap();
            assert_eq!(fraction.len(), 9, "{raw}");
            let exact = raw.trim_end_matches('}').parse::<f64>().unwrap();
            assert_eq!(exact.fract() * 4.0, (exact.fract() * 4.0).round(), "{raw}");
            decimals += 1;
        }
    }
    assert!(integers > 0 && decimals > 0, "{integers} / {decimals}");
    sim.shutdown().await;
}

#[tokio::test]
async fn account_lists_and_whoami_have_the_documented_shapes() {
    let sim = start(SimConfig::default()).await;
    let url = sim.url();
    let client = default_client();

    let whoami = get(&client, &url, "/v2/whoami").await;
    assert_eq!(whoami.status, StatusCode::OK);
    assert_eq!(
        whoami.json(),
        json!({"accountName": "acme-main", "accountId": 100_000})
    );

    let listed = get(&client, &url, "/v1/account-management/time-based-accounts").await;
    assert_eq!(listed.status, StatusCode::OK);
    let listed = listed.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 7);
    assert_eq!(listed[0]["accountId"], 100_000);
    assert_eq!(listed[0]["isOwner"], true);
    assert_eq!(listed[1]["accountId"], 160_343);
    assert_eq!(listed[1]["accountName"], "payments-prod");
    for account in listed {
        let object = account.as_object().unwrap();
        for field in [
            "email",
            "maxDailyGB",
            "reservedDailyGB",
            "utilizationSettings",
            "softLimitGB",
        ] {
            assert!(object[field].is_null(), "{field} in {account}");
        }
        assert!(account["retentionDays"].is_u64());
        assert_eq!(account["searchable"], true);
        assert_eq!(account["accessible"], true);
        assert_eq!(account["docSizeSetting"], false);
        assert_eq!(account["sharingObjectsAccounts"], json!([]));
    }
    assert!(listed[1..].iter().all(|a| a["isOwner"] == false));

    let associated = get(&client, &url, "/v1/associated-accounts").await.json();
    let associated = associated.as_array().unwrap();
    assert_eq!(
        associated[0],
        json!({"accountId": 100_000, "accountName": "acme-main", "type": "OWNER_ACCOUNT"})
    );
    assert_eq!(
        associated[6],
        json!({"accountId": 160_348, "accountName": "ml-sandbox", "type": "SUB_ACCOUNT"})
    );

    // A sub account added while running shows up and accepts tokens.
    let handle: SimHandle = sim.handle();
    assert!(handle.add_sub_account(SubAccount::new(170_001, "late-arrival")));
    assert!(!handle.add_sub_account(SubAccount::new(170_001, "again")));
    let associated = get(&client, &url, "/v1/associated-accounts").await.json();
    assert_eq!(associated[7]["accountName"], "late-arrival");
    assert_eq!(
        create(&client, &url, 170_001, "ci").await.status,
        StatusCode::OK
    );
    sim.shutdown().await;
}

/// Client-side view of one create call under faults.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    ok: u64,
    too_many: u64,
    unavailable: u64,
    server_error: u64,
    closed_without_answer: u64,
    truncated: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_happen_at_their_rates_and_ground_truth_holds_exactly_the_created_tokens() {
    const REQUESTS: u64 = 2000;
    const WORKERS: u64 = 32;
    const RATE: f64 = 0.1;
    let sim = start(SimConfig {
        faults: FaultRates::uniform(RATE),
        // Short enough to wait for: here the slow answers are counted, not timed out.
        slow_delay: Duration::from_millis(200),
        retry_after: RetryAfterMode::Seconds,
        seed: 42,
        ..SimConfig::default()
    })
    .await;
    let client = default_client();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let client = client.clone();
        let url = sim.url();
        workers.spawn(async move {
            let mut seen = Seen::default();
            let mut ok_tokens = Vec::new();
            for i in (worker..REQUESTS).step_by(WORKERS as usize) {
                let body = json!({"name": format!("t{i}"), "accountId": 160_343 + (i % 6) as i64});
                let sent = create_request(&client, &url, &body).send().await;
                let response = match sent {
                    Ok(response) => response,
                    Err(error) => {
                        assert!(!error.is_timeout(), "{error}");
                        seen.closed_without_answer += 1;
                        continue;
                    }
                };
                let status = response.status();
                let content_type = response.headers()["content-type"].clone();
                match response.bytes().await {
                    Err(error) => {
                        assert_eq!(status, StatusCode::OK, "{error}");
                        seen.truncated += 1;
                    }
                    Ok(bytes) => match status {
                        StatusCode::OK => {
                            let body: Value = serde_json::from_slice(&bytes).unwrap();
                            ok_tokens.push((
                                body["id"].as_i64().unwrap(),
                                body["token"].as_str().unwrap().to_owned(),
                            ));
                            seen.ok += 1;
                        }
                        StatusCode::TOO_MANY_REQUESTS => {
                            assert_eq!(&bytes[..], b"Too Many Requests");
                            assert_eq!(content_type, "text/plain");
                            seen.too_many += 1;
                        }
                        StatusCode::SERVICE_UNAVAILABLE => {
                            let body: Value = serde_json::from_slice(&bytes).unwrap();
                            assert_eq!(body, json!({"message": "Service Unavailable"}));
                            seen.unavailable += 1;
                        }
                        StatusCode::INTERNAL_SERVER_ERROR => {
                            let body: Value = serde_json::from_slice(&bytes).unwrap();
                            assert_eq!(body, json!({"message": "Internal Server Error"}));
                            seen.server_error += 1;
                        }
                        other => panic!("unexpected {other}"),
                    },
                }
            }
            (seen, ok_tokens)
        });
    }
    let mut seen = Seen::default();
    let mut ok_tokens = Vec::new();
    while let Some(joined) = workers.join_next().await {
        let (part, tokens) = joined.unwrap();
        seen.ok += part.ok;
        seen.too_many += part.too_many;
        seen.unavailable += part.unavailable;
        seen.server_error += part.server_error;
        seen.closed_without_answer += part.closed_without_answer;
        seen.truncated += part.truncated;
        ok_tokens.extend(tokens);
    }
    let c = sim.counters();
    let truth = sim.ground_truth();

    // The measured rates, for the record (visible with --nocapture).
    let rates = [
        ("rate_limited", c.fault_429),
        ("unavailable", c.fault_503),
        ("error_after_create", c.error_500_after_create),
        ("drop_before_create", c.dropped_before_create),
        ("drop_after_create", c.dropped_after_create),
        ("truncate_after_create", c.truncated_after_create),
        ("slow_after_create", c.slow_after_create),
    ];
    let report: Vec<String> = rates
        .iter()
        .map(|(name, n)| format!("{name}={:.3}", *n as f64 / REQUESTS as f64))
        .collect();
    eprintln!(
        "measured fault rates over {REQUESTS} creates: {}",
        report.join(" ")
    );

    // Each fault at about its rate: 200 expected, one sigma is about 13.
    for (name, n) in rates {
        assert!((150..=250).contains(&n), "{name}: {n} of {REQUESTS}");
    }
    assert_eq!(c.requests, REQUESTS);
    assert_eq!(c.limited_429, 0);

    // What the client saw matches what the server says it did.
    assert_eq!(seen.too_many, c.fault_429);
    assert_eq!(seen.unavailable, c.fault_503);
    assert_eq!(seen.server_error, c.error_500_after_create);
    assert_eq!(
        seen.closed_without_answer,
        c.dropped_before_create + c.dropped_after_create
    );
    assert_eq!(seen.truncated, c.truncated_after_create);
    assert_eq!(
        seen.ok + seen.too_many + seen.unavailable + seen.server_error,
        REQUESTS - seen.closed_without_answer - seen.truncated
    );

    // Ground truth: every token behind an ambiguous fault, none behind 429, 503 or an early drop.
    let created = REQUESTS - c.fault_429 - c.fault_503 - c.dropped_before_create;
    assert_eq!(c.created, created);
    assert_eq!(truth.len() as u64, created);
    assert_eq!(
        created,
        seen.ok + c.error_500_after_create + c.dropped_after_create + c.truncated_after_create
    );
    // The slow answers were 200s (this client waited for them).
    assert!(seen.ok >= c.slow_after_create);

    // Ids unique and in creation order, secrets unique, every 200 in the ground truth.
    assert!(truth.windows(2).all(|w| w[0].id < w[1].id));
    let secrets: HashSet<&str> = truth.iter().map(|t| t.token.as_str()).collect();
    assert_eq!(secrets.len(), truth.len());
    let by_id: std::collections::HashMap<i64, &str> =
        truth.iter().map(|t| (t.id, t.token.as_str())).collect();
    for (id, secret) in &ok_tokens {
        assert_eq!(by_id.get(id), Some(&secret.as_str()));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn fault_counts_are_a_function_of_the_seed() {
    async fn run(seed: u64) -> Counters {
        let sim = start(SimConfig {
            faults: FaultRates {
                unavailable: 0.3,
                error_after_create: 0.3,
                ..FaultRates::default()
            },
            seed,
            ..SimConfig::default()
        })
        .await;
        let client = default_client();
        for i in 0..60 {
            create(&client, &sim.url(), 160_346, &format!("t{i}")).await;
        }
        let counters = sim.counters();
        sim.shutdown().await;
        counters
    }
    let (a, b, c) = (run(7).await, run(7).await, run(8).await);
    assert_eq!(a, b);
    assert_ne!(
        (a.fault_503, a.error_500_after_create),
        (c.fault_503, c.error_500_after_create)
    );
}

#[tokio::test]
async fn dropped_connections_carry_no_response_byte() {
    for (faults, creates) in [
        (
            FaultRates {
                drop_before_create: 1.0,
                ..FaultRates::default()
            },
            false,
        ),
        (
            FaultRates {
                drop_after_create: 1.0,
                ..FaultRates::default()
            },
            true,
        ),
    ] {
        let sim = start(SimConfig {
            faults,
            ..SimConfig::default()
        })
        .await;
        let received = raw_exchange(sim.addr(), &raw_create(160_343, "ci", "keep-alive")).await;
        assert!(
            received.is_empty(),
            "{}",
            String::from_utf8_lossy(&received)
        );
        assert_eq!(sim.ground_truth().len(), usize::from(creates));
        let counters = sim.counters();
        assert_eq!(counters.dropped_before_create, u64::from(!creates));
        assert_eq!(counters.dropped_after_create, u64::from(creates));
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn truncated_answer_promises_more_body_than_it_sends() {
    let sim = start(SimConfig {
        faults: FaultRates {
            truncate_after_create: 1.0,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    })
    .await;
    let received = raw_exchange(sim.addr(), &raw_create(160_344, "ci", "keep-alive")).await;
    let (head, body) = split_answer(&received);
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let promised = content_length(&head);
    assert!(
        !body.is_empty() && body.len() < promised,
        "{} of {promised}",
        body.len()
    );
    assert_eq!(body.len(), promised / 2);
    assert!(body.starts_with(b"{\"id\":7000,"));
    let truth = sim.ground_truth();
    assert_eq!(truth.len(), 1);
    assert_eq!(sim.counters().truncated_after_create, 1);

    // Through a real client: the head arrives, the body fails.
    let response = create_request(
        &default_client(),
        &sim.url(),
        &json!({"name": "again", "accountId": 160_344}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let err = response.bytes().await.expect_err("the body is cut short");
    assert!(err.is_body() || err.is_decode(), "{err:?}");
    assert_eq!(sim.ground_truth().len(), 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn slow_answer_outlasts_the_client_timeout_but_the_token_exists() {
    let sim = start(SimConfig {
        faults: FaultRates {
            slow_after_create: 1.0,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    })
    .await;
    let error = create_request(
        &client(Duration::from_millis(200)),
        &sim.url(),
        &json!({"name": "ci", "accountId": 160_347}),
    )
    .send()
    .await
    .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(sim.ground_truth().len(), 1);
    assert_eq!(sim.counters().slow_after_create, 1);
    // Other connections are served meanwhile.
    let whoami = get(&default_client(), &sim.url(), "/v2/whoami").await;
    assert_eq!(whoami.status, StatusCode::OK);
    sim.shutdown().await;
}

fn assert_plain_429(answer: &Answer, mode: RetryAfterMode) {
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.content_type, "text/plain");
    assert_eq!(answer.text, "Too Many Requests");
    match (mode, answer.retry_after.as_deref()) {
        (RetryAfterMode::None, None) => {}
        (RetryAfterMode::Seconds, Some(seconds)) => {
            assert!(seconds.parse::<u64>().unwrap() >= 1, "{seconds}");
        }
        (RetryAfterMode::HttpDate, Some(date)) => {
            let at = httpdate::parse_http_date(date).unwrap();
            assert!(at > SystemTime::now(), "{date} is not in the future");
        }
        (mode, header) => panic!("{mode:?} but Retry-After is {header:?}"),
    }
}

#[tokio::test]
async fn rate_limit_answers_plain_text_429_with_retry_after_per_mode() {
    for mode in [
        RetryAfterMode::None,
        RetryAfterMode::Seconds,
        RetryAfterMode::HttpDate,
    ] {
        // Half a request per second: after the first, nothing for two seconds.
        let sim = start(SimConfig {
            max_requests_per_second: Some(0.5),
            retry_after: mode,
            ..SimConfig::default()
        })
        .await;
        let client = default_client();
        let first = get(&client, &sim.url(), "/v2/whoami").await;
        assert_eq!(first.status, StatusCode::OK);
        let limited = create(&client, &sim.url(), 160_343, "ci").await;
        assert_plain_429(&limited, mode);
        if mode == RetryAfterMode::Seconds {
            assert_eq!(limited.retry_after.as_deref(), Some("2"));
        }
        // Admin calls are not limited.
        let admin = get(&client, &sim.url(), "/__sim/counters").await;
        assert_eq!(admin.status, StatusCode::OK);
        let counters = sim.counters();
        assert_eq!((counters.requests, counters.limited_429), (2, 1));
        assert!(sim.ground_truth().is_empty());
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_limit_answers_429_and_shutdown_is_prompt_with_slow_answers_pending() {
    for mode in [RetryAfterMode::Seconds, RetryAfterMode::HttpDate] {
        let sim = start(SimConfig {
            max_in_flight: Some(2),
            retry_after: mode,
            faults: FaultRates {
                slow_after_create: 1.0,
                ..FaultRates::default()
            },
            slow_delay: Duration::from_secs(60),
            ..SimConfig::default()
        })
        .await;
        let handle = sim.handle();
        let client = client(Duration::from_secs(60));
        let pending: Vec<_> = (0..2)
            .map(|i| {
                let client = client.clone();
                let url = sim.url();
                tokio::spawn(async move {
                    let body = json!({"name": format!("slow{i}"), "accountId": 160_343});
                    create_request(&client, &url, &body).send().await
                })
            })
            .collect();
        wait_until("two requests in flight", Duration::from_secs(10), || {
            handle.counters().max_in_flight_seen == 2
        })
        .await;

        let limited = get(&client, &sim.url(), "/v2/whoami").await;
        assert_plain_429(&limited, mode);
        let counters = sim.counters();
        assert_eq!((counters.limited_429, counters.max_in_flight_seen), (1, 2));
        assert_eq!(sim.ground_truth().len(), 2, "created before the slow wait");

        let addr = sim.addr();
        let began = Instant::now();
        sim.shutdown().await;
        let took = began.elapsed();
        assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
        // The pending clients see their connections end, well before the slow delay.
        for request in pending {
            let outcome = tokio::time::timeout(Duration::from_secs(10), request)
                .await
                .expect("the pending request ends with the server")
                .unwrap();
            let err = outcome.expect_err("the pending request fails with the server");
            assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
        }
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
        assert_eq!(
            handle.ground_truth().len(),
            2,
            "the handle outlives the server"
        );
    }
}

#[tokio::test]
async fn latency_delays_every_api_answer() {
    // A latency far above what a loopback call costs on a loaded machine, so the admin call's
    // bound below cannot be missed by a slow CI run.
    let latency = Duration::from_millis(1500);
    let sim = start(SimConfig {
        latency,
        jitter: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let client = default_client();
    let began = Instant::now();
    let answer = get(&client, &sim.url(), "/v2/whoami").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(began.elapsed() >= latency);
    // Admin calls are not delayed (nor counted).
    let began = Instant::now();
    get(&client, &sim.url(), "/__sim/counters").await;
    assert!(began.elapsed() < latency);
    sim.shutdown().await;
}

#[tokio::test]
async fn admin_endpoints_report_ground_truth_and_counters_without_auth() {
    let sim = start(SimConfig::default()).await;
    let url = sim.url();
    let client = default_client();
    let created = create(&client, &url, 160_343, "grafana").await.json();
    let anonymous =
        |path: &'static str| call(&client, &url, reqwest::Method::GET, path, None, None);

    let truth = anonymous("/__sim/ground-truth").await;
    assert_eq!(truth.status, StatusCode::OK);
    assert_eq!(truth.content_type, "application/json");
    let truth = truth.json();
    assert_eq!(truth.as_array().unwrap().len(), 1);
    assert_eq!(truth[0]["id"], created["id"]);
    assert_eq!(truth[0]["account_id"], 160_343);
    assert_eq!(truth[0]["name"], "grafana");
    assert_eq!(truth[0]["token"], created["token"]);
    let created_at = truth[0]["created_at"].as_f64().unwrap();
    assert!((created_at - created["createdAt"].as_f64().unwrap()).abs() < 1e-3);

    let counters: Counters =
        serde_json::from_str(&anonymous("/__sim/counters").await.text).unwrap();
    assert_eq!(counters, sim.counters());
    assert_eq!((counters.requests, counters.created), (1, 1));

    assert_eq!(
        anonymous("/__sim/elsewhere").await.status,
        StatusCode::NOT_FOUND
    );
    let post = call(
        &client,
        &url,
        reqwest::Method::POST,
        "/__sim/counters",
        None,
        Some(String::new()),
    )
    .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(sim.counters().requests, 1, "admin calls are not counted");
    sim.shutdown().await;
}

#[tokio::test]
async fn connections_are_kept_alive_across_answers() {
    let sim = start(SimConfig::default()).await;
    let mut stream = TcpStream::connect(sim.addr()).await.unwrap();
    let whoami =
        format!("GET /v2/whoami HTTP/1.1\r\nHost: sim\r\nX-API-TOKEN: {OWNER_TOKEN}\r\n\r\n");
    let anonymous = "GET /v2/whoami HTTP/1.1\r\nHost: sim\r\n\r\n";
    let requests = [
        whoami.clone(),
        anonymous.to_owned(),
        raw_create(160_343, "ci", "keep-alive"),
        whoami,
    ];
    let mut statuses = Vec::new();
    for request in &requests {
        stream.write_all(request.as_bytes()).await.unwrap();
        let (head, _body) = read_one_answer(&mut stream).await;
        statuses.push(head.lines().next().unwrap().to_owned());
    }
    assert_eq!(
        statuses,
        [
            "HTTP/1.1 200 OK",
            "HTTP/1.1 401 Unauthorized",
            "HTTP/1.1 200 OK",
            "HTTP/1.1 200 OK"
        ]
    );
    assert_eq!(sim.ground_truth().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_impossible_configuration_is_refused() {
    let error = Simulator::start(SimConfig {
        faults: FaultRates::uniform(0.2),
        ..SimConfig::default()
    })
    .await
    .unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    let inner = error.into_inner().unwrap();
    assert!(matches!(
        inner.downcast_ref::<SimConfigError>(),
        Some(SimConfigError::FaultRatesSumAboveOne { .. })
    ));
}

#[test]
fn background_simulator_serves_synchronous_callers_and_stops_on_drop() {
    let sim: BackgroundSimulator = Simulator::start_background(SimConfig::default()).unwrap();
    assert_eq!(sim.url(), format!("http://{}", sim.addr()));
    let mut stream = std::net::TcpStream::connect(sim.addr()).unwrap();
    stream
        .write_all(
            format!(
                "GET /v2/whoami HTTP/1.1\r\nHost: sim\r\nX-API-TOKEN: {OWNER_TOKEN}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("acme-main"));
    let handle = sim.handle();
    assert_eq!(sim.counters().requests, 1);

    let addr = sim.addr();
    drop(sim);
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
    assert_eq!(handle.counters().requests, 1);
}

// ---------------------------------------------------------------------------------------------
// Sub accounts.

const ACCOUNTS: &str = "/v1/account-management/time-based-accounts";

async fn account_call(
    client: &reqwest::Client,
    sim: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Answer {
    call(
        client,
        sim,
        method,
        path,
        Some(OWNER_TOKEN),
        Some(body.to_string()),
    )
    .await
}

fn new_account(name: &str) -> Value {
    json!({
        "accountName": name,
        "email": "platform@example.com",
        "retentionDays": 7,
        "sharingObjectsAccounts": [160_343],
        "maxDailyGB": 5.0,
        "searchable": true,
    })
}

#[tokio::test]
async fn sub_accounts_are_created_listed_after_the_lag_read_updated_and_never_unique() {
    let lag = Duration::from_millis(300);
    let sim = start(SimConfig {
        account_list_lag: lag,
        ..SimConfig::default()
    })
    .await;
    let url = sim.url();
    let client = default_client();
    let post = reqwest::Method::POST;

    let made = account_call(&client, &url, post.clone(), ACCOUNTS, new_account("team a")).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text);
    let body = made.json();
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    let id = body["accountId"].as_i64().unwrap();

    // The list lags the create; the account itself answers at once.
    let listed = get(&client, &url, ACCOUNTS).await.json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["accountId"] != id)
    );
    let one = get(&client, &url, &format!("{ACCOUNTS}/{id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["accountName"], "team a");
    assert_eq!(one.json()["maxDailyGB"], 5.0);
    let detailed = get(&client, &url, &format!("{ACCOUNTS}/detailed/{id}"))
        .await
        .json();
    let shipping = detailed["account"]["accountToken"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!shipping.is_empty());
    assert_eq!(
        get(&client, &url, &format!("{ACCOUNTS}/detailed/{id}"))
            .await
            .json()["account"]["accountToken"],
        shipping.as_str(),
        "the shipping token is stable"
    );
    assert!(
        wait_until_async(Duration::from_secs(5), || async {
            get(&client, &url, ACCOUNTS)
                .await
                .json()
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["accountId"] == id)
        })
        .await
    );

    // Names are not unique: a second create with the same name makes a second account.
    let again = account_call(&client, &url, post.clone(), ACCOUNTS, new_account("team a")).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_ne!(again.json()["accountId"], id);
    assert_eq!(
        sim.accounts().iter().filter(|a| a.name == "team a").count(),
        2
    );

    // PUT: the required fields and those sent replace the account's; others stay.
    let put = account_call(
        &client,
        &url,
        reqwest::Method::PUT,
        &format!("{ACCOUNTS}/{id}"),
        json!({"accountName": "team a", "sharingObjectsAccounts": [], "retentionDays": 30}),
    )
    .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.text);
    let after = get(&client, &url, &format!("{ACCOUNTS}/{id}")).await.json();
    assert_eq!(after["retentionDays"], 30);
    assert_eq!(after["maxDailyGB"], 5.0);
    assert_eq!(after["sharingObjectsAccounts"], json!([]));

    // Bodies are checked against the spec; an unknown sharing account is refused.
    let mut bad = new_account("team/b");
    let refused = account_call(&client, &url, post.clone(), ACCOUNTS, bad.clone()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    bad["accountName"] = json!("team b");
    bad["sharingObjectsAccounts"] = json!([999]);
    let refused = account_call(&client, &url, post.clone(), ACCOUNTS, bad).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json()["errorCode"],
        "TimeBasedAccount/ILLEGAL_PLAN_REQUEST"
    );
    let missing = get(&client, &url, &format!("{ACCOUNTS}/999")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let counters = sim.counters();
    assert_eq!(counters.accounts_created, 2);
    assert_eq!(counters.account_updates, 1);
    assert_eq!(counters.account_deletes, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_account_create_meets_the_same_faults_as_a_token_create() {
    let sim = start(SimConfig {
        faults: FaultRates {
            error_after_create: 1.0,
            ..FaultRates::default()
        },
        ..SimConfig::default()
    })
    .await;
    let client = default_client();
    let answer = account_call(
        &client,
        &sim.url(),
        reqwest::Method::POST,
        ACCOUNTS,
        new_account("team c"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        sim.accounts().iter().filter(|a| a.name == "team c").count(),
        1,
        "created behind the 500"
    );
    sim.shutdown().await;
}

async fn wait_until_async<F: std::future::Future<Output = bool>>(
    timeout: Duration,
    mut condition: impl FnMut() -> F,
) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `workers` clients, each sending `each` creates one after the other (the next as soon as the
/// answer is read): the 429s they met.
async fn closed_loop(sim: &Simulator, workers: usize, each: usize) -> usize {
    let client = default_client();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (client, url) = (client.clone(), sim.url());
            tokio::spawn(async move {
                let mut limited = 0;
                for i in 0..each {
                    let answer = create(&client, &url, 160_343, &format!("w{w}-{i}")).await;
                    match answer.status {
                        StatusCode::OK => {}
                        StatusCode::TOO_MANY_REQUESTS => limited += 1,
                        other => panic!("unexpected {other}: {}", answer.text),
                    }
                }
                limited
            })
        })
        .collect();
    let mut limited = 0;
    for task in tasks {
        limited += task.await.unwrap();
    }
    limited
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_limit_is_exact_a_slot_is_free_before_its_answer_arrives() {
    // Ten clients that each send the next request as soon as an answer arrives never meet the
    // limit of ten: the server frees a slot before the client can read its answer, with or
    // without jitter. The capacity is then the limit over the latency.
    for jitter in [Duration::ZERO, Duration::from_millis(60)] {
        let sim = start(SimConfig {
            max_in_flight: Some(10),
            latency: Duration::from_millis(40),
            jitter,
            ..SimConfig::default()
        })
        .await;
        let limited = closed_loop(&sim, 10, 6).await;
        let counters = sim.counters();
        assert_eq!(limited, 0, "jitter {jitter:?}");
        assert_eq!(counters.limited_429, 0);
        assert_eq!(counters.max_in_flight_seen, 10);
        assert_eq!(sim.ground_truth().len(), 60);
        sim.shutdown().await;
    }
    // Eleven: the eleventh in flight is refused, and refused requests hold no slot.
    let sim = start(SimConfig {
        max_in_flight: Some(10),
        latency: Duration::from_millis(40),
        ..SimConfig::default()
    })
    .await;
    let limited = closed_loop(&sim, 11, 6).await;
    let counters = sim.counters();
    assert!(limited > 0);
    assert_eq!(counters.limited_429 as usize, limited);
    assert_eq!(counters.max_in_flight_seen, 10);
    assert_eq!(sim.ground_truth().len(), 66 - limited);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_limits_at_once_each_refuses_on_its_own() {
    // A bucket of 20/s (2 of burst) and 10 in flight: ten at once meet the bucket, not the
    // in-flight limit; a refused request takes no token and no slot.
    let sim = start(SimConfig {
        max_requests_per_second: Some(20.0),
        max_in_flight: Some(10),
        latency: Duration::from_millis(40),
        ..SimConfig::default()
    })
    .await;
    let limited = closed_loop(&sim, 10, 1).await;
    let counters = sim.counters();
    // Two, or three when the connections' set-up spread the sends over more than 50 ms.
    assert!(
        (7..=8).contains(&limited),
        "a bucket of 2 admitted {}",
        10 - limited
    );
    assert_eq!(counters.max_in_flight_seen as usize, 10 - limited);
    sim.shutdown().await;
}
