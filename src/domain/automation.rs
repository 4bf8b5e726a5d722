//! Automatic replies to what contacts write: the opt-out keywords that always work, and the
//! workspace's rules (keyword, welcome, away, fallback), checked and compiled once, then chosen
//! in priority order for each inbound message.

use chrono::{DateTime, Datelike, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ids::{AutomationId, SenderId, TemplateId};
use super::time::{LocalTime, Zone};
use super::validation::FieldErrors;

/// The opt-out keywords of API.md: a message that is one of these words alone.
const OPT_OUT_WORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
const OPT_IN_WORDS: &[&str] = &["START", "UNSTOP", "YES"];
const HELP_WORDS: &[&str] = &["HELP", "INFO"];

/// What a message that is a consent keyword asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsentKeyword {
    OptOut,
    OptIn,
    Help,
}

impl ConsentKeyword {
    /// The keyword `text` is, when it is one word among the lists (case and the punctuation
    /// around it ignored: "Stop!", " stop "); a keyword inside a sentence is not one.
    pub fn of(text: &str) -> Option<Self> {
        let word = text.trim().trim_matches(|c: char| !c.is_alphanumeric());
        if word.is_empty() || word.len() > 16 || word.chars().any(|c| !c.is_alphanumeric()) {
            return None;
        }
        let word = word.to_uppercase();
        let is = |list: &[&str]| list.contains(&word.as_str());
        if is(OPT_OUT_WORDS) {
            Some(Self::OptOut)
        } else if is(OPT_IN_WORDS) {
            Some(Self::OptIn)
        } else if is(HELP_WORDS) {
            Some(Self::Help)
        } else {
            None
        }
    }
}

/// A workspace's answers to the consent keywords; `None` sends nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeywordReplies {
    pub opt_out_reply: Option<String>,
    pub opt_in_reply: Option<String>,
    pub help_reply: Option<String>,
}

impl Default for KeywordReplies {
    fn default() -> Self {
        Self {
            opt_out_reply: Some("You are unsubscribed. Reply START to subscribe again.".into()),
            opt_in_reply: Some("You are subscribed again.".into()),
            help_reply: Some("Reply STOP to unsubscribe.".into()),
        }
    }
}

impl KeywordReplies {
    pub fn reply_to(&self, keyword: ConsentKeyword) -> Option<&str> {
        match keyword {
            ConsentKeyword::OptOut => self.opt_out_reply.as_deref(),
            ConsentKeyword::OptIn => self.opt_in_reply.as_deref(),
            ConsentKeyword::Help => self.help_reply.as_deref(),
        }
    }
}

/// Automatic replies one contact gets at most per hour, whatever the rules: two bots answering
/// each other stop there.
pub const REPLIES_PER_CONTACT_PER_HOUR: i64 = 10;

named_enum! {
    /// How a keyword rule compares the message with its keywords (always ignoring case).
    pub enum KeywordMatch {
        /// The whole trimmed text is a keyword.
        Exact => "exact",
        Contains => "contains",
        StartsWith => "starts_with",
        /// Each keyword is a regular expression, found anywhere in the text.
        Regex => "regex",
    }
}

named_enum! {
    pub enum TriggerType {
        Keyword => "keyword",
        Welcome => "welcome",
        Away => "away",
        Fallback => "fallback",
    }
}

/// Opening hours: `days` (1 = Monday … 7 = Sunday) from `start` to `end` in `timezone`. An `end`
/// before `start` runs overnight, the hours after midnight belonging to the day they began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OpeningHours {
    pub days: Vec<u8>,
    #[schema(value_type = String, example = "09:00")]
    pub start: LocalTime,
    #[schema(value_type = String, example = "17:00")]
    pub end: LocalTime,
    #[schema(value_type = String, example = "Asia/Jerusalem")]
    pub timezone: Zone,
}

impl OpeningHours {
    /// Whether `at` falls within the hours, in their time zone (so on the days clocks change,
    /// the wall clock decides, not a fixed offset).
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.timezone.tz());
        let time = local.time();
        let today = local.weekday().number_from_monday() as u8;
        let yesterday = local.weekday().pred().number_from_monday() as u8;
        let open_on = |day: u8| self.days.contains(&day);
        let (start, end) = (self.start.time(), self.end.time());
        if start < end {
            open_on(today) && start <= time && time < end
        } else {
            (open_on(today) && time >= start) || (open_on(yesterday) && time < end)
        }
    }
}

/// What makes a rule reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Trigger {
    Keyword {
        keywords: Vec<String>,
        #[serde(rename = "match")]
        mode: KeywordMatch,
    },
    /// The contact's first inbound message to this sender ever.
    Welcome,
    /// Outside the opening hours.
    Away { hours: OpeningHours },
    /// Only when no other rule matched.
    Fallback,
}

impl Trigger {
    pub fn kind(&self) -> TriggerType {
        match self {
            Trigger::Keyword { .. } => TriggerType::Keyword,
            Trigger::Welcome => TriggerType::Welcome,
            Trigger::Away { .. } => TriggerType::Away,
            Trigger::Fallback => TriggerType::Fallback,
        }
    }
}

/// A trigger as a client writes it: every field optional, so that each mistake is reported
/// against its field instead of failing the whole body.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct TriggerInput {
    /// `keyword`, `welcome`, `away` or `fallback`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub keywords: Option<Vec<String>>,
    /// `exact` (default), `contains`, `starts_with` or `regex`.
    #[serde(rename = "match")]
    pub mode: Option<String>,
    pub hours: Option<HoursInput>,
}

#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
pub struct HoursInput {
    pub days: Option<Vec<i64>>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub timezone: Option<String>,
}

/// Keywords one rule may have, and the longest keyword or pattern: a regular expression is
/// bounded so that no rule can make ingestion slow (the `regex` crate matches in linear time;
/// these bound the size of what it compiles).
const MAX_KEYWORDS: usize = 100;
const MAX_KEYWORD_LEN: usize = 200;
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

impl TriggerInput {
    /// The trigger, or every field that is wrong (named `trigger.*`).
    pub fn parse(self) -> Result<Trigger, FieldErrors> {
        let mut errors = FieldErrors::new();
        let Some(kind) = self.kind else {
            errors.add("trigger.type", "is required");
            return Err(errors);
        };
        let kind: TriggerType = match kind.parse() {
            Ok(kind) => kind,
            Err(_) => {
                errors.add(
                    "trigger.type",
                    format!("'{kind}' is not one of keyword, welcome, away, fallback"),
                );
                return Err(errors);
            }
        };
        let trigger = match kind {
            TriggerType::Keyword => parse_keywords(self.keywords, self.mode, &mut errors),
            TriggerType::Welcome => Some(Trigger::Welcome),
            TriggerType::Fallback => Some(Trigger::Fallback),
            TriggerType::Away => match self.hours {
                None => {
                    errors.add("trigger.hours", "is required for an away rule");
                    None
                }
                Some(hours) => parse_hours(hours, &mut errors).map(|hours| Trigger::Away { hours }),
            },
        };
        match trigger {
            Some(trigger) if errors.is_empty() => Ok(trigger),
            _ => Err(errors),
        }
    }
}

fn parse_keywords(
    keywords: Option<Vec<String>>,
    mode: Option<String>,
    errors: &mut FieldErrors,
) -> Option<Trigger> {
    let mode = match mode.as_deref().map(str::parse::<KeywordMatch>) {
        None => KeywordMatch::Exact,
        Some(Ok(mode)) => mode,
        Some(Err(_)) => {
            errors.add(
                "trigger.match",
                "must be one of exact, contains, starts_with, regex",
            );
            KeywordMatch::Exact
        }
    };
    let keywords: Vec<String> = keywords
        .unwrap_or_default()
        .into_iter()
        .map(|keyword| keyword.trim().to_owned())
        .filter(|keyword| !keyword.is_empty())
        .collect();
    if keywords.is_empty() {
        errors.add(
            "trigger.keywords",
            "a keyword rule needs at least one keyword",
        );
    }
    if keywords.len() > MAX_KEYWORDS {
        errors.add(
            "trigger.keywords",
            format!("at most {MAX_KEYWORDS} keywords per rule"),
        );
    }
    for keyword in &keywords {
        if keyword.chars().count() > MAX_KEYWORD_LEN {
            errors.add(
                "trigger.keywords",
                format!("'{keyword}' is longer than {MAX_KEYWORD_LEN} characters"),
            );
        } else if mode == KeywordMatch::Regex
            && let Err(error) = compile_pattern(keyword)
        {
            errors.add(
                "trigger.keywords",
                format!("'{keyword}' is not a valid regular expression: {error}"),
            );
        }
    }
    Some(Trigger::Keyword { keywords, mode })
}

fn parse_hours(hours: HoursInput, errors: &mut FieldErrors) -> Option<OpeningHours> {
    let days: Vec<u8> = hours
        .days
        .unwrap_or_default()
        .into_iter()
        .filter_map(|day| match u8::try_from(day) {
            Ok(day @ 1..=7) => Some(day),
            _ => {
                errors.add("trigger.hours.days", "days are 1 (Monday) to 7 (Sunday)");
                None
            }
        })
        .collect();
    if days.is_empty() {
        errors.add(
            "trigger.hours.days",
            "at least one day (1 = Monday … 7 = Sunday)",
        );
    }
    let mut time = |field: &str, value: Option<String>| -> Option<LocalTime> {
        match value.as_deref().map(str::parse::<LocalTime>) {
            Some(Ok(time)) => Some(time),
            Some(Err(error)) => {
                errors.add(format!("trigger.hours.{field}"), error.to_string());
                None
            }
            None => {
                errors.add(format!("trigger.hours.{field}"), "is required (HH:MM)");
                None
            }
        }
    };
    let start = time("start", hours.start);
    let end = time("end", hours.end);
    if let (Some(start), Some(end)) = (start, end)
        && start == end
    {
        errors.add("trigger.hours.end", "must differ from start");
    }
    let timezone = match hours.timezone.as_deref().map(str::parse::<Zone>) {
        Some(Ok(zone)) => Some(zone),
        Some(Err(error)) => {
            errors.add("trigger.hours.timezone", error.to_string());
            None
        }
        None => {
            errors.add("trigger.hours.timezone", "is required");
            None
        }
    };
    let mut days = days;
    days.sort_unstable();
    days.dedup();
    Some(OpeningHours {
        days,
        start: start?,
        end: end?,
        timezone: timezone?,
    })
}

fn compile_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// What a rule replies with: its own content, or a template's.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<TemplateId>,
}

/// A trigger compiled for matching: keywords lowercased, patterns built once.
#[derive(Clone, Debug)]
pub enum Matcher {
    Exact(Vec<String>),
    Contains(Vec<String>),
    StartsWith(Vec<String>),
    Regex(Vec<regex::Regex>),
    Welcome,
    Away(OpeningHours),
    Fallback,
}

impl Matcher {
    /// A stored trigger compiled; a pattern that no longer compiles (the limits changed) matches
    /// nothing rather than failing the ingestion of a message.
    pub fn compile(trigger: &Trigger) -> Self {
        let lowered = |keywords: &[String]| keywords.iter().map(|k| k.to_lowercase()).collect();
        match trigger {
            Trigger::Keyword { keywords, mode } => match mode {
                KeywordMatch::Exact => Matcher::Exact(lowered(keywords)),
                KeywordMatch::Contains => Matcher::Contains(lowered(keywords)),
                KeywordMatch::StartsWith => Matcher::StartsWith(lowered(keywords)),
                KeywordMatch::Regex => Matcher::Regex(
                    keywords
                        .iter()
                        .filter_map(|pattern| compile_pattern(pattern).ok())
                        .collect(),
                ),
            },
            Trigger::Welcome => Matcher::Welcome,
            Trigger::Away { hours } => Matcher::Away(hours.clone()),
            Trigger::Fallback => Matcher::Fallback,
        }
    }

    fn is_fallback(&self) -> bool {
        matches!(self, Matcher::Fallback)
    }

    /// Whether an inbound message sets this trigger off (a fallback never does by itself).
    pub fn matches(&self, inbound: &InboundText<'_>) -> bool {
        match self {
            Matcher::Exact(keywords) => keywords.contains(&inbound.lowered),
            Matcher::Contains(keywords) => keywords.iter().any(|k| inbound.lowered.contains(k)),
            Matcher::StartsWith(keywords) => {
                keywords.iter().any(|k| inbound.lowered.starts_with(k))
            }
            Matcher::Regex(patterns) => patterns.iter().any(|p| p.is_match(inbound.trimmed)),
            Matcher::Welcome => inbound.first_to_sender,
            Matcher::Away(hours) => !hours.contains(inbound.at),
            Matcher::Fallback => false,
        }
    }
}

/// An inbound message as the rules see it.
pub struct InboundText<'a> {
    trimmed: &'a str,
    lowered: String,
    /// The contact never wrote to this sender before.
    first_to_sender: bool,
    at: DateTime<Utc>,
}

impl<'a> InboundText<'a> {
    pub fn new(body: &'a str, first_to_sender: bool, at: DateTime<Utc>) -> Self {
        let trimmed = body.trim();
        Self {
            trimmed,
            lowered: trimmed.to_lowercase(),
            first_to_sender,
            at,
        }
    }
}

/// An enabled rule, compiled: what choosing a reply needs.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: AutomationId,
    pub name: String,
    /// `None`: every sender of the workspace.
    pub sender: Option<SenderId>,
    pub cooldown: Duration,
    pub matcher: Matcher,
    pub reply: Reply,
}

/// The rules that may answer `inbound` on `sender`, in the order they are tried: every matching
/// rule in priority order (`rules` is already in it), then — only when none matched — the
/// fallbacks. The first that is not cooling down for the contact replies; a rule cooling down
/// still counts as a match, so a repeated "price" does not get the fallback.
pub fn candidates<'r>(
    rules: &'r [Rule],
    sender: SenderId,
    inbound: &InboundText<'_>,
) -> Vec<&'r Rule> {
    let for_sender = || {
        rules
            .iter()
            .filter(move |rule| rule.sender.is_none_or(|only| only == sender))
    };
    let matched: Vec<&Rule> = for_sender()
        .filter(|rule| rule.matcher.matches(inbound))
        .collect();
    if !matched.is_empty() {
        return matched;
    }
    for_sender()
        .filter(|rule| rule.matcher.is_fallback())
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_consent_keyword_is_one_word_whatever_its_case_and_punctuation() {
        assert_eq!(ConsentKeyword::of("STOP"), Some(ConsentKeyword::OptOut));
        assert_eq!(ConsentKeyword::of(" stop "), Some(ConsentKeyword::OptOut));
        assert_eq!(ConsentKeyword::of("Stop!"), Some(ConsentKeyword::OptOut));
        assert_eq!(
            ConsentKeyword::of("\"unsubscribe.\""),
            Some(ConsentKeyword::OptOut)
        );
        assert_eq!(ConsentKeyword::of("start"), Some(ConsentKeyword::OptIn));
        assert_eq!(ConsentKeyword::of("Yes"), Some(ConsentKeyword::OptIn));
        assert_eq!(ConsentKeyword::of("help?"), Some(ConsentKeyword::Help));
        assert_eq!(ConsentKeyword::of("don't stop the offers"), None);
        assert_eq!(ConsentKeyword::of("stop it"), None);
        assert_eq!(ConsentKeyword::of("stopped"), None);
        assert_eq!(ConsentKeyword::of("s-t-o-p"), None);
        assert_eq!(ConsentKeyword::of(""), None);
        assert_eq!(ConsentKeyword::of("!!!"), None);
    }

    fn keyword(mode: &str, keywords: &[&str]) -> Result<Trigger, FieldErrors> {
        TriggerInput {
            kind: Some("keyword".into()),
            keywords: Some(keywords.iter().map(|k| k.to_string()).collect()),
            mode: Some(mode.into()),
            hours: None,
        }
        .parse()
    }

    fn matches(trigger: &Trigger, text: &str) -> bool {
        Matcher::compile(trigger).matches(&InboundText::new(text, false, Utc::now()))
    }

    #[test]
    fn keyword_rules_match_as_their_mode_says_ignoring_case() {
        let exact = keyword("exact", &["price", "Pricing"]).unwrap();
        assert!(matches(&exact, "  PRICE "));
        assert!(matches(&exact, "pricing"));
        assert!(!matches(&exact, "the price?"));
        let contains = keyword("contains", &["price"]).unwrap();
        assert!(matches(&contains, "What is the PRICE?"));
        assert!(!matches(&contains, "cost"));
        let starts = keyword("starts_with", &["order"]).unwrap();
        assert!(matches(&starts, "Order #42 status"));
        assert!(!matches(&starts, "my order"));
        let regex = keyword("regex", &[r"^order\s*#?\d+$"]).unwrap();
        assert!(matches(&regex, "ORDER #42"));
        assert!(!matches(&regex, "order now"));
    }

    #[test]
    fn bad_triggers_name_their_field() {
        let fields = |result: Result<Trigger, FieldErrors>| -> Vec<String> {
            result.unwrap_err().fields().map(str::to_owned).collect()
        };
        assert_eq!(fields(keyword("exact", &[])), ["trigger.keywords"]);
        assert_eq!(fields(keyword("exact", &["  "])), ["trigger.keywords"]);
        assert_eq!(fields(keyword("fuzzy", &["a"])), ["trigger.match"]);
        assert_eq!(
            fields(keyword("regex", &["(unclosed"])),
            ["trigger.keywords"]
        );
        // A pattern whose compiled form would be huge is refused, not compiled at ingestion.
        assert_eq!(
            fields(keyword("regex", &[r"\w{1000}"])),
            ["trigger.keywords"]
        );
        let long = "x".repeat(MAX_KEYWORD_LEN + 1);
        assert_eq!(fields(keyword("contains", &[&long])), ["trigger.keywords"]);
        let unknown = TriggerInput {
            kind: Some("birthday".into()),
            ..TriggerInput::default()
        };
        assert_eq!(fields(unknown.parse()), ["trigger.type"]);
        assert_eq!(fields(TriggerInput::default().parse()), ["trigger.type"]);
        let away = |days: Vec<i64>, start: &str, end: &str, timezone: &str| TriggerInput {
            kind: Some("away".into()),
            hours: Some(HoursInput {
                days: Some(days),
                start: Some(start.into()),
                end: Some(end.into()),
                timezone: Some(timezone.into()),
            }),
            ..TriggerInput::default()
        };
        assert_eq!(
            fields(away(vec![1], "09:00", "09:00", "UTC").parse()),
            ["trigger.hours.end"]
        );
        assert_eq!(
            fields(away(vec![0, 8], "9am", "17:00", "Mars/Olympus").parse()),
            [
                "trigger.hours.days",
                "trigger.hours.start",
                "trigger.hours.timezone"
            ]
        );
        assert!(
            away(vec![5, 1, 1], "22:00", "06:00", "Asia/Jerusalem")
                .parse()
                .is_ok()
        );
    }

    fn hours(days: &[u8], start: &str, end: &str, zone: &str) -> OpeningHours {
        OpeningHours {
            days: days.to_vec(),
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            timezone: zone.parse().unwrap(),
        }
    }

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn opening_hours_follow_the_wall_clock_across_a_dst_day() {
        let office = hours(&[1, 2, 3, 4, 5], "09:00", "17:00", "America/New_York");
        // Monday 2026-03-09, the first weekday after clocks went forward (UTC-4 now).
        assert!(office.contains(utc(2026, 3, 9, 13, 30)), "09:30 EDT");
        assert!(!office.contains(utc(2026, 3, 9, 12, 30)), "08:30 EDT");
        // The Friday before, still UTC-5: 13:30 UTC was 08:30.
        assert!(!office.contains(utc(2026, 3, 6, 13, 30)));
        assert!(office.contains(utc(2026, 3, 6, 14, 30)));
        // Saturday is closed all day.
        assert!(!office.contains(utc(2026, 3, 7, 16, 0)));
        // Sunday 2026-03-08 itself (the change at 02:00): a Sunday rule follows the new offset.
        let sunday = hours(&[7], "09:00", "17:00", "America/New_York");
        assert!(sunday.contains(utc(2026, 3, 8, 13, 0)), "09:00 EDT");
        assert!(!sunday.contains(utc(2026, 3, 8, 12, 59)), "08:59 EDT");
    }

    #[test]
    fn overnight_hours_belong_to_the_day_they_begin() {
        // Open Friday 22:00 to Saturday 06:00 in Jerusalem (UTC+2 in winter).
        let night = hours(&[5], "22:00", "06:00", "Asia/Jerusalem");
        assert!(night.contains(utc(2026, 12, 4, 20, 30)), "Friday 22:30");
        assert!(night.contains(utc(2026, 12, 5, 3, 0)), "Saturday 05:00");
        assert!(!night.contains(utc(2026, 12, 5, 4, 0)), "Saturday 06:00");
        assert!(!night.contains(utc(2026, 12, 5, 20, 30)), "Saturday 22:30");
        assert!(!night.contains(utc(2026, 12, 4, 2, 0)), "Friday 04:00");
        // A half-hour zone: Kolkata is UTC+5:30.
        let kolkata = hours(&[1, 2, 3, 4, 5, 6, 7], "09:00", "17:00", "Asia/Kolkata");
        assert!(kolkata.contains(utc(2026, 12, 2, 3, 30)), "09:00 IST");
        assert!(!kolkata.contains(utc(2026, 12, 2, 3, 29)), "08:59 IST");
    }

    fn rule(name: &str, sender: Option<SenderId>, trigger: Trigger) -> Rule {
        Rule {
            id: AutomationId::generate(),
            name: name.into(),
            sender,
            cooldown: Duration::zero(),
            matcher: Matcher::compile(&trigger),
            reply: Reply {
                content: Some(name.into()),
                template_id: None,
            },
        }
    }

    #[test]
    fn matching_rules_come_in_order_and_fallbacks_only_when_none_matched() {
        let sender = SenderId::generate();
        let other = SenderId::generate();
        let rules = vec![
            rule(
                "other sender",
                Some(other),
                keyword("contains", &["price"]).unwrap(),
            ),
            rule("fallback", None, Trigger::Fallback),
            rule(
                "price",
                Some(sender),
                keyword("contains", &["price"]).unwrap(),
            ),
            rule("welcome", None, Trigger::Welcome),
        ];
        let names = |text: &str, first: bool| -> Vec<String> {
            candidates(&rules, sender, &InboundText::new(text, first, Utc::now()))
                .into_iter()
                .map(|rule| rule.name.clone())
                .collect()
        };
        assert_eq!(names("the price?", true), ["price", "welcome"]);
        assert_eq!(names("the price?", false), ["price"]);
        assert_eq!(names("hello", false), ["fallback"]);
        assert_eq!(names("hello", true), ["welcome"]);
    }
}
