//! The dashboard over plain HTTP: sessions, CSRF, workspaces and escaping. (A real browser
//! drives it in `tests/browser.rs`.)

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::Api;
use crate::common::TestDb;

/// A browser without a browser: a client that keeps the session cookie and reads form tokens.
struct Visitor {
    base: String,
    client: reqwest::Client,
    cookie: Option<String>,
}

struct Page {
    status: StatusCode,
    location: Option<String>,
    set_cookies: Vec<String>,
    html: String,
}

impl Page {
    /// The value of the first `<input name="{name}" value="…">` of the page.
    fn input(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no input {name} in {}", self.html))
            + marker.len();
        let end = self.html[start..].find('"').unwrap() + start;
        self.html[start..end].to_owned()
    }
}

impl Visitor {
    fn new(api: &Api) -> Self {
        Self {
            base: api.base.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(cookie) => request.header(COOKIE, cookie),
            None => request,
        };
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|value| value.to_str().unwrap().to_owned());
        let set_cookies: Vec<String> = response
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect();
        let html = response.text().await.unwrap();
        Page {
            status,
            location,
            set_cookies,
            html,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.client.post(format!("{}{path}", self.base)).form(form);
        self.send(request).await
    }

    /// Signs in with `token` through the sign-in form; the session cookie is kept.
    async fn sign_in(&mut self, token: &str) -> Page {
        let form = self.get("/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let guard = form
            .set_cookies
            .iter()
            .find(|cookie| cookie.starts_with("herald_sign_in="))
            .expect("the sign-in form sets its CSRF cookie")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        self.cookie = Some(guard);
        let token_field = form.input("sign_in_csrf");
        let signed_in = self
            .post(
                "/login",
                &[("token", token), ("sign_in_csrf", &token_field)],
            )
            .await;
        if let Some(session) = signed_in
            .set_cookies
            .iter()
            .find(|cookie| cookie.starts_with("herald_session=") && !cookie.contains("Max-Age=0"))
        {
            self.cookie = Some(session.split(';').next().unwrap().to_owned());
        }
        signed_in
    }
}

async fn running_campaign(api: &Api) -> String {
    api.contact("+201000000001", json!({})).await;
    let sender = api
        .post(
            "/v1/senders",
            json!({"name": "Slow", "provider": "sandbox",
                   "pacing": {"rate_per_minute": 1},
                   "provider_config": {"deliver_rate": 0, "read_rate": 0}}),
        )
        .await
        .id();
    api.contact("+201000000002", json!({})).await;
    api.start_campaign(&sender, "Spring sale").await
}

pub async fn a_session_cookie_is_strict_and_http_only_and_ends_at_sign_out(db: TestDb) {
    let api = Api::start(db).await;
    let mut visitor = Visitor::new(&api);
    let outside = visitor.get("/campaigns").await;
    assert_eq!(outside.status, StatusCode::SEE_OTHER);
    assert_eq!(outside.location.as_deref(), Some("/login"));

    let refused = visitor.sign_in("hrl_not-a-token").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.html.contains("not valid"), "{}", refused.html);

    let signed_in = visitor.sign_in(&api.token).await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let cookie = signed_in
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("herald_session="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
    assert!(
        !cookie.contains(&api.token),
        "the token never goes into the cookie"
    );
    let page = visitor.get("/campaigns").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("<h1>Campaigns</h1>"), "{}", page.html);

    let csrf = page.input("csrf");
    let out = visitor.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    let after = visitor.get("/campaigns").await;
    assert_eq!(
        after.location.as_deref(),
        Some("/login"),
        "the old cookie no longer opens pages"
    );
}

pub async fn a_form_without_the_sessions_csrf_token_changes_nothing(db: TestDb) {
    let api = Api::start(db).await;
    let campaign = running_campaign(&api).await;
    let mut visitor = Visitor::new(&api);
    visitor.sign_in(&api.token).await;
    let page = visitor.get(&format!("/campaigns/{campaign}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let csrf = page.input("csrf");

    for forged in [vec![], vec![("csrf", "0".repeat(64))]] {
        let form: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = visitor
            .post(&format!("/campaigns/{campaign}/pause"), &form)
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.html);
        let still = api.get(&format!("/v1/campaigns/{campaign}")).await;
        assert_eq!(still.body["status"], "running");
    }
    let paused = visitor
        .post(&format!("/campaigns/{campaign}/pause"), &[("csrf", &csrf)])
        .await;
    assert_eq!(paused.status, StatusCode::SEE_OTHER);
    let now = api.get(&format!("/v1/campaigns/{campaign}")).await;
    assert_eq!(now.body["status"], "paused");

    // A move the campaign no longer allows comes back with the reason.
    api.post_empty(&format!("/v1/campaigns/{campaign}/cancel"))
        .await
        .expect(200);
    let stale = visitor
        .post(&format!("/campaigns/{campaign}/resume"), &[("csrf", &csrf)])
        .await;
    let shown = visitor.get(stale.location.as_deref().unwrap()).await;
    assert!(
        shown
            .html
            .contains("Cannot resume this campaign: it is canceled now."),
        "{}",
        shown.html
    );
}

pub async fn another_workspaces_session_sees_nothing_of_the_first(db: TestDb) {
    let api = Api::start(db).await;
    let campaign = running_campaign(&api).await;
    let contact = api
        .contact("+201000000003", json!({"name": "Acme's customer"}))
        .await;
    let other = api.key("globex", "*", None).await;
    let mut visitor = Visitor::new(&api);
    visitor.sign_in(&other).await;
    for path in [
        format!("/campaigns/{campaign}"),
        format!("/campaigns/{campaign}/live"),
        format!("/contacts/{contact}"),
    ] {
        let page = visitor.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
    }
    let campaigns = visitor.get("/campaigns").await;
    assert!(!campaigns.html.contains("Spring sale"));
    let contacts = visitor.get("/contacts").await;
    assert!(
        !contacts.html.contains("Acme&#x27;s customer") && !contacts.html.contains("+201000000003")
    );
    let csrf = contacts.input("csrf");
    let refused = visitor
        .post(&format!("/contacts/{contact}/block"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    let untouched = api.get(&format!("/v1/contacts/{contact}")).await;
    assert_eq!(untouched.body["blocked"], false);
}

pub async fn a_key_without_an_ability_gets_neither_the_page_nor_the_link(db: TestDb) {
    let api = Api::start(db).await;
    let reader = api.key("acme", "contacts.read", None).await;
    let mut visitor = Visitor::new(&api);
    visitor.sign_in(&reader).await;
    let home = visitor.get("/").await;
    assert_eq!(
        home.location.as_deref(),
        Some("/contacts"),
        "the first section it may read"
    );
    let contacts = visitor.get("/contacts").await;
    assert_eq!(contacts.status, StatusCode::OK);
    assert!(!contacts.html.contains("href=\"/campaigns\""));
    assert!(!contacts.html.contains("Import a CSV file"));
    let campaigns = visitor.get("/campaigns").await;
    assert_eq!(campaigns.status, StatusCode::FORBIDDEN);
    assert!(campaigns.html.contains("campaigns.read"));

    // A revoked key signs its sessions out at the next page.
    let keys = api.get("/v1/api-keys").await;
    let reader_id = keys.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["abilities"] == json!(["contacts.read"]))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.delete(&format!("/v1/api-keys/{reader_id}"))
        .await
        .expect(204);
    let after = visitor.get("/contacts").await;
    assert_eq!(after.location.as_deref(), Some("/login"));
}

pub async fn names_are_shown_as_text_never_as_markup(db: TestDb) {
    let api = Api::start(db).await;
    let contact = api
        .contact(
            "+201000000004",
            json!({"name": "<script>alert(1)</script>", "tags": ["<b>vip</b>"]}),
        )
        .await;
    let mut visitor = Visitor::new(&api);
    visitor.sign_in(&api.token).await;
    for path in ["/contacts".to_owned(), format!("/contacts/{contact}")] {
        let page = visitor.get(&path).await;
        assert!(
            !page.html.contains("<script>alert"),
            "{path}: {}",
            page.html
        );
        assert!(!page.html.contains("<b>vip"), "{path}");
        assert!(
            page.html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
}

pub async fn automations_webhooks_and_analytics_show_what_the_api_holds(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api.sandbox_sender().await;
    api.contact("+201000000005", json!({"name": "Mona"})).await;
    let campaign = api.start_campaign(&sender, "Autumn").await;
    api.wait_for(&format!("/v1/campaigns/{campaign}"), |body| {
        body["status"] == "completed"
    })
    .await;
    let rule = api
        .post(
            "/v1/automations",
            json!({"name": "Prices", "priority": 1,
                   "trigger": {"type": "keyword", "keywords": ["price"], "match": "contains"},
                   "reply": {"content": "Our prices: <<name>>"}}),
        )
        .await
        .id();
    let receiver = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let hook = api
        .post(
            "/v1/webhooks",
            json!({"url": format!("{}/hooks", receiver.uri()), "events": ["campaign.*"]}),
        )
        .await
        .id();

    let mut visitor = Visitor::new(&api);
    visitor.sign_in(&api.token).await;
    let rules = visitor.get("/automations").await;
    assert!(rules.html.contains("Prices") && rules.html.contains("contains price"));
    let csrf = rules.input("csrf");
    let toggled = visitor
        .post(&format!("/automations/{rule}/toggle"), &[("csrf", &csrf)])
        .await;
    assert_eq!(toggled.status, StatusCode::SEE_OTHER);
    let off = api.get(&format!("/v1/automations/{rule}")).await;
    assert_eq!(off.body["enabled"], false);

    let hooks = visitor.get("/webhooks").await;
    assert!(hooks.html.contains(&receiver.uri()), "{}", hooks.html);
    let tested = visitor
        .post(&format!("/webhooks/{hook}/test"), &[("csrf", &csrf)])
        .await;
    assert_eq!(tested.status, StatusCode::SEE_OTHER);
    api.wait_for(
        &format!("/v1/webhooks/{hook}/deliveries?status=succeeded"),
        |body| {
            body["data"]
                .as_array()
                .is_some_and(|rows| rows.iter().any(|row| row["type"] == "webhook.test"))
        },
    )
    .await;
    let log = visitor.get(&format!("/webhooks/{hook}")).await;
    assert!(log.html.contains("webhook.test") && log.html.contains("Replay"));
    let deliveries = api.get(&format!("/v1/webhooks/{hook}/deliveries")).await;
    let delivery = deliveries.body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let replayed = visitor
        .post(
            &format!("/webhooks/{hook}/deliveries/{delivery}/replay"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER, "{}", replayed.html);

    let analytics = visitor.get("/analytics?timezone=Asia/Kolkata").await;
    assert_eq!(analytics.status, StatusCode::OK, "{}", analytics.html);
    assert!(analytics.html.contains("<svg") && analytics.html.contains("Autumn"));
    let refused = visitor.get("/analytics?timezone=Mars/Olympus").await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.html.contains("timezone"), "{}", refused.html);
}

pub async fn a_senders_pacing_is_changed_through_its_form(db: TestDb) {
    let api = Api::start(db).await;
    let sender = api.sandbox_sender().await;
    let mut visitor = Visitor::new(&api);
    visitor.sign_in(&api.token).await;
    let page = visitor.get(&format!("/senders/{sender}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let csrf = page.input("csrf");
    let path = format!("/senders/{sender}");
    let refused = visitor
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("name", "Sandbox"),
                ("timezone", "Africa/Cairo"),
                ("daily_limit", "lots"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.html.contains("pacing.daily_limit"),
        "{}",
        refused.html
    );
    assert!(
        refused.html.contains("value=\"lots\""),
        "the form keeps what was typed"
    );
    let unchanged = api.get(&format!("/v1/senders/{sender}")).await;
    assert_eq!(unchanged.body["timezone"], "UTC");

    let saved = visitor
        .post(
            &path,
            &[
                ("csrf", &csrf),
                ("name", "Cairo line"),
                ("timezone", "Africa/Cairo"),
                ("daily_limit", "500"),
                ("rate_per_minute", "20"),
                ("window_start", "09:00"),
                ("window_end", "21:00"),
                ("day_1", "on"),
                ("day_7", "on"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.html);
    let now = api.get(&format!("/v1/senders/{sender}")).await;
    assert_eq!(now.body["name"], "Cairo line");
    assert_eq!(now.body["timezone"], "Africa/Cairo");
    assert_eq!(now.body["pacing"]["daily_limit"], 500);
    assert_eq!(now.body["pacing"]["rate_per_minute"], 20);
    assert_eq!(
        now.body["pacing"]["send_window"],
        json!({"days": [1, 7], "start": "09:00", "end": "21:00"})
    );
    let list = visitor.get("/senders").await;
    assert!(list.html.contains("0 of 500") && list.html.contains("20 a minute at most"));
}

dialect_tests!(
    a_senders_pacing_is_changed_through_its_form,
    automations_webhooks_and_analytics_show_what_the_api_holds,
    a_session_cookie_is_strict_and_http_only_and_ends_at_sign_out,
    a_form_without_the_sessions_csrf_token_changes_nothing,
    another_workspaces_session_sees_nothing_of_the_first,
    a_key_without_an_ability_gets_neither_the_page_nor_the_link,
    names_are_shown_as_text_never_as_markup,
);
