//! The API client against the in-repo simulator: every failure the simulator can play is
//! classified as the executor needs it (retryable, ambiguous, fatal for the run, fatal for the
//! item), every error body reads as a sentence, the preflight learns the owner and its sub
//! accounts, and the owner token never shows in an error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use logzio_tokens::api::{
    ApiClient, ApiError, ClientConfig, CreatedToken, Endpoint, ErrorClass, preflight,
};
use logzio_tokens::plan::{LiveAccounts, NameResolution};
use logzio_tokens::secret::Secret;
use logzio_tokens::simulator::{
    FaultRates, RegionMismatch, RetryAfterMode, SimConfig, Simulator, SubAccount,
};

/// A distinctive owner token, so that a leak of it into any message is unmistakable.
const OWNER: &str = "owner-7f3a9c-d00d-feed-5ec2e7";
/// A sub account of the default simulator.
const SUB: u32 = 160_343;

fn config() -> SimConfig {
    SimConfig {
        owner_token: OWNER.to_owned(),
        ..SimConfig::default()
    }
}

fn faulty(faults: FaultRates) -> SimConfig {
    SimConfig { faults, ..config() }
}

async fn start(config: SimConfig) -> Simulator {
    Simulator::start(config).await.unwrap()
}

fn client_for(url: &str, token: &str, timeout: Duration) -> ApiClient {
    ApiClient::new(ClientConfig {
        endpoint: Endpoint::Url(url.to_owned()),
        token: Secret::new(token),
        request_timeout: timeout,
        connect_timeout: Duration::from_secs(2),
        pool_size: 4,
    })
    .unwrap()
}

fn client(sim: &Simulator) -> ApiClient {
    client_for(&sim.url(), OWNER, Duration::from_secs(10))
}

/// Every way an error can be shown: none may contain the owner token (or the wrong token the
/// client was given). Returns the Display text.
fn shown(e: &ApiError, token: &str) -> String {
    let mut texts = vec![e.to_string(), format!("{e:?}"), e.short()];
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        texts.push(s.to_string());
        texts.push(format!("{s:?}"));
        source = s.source();
    }
    for t in &texts {
        assert!(!t.contains(token), "the token shows in an error: {t}");
    }
    e.to_string()
}

/// Creates one token expecting an error; checks the error shows no token.
async fn create_err(client: &ApiClient, account: u32, name: &str) -> ApiError {
    let e = client.create_token(account, name).await.unwrap_err();
    shown(&e, OWNER);
    e
}

fn assert_matches_truth(sim: &Simulator, created: &CreatedToken) {
    let truth = sim.ground_truth();
    let t = truth
        .iter()
        .find(|t| t.id == created.id)
        .expect("the created token is in the ground truth");
    assert_eq!(created.token.expose(), t.token);
    assert_eq!(created.name.as_deref(), Some(t.name.as_str()));
    let at = created.created_at.expect("createdAt parsed");
    assert!((at - t.created_at).abs() < 1e-3, "{at} vs {}", t.created_at);
}

#[tokio::test]
async fn a_created_token_parses_with_id_secret_and_both_created_at_shapes() {
    let sim = start(config()).await;
    let c = client(&sim);
    for i in 0..40 {
        let created = c.create_token(SUB, &format!("t{i}")).await.unwrap();
        assert_matches_truth(&sim, &created);
        // The secret never shows in the parsed value's Debug.
        assert!(!format!("{created:?}").contains(created.token.expose()));
    }
    assert_eq!(sim.ground_truth().len(), 40);
    // The simulator answers `createdAt` as an integer or as a decimal (`1621858311.000000000`,
    // possibly a whole second, so the value alone cannot tell): look at the bytes on the wire.
    let http = reqwest::Client::new();
    let (mut integer, mut decimal) = (0, 0);
    for i in 0..40 {
        let body = http
            .post(format!("{}/v1/api-tokens/sub-account", sim.url()))
            .header("X-API-TOKEN", OWNER)
            .header("Content-Type", "application/json")
            .body(format!(r#"{{"name":"raw{i}","accountId":{SUB}}}"#))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let raw = body
            .split("\"createdAt\":")
            .nth(1)
            .unwrap()
            .trim_end_matches('}');
        if raw.contains('.') {
            decimal += 1;
        } else {
            integer += 1;
        }
        let parsed: logzio_tokens::api::CreatedToken = serde_json::from_str(&body).unwrap();
        assert!(parsed.created_at.is_some(), "{raw} did not parse");
    }
    assert!(decimal > 0, "no decimal createdAt among 40 answers");
    assert!(integer > 0, "no integer createdAt among 40 answers");
}

#[tokio::test]
async fn connect_failure_is_retryable() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = client_for(
        &format!("http://127.0.0.1:{port}"),
        OWNER,
        Duration::from_secs(5),
    );
    let e = c.create_token(SUB, "ci").await.unwrap_err();
    let text = shown(&e, OWNER);
    assert!(matches!(e, ApiError::Connect { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(e.http_status(), None);
    assert!(text.contains(&port.to_string()), "{text}");
    let e = c.whoami().await.unwrap_err();
    assert_eq!(e.class(), ErrorClass::Retryable);
}

/// Answers every request on `listener` with `answer`, after reading the whole request.
async fn serve_raw(listener: tokio::net::TcpListener, answer: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while let Ok((mut socket, _)) = listener.accept().await {
        let answer = answer.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let Ok(n) = socket.read(&mut buf).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if got.len() >= end + 4 + length {
                        let _ = socket.write_all(answer.as_bytes()).await;
                        got.clear();
                    }
                }
            }
        });
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed_and_the_token_goes_nowhere_else() {
    // Where the redirect points: nothing may ever connect here.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    elsewhere.set_nonblocking(true).unwrap();
    let target = format!(
        "http://127.0.0.1:{}/v1/api-tokens/sub-account",
        elsewhere.local_addr().unwrap().port()
    );
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", api.local_addr().unwrap());
    tokio::spawn(serve_raw(
        api,
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {target}\r\ncontent-length: 0\r\n\r\n"
        ),
    ));
    let c = client_for(&url, OWNER, Duration::from_secs(5));
    let e = create_err(&c, SUB, "ci").await;
    assert_eq!(e.http_status(), Some(307), "{e:?}");
    assert!(e.to_string().contains("redirect"), "{e}");
    // Every call would be redirected alike: the run stops (see adversarial.rs).
    assert_eq!(e.class(), ErrorClass::FatalRun);
    // Following it would have connected before the call returned.
    assert_eq!(
        elsewhere.accept().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::WouldBlock),
        "the client followed the redirect"
    );
}

#[tokio::test]
async fn rate_limit_429_is_retryable_with_retry_after_in_seconds() {
    // A bucket of one request every two seconds: the second request is refused.
    let sim = start(SimConfig {
        max_requests_per_second: Some(0.5),
        retry_after: RetryAfterMode::Seconds,
        ..config()
    })
    .await;
    let c = client(&sim);
    c.whoami().await.unwrap();
    let e = create_err(&c, SUB, "ci").await;
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(e.http_status(), Some(429));
    assert!(e.is_rate_limited());
    let ra = e.retry_after().expect("Retry-After parsed");
    assert!(
        ra >= Duration::from_secs(1) && ra <= Duration::from_secs(3),
        "{ra:?}"
    );
    assert!(e.to_string().contains("Too Many Requests"), "{e}");
    assert!(sim.ground_truth().is_empty());
    assert_eq!(sim.counters().limited_429, 1);
}

#[tokio::test]
async fn injected_429_is_retryable_with_retry_after_as_an_http_date() {
    let sim = start(SimConfig {
        retry_after: RetryAfterMode::HttpDate,
        ..faulty(FaultRates {
            rate_limited: 1.0,
            ..FaultRates::default()
        })
    })
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert!(e.is_rate_limited());
    // The simulator asks for one second, as a date rounded up to the next whole second.
    let ra = e.retry_after().expect("an HTTP-date Retry-After is parsed");
    assert!(
        ra >= Duration::from_millis(500) && ra <= Duration::from_millis(2500),
        "{ra:?}"
    );
    assert!(sim.ground_truth().is_empty());
    assert_eq!(sim.counters().fault_429, 1);
}

#[tokio::test]
async fn a_429_without_retry_after_has_none_and_seconds_parse_for_injected_ones_too() {
    let sim = start(faulty(FaultRates {
        rate_limited: 1.0,
        ..FaultRates::default()
    }))
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert!(e.is_rate_limited());
    assert_eq!(e.retry_after(), None);

    let sim = start(SimConfig {
        retry_after: RetryAfterMode::Seconds,
        ..faulty(FaultRates {
            rate_limited: 1.0,
            ..FaultRates::default()
        })
    })
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_503_is_retryable_and_created_nothing() {
    let sim = start(faulty(FaultRates {
        unavailable: 1.0,
        ..FaultRates::default()
    }))
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert_eq!(e.http_status(), Some(503));
    assert!(e.to_string().contains("Service Unavailable"), "{e}");
    assert!(sim.ground_truth().is_empty());
}

#[tokio::test]
async fn a_500_after_the_token_was_created_is_ambiguous() {
    let sim = start(faulty(FaultRates {
        error_after_create: 1.0,
        ..FaultRates::default()
    }))
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert_eq!(e.class(), ErrorClass::Ambiguous);
    assert_eq!(e.http_status(), Some(500));
    assert!(e.to_string().contains("Internal Server Error"), "{e}");
    assert_eq!(sim.ground_truth().len(), 1, "the token exists");
}

#[tokio::test]
async fn a_connection_dropped_after_the_request_was_sent_is_ambiguous() {
    let sim = start(faulty(FaultRates {
        drop_after_create: 1.0,
        ..FaultRates::default()
    }))
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert!(matches!(e, ApiError::ConnectionLost { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Ambiguous);
    assert_eq!(e.http_status(), None);
    assert_eq!(sim.ground_truth().len(), 1, "the token exists");
    // One request: the client did not silently send the POST again.
    assert_eq!(sim.counters().requests, 1);

    // Dropped before creating looks the same from the client's side: it cannot know, so it
    // must treat it as ambiguous too.
    let sim = start(faulty(FaultRates {
        drop_before_create: 1.0,
        ..FaultRates::default()
    }))
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert_eq!(e.class(), ErrorClass::Ambiguous);
    assert!(sim.ground_truth().is_empty());
    assert_eq!(sim.counters().requests, 1);
}

#[tokio::test]
async fn a_200_whose_body_is_cut_short_is_ambiguous() {
    let sim = start(faulty(FaultRates {
        truncate_after_create: 1.0,
        ..FaultRates::default()
    }))
    .await;
    let e = create_err(&client(&sim), SUB, "ci").await;
    assert_eq!(e.class(), ErrorClass::Ambiguous);
    assert_eq!(e.http_status(), Some(200));
    assert_eq!(sim.ground_truth().len(), 1, "the token exists");
    // Half the body held part of the secret: the error must not quote it.
    let secret = &sim.ground_truth()[0].token;
    for text in [e.to_string(), format!("{e:?}"), e.short()] {
        assert!(!text.contains(&secret[..8]), "{text}");
    }
}

#[tokio::test]
async fn an_answer_slower_than_the_timeout_is_ambiguous() {
    let sim = start(SimConfig {
        slow_delay: Duration::from_secs(3),
        ..faulty(FaultRates {
            slow_after_create: 1.0,
            ..FaultRates::default()
        })
    })
    .await;
    let c = client_for(&sim.url(), OWNER, Duration::from_millis(300));
    let started = Instant::now();
    let e = create_err(&c, SUB, "ci").await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout held"
    );
    assert!(matches!(e, ApiError::Timeout { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Ambiguous);
    assert_eq!(sim.ground_truth().len(), 1, "the token exists");
    assert!(e.to_string().contains("0.3s"), "{e}");
}

#[tokio::test]
async fn no_token_is_401_and_fatal_for_the_run() {
    // An empty token is sent as an empty header, which the API treats as no token.
    let sim = start(config()).await;
    let c = client_for(&sim.url(), "", Duration::from_secs(10));
    let e = c.whoami().await.unwrap_err();
    let text = shown(&e, OWNER);
    assert_eq!(e.http_status(), Some(401));
    assert_eq!(e.class(), ErrorClass::FatalRun);
    assert!(text.contains("LOGZIO_API_TOKEN"), "{text}");
    assert_eq!(sim.counters().unauthorized_401, 1);
}

#[tokio::test]
async fn a_wrong_token_is_403_and_fatal_for_the_run() {
    let sim = start(config()).await;
    let wrong = "wrong-9b1e-token-4c0ffee";
    let c = client_for(&sim.url(), wrong, Duration::from_secs(10));
    for e in [
        c.whoami().await.unwrap_err(),
        c.create_token(SUB, "ci").await.unwrap_err(),
    ] {
        let text = shown(&e, wrong);
        shown(&e, OWNER);
        assert_eq!(e.http_status(), Some(403));
        assert_eq!(e.class(), ErrorClass::FatalRun);
        // {"code":403,"message":"Insufficient privileges"} reads as its message, with a hint.
        assert!(text.contains("Insufficient privileges"), "{text}");
        assert!(text.contains("main (owner)"), "{text}");
    }
    assert!(sim.ground_truth().is_empty());
    // The client type itself does not show the token either.
    assert!(!format!("{c:?}").contains(wrong));
}

#[tokio::test]
async fn a_400_is_fatal_for_the_item() {
    let sim = start(config()).await;
    // A blank name passes the client but not the API.
    let e = create_err(&client(&sim), SUB, "   ").await;
    assert_eq!(e.http_status(), Some(400));
    assert_eq!(e.class(), ErrorClass::FatalItem);
    assert!(e.to_string().contains("must not be empty"), "{e}");
    assert!(sim.ground_truth().is_empty());
}

#[tokio::test]
async fn an_unknown_sub_account_is_404_and_fatal_for_the_item() {
    let sim = start(config()).await;
    let e = create_err(&client(&sim), 999_999, "ci").await;
    assert_eq!(e.http_status(), Some(404));
    assert_eq!(e.class(), ErrorClass::FatalItem);
    let text = e.to_string();
    assert!(text.contains("999999"), "{text}");
    assert!(text.contains("not found"), "{text}");
    assert!(sim.ground_truth().is_empty());
}

#[tokio::test]
async fn a_region_mismatch_names_the_region_to_use() {
    let sim = start(SimConfig {
        region_mismatch: Some(RegionMismatch {
            account_region: "eu".into(),
            server_region: "us".into(),
        }),
        ..config()
    })
    .await;
    let c = client(&sim);
    for e in [
        c.whoami().await.unwrap_err(),
        c.list_accounts().await.unwrap_err(),
        c.create_token(SUB, "ci").await.unwrap_err(),
    ] {
        let text = shown(&e, OWNER);
        assert!(
            matches!(&e, ApiError::RegionMismatch { hint: Some(h), .. } if h == "eu"),
            "{e:?}"
        );
        assert_eq!(e.class(), ErrorClass::FatalRun);
        assert!(text.contains("--region eu"), "{text}");
    }
    let e = preflight(&c).await.unwrap_err();
    assert!(matches!(e, ApiError::RegionMismatch { .. }), "{e:?}");
    assert!(sim.ground_truth().is_empty());

    // A region this tool does not know (a deprecated one) is named, but not suggested.
    let sim = start(SimConfig {
        region_mismatch: Some(RegionMismatch {
            account_region: "nl".into(),
            server_region: "us".into(),
        }),
        ..config()
    })
    .await;
    let e = client(&sim).whoami().await.unwrap_err();
    let text = shown(&e, OWNER);
    assert_eq!(e.class(), ErrorClass::FatalRun);
    assert!(text.contains("nl"), "{text}");
    assert!(!text.contains("--region nl"), "{text}");
}

#[tokio::test]
async fn every_error_body_shape_reads_as_its_message() {
    let sim = start(SimConfig {
        max_requests_per_second: Some(0.5),
        ..config()
    })
    .await;
    let c = client(&sim);
    // {"message"}: 400.
    let e = create_err(&c, SUB, "  ").await;
    assert!(e.short().ends_with("Field 'name' must not be empty"), "{e}");
    // Plain text: 429 (the bucket held one request).
    let e = create_err(&c, SUB, "x").await;
    assert_eq!(e.short(), "HTTP 429: Too Many Requests");

    let sim = start(config()).await;
    let c = client(&sim);
    // {"errorCode","message","requestId","parameters"}: 404.
    let e = create_err(&c, 424_242, "ci").await;
    let short = e.short();
    assert!(
        short.starts_with("HTTP 404: Sub account 424242 was not found for this owner account"),
        "{short}"
    );
    assert!(short.contains("SUB_ACCOUNT_NOT_FOUND"), "{short}");
    assert!(short.contains("request id sim-"), "{short}");
    // {"code","message"}: 403.
    let wrong = client_for(&sim.url(), "nope", Duration::from_secs(10));
    let e = wrong.create_token(SUB, "ci").await.unwrap_err();
    assert_eq!(e.short(), "HTTP 403: Insufficient privileges");
    // None of them is shown as raw JSON.
    for e in [
        create_err(&c, 424_242, "ci").await,
        create_err(&c, SUB, " ").await,
        wrong.whoami().await.unwrap_err(),
    ] {
        assert!(!e.to_string().contains('{'), "{e}");
    }
}

#[tokio::test]
async fn preflight_learns_the_owner_and_its_sub_accounts() {
    let sim = start(config()).await;
    let p = preflight(&client(&sim)).await.unwrap();
    assert_eq!(p.owner.account_id, 100_000);
    assert_eq!(p.owner.account_name, "acme-main");
    let subs: Vec<(i64, &str)> = p
        .sub_accounts
        .iter()
        .map(|a| (a.account_id, a.account_name.as_str()))
        .collect();
    assert_eq!(
        subs,
        [
            (160_343, "payments-prod"),
            (160_344, "payments-staging"),
            (160_345, "search-prod"),
            (160_346, "search-staging"),
            (160_347, "data-platform"),
            (160_348, "ml-sandbox"),
        ]
    );
    // whoami and the list: two reads, nothing created.
    assert_eq!(sim.counters().requests, 2);
    assert!(sim.ground_truth().is_empty());
}

#[tokio::test]
async fn names_resolve_to_exactly_one_sub_account() {
    let sim = start(SimConfig {
        sub_accounts: vec![
            SubAccount::new(1, "payments-prod"),
            SubAccount::new(2, "twin"),
            SubAccount::new(3, "twin"),
            SubAccount::new(4, "payments-staging"),
        ],
        ..config()
    })
    .await;
    // The plan's view of the listing, as the CLI builds it.
    let live: LiveAccounts = preflight(&client(&sim))
        .await
        .unwrap()
        .sub_accounts
        .into_iter()
        .map(|a| (u32::try_from(a.account_id).unwrap(), a.account_name))
        .collect();
    assert_eq!(live.resolve("payments-prod"), NameResolution::Resolved(1));
    assert_eq!(live.resolve("twin"), NameResolution::Ambiguous(vec![2, 3]));
    match live.resolve("payments") {
        NameResolution::NotFound { similar } => {
            assert_eq!(similar, ["payments-prod", "payments-staging"]);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        live.resolve("nothing-like-it"),
        NameResolution::NotFound { similar } if similar.is_empty()
    ));
    // The owner is never a candidate.
    assert!(matches!(
        live.resolve("acme-main"),
        NameResolution::NotFound { .. }
    ));
}

#[tokio::test]
async fn plain_http_is_refused_for_hosts_other_than_loopback() {
    let make = |url: &str| {
        ApiClient::new(ClientConfig {
            endpoint: Endpoint::Url(url.to_owned()),
            token: Secret::new(OWNER),
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            pool_size: 1,
        })
    };
    let e = make("http://example.com").unwrap_err();
    let text = shown(&e, OWNER);
    assert!(matches!(e, ApiError::InsecureUrl { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::FatalRun);
    assert!(text.contains("https://"), "{text}");
    assert!(text.contains("example.com"), "{text}");
    assert!(make("http://127.0.0.1:9").is_ok());
    assert!(make("http://localhost:9").is_ok());
    assert!(make("https://example.com").is_ok());
}

#[tokio::test]
async fn sub_accounts_are_created_read_updated_and_their_shipping_token_is_a_secret() {
    let sim = start(config()).await;
    let client = client(&sim);
    let request = logzio_tokens::api::AccountRequest {
        account_name: "team-new".into(),
        email: Some("platform@example.com".into()),
        retention_days: Some(7),
        sharing_objects_accounts: vec![160_343],
        max_daily_gb: Some(5.0),
        searchable: Some(true),
        ..Default::default()
    };
    let id = client.create_account(&request).await.unwrap();
    let live = client.get_account(id).await.unwrap();
    assert_eq!(live.account_name, "team-new");
    assert_eq!(live.settings.retention_days, Some(7));
    assert_eq!(live.settings.max_daily_gb, Some(5.0));
    assert_eq!(live.settings.sharing_objects_accounts, Some(vec![160_343]));
    let listed = client.list_accounts().await.unwrap();
    assert!(listed.iter().any(|a| a.account_id == i64::from(id)));

    let shipping = client.shipping_token(id).await.unwrap();
    let truth = sim.handle().accounts();
    let made = truth.iter().find(|a| a.id == i64::from(id)).unwrap();
    assert_eq!(shipping.expose(), made.shipping_token);
    assert!(!format!("{shipping:?}").contains(&made.shipping_token));

    let update = logzio_tokens::api::AccountRequest {
        retention_days: Some(30),
        ..request
    };
    client.update_account(id, &update).await.unwrap();
    assert_eq!(
        client
            .get_account(id)
            .await
            .unwrap()
            .settings
            .retention_days,
        Some(30)
    );
    // A bad body is the API's 400, per item.
    let bad = logzio_tokens::api::AccountRequest {
        account_name: "bad/name".into(),
        ..update
    };
    assert!(client.create_account(&bad).await.is_err());
    assert_eq!(sim.handle().counters().account_deletes, 0);
    sim.shutdown().await;
}
