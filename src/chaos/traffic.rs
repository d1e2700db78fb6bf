//! Message bookkeeping of the chaos run: what each side accepted, what arrived, and the
//! lost / duplicated tally. Pure (the driver does the IO). Every message text is unique
//! (`chaos-{seed}-c{cycle}-{direction}-t{tenant}`), so delivery is counted by text.

use std::collections::BTreeMap;

use super::ChaosError;
use super::report::Flow;
use crate::store::Store;
use crate::types::TenantId;

/// Whether the sending side confirmed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx: the sender owns it now; it must arrive exactly once.
    Accepted,
    /// The request failed mid-way (process stopped): it may arrive once, never twice.
    Unknown,
}

/// The messages of one direction.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    sent: BTreeMap<String, Outcome>,
}

impl Ledger {
    /// Records a send attempt of `text`.
    pub(crate) fn record(&mut self, text: String, outcome: Outcome) {
        self.sent.insert(text, outcome);
    }

    /// Texts still expected (accepted) that are not in `delivered`.
    pub(crate) fn missing<'a>(&'a self, delivered: &BTreeMap<String, usize>) -> Vec<&'a str> {
        self.sent
            .iter()
            .filter(|(t, o)| **o == Outcome::Accepted && !delivered.contains_key(*t))
            .map(|(t, _)| t.as_str())
            .collect()
    }

    /// The tally against `delivered` (text → times seen).
    pub(crate) fn tally(&self, delivered: &BTreeMap<String, usize>) -> Flow {
        let mut f = Flow::default();
        for (text, outcome) in &self.sent {
            let n = delivered.get(text).copied().unwrap_or(0);
            match outcome {
                Outcome::Accepted => f.sent += 1,
                Outcome::Unknown => f.unknown += 1,
            }
            match (n, outcome) {
                (0, Outcome::Accepted) => f.lost += 1,
                (0, Outcome::Unknown) => {}
                (1, _) => f.delivered += 1,
                _ => f.duplicated += 1,
            }
        }
        f
    }
}

/// Counts, per text, the distinct message ids in a phone inbox (`{"messages":[{"id","text"}]}`):
/// a phone shows a message id once, so a resend that reuses the id is not a duplicate, while a
/// second id with the same text is.
pub(crate) fn count_distinct_ids(v: &serde_json::Value, prefix: &str) -> BTreeMap<String, usize> {
    let mut ids: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for m in v["messages"].as_array().map(Vec::as_slice).unwrap_or_default() {
        if let Some(t) = m["text"].as_str().filter(|t| t.starts_with(prefix)) {
            let id = m["id"].as_str().unwrap_or_default().to_owned();
            ids.entry(t.to_owned()).or_default().insert(id);
        }
    }
    ids.into_iter().map(|(t, s)| (t, s.len())).collect()
}

/// Counts every string under a `"text"` key anywhere in `v` that starts with `prefix`.
pub(crate) fn count_texts(v: &serde_json::Value, prefix: &str, into: &mut BTreeMap<String, usize>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                match x {
                    serde_json::Value::String(s) if k == "text" && s.starts_with(prefix) => {
                        *into.entry(s.clone()).or_insert(0) += 1;
                    }
                    _ => count_texts(x, prefix, into),
                }
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                count_texts(x, prefix, into);
            }
        }
        _ => {}
    }
}

/// The texts (starting with `prefix`) of the messages in `tenant`'s durable inbox (each item's
/// payload is a serialised `TenantEvent`; texts are found wherever the event nests them).
///
/// # Errors
/// The store could not list the inbox.
pub(crate) async fn inbox_texts(
    store: &dyn Store,
    tenant: &TenantId,
    prefix: &str,
) -> Result<Vec<String>, ChaosError> {
    let items = store.list_inbox(tenant).await.map_err(ChaosError::Store)?;
    let mut seen = BTreeMap::new();
    for item in &items {
        let v: serde_json::Value = serde_json::from_slice(item.payload.expose()).unwrap_or_default();
        count_texts(&v, prefix, &mut seen);
    }
    Ok(seen.into_iter().flat_map(|(t, n)| std::iter::repeat_n(t, n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepted-but-missing is lost, twice is duplicated, unknown may be absent but not doubled.
    #[test]
    fn tally_counts_lost_and_duplicates() {
        let mut l = Ledger::default();
        for (t, o) in [("a", Outcome::Accepted), ("b", Outcome::Accepted), ("c", Outcome::Accepted)] {
            l.record(t.into(), o);
        }
        l.record("u0".into(), Outcome::Unknown);
        l.record("u2".into(), Outcome::Unknown);
        let seen: BTreeMap<String, usize> =
            [("a", 1), ("b", 2), ("u2", 2)].map(|(k, v)| (k.to_owned(), v)).into();
        let f = l.tally(&seen);
        assert_eq!((f.sent, f.unknown, f.delivered, f.lost, f.duplicated), (3, 2, 1, 1, 2), "{f:?}");
        assert_eq!(l.missing(&seen), vec!["c"]);
    }

    /// A phone inbox counts distinct ids: the same id twice is one message, a new id is another.
    #[test]
    fn phone_inbox_counts_distinct_ids() {
        let v = serde_json::json!({"messages":[
            {"id":"A","text":"chaos-1"},{"id":"A","text":"chaos-1"},{"id":"B","text":"chaos-2"},{"id":"C","text":"chaos-2"}
        ]});
        let seen = count_distinct_ids(&v, "chaos-");
        assert_eq!((seen.get("chaos-1"), seen.get("chaos-2")), (Some(&1), Some(&2)));
    }

    /// Texts are found at any depth under `"text"` keys, filtered by prefix.
    #[test]
    fn texts_found_anywhere() {
        let v =
            serde_json::json!({"messages":[{"text":"chaos-1"},{"m":{"text":"chaos-1"}},{"text":"other"}]});
        let mut seen = BTreeMap::new();
        count_texts(&v, "chaos-", &mut seen);
        assert_eq!(seen.get("chaos-1"), Some(&2));
        assert_eq!(seen.len(), 1);
    }
}
