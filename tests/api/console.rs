//! The console in a real browser: headless Chromium, driven over WebDriver by chromedriver,
//! against the real server on a real socket. `.ci/run` installs Debian's `chromium` and
//! `chromium-driver`; without them these tests fail, loudly (set `STRONGROOM_CHROMEDRIVER` to
//! use another driver). Each page is saved as a screenshot under
//! `target/tmp/console-screenshots/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as TimeDelta;
use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::{Value, json};

use strongroom::clock::{Clock, ManualClock, SystemClock};

use crate::helpers::*;

/// A headless Chromium and its driver, ended on drop.
struct Browser {
    client: Client,
    driver: Child,
    shots: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_driver(program: &str) -> (Child, String) {
    let port = free_port();
    let driver = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {program} ({e}): the console's browser tests need Chromium and \
                 chromedriver (Debian: apt-get install chromium chromium-driver; .ci/run does it)"
            )
        });
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser() -> Browser {
    let program =
        std::env::var("STRONGROOM_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
    let (mut driver, mut url) = spawn_driver(&program);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--lang=en-GB", "--disable-extensions",
            ],
        }),
    );
    let mut last = None;
    // Under the whole suite's load the driver and the browser can take a while; a driver that
    // exited (its port taken meanwhile by another test) is started again on another.
    for _ in 0..600 {
        if matches!(driver.try_wait(), Ok(Some(_))) {
            (driver, url) = spawn_driver(&program);
        }
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
                std::fs::create_dir_all(&shots).unwrap();
                return Browser {
                    client,
                    driver,
                    shots,
                };
            }
            Err(e) => {
                last = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let _ = driver.kill();
    panic!("chromedriver did not answer in 60 s: {last:?}");
}

impl Browser {
    async fn goto(&self, app: &TestApp, path: &str) {
        self.client.goto(&app.url(path)).await.unwrap();
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
    }

    /// Waits until the element's text contains `text`; answers the whole text.
    async fn wait_for_text(&self, css: &str, text: &str) -> String {
        let mut seen = String::new();
        for _ in 0..100 {
            if let Ok(el) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = el.text().await
            {
                if t.contains(text) {
                    return t;
                }
                seen = t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never said {text:?}; it said {seen:?}");
    }

    async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn wait_for_path(&self, path: &str) {
        for _ in 0..100 {
            if self.path().await == path {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never reached {path}; at {}", self.path().await);
    }

    async fn fill(&self, css: &str, text: &str) {
        let el = self.wait_for(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    async fn select(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .unwrap();
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.unwrap();
    }

    /// Clicks the button whose text is exactly `label`, inside `scope`.
    async fn press(&self, scope: &str, label: &str) {
        let xpath = format!("//*[@id='{scope}']//button[normalize-space()='{label}']");
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no {label} button in #{scope}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Saves the whole page: the window is stretched to the page's height (WebDriver shoots
    /// the viewport only), then put back.
    async fn shot(&self, name: &str) {
        let (width, height) = self.client.get_window_size().await.unwrap();
        let page = self
            .client
            .execute(
                "window.scrollTo(0, 0); return document.documentElement.scrollHeight",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(height);
        let chrome = 150;
        self.client
            .set_window_size(width as u32, (page + chrome).clamp(height, 4000) as u32)
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
        // The page's weight: the document, its script and styles, and the API answers it
        // fetched, as bodies (what the vault sent, uncompressed) and over the wire.
        let weight = self
            .client
            .execute(
                "const all = [...performance.getEntriesByType('navigation'), \
                              ...performance.getEntriesByType('resource')]; \
                 return [all.length, all.reduce((n, e) => n + e.encodedBodySize, 0), \
                         all.reduce((n, e) => n + e.transferSize, 0), location.pathname]",
                vec![],
            )
            .await
            .unwrap();
        let line = format!(
            "{name}: {} {} requests, {} bytes of bodies, {} bytes transferred\n",
            weight[3].as_str().unwrap_or_default(),
            weight[0],
            weight[1],
            weight[2]
        );
        std::fs::write(self.shots.join(format!("{name}.txt")), line).unwrap();
        self.client
            .set_window_size(width as u32, height as u32)
            .await
            .unwrap();
    }

    /// Signs in with the keyboard only: the key field has focus on load, Tab moves to the
    /// code, Enter sends.
    async fn sign_in(&self, app: &TestApp, key: &str, code: Option<String>) {
        self.goto(app, "/console").await;
        let field = self.wait_for("#api-key").await;
        let active = self.client.active_element().await.unwrap();
        assert_eq!(
            active.attr("id").await.unwrap().as_deref(),
            Some("api-key"),
            "the key field has focus"
        );
        field.send_keys(key).await.unwrap();
        let mut keys = fantoccini::key::Key::Tab.to_string();
        keys.push_str(&code.unwrap_or_default());
        keys.push(char::from(fantoccini::key::Key::Enter));
        active.send_keys(&keys).await.unwrap();
    }

    /// Signs `person` in with their current one-time code.
    async fn sign_in_person(&self, app: &TestApp, person: &Person) {
        self.sign_in(app, &person.key, Some(app.code(person))).await;
    }

    async fn sign_out(&self) {
        self.click("#sign-out").await;
        self.wait_for_path("/console?signed_out=1").await;
    }

    /// Runs `fetch` in the page as its own script would, without the page's CSRF token unless
    /// `csrf`; answers `[status, body]`.
    async fn fetch(&self, method: &str, path: &str, body: Value, csrf: bool) -> (u16, Value) {
        let script = r#"
            const [method, path, body, csrf, done] = arguments;
            const headers = {'Content-Type': 'application/json'};
            if (csrf) headers['X-CSRF-Token'] = session.csrf;
            fetch(path, {method, headers, body: JSON.stringify(body), credentials: 'same-origin'})
              .then(async (r) => done([r.status, await r.json().catch(() => null)]));
        "#;
        let answer = self
            .client
            .execute_async(script, vec![json!(method), json!(path), body, json!(csrf)])
            .await
            .unwrap();
        (answer[0].as_u64().unwrap() as u16, answer[1].clone())
    }
}

/// A server whose clock starts now (so the page's countdowns read true) and can be moved.
async fn console_app() -> (TestApp, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    (spawn_app_at(clock.clone()).await, clock)
}

/// The next TOTP time step: a person's code is good once per step.
fn next_step(clock: &ManualClock) {
    clock.advance(TimeDelta::seconds(31));
}

#[tokio::test]
async fn a_requester_asks_an_approver_approves_the_requester_reveals_and_the_auditor_sees_it_all() {
    let (app, clock) = console_app().await;
    let b = browser().await;
    let pan = random_pan("411111", 16);
    let token = app.token_for(&pan).await;
    let last_four = &pan[12..];

    // The requester signs in and asks.
    b.goto(&app, "/console").await;
    b.wait_for("#api-key").await;
    b.shot("01-sign-in").await;
    b.sign_in_person(&app, &app.keys.requester).await;
    b.wait_for_path("/console/requests").await;
    b.wait_for_text("#policy-limits", "Policy support-chargeback")
        .await;
    let limits = b.wait_for_text("#policy-limits", "needs 1 approval").await;
    assert!(limits.contains("up to 60 minutes"), "{limits}");
    assert!(limits.contains("up to 5 uses"), "{limits}");
    // No script can read the session: the cookie is HttpOnly.
    let cookies = b
        .client
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert_eq!(cookies, json!(""));
    next_step(&clock);
    b.fill("#tokens", &token).await;
    b.select("#purpose", "chargeback").await;
    b.fill("#reason", "Chargeback CB-4410 on order 1001").await;
    b.fill("#duration", "20").await;
    b.fill("#uses", "2").await;
    b.fill("#request-totp", &app.code(&app.keys.requester))
        .await;
    b.press("request-form", "Request access").await;
    b.wait_for_text("#request-list", "pending").await;
    b.wait_for_text("#request-list", "expires in").await;
    b.shot("02-requester-pending").await;
    let r = app
        .list_requests(&app.keys.approver.key, "?status=pending")
        .await;
    let listed: Value = r.json().await.unwrap();
    let id = listed["requests"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed["requests"][0]["duration_seconds"], 1200);
    assert_eq!(listed["requests"][0]["max_uses"], 2);
    b.sign_out().await;

    // The approver sees the card masked, its brand, and who revealed it; approves with a code.
    b.sign_in_person(&app, &app.keys.approver).await;
    b.wait_for_path("/console/inbox").await;
    let inbox = b.wait_for_text("#inbox", "alice asks to see 1 card").await;
    assert!(
        inbox.contains(&format!("Visa 411111******{last_four}")),
        "{inbox}"
    );
    assert!(
        inbox.contains("Chargeback CB-4410 on order 1001"),
        "{inbox}"
    );
    assert!(inbox.contains("0 of 1 given; 1 more needed"), "{inbox}");
    assert!(inbox.contains("nobody"), "{inbox}");
    assert!(!inbox.contains(&pan), "an approver never sees the PAN");
    b.shot("03-approver-inbox").await;
    b.client.set_window_size(390, 844).await.unwrap();
    b.shot("04-approver-inbox-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();
    // An approver has no Reveal: asking anyway is refused.
    let (status, problem) = b
        .fetch(
            "POST",
            &format!("/v1/access-requests/{id}/reveal"),
            json!({"tokens": [token]}),
            true,
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    next_step(&clock);
    b.fill(&format!("#comment-{id}"), "Matches case CB-4410")
        .await;
    b.fill(&format!("#code-{id}"), &app.code(&app.keys.approver))
        .await;
    b.press("inbox", "Approve").await;
    b.wait_for_text("#notice", "Approved: alice can now reveal")
        .await;
    b.wait_for_text("#inbox", "Nothing waits for you").await;
    b.sign_out().await;

    // The requester reveals the card once; it is hidden after 60 seconds.
    next_step(&clock);
    b.sign_in_person(&app, &app.keys.requester).await;
    b.wait_for_path("/console/requests").await;
    b.wait_for_text("#request-list", "approved").await;
    b.wait_for_text("#request-list", "uses 0 of 2").await;
    b.press("request-list", "Reveal").await;
    let grouped = pan
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let shown = b.wait_for_text("output.pan", &grouped).await;
    assert!(shown.contains("hidden in"), "{shown}");
    b.wait_for_text("#request-list", "uses 1 of 2").await;
    b.shot("05-requester-revealed").await;
    // Never in storage, the URL or history.
    let kept = b
        .client
        .execute(
            "return [JSON.stringify(localStorage), JSON.stringify(sessionStorage), \
             location.href, String(history.state), document.cookie].join('|')",
            vec![],
        )
        .await
        .unwrap();
    let digits = kept.as_str().unwrap();
    assert!(
        !digits.contains(&pan) && !digits.contains(&grouped),
        "{digits}"
    );
    tokio::time::sleep(Duration::from_secs(61)).await;
    let after = b.client.find(Locator::Css("output.pan")).await.unwrap();
    assert_eq!(after.text().await.unwrap(), "", "hidden after 60 seconds");
    // Leaving the page wipes it too: reveal again, go, come back.
    b.press("request-list", "Reveal").await;
    b.wait_for_text("output.pan", &grouped).await;
    b.goto(&app, "/console/requests").await;
    b.wait_for_text("#request-list", "uses 2 of 2").await;
    let source = b.client.source().await.unwrap();
    assert!(!source.contains(&grouped) && !source.contains(&pan));
    b.sign_out().await;

    // The auditor finds it all in the trail and the report.
    b.sign_in(&app, &app.keys.auditor, None).await;
    b.wait_for_path("/console/audit").await;
    b.wait_for("#audit-table").await;
    b.select("#f-action", "detokenize").await;
    b.press("main", "Search").await;
    let trail = b.wait_for_text("#audit-table", "detokenize").await;
    assert!(trail.contains(&token), "{trail}");
    assert!(!trail.contains(&pan));
    b.shot("06-auditor-trail").await;
    b.goto(&app, "/console/report").await;
    let report = b.wait_for_text("#report", "Grants issued and used").await;
    assert!(
        report.contains("Uses spent against uses allowed"),
        "{report}"
    );
    assert!(report.contains("alice"), "{report}");
    assert!(report.contains("chargeback"), "{report}");
    b.shot("07-auditor-report").await;
    b.sign_out().await;

    // The admin sees the tenant's active grants and revokes them all.
    let checkout = app.checkout_grant(3).await;
    assert!(checkout["grant"].is_string());
    b.sign_in(&app, &app.keys.admin, None).await;
    b.wait_for_path("/console/grants").await;
    b.wait_for_text("#grants", "1 active grant").await;
    b.shot("08-admin-grants").await;
    b.press("grants", "Revoke all").await;
    b.press("grants", "Revoke all grants").await;
    b.wait_for_text("#notice", "Revoked 1 grant(s)").await;
    b.wait_for_text("#grants", "No active grants").await;
    let r = app.list_grants(&app.keys.admin, "?active=true").await;
    let active: Value = r.json().await.unwrap();
    assert_eq!(active["grants"], json!([]));
    b.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn the_console_refuses_a_wrong_code_a_lapsed_session_and_a_change_without_its_csrf_token() {
    let (app, clock) = console_app().await;
    let b = browser().await;
    // A wrong code: refused, said so, still signed out.
    b.sign_in(&app, &app.keys.requester.key, Some("000000".into()))
        .await;
    let error = b.wait_for_text("#sign-in-error", "mfa_required").await;
    assert!(error.contains("not valid"), "{error}");
    assert_eq!(b.path().await, "/console");
    b.shot("09-sign-in-wrong-code").await;
    // A service's key is not a person's.
    b.sign_in(&app, &app.keys.detokenizer, None).await;
    b.wait_for_text("#sign-in-error", "forbidden").await;

    // Signed in: a change without the CSRF token is refused, with it the same change works.
    b.sign_in_person(&app, &app.keys.requester).await;
    b.wait_for_path("/console/requests").await;
    let token = app.token_for(&random_pan("411111", 16)).await;
    next_step(&clock);
    let ask = json!({
        "tokens": [token], "purpose": "dispute", "reason": "dispute D-1",
        "duration_seconds": 300, "totp": app.code(&app.keys.requester),
    });
    let (status, problem) = b
        .fetch("POST", "/v1/access-requests", ask.clone(), false)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("csrf_failed"))
    );
    let (status, created) = b.fetch("POST", "/v1/access-requests", ask, true).await;
    assert_eq!(status, 201, "{created}");
    assert!(created.get("grant").is_none());

    // Fifteen idle minutes later the session is over: the page says so and asks to sign in.
    clock.advance(TimeDelta::minutes(16));
    b.goto(&app, "/console/requests").await;
    b.wait_for_path("/console?ended=1").await;
    b.wait_for_text("#notice", "Your session ended").await;
    b.shot("10-session-ended").await;

    // The trail has the sign-ins, the refusals and the CSRF failure.
    let r = app.audit(&app.keys.auditor, "?action=session.start").await;
    let events: Value = r.json().await.unwrap();
    let codes: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap_or("ok"))
        .collect();
    assert!(codes.contains(&"mfa_required"), "{codes:?}");
    assert!(codes.contains(&"ok"), "{codes:?}");
    b.client.clone().close().await.unwrap();
}

#[tokio::test]
async fn console_pages_are_served_under_a_strict_content_security_policy() {
    let app = spawn_app().await;
    for path in [
        "/console",
        "/console/requests",
        "/console/inbox",
        "/console/report",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        // No inline script, no resource from elsewhere.
        assert!(!html.contains("<script>"), "no inline script");
        assert!(!html.contains("style="), "no inline style");
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
    for asset in ["/console/assets/console.js", "/console/assets/console.css"] {
        let r = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // The one address in the script is SVG's namespace, a name and not a place.
        let text = r
            .text()
            .await
            .unwrap()
            .replace("http://www.w3.org/2000/svg", "");
        assert!(
            !text.contains("innerHTML"),
            "{asset} builds no markup from text"
        );
        assert!(!text.contains("localStorage.set") && !text.contains("sessionStorage.set"));
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{asset}"
        );
    }
    let r = app
        .client
        .get(app.url("/console/secrets"))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::NOT_FOUND, "route_not_found").await;
}
