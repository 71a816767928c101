//! `GET /dashboard` on `runcache serve`, on both backends: the caller's
//! token decides the repository shown; a browser without credentials is
//! asked for them; the page a build-cache hit and miss leave behind loads
//! in headless Chromium with the figures the requests made.

mod support;

use chrono::Utc;
use runcache_infra::{metrics::names, MetricDatum, MetricUnit};
use runcache_testkit::{
    browser::{artifacts_dir, assert_page_is_sound, check_dashboard},
    http::http,
};
use support::{serve, Env, MAIN_TOKEN, REPO};

served_tests!(
    the_dashboard_asks_for_a_token_and_shows_only_the_callers_repository,
    a_served_dashboard_loads_in_a_browser_with_the_requests_figures,
);

async fn the_dashboard_asks_for_a_token_and_shows_only_the_callers_repository(e: Env) {
    // Another repository's restores, as its own jobs would leave them.
    let other = MetricDatum::new(names::CACHE_HIT, 1.0, MetricUnit::Count, Utc::now())
        .with_dimension(names::DIM_REPOSITORY, "acme/secret-project");
    let own = MetricDatum::new(names::CACHE_MISS, 1.0, MetricUnit::Count, Utc::now())
        .with_dimension(names::DIM_REPOSITORY, REPO);
    e.backend.metrics.put(&[other, own]).await.unwrap();
    let s = serve(&e).await;
    let url = format!("{}dashboard", s.url);

    let (status, head, _) = http("GET", &url, &[], b"").await;
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "a browser is asked for credentials: {head}"
    );
    let (status, _, _) = http("GET", &url, &[("Authorization", "Bearer nope")], b"").await;
    assert_eq!(status, 401);

    let bearer = format!("Bearer {MAIN_TOKEN}");
    let (status, head, body) = http("GET", &url, &[("Authorization", &bearer)], b"").await;
    assert_eq!(status, 200, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"), "{head}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains(REPO), "the caller's repository is shown");
    assert!(
        !page.contains("secret-project"),
        "another repository's figures never reach this token's page"
    );
    assert!(
        !page.contains("Dead-lettered messages"),
        "queue figures are the operators' (admin dashboard), not a job token's"
    );
    s.stop().await;
}

async fn a_served_dashboard_loads_in_a_browser_with_the_requests_figures(e: Env) {
    let s = serve(&e).await;
    let bearer = format!("Bearer {MAIN_TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let object = format!("{}gradle/0123456789abcdef", s.url);
    let (status, _, _) = http("PUT", &object, &auth, b"compiled classes").await;
    assert!(status == 200 || status == 201, "{status}");
    let (status, _, _) = http("GET", &object, &auth, b"").await;
    assert_eq!(status, 200);
    let (status, _, _) = http("GET", &format!("{}gradle/absent", s.url), &auth, b"").await;
    assert_eq!(status, 404);

    // Access events leave in batches, off the request path: wait until the
    // page counts both.
    let url = format!("{}dashboard", s.url);
    let mut counted = false;
    for _ in 0..50 {
        let (_, _, body) = http("GET", &url, &auth, b"").await;
        if String::from_utf8_lossy(&body).contains("data-hits=\"1\" data-misses=\"1\"") {
            counted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(counted, "the hit and the miss reach the page");

    let backend = format!("{:?}", e.config.backend).to_lowercase();
    let shot = artifacts_dir().join(format!("dashboard-serve-{backend}.png"));
    let url2 = url.clone();
    let result =
        tokio::task::spawn_blocking(move || check_dashboard(&url2, Some(MAIN_TOKEN), &shot))
            .await
            .unwrap();
    assert_page_is_sound(&result);
    assert_eq!(result["status"], 200);
    let hit_rate = &result["ranges"]["24h"]["plots"]["hit-rate"];
    assert_eq!(hit_rate["totals"]["hits"], "1", "{hit_rate}");
    assert_eq!(hit_rate["totals"]["misses"], "1", "{hit_rate}");
    assert_eq!(
        hit_rate["circles"], 1,
        "one repository, one bucket: {hit_rate}"
    );
    let stored = &result["ranges"]["24h"]["plots"]["stored-bytes"];
    assert!(
        stored["totals"]["latest"]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| v > 0.0),
        "{stored}"
    );
    s.stop().await;
}
