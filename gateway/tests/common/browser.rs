//! Headless Chromium driven over ChromeDriver's W3C WebDriver API, for tests that need a real browser: one
//! ChromeDriver process (its own process group, killed with the browser on drop), one session, one page.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The flags every test browser runs with: headless, no network of its own, video may autoplay.
pub const BASE_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
];

struct Driver {
    child: Child,
    base: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chromium session on one page.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Driver,
}

async fn command(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Value,
) -> Value {
    let mut req = http.request(method, url);
    if !body.is_null() {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let v: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "WebDriver: {status} {v}");
    v["value"].clone()
}

impl Browser {
    /// Opens `page` in a new Chromium with [`BASE_ARGS`] and `extra_args`.
    pub async fn open(page: &str, extra_args: &[&str]) -> Browser {
        Browser::open_with_prefs(page, extra_args, json!({})).await
    }

    /// [`Browser::open`] with Chromium preferences (e.g. `download.default_directory`).
    pub async fn open_with_prefs(page: &str, extra_args: &[&str], prefs: Value) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("chromedriver")
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/setup.sh installs chromium-driver)");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _profile: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::get(format!("{}/status", driver.base))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args: Vec<String> = BASE_ARGS
            .iter()
            .chain(extra_args)
            .map(|a| a.to_string())
            .collect();
        args.push(format!(
            "--user-data-dir={}",
            driver._profile.path().display()
        ));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": extra_args.contains(&"--ignore-certificate-errors"),
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args, "prefs": prefs }
        }}});
        let http = reqwest::Client::new();
        let session = command(
            &http,
            reqwest::Method::POST,
            format!("{}/session", driver.base),
            caps,
        )
        .await;
        let b = Browser {
            session: session["sessionId"].as_str().unwrap().to_owned(),
            http,
            driver,
        };
        b.go(page).await;
        b
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.driver.base, self.session)
    }

    pub async fn go(&self, page: &str) {
        command(
            &self.http,
            reqwest::Method::POST,
            self.url("/url"),
            json!({ "url": page }),
        )
        .await;
    }

    /// Runs `script` (a function body; `return` answers) in the page.
    pub async fn script(&self, script: &str) -> Value {
        command(
            &self.http,
            reqwest::Method::POST,
            self.url("/execute/sync"),
            json!({ "script": script, "args": [] }),
        )
        .await
    }

    /// The WebDriver reference of the first element matching the CSS `selector`.
    pub async fn element(&self, selector: &str) -> Value {
        command(
            &self.http,
            reqwest::Method::POST,
            self.url("/element"),
            json!({ "using": "css selector", "value": selector }),
        )
        .await
    }

    fn element_id(element: &Value) -> String {
        element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("a WebDriver element reference")
            .to_owned()
    }

    /// Clicks the element matching `selector`, as a user would (scrolled into view, at its centre).
    pub async fn click(&self, selector: &str) {
        let id = Self::element_id(&self.element(selector).await);
        command(
            &self.http,
            reqwest::Method::POST,
            self.url(&format!("/element/{id}/click")),
            json!({}),
        )
        .await;
    }

    /// Types `text` into the element matching `selector`.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let id = Self::element_id(&self.element(selector).await);
        command(
            &self.http,
            reqwest::Method::POST,
            self.url(&format!("/element/{id}/value")),
            json!({ "text": text }),
        )
        .await;
    }

    /// Performs W3C input `actions` (pointer moves, button presses, keys), then releases every input.
    pub async fn actions(&self, actions: Value) {
        command(
            &self.http,
            reqwest::Method::POST,
            self.url("/actions"),
            json!({ "actions": actions }),
        )
        .await;
        command(
            &self.http,
            reqwest::Method::DELETE,
            self.url("/actions"),
            json!({}),
        )
        .await;
    }

    /// Accepts the page's `confirm()` (or `alert()`) dialog.
    pub async fn accept_dialog(&self) {
        command(
            &self.http,
            reqwest::Method::POST,
            self.url("/alert/accept"),
            json!({}),
        )
        .await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let b64 = command(
            &self.http,
            reqwest::Method::GET,
            self.url("/screenshot"),
            Value::Null,
        )
        .await;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 PNG"))
            .expect("base64 PNG")
    }

    pub async fn close(self) {
        command(&self.http, reqwest::Method::DELETE, self.url(""), json!({})).await;
    }
}
