//! Automatic replies: the rules' CRUD with every field checked, the workspace's consent-keyword
//! replies, and [`answer`], which the ingestion of an inbound message calls in its own
//! transaction — so the message, an opt-out it asks for, and the reply it gets are recorded
//! together or not at all.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{DateTime, Duration, Utc};

use super::templates::check_content;
use super::{ServiceError, ServiceResult};
use crate::domain::automation::{
    ConsentKeyword, InboundText, KeywordReplies, Matcher, REPLIES_PER_CONTACT_PER_HOUR, Reply,
    Rule, Trigger, TriggerInput, TriggerType, candidates,
};
use crate::domain::event::{AutomationEvent, EventType};
use crate::domain::ids::{AutomationId, MessageId, SenderId, TemplateId, WorkspaceId};
use crate::domain::template::Template;
use crate::domain::validation::FieldErrors;
use crate::render::render_once;
use crate::store::automations::{
    self, Automation, AutomationFields, AutomationFilter, NewRun, Run,
};
use crate::store::contacts::{self, Contact};
use crate::store::events::{self, NewEvent};
use crate::store::messages::{self, Inbound, NewInbound, NewMessage};
use crate::store::{self, Conn, Db, Page, StoreError, senders, templates};

/// A rule as a client writes it.
#[derive(Clone, Debug, Default)]
pub struct AutomationInput {
    pub name: String,
    /// `None`: every sender of the workspace.
    pub sender_id: Option<SenderId>,
    pub priority: i64,
    pub enabled: bool,
    pub cooldown_s: i64,
    pub trigger: TriggerInput,
    pub reply: Reply,
}

/// Fields to change; `None` keeps a field, `sender_id: Some(None)` makes the rule answer on
/// every sender.
#[derive(Clone, Debug, Default)]
pub struct AutomationChange {
    pub name: Option<String>,
    pub sender_id: Option<Option<SenderId>>,
    pub priority: Option<i64>,
    pub enabled: Option<bool>,
    pub cooldown_s: Option<i64>,
    pub trigger: Option<TriggerInput>,
    pub reply: Option<Reply>,
}

impl AutomationInput {
    /// What is stored of a checked rule, with its parsed trigger.
    fn fields<'a>(&'a self, trigger: &'a Trigger) -> AutomationFields<'a> {
        AutomationFields {
            sender_id: self.sender_id,
            name: self.name.trim(),
            priority: self.priority,
            enabled: self.enabled,
            cooldown_s: self.cooldown_s,
            trigger,
            reply: &self.reply,
        }
    }
}

/// The longest cooldown: a day, a week… a month is more than any rule needs.
const MAX_COOLDOWN_S: i64 = 30 * 24 * 3600;
const MAX_NAME_LEN: usize = 200;

pub async fn create(
    db: &Db,
    workspace: WorkspaceId,
    input: AutomationInput,
    now: DateTime<Utc>,
) -> ServiceResult<Automation> {
    let mut tx = db.begin().await?;
    let trigger = checked(tx.conn(), workspace, &input).await?;
    let fields = input.fields(&trigger);
    let automation = automations::insert(tx.conn(), workspace, &fields, now).await?;
    tx.commit().await?;
    Ok(automation)
}

pub async fn update(
    db: &Db,
    workspace: WorkspaceId,
    id: AutomationId,
    change: AutomationChange,
    now: DateTime<Utc>,
) -> ServiceResult<Automation> {
    let mut tx = db.begin().await?;
    let current = automations::get(tx.conn(), workspace, id).await?;
    let trigger_input = change
        .trigger
        .unwrap_or_else(|| as_input(&current.trigger_spec.0));
    let input = AutomationInput {
        name: change.name.unwrap_or(current.name),
        sender_id: change.sender_id.unwrap_or(current.sender_id),
        priority: change.priority.unwrap_or(current.priority),
        enabled: change.enabled.unwrap_or(current.enabled),
        cooldown_s: change.cooldown_s.unwrap_or(current.cooldown_s),
        trigger: trigger_input,
        reply: change.reply.unwrap_or(current.reply_spec.0),
    };
    let trigger = checked(tx.conn(), workspace, &input).await?;
    let fields = input.fields(&trigger);
    let automation = automations::update(tx.conn(), workspace, id, &fields, now).await?;
    tx.commit().await?;
    Ok(automation)
}

/// Turns a rule on when it is off, off when it is on.
pub async fn toggle(
    db: &Db,
    workspace: WorkspaceId,
    id: AutomationId,
    now: DateTime<Utc>,
) -> ServiceResult<Automation> {
    let mut tx = db.begin().await?;
    let current = automations::get(tx.conn(), workspace, id).await?;
    let fields = AutomationFields {
        sender_id: current.sender_id,
        name: &current.name,
        priority: current.priority,
        enabled: !current.enabled,
        cooldown_s: current.cooldown_s,
        trigger: &current.trigger_spec.0,
        reply: &current.reply_spec.0,
    };
    let automation = automations::update(tx.conn(), workspace, id, &fields, now).await?;
    tx.commit().await?;
    Ok(automation)
}

pub async fn get(db: &Db, workspace: WorkspaceId, id: AutomationId) -> ServiceResult<Automation> {
    let mut conn = db.read().await?;
    Ok(automations::get(conn.conn(), workspace, id).await?)
}

pub async fn list(
    db: &Db,
    workspace: WorkspaceId,
    filter: AutomationFilter,
    page: Page,
) -> ServiceResult<(Vec<Automation>, i64)> {
    let mut conn = db.read().await?;
    Ok(automations::list(conn.conn(), workspace, filter, page).await?)
}

/// Its runs go with it.
pub async fn delete(db: &Db, workspace: WorkspaceId, id: AutomationId) -> ServiceResult<()> {
    let mut tx = db.begin().await?;
    automations::delete(tx.conn(), workspace, id).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn runs(
    db: &Db,
    workspace: WorkspaceId,
    id: AutomationId,
    page: Page,
) -> ServiceResult<(Vec<Run>, i64)> {
    let mut conn = db.read().await?;
    Ok(automations::runs(conn.conn(), workspace, id, page).await?)
}

pub async fn keyword_replies(db: &Db, workspace: WorkspaceId) -> ServiceResult<KeywordReplies> {
    let mut conn = db.read().await?;
    Ok(automations::keyword_replies(conn.conn(), workspace).await?)
}

/// Sets the workspace's consent-keyword replies; a blank text is refused (`null` silences one).
pub async fn set_keyword_replies(
    db: &Db,
    workspace: WorkspaceId,
    replies: KeywordReplies,
    now: DateTime<Utc>,
) -> ServiceResult<KeywordReplies> {
    let mut errors = FieldErrors::new();
    for (field, text) in [
        ("opt_out_reply", &replies.opt_out_reply),
        ("opt_in_reply", &replies.opt_in_reply),
        ("help_reply", &replies.help_reply),
    ] {
        match text {
            Some(text) if text.trim().is_empty() => {
                errors.add(field, "must not be blank; null sends nothing")
            }
            Some(text) if text.chars().count() > 4096 => {
                errors.add(field, "is longer than 4096 characters")
            }
            _ => {}
        }
    }
    errors.into_result()?;
    let mut conn = db.write().await?;
    automations::set_keyword_replies(conn.conn(), workspace, &replies, now).await?;
    Ok(replies)
}

/// Checks every field of a rule against the workspace; the trigger, parsed.
async fn checked(
    mut conn: Conn<'_>,
    workspace: WorkspaceId,
    input: &AutomationInput,
) -> ServiceResult<Trigger> {
    let mut errors = FieldErrors::new();
    let name = input.name.trim();
    if name.is_empty() {
        errors.add("name", "is required");
    } else if name.chars().count() > MAX_NAME_LEN {
        errors.add("name", format!("is longer than {MAX_NAME_LEN} characters"));
    }
    if !(0..=MAX_COOLDOWN_S).contains(&input.cooldown_s) {
        errors.add(
            "cooldown_s",
            format!("must be between 0 and {MAX_COOLDOWN_S} seconds"),
        );
    }
    if let Some(sender) = input.sender_id {
        match senders::get(conn.reborrow(), workspace, sender).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => errors.add("sender_id", "no such sender"),
            Err(error) => return Err(error.into()),
        }
    }
    let trigger = input.trigger.clone().parse();
    match (&input.reply.content, input.reply.template_id) {
        (Some(_), Some(_)) => errors.add("reply", "give content or template_id, not both"),
        (None, None) => errors.add("reply", "give content or template_id"),
        (Some(content), None) => {
            check_content(content, "reply.content", &mut errors);
        }
        (None, Some(template)) => match templates::get(conn, workspace, template).await {
            Ok(_) => {}
            Err(StoreError::NotFound) => errors.add("reply.template_id", "no such template"),
            Err(error) => return Err(error.into()),
        },
    }
    match trigger {
        Ok(trigger) => {
            errors.into_result()?;
            Ok(trigger)
        }
        Err(trigger_errors) => Err(ServiceError::Validation(errors.merged(trigger_errors))),
    }
}

/// A stored trigger as the input that would create it (a change that keeps the trigger is
/// checked like any other).
fn as_input(trigger: &Trigger) -> TriggerInput {
    match trigger {
        Trigger::Keyword { keywords, mode } => TriggerInput {
            kind: Some(TriggerType::Keyword.as_str().into()),
            keywords: Some(keywords.clone()),
            mode: Some(mode.as_str().into()),
            hours: None,
        },
        Trigger::Away { hours } => TriggerInput {
            kind: Some(TriggerType::Away.as_str().into()),
            hours: Some(crate::domain::automation::HoursInput {
                days: Some(hours.days.iter().map(|day| i64::from(*day)).collect()),
                start: Some(hours.start.to_string()),
                end: Some(hours.end.to_string()),
                timezone: Some(hours.timezone.to_string()),
            }),
            ..TriggerInput::default()
        },
        other => TriggerInput {
            kind: Some(other.kind().as_str().into()),
            ..TriggerInput::default()
        },
    }
}

/// A workspace's enabled rules, compiled, as of one version of them.
struct Compiled {
    version: Option<String>,
    rules: Arc<Vec<Rule>>,
}

/// Rules compiled once per version, whichever process changed them: each group of inbound
/// messages committed together costs one read of the version ([`RulesRead`]), and regular
/// expressions are never compiled on the ingestion path while the rules stand still.
static COMPILED: LazyLock<Mutex<HashMap<WorkspaceId, Compiled>>> = LazyLock::new(Mutex::default);

/// The rules of each workspace as one transaction read them: inbound messages committed together
/// read their workspace's rules once. A change committed meanwhile applies from the next group.
#[derive(Default)]
pub struct RulesRead(HashMap<WorkspaceId, Arc<Vec<Rule>>>);

impl RulesRead {
    async fn of(
        &mut self,
        conn: Conn<'_>,
        workspace: WorkspaceId,
    ) -> store::Result<Arc<Vec<Rule>>> {
        if let Some(rules) = self.0.get(&workspace) {
            return Ok(rules.clone());
        }
        let rules = rules_of(conn, workspace).await?;
        self.0.insert(workspace, rules.clone());
        Ok(rules)
    }
}

async fn rules_of(mut conn: Conn<'_>, workspace: WorkspaceId) -> store::Result<Arc<Vec<Rule>>> {
    let version = automations::version(conn.reborrow(), workspace).await?;
    if version.is_none() {
        return Ok(Arc::default());
    }
    if let Ok(cache) = COMPILED.lock()
        && let Some(hit) = cache.get(&workspace)
        && hit.version == version
    {
        return Ok(hit.rules.clone());
    }
    let rules: Arc<Vec<Rule>> = Arc::new(
        automations::enabled(conn, workspace)
            .await?
            .into_iter()
            .map(|automation| Rule {
                id: automation.id,
                name: automation.name,
                sender: automation.sender_id,
                cooldown: Duration::seconds(automation.cooldown_s),
                matcher: Matcher::compile(&automation.trigger_spec.0),
                reply: automation.reply_spec.0,
            })
            .collect(),
    );
    if let Ok(mut cache) = COMPILED.lock() {
        cache.insert(
            workspace,
            Compiled {
                version,
                rules: rules.clone(),
            },
        );
    }
    Ok(rules)
}

/// The automatic reply an inbound message got, if any.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Answer {
    pub reply: MessageId,
    /// The rule that replied; `None` for a consent keyword's reply.
    pub automation: Option<AutomationId>,
}

/// Answers one inbound message, in the transaction that records it: a consent keyword first
/// (STOP opts the contact out, skipping what waits for it, before its confirmation is queued),
/// else the first rule that matches and is not cooling down for the contact. At most one reply,
/// never to a blocked contact, never to an opted-out one but for the keywords' own, and at most
/// [`REPLIES_PER_CONTACT_PER_HOUR`] to anyone. The reply is a single message of `sender`, which
/// its lane sends before the campaign messages waiting on it.
pub async fn answer(
    mut conn: Conn<'_>,
    sender: SenderId,
    inbound: &Inbound,
    contact: Option<&mut Contact>,
    written: &NewInbound<'_>,
    rules: &mut RulesRead,
    now: DateTime<Utc>,
) -> store::Result<Option<Answer>> {
    let (body, at) = (written.body, written.at);
    let workspace = inbound.workspace;
    let Some(contact) = contact.filter(|contact| Some(contact.id) == inbound.contact) else {
        return Ok(None);
    };
    if let Some(keyword) = ConsentKeyword::of(body) {
        // The contact as the keyword leaves it, for this reply and the messages after this one.
        match keyword {
            ConsentKeyword::OptOut => {
                *contact =
                    contacts::set_opted_out(conn.reborrow(), workspace, contact.id, Some(at), now)
                        .await?;
            }
            ConsentKeyword::OptIn => {
                *contact =
                    contacts::set_opted_out(conn.reborrow(), workspace, contact.id, None, now)
                        .await?;
            }
            ConsentKeyword::Help => {}
        }
        let contact = &*contact;
        let replies = automations::keyword_replies(conn.reborrow(), workspace).await?;
        let Some(text) = replies.reply_to(keyword) else {
            return Ok(None);
        };
        if contact.blocked || over_hourly_cap(conn.reborrow(), contact, now).await? {
            return Ok(None);
        }
        // Rendered for the contact like any reply; a text it cannot fill goes out as written,
        // since the confirmation is owed whatever the workspace typed.
        let text = render_text(conn.reborrow(), contact, text)
            .await?
            .unwrap_or_else(|| text.to_owned());
        let reply = queue_reply(conn, sender, inbound, contact, &text, None, now).await?;
        return Ok(Some(Answer {
            reply,
            automation: None,
        }));
    }
    if contact.blocked || contact.opted_out_at.is_some() {
        return Ok(None);
    }
    let rules = rules.of(conn.reborrow(), workspace).await?;
    // Whether the contact wrote to this sender before matters to welcome rules alone.
    let first_to_sender = rules
        .iter()
        .any(|rule| matches!(rule.matcher, Matcher::Welcome))
        && !messages::wrote_before(conn.reborrow(), sender, contact.id, inbound.id).await?;
    let text = InboundText::new(body, first_to_sender, at);
    let tried = candidates(&rules, sender, &text);
    if tried.is_empty() || over_hourly_cap(conn.reborrow(), contact, now).await? {
        return Ok(None);
    }
    for rule in tried {
        if rule.cooldown > Duration::zero()
            && automations::replied_since(conn.reborrow(), rule.id, contact.id, now - rule.cooldown)
                .await?
        {
            continue;
        }
        let Some((content, media_url)) = reply_content(conn.reborrow(), workspace, rule).await?
        else {
            continue;
        };
        let Some(rendered) = render_for(conn.reborrow(), contact, &content, rule).await? else {
            continue;
        };
        let reply = queue_reply(
            conn.reborrow(),
            sender,
            inbound,
            contact,
            &rendered,
            media_url.as_deref(),
            now,
        )
        .await?;
        let run = NewRun {
            automation_id: rule.id,
            inbound_message_id: inbound.id,
            contact_id: contact.id,
            reply_message_id: reply,
        };
        automations::insert_run(conn.reborrow(), workspace, &run, now).await?;
        let data = AutomationEvent {
            automation_id: rule.id,
            name: rule.name.clone(),
            sender_id: sender,
            contact_id: contact.id,
            inbound_message_id: inbound.id,
            reply_message_id: reply,
        };
        let event = NewEvent::new(
            workspace,
            EventType::AutomationReplied,
            inbound.id,
            &data,
            now,
        )?;
        events::append(conn, &[event]).await?;
        return Ok(Some(Answer {
            reply,
            automation: Some(rule.id),
        }));
    }
    Ok(None)
}

async fn over_hourly_cap(
    conn: Conn<'_>,
    contact: &Contact,
    now: DateTime<Utc>,
) -> store::Result<bool> {
    let sent =
        automations::replies_to_contact_since(conn, contact.id, now - Duration::hours(1)).await?;
    if sent >= REPLIES_PER_CONTACT_PER_HOUR {
        tracing::warn!(contact_id = %contact.id, sent, "automatic replies to this contact capped for the hour");
        return Ok(true);
    }
    Ok(false)
}

/// A rule's reply text and media: its own, or its template's as the template is now (a
/// template deleted since leaves the rule silent).
async fn reply_content(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    rule: &Rule,
) -> store::Result<Option<(String, Option<String>)>> {
    match (&rule.reply.content, rule.reply.template_id) {
        (Some(content), _) => Ok(Some((content.clone(), None))),
        (None, Some(template)) => template_content(conn, workspace, template, rule).await,
        (None, None) => Ok(None),
    }
}

async fn template_content(
    conn: Conn<'_>,
    workspace: WorkspaceId,
    template: TemplateId,
    rule: &Rule,
) -> store::Result<Option<(String, Option<String>)>> {
    match templates::get(conn, workspace, template).await {
        Ok(template) => Ok(Some((template.content, template.media_url))),
        Err(StoreError::NotFound) => {
            tracing::warn!(automation_id = %rule.id, "the rule's template is gone; it does not reply");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// The reply rendered for the contact; a variable the contact cannot fill leaves the rule
/// silent (and the next rule may answer).
async fn render_for(
    conn: Conn<'_>,
    contact: &Contact,
    content: &str,
    rule: &Rule,
) -> store::Result<Option<String>> {
    let rendered = render_text(conn, contact, content).await?;
    if rendered.is_none() {
        tracing::warn!(automation_id = %rule.id, contact_id = %contact.id, "the reply has variables the contact cannot fill; the rule does not reply");
    }
    Ok(rendered)
}

/// `content` rendered with the contact's fields; `None` when it does not parse or a variable
/// has neither a value nor a fallback.
async fn render_text(
    conn: Conn<'_>,
    contact: &Contact,
    content: &str,
) -> store::Result<Option<String>> {
    let Ok(template) = Template::parse(content) else {
        return Ok(None);
    };
    let fields = contacts::render_fields(conn, &[contact.id]).await?.pop();
    Ok(render_once(&template, fields.as_ref(), &BTreeMap::new()).ok())
}

async fn queue_reply(
    conn: Conn<'_>,
    sender: SenderId,
    inbound: &Inbound,
    contact: &Contact,
    body: &str,
    media_url: Option<&str>,
    now: DateTime<Utc>,
) -> store::Result<MessageId> {
    // A reply answers the person's message, inside the customer-service window: it goes out as
    // the free-form text the rule gives, never as a paid template.
    let message = NewMessage {
        sender_id: sender,
        contact_id: Some(contact.id),
        phone: &contact.phone,
        body,
        media_url,
        not_before: now,
        reply_to: Some(inbound.id),
        whatsapp: None,
    };
    Ok(
        messages::insert_single(conn, inbound.workspace, &message, now)
            .await?
            .id,
    )
}
