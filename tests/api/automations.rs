//! Automatic replies over real HTTP: inbound messages arrive as signed callbacks of an `http`
//! sender, and what Herald answers is read at a mock gateway on 127.0.0.1 — rules by match mode
//! and priority, fallback, cooldown and the hourly cap, STOP / START / HELP during a running
//! campaign, the workspace's keyword replies, and every bad rule refused.

use std::time::Duration;

use chrono::Utc;
use herald::domain::callback::sign;
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::Api;
use crate::common::TestDb;

/// A gateway that accepts every send.
struct Gateway;

impl Respond for Gateway {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        ResponseTemplate::new(200).set_body_json(json!({"id": format!("gw-{}", body["id"])}))
    }
}

struct Line {
    api: Api,
    gateway: MockServer,
    sender: String,
    secret: String,
}

impl Line {
    async fn open(db: TestDb, pacing: Value) -> Self {
        let gateway = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/send"))
            .respond_with(Gateway)
            .mount(&gateway)
            .await;
        let api = Api::start(db).await;
        let created = api
            .post(
                "/v1/senders",
                json!({"name": "Support", "provider": "http", "pacing": pacing,
                       "provider_config": {"url": format!("{}/send", gateway.uri())}}),
            )
            .await;
        created.expect(201);
        let sender = created.id();
        let secret = created.body["callback_secret"].as_str().unwrap().to_owned();
        Self {
            api,
            gateway,
            sender,
            secret,
        }
    }

    /// `from` writes `text` to the line; the callback's answer.
    async fn write(&self, from: &str, text: &str) -> Value {
        self.deliver(json!({"type": "inbound", "from": from, "body": text, "name": "Dana"}))
            .await
    }

    /// One event in a signed callback of Herald's own format; the callback's answer.
    async fn deliver(&self, event: Value) -> Value {
        self.deliver_all(vec![event]).await
    }

    /// Events in one signed callback, in order; the callback's answer.
    async fn deliver_all(&self, events: Vec<Value>) -> Value {
        let body = json!({ "events": events }).to_string();
        let timestamp = Utc::now().timestamp();
        let signature = sign(&self.secret, timestamp, body.as_bytes());
        let reply = self
            .api
            .send(
                self.api
                    .client_without_token(Method::POST, &format!("/v1/callbacks/{}", self.sender))
                    .header("X-Herald-Timestamp", timestamp.to_string())
                    .header("X-Herald-Signature", signature)
                    .header("Content-Type", "application/json")
                    .body(body),
            )
            .await;
        reply.expect(200).clone()
    }

    /// Writes `text` and expects `replies` automatic replies queued for it.
    async fn expect_replies(&self, from: &str, text: &str, replies: u64) {
        let answer = self.write(from, text).await;
        assert_eq!(answer["replies"], replies, "{text:?} from {from}: {answer}");
    }

    /// The texts the gateway got so far, in order, as (to, body).
    async fn sent(&self) -> Vec<(String, String)> {
        self.gateway
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|request| {
                let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
                (
                    body["to"].as_str().unwrap_or_default().to_owned(),
                    body["body"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Waits until the gateway got `count` sends; returns them.
    async fn sent_count(&self, count: usize) -> Vec<(String, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let sent = self.sent().await;
            if sent.len() >= count {
                assert_eq!(sent.len(), count, "more sends than expected: {sent:?}");
                return sent;
            }
            if tokio::time::Instant::now() >= deadline {
                let queued = self
                    .api
                    .get("/v1/messages?direction=outbound&per_page=200")
                    .await;
                panic!(
                    "only {} of {count} sends arrived: {sent:?}; queued: {}",
                    sent.len(),
                    queued.body
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn rule(&self, body: Value) -> String {
        let created = self.api.post("/v1/automations", body).await;
        created.expect(201);
        created.id()
    }
}

fn keyword(name: &str, priority: i64, mode: &str, keywords: &[&str], reply: &str) -> Value {
    json!({"name": name, "priority": priority,
           "trigger": {"type": "keyword", "keywords": keywords, "match": mode},
           "reply": {"content": reply}})
}

dialect_tests!(
    messages_of_one_callback_see_the_consent_each_leaves,
    a_callback_of_many_messages_welcomes_each_person_once_and_records_a_repeat_once,
    callbacks_committed_together_each_get_their_own_answers,
    rules_answer_by_match_mode_in_priority_order_with_a_fallback,
    cooldowns_and_the_hourly_cap_bound_replies,
    stop_during_a_running_campaign_stops_everything_and_start_and_help_answer,
    a_message_delivered_twice_is_recorded_and_answered_once,
    keyword_replies_are_the_workspaces_to_set_or_silence,
    away_rules_answer_outside_their_hours,
    rules_are_managed_with_filters_abilities_and_clear_refusals,
);

async fn rules_answer_by_match_mode_in_priority_order_with_a_fallback(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    let template = line
        .api
        .post(
            "/v1/templates",
            json!({"name": "Price list", "content": "Hi <<name|there>>! Plans start at $29."}),
        )
        .await
        .id();
    let price = line
        .rule(json!({"name": "Price", "priority": 10, "sender_id": line.sender,
                     "trigger": {"type": "keyword", "keywords": ["price", "pricing"], "match": "exact"},
                     "reply": {"template_id": template}}))
        .await;
    // Same priority, younger: "price" matches both, the older one answers.
    line.rule(keyword(
        "Price too",
        10,
        "contains",
        &["price"],
        "never sent",
    ))
    .await;
    line.rule(keyword("Hours", 5, "contains", &["hours"], "We open at 9."))
        .await;
    line.rule(keyword(
        "Order",
        5,
        "regex",
        &[r"^order\s*#?\d+$"],
        "Tracking <<phone>>",
    ))
    .await;
    line.rule(keyword(
        "Track",
        5,
        "starts_with",
        &["track"],
        "Send your order number.",
    ))
    .await;
    line.rule(
        json!({"name": "Fallback", "priority": 100, "trigger": {"type": "fallback"},
                     "reply": {"content": "Sorry, a human will answer soon."}}),
    )
    .await;
    line.rule(
        json!({"name": "Welcome", "priority": 50, "trigger": {"type": "welcome"},
                     "reply": {"content": "Welcome, <<name>>!"}}),
    )
    .await;

    let dana = "+201012345601";
    let conversation = [
        // A new contact (named as its platform says) gets the welcome first, once.
        ("Hello", "Welcome, Dana!"),
        ("  PRICE ", "Hi Dana! Plans start at $29."),
        ("What are your hours?", "We open at 9."),
        ("Order #42", "Tracking +201012345601"),
        ("track my parcel", "Send your order number."),
        ("blah", "Sorry, a human will answer soon."),
    ];
    for (n, (text, answer)) in conversation.iter().enumerate() {
        line.expect_replies(dana, text, 1).await;
        let sent = line.sent_count(n + 1).await;
        assert_eq!(sent[n].1, *answer, "the answer to {text:?}");
    }
    let sent = line.sent().await;
    assert!(sent.iter().all(|(to, _)| to == dana));

    let runs = line.api.get(&format!("/v1/automations/{price}/runs")).await;
    let runs = runs.expect(200);
    assert_eq!(runs["total"], 1, "{runs}");
    let run = &runs["data"][0];
    let reply = line
        .api
        .get(&format!(
            "/v1/messages/{}",
            run["reply_message_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(reply.expect(200)["body"], "Hi Dana! Plans start at $29.");
    let inbound = line
        .api
        .get(&format!(
            "/v1/messages/{}",
            run["inbound_message_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(inbound.expect(200)["body"], "  PRICE ");
    assert_eq!(
        reply.body["reply_to"], run["inbound_message_id"],
        "a reply names the message it answers"
    );
    // Both directions are in the contact's conversation.
    let contact = run["contact_id"].as_str().unwrap();
    let conversation = line
        .api
        .get(&format!("/v1/contacts/{contact}/messages?per_page=50"))
        .await;
    assert_eq!(conversation.expect(200)["total"], 12);

    line.api.stop().await;
}

async fn cooldowns_and_the_hourly_cap_bound_replies(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    line.rule(json!({"name": "Hi", "priority": 10, "cooldown_s": 3600,
                     "trigger": {"type": "keyword", "keywords": ["hi"], "match": "exact"},
                     "reply": {"content": "Hello there"}}))
        .await;
    line.rule(json!({"name": "Fallback", "trigger": {"type": "fallback"},
                     "reply": {"content": "Say hi"}}))
        .await;
    let sam = "+201012345602";
    line.expect_replies(sam, "hi", 1).await;
    // Cooling down, the rule is silent, and its match keeps the fallback out too.
    line.expect_replies(sam, "Hi", 0).await;
    line.expect_replies(sam, "what?", 1).await;

    // Another contact: the fallback answers ten times in the hour, then nothing.
    let bot = "+201012345603";
    for n in 0..10 {
        line.expect_replies(bot, &format!("ping {n}"), 1).await;
    }
    line.expect_replies(bot, "ping 10", 0).await;
    let sent = line.sent_count(12).await;
    assert_eq!(sent.iter().filter(|(to, _)| to == bot).count(), 10);
    line.expect_replies(bot, "STOP", 0).await;
    // The cap silenced STOP's confirmation, not STOP itself.
    let contacts = line.api.get("/v1/contacts?opted_out=true").await;
    assert_eq!(contacts.expect(200)["data"][0]["phone"], bot);

    line.api.stop().await;
}

async fn stop_during_a_running_campaign_stops_everything_and_start_and_help_answer(db: TestDb) {
    // One send a second: the campaign is still running when STOP arrives.
    let line = Line::open(db, json!({"rate_per_minute": 60})).await;
    let phones = ["+201012345611", "+201012345612", "+201012345613"];
    for phone in phones {
        line.api.contact(phone, json!({"tags": ["spring"]})).await;
    }
    line.rule(json!({"name": "Fallback", "trigger": {"type": "fallback"},
                     "reply": {"content": "never to an opted-out contact"}}))
        .await;
    let campaign = line
        .api
        .post(
            "/v1/campaigns",
            json!({"name": "Spring", "sender_id": line.sender, "content": "Spring sale!",
                   "audience": {"type": "tags", "tags": ["spring"]}}),
        )
        .await
        .id();
    line.api
        .post_empty(&format!("/v1/campaigns/{campaign}/start"))
        .await
        .expect(200);
    let last = phones[2];
    // The first send is out; the next two wait a second each.
    line.sent_count(1).await;
    line.expect_replies(last, "Stop!", 1).await;
    // Opted out: no automation answers it any more.
    line.expect_replies(last, "are you there", 0).await;

    let stats = line
        .api
        .wait_for(&format!("/v1/campaigns/{campaign}/stats"), |s| {
            s["status"] == "completed"
        })
        .await;
    assert_eq!(
        (
            &stats["total"],
            &stats["sent"],
            &stats["skipped"],
            &stats["pending"]
        ),
        (&json!(3), &json!(2), &json!(1), &json!(0)),
        "{stats}"
    );
    let skipped = line
        .api
        .get(&format!("/v1/campaigns/{campaign}/messages?status=skipped"))
        .await;
    let skipped = skipped.expect(200);
    assert_eq!(skipped["data"][0]["to"], last);
    assert_eq!(skipped["data"][0]["error"], "opted_out");

    let sent = line.sent_count(3).await;
    assert_eq!(
        sent,
        [
            (phones[0].to_owned(), "Spring sale!".to_owned()),
            (
                last.to_owned(),
                "You are unsubscribed. Reply START to subscribe again.".to_owned()
            ),
            (phones[1].to_owned(), "Spring sale!".to_owned()),
        ],
        "the confirmation jumps the campaign's queue and is all the contact gets"
    );

    line.expect_replies(last, "start", 1).await;
    line.sent_count(4).await;
    line.expect_replies(last, "HELP", 1).await;
    let sent = line.sent_count(5).await;
    assert_eq!(sent[3].1, "You are subscribed again.");
    assert_eq!(sent[4].1, "Reply STOP to unsubscribe.");
    let opted_in = line.api.get("/v1/contacts?opted_out=false").await;
    assert_eq!(opted_in.expect(200)["total"], 3);

    line.api.stop().await;
}

/// Messages that arrive in one callback (and so in one commit) are answered in order, each
/// seeing the consent the ones before it left: nothing answers the message after STOP but its
/// confirmation's keyword list, and the one after START gets the fallback again.
async fn messages_of_one_callback_see_the_consent_each_leaves(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    line.rule(json!({"name": "Fallback", "trigger": {"type": "fallback"},
                     "reply": {"content": "We got it"}}))
        .await;
    let from = "+201012345651";
    let said = |text: &str| json!({"type": "inbound", "from": from, "body": text});
    let answer = line
        .deliver_all(vec![
            said("STOP"),
            said("are you there"),
            said("START"),
            said("hello"),
        ])
        .await;
    assert_eq!(
        (&answer["inbound"], &answer["replies"]),
        (&json!(4), &json!(3)),
        "{answer}"
    );
    let mut sent: Vec<String> = line
        .sent_count(3)
        .await
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            "We got it",
            "You are subscribed again.",
            "You are unsubscribed. Reply START to subscribe again."
        ]
    );
    line.api.stop().await;
}

/// The messages of one callback are recorded together: a new person's first message is the
/// one welcomed, and a message the platform repeats inside the callback counts once.
async fn a_callback_of_many_messages_welcomes_each_person_once_and_records_a_repeat_once(
    db: TestDb,
) {
    let line = Line::open(db, json!({})).await;
    line.rule(
        json!({"name": "Welcome", "priority": 1, "trigger": {"type": "welcome"},
                     "reply": {"content": "Welcome, <<name|friend>>!"}}),
    )
    .await;
    line.rule(
        json!({"name": "Fallback", "priority": 9, "trigger": {"type": "fallback"},
                     "reply": {"content": "We got it"}}),
    )
    .await;
    let (amal, badr) = ("+201012345661", "+201012345662");
    let said = |from: &str, text: &str, id: &str| json!({"type": "inbound", "from": from, "body": text, "message_id": id, "name": "Amal"});
    let answer = line
        .deliver_all(vec![
            said(amal, "hi", "in-1"),
            said(amal, "my order?", "in-2"),
            said(amal, "hi", "in-1"),
            json!({"type": "inbound", "from": badr, "body": "hello", "message_id": "in-3"}),
        ])
        .await;
    assert_eq!(
        (&answer["inbound"], &answer["replies"]),
        (&json!(3), &json!(3)),
        "{answer}"
    );
    let mut sent = line.sent_count(3).await;
    sent.sort();
    assert_eq!(
        sent,
        [
            (amal.to_owned(), "We got it".to_owned()),
            (amal.to_owned(), "Welcome, Amal!".to_owned()),
            (badr.to_owned(), "Welcome, friend!".to_owned()),
        ]
    );
    let inbound = line
        .api
        .get("/v1/messages?direction=inbound&per_page=200")
        .await;
    assert_eq!(inbound.expect(200)["total"], 3, "{}", inbound.body);
    let contacts = line.api.get("/v1/contacts?per_page=200").await;
    assert_eq!(contacts.expect(200)["total"], 2, "{}", contacts.body);
    line.api.stop().await;
}

/// Callbacks that arrive at once share commits; each still gets its own messages' answers.
async fn callbacks_committed_together_each_get_their_own_answers(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    line.rule(keyword(
        "Price",
        1,
        "exact",
        &["price"],
        "Plans start at $29.",
    ))
    .await;
    let people: Vec<String> = (0..40).map(|n| format!("+2010123457{n:02}")).collect();
    let answers = futures::future::join_all(people.iter().enumerate().map(|(n, from)| {
        // Every third person asks something no rule answers.
        let text = if n % 3 == 0 { "hello" } else { "price" };
        line.deliver_all(vec![json!({"type": "inbound", "from": from, "body": text})])
    }))
    .await;
    for (n, answer) in answers.iter().enumerate() {
        let replies = u64::from(n % 3 != 0);
        assert_eq!(
            (&answer["inbound"], &answer["replies"]),
            (&json!(1), &json!(replies)),
            "{}: {answer}",
            people[n]
        );
    }
    let answered = people.iter().enumerate().filter(|(n, _)| n % 3 != 0);
    let mut expected: Vec<(String, String)> = answered
        .map(|(_, from)| (from.clone(), "Plans start at $29.".to_owned()))
        .collect();
    let mut sent = line.sent_count(expected.len()).await;
    sent.sort();
    expected.sort();
    assert_eq!(sent, expected);
    line.api.stop().await;
}

async fn a_message_delivered_twice_is_recorded_and_answered_once(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    line.rule(json!({"name": "Fallback", "trigger": {"type": "fallback"},
                     "reply": {"content": "We got it"}}))
        .await;
    let event = json!({"type": "inbound", "from": "+201012345641", "body": "my order?",
                       "message_id": "gw-in-1"});
    let first = line.deliver(event.clone()).await;
    assert_eq!(
        (&first["inbound"], &first["replies"]),
        (&json!(1), &json!(1))
    );
    // The platform retries the webhook: nothing is recorded or answered again.
    let again = line.deliver(event).await;
    assert_eq!(
        (&again["inbound"], &again["replies"]),
        (&json!(0), &json!(0))
    );
    // Another message of the same person is its own.
    let other = line
        .deliver(
            json!({"type": "inbound", "from": "+201012345641", "body": "hello?",
                        "message_id": "gw-in-2"}),
        )
        .await;
    assert_eq!(other["inbound"], 1);
    let inbound = line.api.get("/v1/messages?direction=inbound").await;
    assert_eq!(inbound.expect(200)["total"], 2);
    line.sent_count(2).await;
    line.api.stop().await;
}

async fn keyword_replies_are_the_workspaces_to_set_or_silence(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    let defaults = line.api.get("/v1/settings/keywords").await;
    assert_eq!(
        defaults.expect(200)["help_reply"],
        "Reply STOP to unsubscribe."
    );
    let put = || {
        line.api
            .request(Method::PUT, "/v1/settings/keywords")
            .header("Idempotency-Key", "keywords-1")
            .json(&json!({"opt_out_reply": "Bye <<name|friend>>.", "help_reply": null}))
    };
    let set = line.api.send(put()).await;
    let replayed = line.api.send(put()).await;
    assert_eq!(replayed.header("Idempotent-Replay"), Some("true"));
    let set = set.expect(200);
    assert_eq!(set["help_reply"], Value::Null);
    assert_eq!(set["opt_in_reply"], "You are subscribed again.");
    let blank = line
        .api
        .send(
            line.api
                .request(Method::PUT, "/v1/settings/keywords")
                .json(&json!({"opt_in_reply": "  "})),
        )
        .await;
    let details = blank.expect_error(422, "validation_failed");
    assert!(details["errors"]["opt_in_reply"].is_array(), "{details}");

    let kim = "+201012345621";
    line.expect_replies(kim, "help", 0).await;
    line.expect_replies(kim, "unsubscribe", 1).await;
    line.sent_count(1).await;
    line.expect_replies(kim, "yes", 1).await;
    let sent = line.sent_count(2).await;
    // Rendered for the contact, created with the name its platform gave.
    assert_eq!(sent[0].1, "Bye Dana.");
    assert_eq!(sent[1].1, "You are subscribed again.");

    line.api.stop().await;
}

async fn away_rules_answer_outside_their_hours(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    let now = Utc::now();
    let hhmm = |hours: i64| {
        (now + chrono::Duration::hours(hours))
            .format("%H:%M")
            .to_string()
    };
    let every_day = [1, 2, 3, 4, 5, 6, 7];
    // Open from two hours from now to three hours from now: closed now, so away answers.
    line.rule(json!({"name": "Closed", "priority": 1,
                     "trigger": {"type": "away", "hours": {"days": every_day, "start": hhmm(2),
                                                           "end": hhmm(3), "timezone": "UTC"}},
                     "reply": {"content": "We are closed."}}))
        .await;
    // Open around now (overnight when it spans midnight): this one stays silent.
    line.rule(json!({"name": "Open", "priority": 2,
                     "trigger": {"type": "away", "hours": {"days": every_day, "start": hhmm(-1),
                                                           "end": hhmm(1), "timezone": "UTC"}},
                     "reply": {"content": "never: we are open"}}))
        .await;
    line.expect_replies("+201012345631", "anyone?", 1).await;
    let sent = line.sent_count(1).await;
    assert_eq!(sent[0].1, "We are closed.");
    line.api.stop().await;
}

async fn rules_are_managed_with_filters_abilities_and_clear_refusals(db: TestDb) {
    let line = Line::open(db, json!({})).await;
    let api = &line.api;
    let other_template = {
        let other = api.key("globex", "*", None).await;
        let created = api
            .send(
                api.request_as(&other, Method::POST, "/v1/templates")
                    .json(&json!({"name": "Theirs", "content": "Not yours"})),
            )
            .await;
        created.id()
    };
    let refused = |body: Value, field: &'static str| async move {
        let reply = api.post("/v1/automations", body.clone()).await;
        let details = reply.expect_error(422, "validation_failed");
        assert!(
            details["errors"][field].is_array(),
            "{field} should be named for {body}: {details}"
        );
    };
    let reply = json!({"content": "Hi"});
    refused(
        json!({"name": "x", "trigger": {"type": "birthday"}, "reply": reply}),
        "trigger.type",
    )
    .await;
    refused(
        json!({"name": "x", "trigger": {"type": "keyword", "keywords": []}, "reply": reply}),
        "trigger.keywords",
    )
    .await;
    refused(
        json!({"name": "x", "trigger": {"type": "keyword", "keywords": ["(oops"], "match": "regex"},
               "reply": reply}),
        "trigger.keywords",
    )
    .await;
    refused(
        json!({"name": "x", "reply": reply,
               "trigger": {"type": "away", "hours": {"days": [1], "start": "09:00", "end": "09:00",
                                                     "timezone": "UTC"}}}),
        "trigger.hours.end",
    )
    .await;
    refused(
        json!({"name": "x", "sender_id": crate::unknown_id(), "trigger": {"type": "welcome"},
               "reply": reply}),
        "sender_id",
    )
    .await;
    refused(
        json!({"name": "x", "trigger": {"type": "welcome"},
               "reply": {"template_id": other_template}}),
        "reply.template_id",
    )
    .await;
    refused(
        json!({"name": "x", "trigger": {"type": "welcome"}, "reply": {}}),
        "reply",
    )
    .await;
    refused(
        json!({"name": " ", "trigger": {"type": "welcome"}, "reply": reply, "cooldown_s": -1}),
        "cooldown_s",
    )
    .await;
    assert_eq!(api.get("/v1/automations").await.expect(200)["total"], 0);

    let welcome = line
        .rule(
            json!({"name": "Welcome", "sender_id": line.sender, "trigger": {"type": "welcome"},
                     "reply": reply}),
        )
        .await;
    let fallback = line
        .rule(
            json!({"name": "Fallback", "enabled": false, "trigger": {"type": "fallback"},
                     "reply": reply}),
        )
        .await;
    let ids = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|rule| rule["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let listed = api.get("/v1/automations?enabled=false").await;
    assert_eq!(ids(listed.expect(200)), [fallback.as_str()]);
    let listed = api.get("/v1/automations?trigger_type=welcome").await;
    assert_eq!(ids(listed.expect(200)), [welcome.as_str()]);
    let listed = api
        .get(&format!("/v1/automations?sender_id={}", line.sender))
        .await;
    assert_eq!(ids(listed.expect(200)), [welcome.as_str()]);
    api.get("/v1/automations?trigger_type=birthday")
        .await
        .expect_error(422, "validation_failed");

    let toggled = api
        .post_empty(&format!("/v1/automations/{fallback}/toggle"))
        .await;
    assert_eq!(toggled.expect(200)["enabled"], true);
    let patched = api
        .patch(
            &format!("/v1/automations/{welcome}"),
            json!({"sender_id": null, "priority": 7,
                   "trigger": {"type": "keyword", "keywords": ["hello"], "match": "starts_with"}}),
        )
        .await;
    let patched = patched.expect(200);
    assert_eq!(patched["sender_id"], Value::Null);
    assert_eq!(patched["trigger"]["match"], "starts_with");
    assert_eq!(patched["priority"], 7);
    let bad_patch = api
        .patch(
            &format!("/v1/automations/{welcome}"),
            json!({"trigger": {"type": "keyword"}}),
        )
        .await;
    bad_patch.expect_error(422, "validation_failed");
    assert_eq!(
        api.get(&format!("/v1/automations/{welcome}"))
            .await
            .expect(200)["trigger"]["keywords"],
        json!(["hello"]),
        "a refused change changes nothing"
    );

    let reader = api.key("acme", "campaigns.read", None).await;
    let listed = api
        .send(api.request_as(&reader, Method::GET, "/v1/automations"))
        .await;
    assert_eq!(listed.expect(200)["total"], 2);
    let denied = api
        .send(
            api.request_as(&reader, Method::POST, "/v1/automations")
                .json(&json!({"name": "x", "trigger": {"type": "welcome"}, "reply": reply})),
        )
        .await;
    denied.expect_error(403, "insufficient_ability");
    let writer = api.key("acme", "automations.write", None).await;
    let deleted = api
        .send(api.request_as(
            &writer,
            Method::DELETE,
            &format!("/v1/automations/{welcome}"),
        ))
        .await;
    assert_eq!(deleted.status.as_u16(), 204);
    api.get(&format!("/v1/automations/{welcome}"))
        .await
        .expect_error(404, "not_found");
    let stranger = api.key("globex", "*", None).await;
    let hidden = api
        .send(api.request_as(
            &stranger,
            Method::GET,
            &format!("/v1/automations/{fallback}"),
        ))
        .await;
    hidden.expect_error(404, "not_found");

    line.api.stop().await;
}
