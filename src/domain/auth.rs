//! API keys: abilities, and bearer tokens whose secret half is only ever stored as a digest.
//!
//! A token reads `hrl_<key id>_<secret>`. The key id finds the row; the secret is checked by
//! comparing SHA-256 digests in constant time. The secret has 256 bits of entropy, so a plain
//! digest (no slow KDF) is the right tool: there is nothing to brute-force.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::ApiKeyId;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ability {
    #[serde(rename = "*")]
    All,
    #[serde(rename = "contacts.read")]
    ContactsRead,
    #[serde(rename = "contacts.write")]
    ContactsWrite,
    #[serde(rename = "campaigns.read")]
    CampaignsRead,
    #[serde(rename = "campaigns.write")]
    CampaignsWrite,
    #[serde(rename = "messages.send")]
    MessagesSend,
    #[serde(rename = "messages.read")]
    MessagesRead,
    #[serde(rename = "senders.read")]
    SendersRead,
    #[serde(rename = "senders.write")]
    SendersWrite,
    #[serde(rename = "automations.write")]
    AutomationsWrite,
    #[serde(rename = "webhooks.write")]
    WebhooksWrite,
    #[serde(rename = "analytics.read")]
    AnalyticsRead,
}

impl Ability {
    pub const ALL: [Ability; 12] = [
        Self::All,
        Self::ContactsRead,
        Self::ContactsWrite,
        Self::CampaignsRead,
        Self::CampaignsWrite,
        Self::MessagesSend,
        Self::MessagesRead,
        Self::SendersRead,
        Self::SendersWrite,
        Self::AutomationsWrite,
        Self::WebhooksWrite,
        Self::AnalyticsRead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "*",
            Self::ContactsRead => "contacts.read",
            Self::ContactsWrite => "contacts.write",
            Self::CampaignsRead => "campaigns.read",
            Self::CampaignsWrite => "campaigns.write",
            Self::MessagesSend => "messages.send",
            Self::MessagesRead => "messages.read",
            Self::SendersRead => "senders.read",
            Self::SendersWrite => "senders.write",
            Self::AutomationsWrite => "automations.write",
            Self::WebhooksWrite => "webhooks.write",
            Self::AnalyticsRead => "analytics.read",
        }
    }

    /// Whether a key holding `held` may do what needs `self`.
    pub fn is_granted_by(self, held: &[Ability]) -> bool {
        held.iter()
            .any(|&ability| ability == Ability::All || ability == self)
    }

    /// Parses a comma-separated list such as `contacts.read,campaigns.write`.
    pub fn parse_list(text: &str) -> Result<Vec<Ability>, UnknownAbility> {
        let mut abilities: Vec<Ability> = text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        abilities.sort();
        abilities.dedup();
        Ok(abilities)
    }
}

impl fmt::Display for Ability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown ability '{0}'; known: *, contacts.read, contacts.write, campaigns.read, campaigns.write, messages.send, messages.read, senders.read, senders.write, automations.write, webhooks.write, analytics.read"
)]
pub struct UnknownAbility(pub String);

impl FromStr for Ability {
    type Err = UnknownAbility;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|ability| ability.as_str() == s)
            .ok_or_else(|| UnknownAbility(s.to_owned()))
    }
}

const TOKEN_PREFIX: &str = "hrl_";

/// A freshly minted token: shown to its owner once, then only its digest is kept.
pub struct NewToken {
    pub key_id: ApiKeyId,
    pub token: String,
    pub secret_digest: String,
}

impl NewToken {
    pub fn generate() -> Self {
        let key_id = ApiKeyId::generate();
        let secret = random_secret();
        let token = format!("{TOKEN_PREFIX}{}_{secret}", key_id.0.simple());
        Self {
            key_id,
            token,
            secret_digest: digest(&secret),
        }
    }
}

/// A bearer token split into the key it names and the secret it claims.
#[derive(Debug, PartialEq, Eq)]
pub struct PresentedToken<'a> {
    pub key_id: ApiKeyId,
    secret: &'a str,
}

impl<'a> PresentedToken<'a> {
    pub fn parse(token: &'a str) -> Option<Self> {
        let rest = token.strip_prefix(TOKEN_PREFIX)?;
        let (id, secret) = rest.split_once('_')?;
        let key_id = id.parse().ok()?;
        (!secret.is_empty()).then_some(Self { key_id, secret })
    }

    /// Constant-time: the time taken says nothing about how much of the secret matched.
    pub fn matches(&self, stored_digest: &str) -> bool {
        digest(self.secret)
            .as_bytes()
            .ct_eq(stored_digest.as_bytes())
            .into()
    }
}

/// 256 random bits as 64 hex characters.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The SHA-256 of a secret as hex: what is stored instead of the secret.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_and_a_tampered_one_does_not() {
        let minted = NewToken::generate();
        let presented = PresentedToken::parse(&minted.token).unwrap();
        assert_eq!(presented.key_id, minted.key_id);
        assert!(presented.matches(&minted.secret_digest));

        let mut tampered = minted.token.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert!(
            !PresentedToken::parse(&tampered)
                .unwrap()
                .matches(&minted.secret_digest)
        );
        assert!(
            !minted.token.contains(&minted.secret_digest),
            "the digest is not the secret"
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for token in [
            "",
            "hrl_",
            "hrl_nope_secret",
            "abc",
            "hrl_0190b0e4c6a87c2a9c4f6f6c3b1e2d3f_",
        ] {
            assert_eq!(PresentedToken::parse(token), None, "{token}");
        }
    }

    #[test]
    fn abilities_parse_and_grant() {
        let abilities =
            Ability::parse_list("contacts.read, campaigns.write,contacts.read").unwrap();
        assert_eq!(abilities, [Ability::ContactsRead, Ability::CampaignsWrite]);
        assert!(Ability::ContactsRead.is_granted_by(&abilities));
        assert!(!Ability::ContactsWrite.is_granted_by(&abilities));
        assert!(Ability::AnalyticsRead.is_granted_by(&[Ability::All]));
        assert_eq!(
            Ability::parse_list("contacts.delete"),
            Err(UnknownAbility("contacts.delete".into()))
        );
        for ability in Ability::ALL {
            assert_eq!(serde_json::to_value(ability).unwrap(), ability.as_str());
        }
    }
}
