//! A provider module declares where its configuration's secrets are, as JSON pointers whose `*`
//! matches every key or index at its level; whatever string sits there is shown as [`MASK`],
//! however deep. A client that edits a configuration it was shown sends the mask back where it
//! changed nothing, and the stored secret is kept there.

use serde_json::Value;

/// What a secret is shown as (API.md: secrets are write-only).
pub const MASK: &str = "***";

/// `config` fit to show: every string at a `secrets` pointer replaced by [`MASK`].
pub fn masked(config: &Value, secrets: &[&str]) -> Value {
    let mut shown = config.clone();
    for pointer in secrets {
        visit(&mut shown, &segments(pointer), &mut |value| {
            if value.is_string() {
                *value = Value::from(MASK);
            }
        });
    }
    shown
}

/// Puts `stored` secrets back wherever `config` holds the mask at a `secrets` pointer.
pub fn restore_masked(config: &mut Value, stored: &Value, secrets: &[&str]) {
    for pointer in secrets {
        restore_at(config, stored, &segments(pointer));
    }
}

fn segments(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|segment| segment.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// Calls `action` on every value `path` reaches in `value`.
fn visit(value: &mut Value, path: &[String], action: &mut impl FnMut(&mut Value)) {
    let Some((first, rest)) = path.split_first() else {
        action(value);
        return;
    };
    match value {
        Value::Object(fields) if first == "*" => {
            fields.values_mut().for_each(|v| visit(v, rest, action));
        }
        Value::Object(fields) => {
            if let Some(v) = fields.get_mut(first) {
                visit(v, rest, action);
            }
        }
        Value::Array(items) if first == "*" => {
            items.iter_mut().for_each(|v| visit(v, rest, action));
        }
        Value::Array(items) => {
            if let Some(v) = first.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                visit(v, rest, action);
            }
        }
        _ => {}
    }
}

fn restore_at(config: &mut Value, stored: &Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        if config == MASK {
            *config = stored.clone();
        }
        return;
    };
    match (config, stored) {
        (Value::Object(fields), Value::Object(old)) => {
            for (key, value) in fields.iter_mut() {
                if (first == "*" || first == key)
                    && let Some(previous) = old.get(key)
                {
                    restore_at(value, previous, rest);
                }
            }
        }
        (Value::Array(items), Value::Array(old)) => {
            for (index, (value, previous)) in items.iter_mut().zip(old).enumerate() {
                if first == "*" || *first == index.to_string() {
                    restore_at(value, previous, rest);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SECRETS: &[&str] = &["/headers/*", "/auth/token", "/accounts/*/key"];

    #[test]
    fn secrets_are_masked_at_any_depth_and_nothing_else_is() {
        let stored = json!({
            "url": "http://gateway/send",
            "headers": {"X-Key": "k-123", "Accept": "application/json"},
            "auth": {"token": "t-456", "user": "herald"},
            "accounts": [{"key": "a-1", "name": "main"}, {"key": "a-2"}],
            "timeout_ms": 500,
        });
        assert_eq!(
            masked(&stored, SECRETS),
            json!({
                "url": "http://gateway/send",
                "headers": {"X-Key": MASK, "Accept": MASK},
                "auth": {"token": MASK, "user": "herald"},
                "accounts": [{"key": MASK, "name": "main"}, {"key": MASK}],
                "timeout_ms": 500,
            })
        );
        assert!(!masked(&stored, SECRETS).to_string().contains("t-456"));
    }

    #[test]
    fn the_mask_sent_back_keeps_the_stored_secret() {
        let stored = json!({
            "headers": {"X-Key": "k-123", "Accept": "application/json"},
            "auth": {"token": "t-456"},
            "accounts": [{"key": "a-1"}],
        });
        let mut sent_back = masked(&stored, SECRETS);
        sent_back["headers"]["X-Key"] = json!("k-789");
        sent_back["url"] = json!("http://gateway/v2/send");
        restore_masked(&mut sent_back, &stored, SECRETS);
        assert_eq!(
            sent_back["headers"]["X-Key"], "k-789",
            "a new secret is taken"
        );
        assert_eq!(sent_back["headers"]["Accept"], "application/json");
        assert_eq!(sent_back["auth"]["token"], "t-456");
        assert_eq!(sent_back["accounts"][0]["key"], "a-1");
        assert_eq!(sent_back["url"], "http://gateway/v2/send");
    }
}
